"""`medfuse run`: discovery, report pairing, per-study outputs, status lines, resume, failures."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import jsonschema
import pydicom
import pytest

from medfuse.cli.main import main as cli
from medfuse.config import load_workflow, workflow_schema
from medfuse.errors import ConfigError, InputError, ReportError
from medfuse.workflows import (
    STATUS_FILE,
    discover_studies,
    find_report,
    read_status,
    run_workflow,
    study_key,
)

REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO / "sample_cases"
SCHEMA = json.loads((REPO / "docs" / "prediction.schema.json").read_text())

# fast settings: one cheap explanation, the two light exporters (the other exporters have
# their own tests; `make demo` runs the full workflow)
FAST = {
    "name": "fast_test",
    "model": "chest_ct_demo",
    "input": {"modalities": ["CT"]},
    "explain": {"methods": ["gradcam"], "labels": ["pleural_effusion"]},
    "export": {"formats": ["json", "nifti"], "saliency_labels": ["pleural_effusion"]},
}


@pytest.fixture(scope="module")
def batch(tmp_path_factory) -> Path:
    """A folder of studies: one with a report, one without, one broken, one MR (wrong modality)."""
    root = tmp_path_factory.mktemp("batch")
    shutil.copytree(SAMPLES / "chest_ct_0002", root / "a_with_report")
    shutil.copytree(SAMPLES / "chest_ct_0003", root / "b_no_report")
    broken = root / "c_broken"
    broken.mkdir()
    src = sorted((SAMPLES / "chest_ct_0002" / "dicom").glob("*.dcm"))[0]
    (broken / "IM0001.dcm").write_bytes(src.read_bytes()[:700])  # truncated header
    (broken / "notes.txt").write_text("not an image")
    shutil.copytree(SAMPLES / "mr_sag_0001", root / "d_mr")
    (root / "README.md").write_text("a file in a folder of studies is ignored")
    return root


@pytest.fixture(scope="module")
def first_run(batch, tmp_path_factory):
    out = tmp_path_factory.mktemp("out")
    summary = run_workflow(load_workflow(FAST), [batch], out)
    return out, summary


def _by_input(summary) -> dict[str, dict]:
    return {Path(r["input"]).name: r for r in summary.records}


def test_batch_keeps_going_and_records_every_study(first_run):
    out, summary = first_run
    recs = _by_input(summary)
    assert set(recs) == {"a_with_report", "b_no_report", "c_broken", "d_mr"}
    assert [recs[k]["status"] for k in sorted(recs)] == ["ok", "ok", "error", "error"]
    assert "c_broken" in recs["c_broken"]["reason"]
    assert recs["c_broken"]["error_type"] == "DicomError"
    assert "modality MR is not one of CT" in recs["d_mr"]["reason"]
    lines = (out / STATUS_FILE).read_text().splitlines()
    assert len(lines) == 4 and all(json.loads(x)["key"] for x in lines)


def test_outputs_of_a_study(first_run):
    out, summary = first_run
    rec = _by_input(summary)["a_with_report"]
    folder = out / rec["key"]
    assert sorted(rec["outputs"]) == [
        "prediction.json",
        "saliency/saliency.json",
        "saliency/saliency.nii.gz",
    ]
    doc = json.loads((folder / "prediction.json").read_text())
    jsonschema.validate(doc, SCHEMA, cls=jsonschema.Draft202012Validator)
    assert doc["key"] == rec["key"] and doc["modalities_used"] == ["image", "report"]
    assert "source_path" not in doc  # no input path (may hold names) without include_phi
    assert set(rec["timings_s"]) >= {"scan", "decode", "report", "preprocess", "forward", "wall"}
    assert not list(out.glob(".partial-*")), "no temporary folder is left behind"


def test_study_without_report_runs_image_only(first_run):
    out, summary = first_run
    rec = _by_input(summary)["b_no_report"]
    assert rec["modalities_used"] == ["image"]
    assert rec["report"] == "none found: image-only"
    doc = json.loads((out / rec["key"] / "prediction.json").read_text())
    assert any("image-only" in w for w in doc["warnings"])


def test_saliency_nifti_has_the_source_geometry(first_run):
    import nibabel as nib
    import numpy as np

    import medfuse

    out, summary = first_run
    rec = _by_input(summary)["a_with_report"]
    img = nib.load(out / rec["key"] / "saliency" / "saliency.nii.gz")
    vol = medfuse.read_study(SAMPLES / "chest_ct_0002").volume
    assert img.shape == vol.shape
    np.testing.assert_allclose(img.affine, vol.affine, atol=1e-4)


def test_rerun_skips_finished_and_retries_failed(batch, first_run):
    out, first = first_run
    status_before = read_status(out)
    summary = run_workflow(load_workflow(FAST), [batch], out)
    assert sorted(t.path.name for t in summary.skipped) == ["a_with_report", "b_no_report"]
    assert sorted(Path(r["input"]).name for r in summary.records) == ["c_broken", "d_mr"]
    assert all(r["status"] == "error" for r in summary.records)
    after = read_status(out)
    ok_key = _by_input(first)["a_with_report"]["key"]
    assert after[ok_key] == status_before[ok_key]


def test_parametric_map_prepared_beside_the_model_is_used(tmp_path, monkeypatch):
    """``medfuse run`` builds the parametric map's structure while the model runs; the export
    retargets it (its equality with highdicom's own build: tests/unit/test_export_dicom.py)."""
    from medfuse.export import dicom_saliency, source

    taken = []
    take = dicom_saliency._take_template
    monkeypatch.setattr(
        dicom_saliency, "_take_template", lambda *a: taken.append(take(*a)) or taken[-1]
    )
    wf = load_workflow(dict(FAST, export={**FAST["export"], "formats": ["dicom_saliency"]}))
    summary = run_workflow(wf, [SAMPLES / "chest_ct_0002"], tmp_path / "out")
    (record,) = summary.records
    assert record["status"] == "ok" and record["outputs"] == ["saliency/pleural_effusion.dcm"]
    assert len(taken) == 1 and taken[0] is not None
    ds = pydicom.dcmread(tmp_path / "out" / record["key"] / record["outputs"][0])
    placeholders = {source.uuid_uid("prepared series"), source.uuid_uid("prepared instance")}
    assert {ds.SeriesInstanceUID, ds.SOPInstanceUID}.isdisjoint(placeholders)
    assert ds.InstanceNumber == 1 and ds.ContentDescription.startswith("gradcam saliency")


def test_a_third_party_exporter_is_prepared_and_shares_the_context(tmp_path):
    """An exporter added through the registry with a ``prepare`` hook: ``medfuse run`` calls
    the hook beside the model on the study's context, and the exporter gets that context with
    what the hook built, the source headers read once for both and for the built-in
    exporters of the study."""
    from medfuse.export import register_exporter
    from medfuse.export.base import output_path
    from medfuse.registry import exporters

    calls = []

    def count_headers(context):
        headers = context.source_datasets()
        calls.append(("prepare", context, headers))
        return len(headers)

    def export_header_count(prediction, out_dir, options, context):
        n = context.take_prepared("test_header_count")
        calls.append(("export", context, context.source_datasets()))
        path = output_path(out_dir, "header_count.txt")
        path.write_text(f"{n}\n")
        return [path]

    register_exporter("test_header_count", prepare=count_headers)(export_header_count)
    try:
        wf = load_workflow(
            dict(FAST, export={**FAST["export"], "formats": ["dicom_sr", "test_header_count"]})
        )
        summary = run_workflow(wf, [SAMPLES / "chest_ct_0002"], tmp_path / "out")
    finally:
        exporters._entries.pop("test_header_count", None)
    (record,) = summary.records
    assert record["status"] == "ok"
    assert record["outputs"] == ["header_count.txt", "sr.dcm"]
    assert "export_test_header_count" in record["timings_s"]
    (prepared, exported) = calls
    assert [prepared[0], exported[0]] == ["prepare", "export"]
    assert prepared[1] is exported[1] and prepared[2] is exported[2]  # one context, one read
    n = len(list((SAMPLES / "chest_ct_0002" / "dicom").glob("*.dcm")))
    text = (tmp_path / "out" / record["key"] / "header_count.txt").read_text()
    assert text == f"{n}\n"


def test_force_redoes_and_interrupted_leftovers_are_cleaned(tmp_path):
    study = tmp_path / "in" / "s1"
    shutil.copytree(SAMPLES / "chest_ct_0003", study)
    out = tmp_path / "out"
    wf = load_workflow(FAST)
    first = run_workflow(wf, [study], out)
    key = first.records[0]["key"]
    # what a kill -9 during a study leaves: a hidden partial folder; and a finished folder whose
    # status line was never written
    (out / f".partial-{key}-x1").mkdir()
    (out / f".partial-{key}-x1" / "prediction.json").write_text("{")
    (out / STATUS_FILE).write_text("")
    again = run_workflow(wf, [study], out)
    assert len(again.records) == 1 and again.records[0]["status"] == "ok"
    assert not list(out.glob(".partial-*"))
    skipped = run_workflow(wf, [study], out)
    assert not skipped.records and len(skipped.skipped) == 1
    forced = run_workflow(wf, [study], out, force=True)
    assert len(forced.records) == 1 and forced.records[0]["status"] == "ok"
    assert len((out / STATUS_FILE).read_text().splitlines()) == 2


def test_discovery_rules(batch, tmp_path):
    tasks = discover_studies([batch])
    assert [t.path.name for t in tasks] == ["a_with_report", "b_no_report", "c_broken", "d_mr"]
    assert all(t.key.startswith("study-") and len(t.key) == 18 for t in tasks)
    # one study given directly (it holds report.txt / DICOM files)
    assert [t.path for t in discover_studies([batch / "a_with_report"])] == [
        batch / "a_with_report"
    ]
    assert [t.path for t in discover_studies([batch / "c_broken"])] == [batch / "c_broken"]
    readable = discover_studies([batch], readable_keys=True)
    assert [t.key for t in readable] == ["a_with_report", "b_no_report", "c_broken", "d_mr"]
    assert study_key("x/../evil name;rm -rf", readable=True) == "evil_name_rm_-rf"
    with pytest.raises(InputError, match="no such file"):
        discover_studies([tmp_path / "missing"])


def test_reports_paired_by_accession_folder_and_by_study_uid_csv(tmp_path):
    import medfuse

    study_dir = tmp_path / "s"
    shutil.copytree(SAMPLES / "chest_ct_0003", study_dir)
    vol = medfuse.read_study(study_dir).volume
    ds = pydicom.dcmread(vol.source_files[0], stop_before_pixels=True)
    accession, uid = str(ds.AccessionNumber), vol.study_instance_uid
    assert accession and uid
    text = (SAMPLES / "chest_ct_0002" / "report.txt").read_text()
    task = discover_studies([study_dir])[0]

    (tmp_path / "reports").mkdir()
    (tmp_path / "reports" / f"{accession}.txt").write_text(text)
    wf = load_workflow({**FAST, "reports": {"folder": str(tmp_path / "reports")}})
    report, where = find_report(task, wf, vol)
    assert report.text.strip() == text.strip() and where == "reports folder, by accession_number"

    csv = tmp_path / "reports.csv"
    csv.write_text('study_uid,text\n1.2.3,"other"\n' + f'{uid},"{text}"\n')
    wf = load_workflow({**FAST, "reports": {"csv": str(csv), "id_column": "study_uid"}})
    report, where = find_report(task, wf, vol)
    assert "report.txt" not in where and where == "reports CSV, by study_instance_uid"
    assert report.text.strip() == text.strip()

    wf = load_workflow({**FAST, "reports": {"required": True}})
    with pytest.raises(ReportError, match="no report found"):
        find_report(task, wf, vol)


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        ({"modle": "x"}, "modle: unknown key"),
        ({"export": {"formats": ["json", "xml"]}}, "unknown format"),
        ({"explain": {"methods": ["eval"]}}, "unknown method"),
        ({"run": {"workers": "many"}}, "run.workers: Value error, a number of worker processes"),
        ({"run": {"workers": 0}}, "from 1 to 64, or auto; got 0"),
        ({"run": {"workers": True}}, "run.workers"),
        ({"run": {"device": "cuda; rm -rf /"}}, "run.device"),
        ({"name": "../../etc/passwd"}, "name"),
        ({"reports": {"filenames": ["../../secret.txt"]}}, "plain file name"),
        ({"input": {"modalities": ["PT"]}}, "input.modalities"),
        ({"version": 2}, "version"),
    ],
)
def test_invalid_workflows_are_config_errors(patch, message):
    with pytest.raises(ConfigError, match="invalid workflow") as exc:
        load_workflow({**FAST, **patch})
    assert message in str(exc.value)


def test_workflow_files_are_data_only(tmp_path):
    evil = tmp_path / "evil.yaml"
    evil.write_text("name: x\nmodel: !!python/object/apply:os.system ['touch pwned']\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_workflow(evil)
    assert not (tmp_path / "pwned").exists()
    listy = tmp_path / "list.yaml"
    listy.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="mapping of keys"):
        load_workflow(listy)
    with pytest.raises(ConfigError, match="cannot read workflow"):
        load_workflow(tmp_path / "absent.yaml")


def test_shipped_workflows_validate_and_schema_is_current():
    for path in sorted((REPO / "workflows").glob("*.yaml")):
        wf = load_workflow(path)
        assert wf.model
    committed = json.loads((REPO / "docs" / "workflow.schema.json").read_text())
    assert committed == json.loads(json.dumps(workflow_schema())), (
        "regenerate: python -m medfuse.config > docs/workflow.schema.json"
    )


def test_cli_run_exit_status_and_dry_run(tmp_path, capsys, batch):
    wf = tmp_path / "wf.yaml"
    import yaml

    from medfuse.workflows.engines import auto_workers

    wf.write_text(yaml.safe_dump(FAST))
    assert cli(["run", str(wf), "-i", str(batch), "-o", str(tmp_path / "o"), "--dry-run"]) == 0
    printed = capsys.readouterr().out
    assert "4 studies" in printed and "a_with_report" in printed
    n = auto_workers(4)
    assert (f"up to {n} worker processes" if n > 1 else "1 worker process (this one)") in printed
    assert cli(["run", str(wf), "-i", str(batch), "-o", "o", "--dry-run", "-w", "3"]) == 0
    assert "4 studies; up to 3 worker processes" in capsys.readouterr().out
    # a single good study: exit 0; the broken one: exit 1 with the reason printed
    good = cli(["run", str(wf), "-i", str(batch / "b_no_report"), "-o", str(tmp_path / "o")])
    assert good == 0
    bad = cli(["run", str(wf), "-i", str(batch / "c_broken"), "-o", str(tmp_path / "o")])
    assert bad == 1
    assert "c_broken" in capsys.readouterr().out


@pytest.mark.slow
def test_two_worker_processes(batch, tmp_path):
    summary = run_workflow(
        load_workflow(FAST), [batch / "a_with_report", batch / "b_no_report"], tmp_path, workers=2
    )
    assert [r["status"] for r in summary.records] == ["ok", "ok"]
    assert len(read_status(tmp_path)) == 2
    assert summary.workers == 2


def test_auto_workers_keeps_a_small_batch_in_this_process(batch, tmp_path):
    """``run.workers: auto`` (the default) starts no worker process for fewer than two studies
    per worker; finished studies do not count."""
    wf = load_workflow(FAST)
    assert wf.run.workers == "auto"
    inputs = [batch / "a_with_report", batch / "b_no_report"]
    assert run_workflow(wf, inputs, tmp_path).workers == 1
    summary = run_workflow(wf, inputs, tmp_path, workers=2)  # both finished: nothing runs
    assert summary.workers == 1 and len(summary.skipped) == 2


def test_mr_example_workflow_with_a_saved_mr_model(tmp_path):
    """workflows/brain_mr_research.yaml runs any saved MR model (here a tiny untrained one: this
    checks the pipeline — sagittal geometry, MR preprocessing, exports — not the model)."""
    import nibabel as nib
    import numpy as np
    import torch

    import medfuse

    torch.manual_seed(0)
    model = medfuse.create_model(
        "chest_ct_fusion_tiny",
        labels=["focal_lesion", "hydrocephalus"],
        preprocessing={"modality": "MR", "spacing": [4.0, 4.0, 4.0], "spatial_size": [32, 32, 32]},
        description="pipeline test model (untrained)",
    )
    medfuse.save_model(model, None, tmp_path / "models" / "brain_mr", name="brain_mr_test")
    wf = load_workflow(REPO / "workflows" / "brain_mr_research.yaml")
    wf = wf.model_copy(
        update={
            "model": str(tmp_path / "models" / "brain_mr"),
            "export": wf.export.model_copy(update={"formats": ("json", "nifti")}),
        }
    )
    ct_study = SAMPLES / "chest_ct_0003"
    summary = run_workflow(wf, [SAMPLES / "mr_sag_0001", ct_study], tmp_path / "out")
    mr, ct = summary.records
    assert mr["status"] == "ok", mr
    assert ct["status"] == "error" and "modality CT is not one of MR" in ct["reason"]
    doc = json.loads((tmp_path / "out" / mr["key"] / "prediction.json").read_text())
    assert doc["model"]["name"] == "brain_mr_test"
    assert doc["preprocessing"]["steps"][0]["params"]["orientation"] == "PIR"
    img = nib.load(tmp_path / "out" / mr["key"] / "saliency" / "saliency.nii.gz")
    vol = medfuse.read_study(SAMPLES / "mr_sag_0001").volume
    # on the source grid; a 4th axis holds one map per exported label (how many labels an
    # untrained model calls positive is not what this test is about)
    labels = json.loads((tmp_path / "out" / mr["key"] / "saliency" / "saliency.json").read_text())
    n = len(labels["labels"])
    assert img.shape == ((*vol.shape, n) if n > 1 else vol.shape)
    np.testing.assert_allclose(img.affine, vol.affine, atol=1e-4)


@pytest.mark.slow
def test_ray_engine_with_two_local_workers(batch, tmp_path):
    pytest.importorskip("ray", reason="optional extra medfuse[ray] not installed")
    inputs = [batch / "a_with_report", batch / "b_no_report", batch / "c_broken"]
    summary = run_workflow(load_workflow(FAST), inputs, tmp_path, workers=2, engine="ray")
    assert [r["status"] for r in summary.records] == ["ok", "ok", "error"]
    assert "c_broken" in summary.records[2]["reason"]
    again = run_workflow(load_workflow(FAST), inputs, tmp_path, workers=2, engine="ray")
    assert len(again.skipped) == 2 and [r["status"] for r in again.records] == ["error"]
