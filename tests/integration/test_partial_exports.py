"""One exporter's failure does not lose the study (issue 26): the other outputs are written, the
study is recorded ``partial`` naming the failed format and why, the summary and the exit status
say so, and a re-run redoes only that format (``--force`` redoes everything).

The failing exporter is a real one, registered through ``medfuse.registry.exporters``: it writes
``findings.csv`` with the columns listed in a column file named by ``MEDFUSE_TEST_COLUMNS``; while
that file does not exist it fails as any exporter missing a resource would (FileNotFoundError).
"""

from __future__ import annotations

import csv
import json
import os
import shutil
from pathlib import Path

import pytest
import yaml

from medfuse._atomic import atomic_write_text
from medfuse.cli.main import main as cli
from medfuse.cli.run import PARTIAL_EXIT
from medfuse.config import load_workflow
from medfuse.errors import ExportError
from medfuse.export import FORMATS, export_each
from medfuse.export.base import output_path
from medfuse.registry import exporters
from medfuse.workflows import STATUS_FILE, read_status, run_workflow

REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO / "sample_cases"
FORMAT = "findings_csv"


def export_findings_csv(prediction, out_dir, options, context) -> list[Path]:
    """``findings.csv``: one row per finding, with the columns the column file lists."""
    columns = Path(os.environ["MEDFUSE_TEST_COLUMNS"]).read_text().split()
    rows = [
        {"label": f.label, "probability": f"{f.probability:.6f}", "threshold": f.threshold}
        for f in prediction.findings
    ]
    path = output_path(out_dir, "findings.csv")
    lines = [",".join(columns)] + [",".join(str(r.get(c, "")) for c in columns) for r in rows]
    atomic_write_text(path, "\n".join(lines) + "\n")
    return [path]


@pytest.fixture
def failing_exporter(monkeypatch, tmp_path):
    """The exporter registered (and taken out again after the test); its column file absent."""
    exporters.names()  # built-ins first
    monkeypatch.setitem(exporters._entries, FORMAT, export_findings_csv)
    columns = tmp_path / "columns.txt"
    monkeypatch.setenv("MEDFUSE_TEST_COLUMNS", str(columns))
    monkeypatch.delenv("MEDFUSE_DEID_KEY", raising=False)
    return columns


def _workflow(path: Path, **export) -> Path:
    data = {
        "name": "partial_test",
        "model": "chest_ct_demo",
        "input": {"modalities": ["CT"]},
        "explain": {"methods": ["gradcam"], "labels": ["pleural_effusion"]},
        "export": {
            "formats": [*FORMATS, FORMAT],
            "saliency_labels": ["pleural_effusion"],
            **export,
        },
        "run": {"workers": 1},
    }
    path.write_text(yaml.safe_dump(data))
    return path


def _files(folder: Path) -> dict[str, tuple[int, int]]:
    """relative path -> (inode, mtime_ns) of every file of a study folder"""
    return {
        str(p.relative_to(folder)): (p.stat().st_ino, p.stat().st_mtime_ns)
        for p in folder.rglob("*")
        if p.is_file()
    }


def test_failed_format_leaves_a_partial_study_and_a_rerun_redoes_only_it(
    failing_exporter, tmp_path, capsys
):
    study = tmp_path / "chest"
    shutil.copytree(SAMPLES / "chest_ct_0002", study)
    wf, out = _workflow(tmp_path / "wf.yaml"), tmp_path / "out"

    # 1. the exporter fails: every other output is written, the study is partial, exit status 3
    assert cli(["run", str(wf), "-i", str(study), "-o", str(out)]) == PARTIAL_EXIT
    printed = capsys.readouterr().out
    assert "partial" in printed and FORMAT in printed
    assert "1 ok" not in printed and "0 ok, 1 partial, 0 failed" in " ".join(printed.split())
    [rec] = read_status(out).values()
    assert rec["status"] == "partial"
    assert set(rec["failed"]) == {FORMAT}
    assert "FileNotFoundError" in rec["failed"][FORMAT]["reason"]
    assert rec["failed"][FORMAT]["error_type"] == "ExportError"
    assert ".partial-" not in rec["reason"]  # names the study's folder, not the temporary one
    folder = out / rec["key"]
    outputs = set(rec["outputs"])
    for name in ("prediction.json", "report.html", "report.pdf", "sr.dcm", "fhir.json"):
        assert name in outputs and (folder / name).is_file()
    assert any(o.startswith("saliency/") and o.endswith(".dcm") for o in outputs)
    assert "saliency/saliency.nii.gz" in outputs
    assert not (folder / "findings.csv").exists()
    assert sorted(_files(folder)) == sorted(outputs)
    before = _files(folder)
    created = json.loads((folder / "prediction.json").read_text())["created"]
    assert rec["created"] == created

    # 2. still failing: a re-run retries the format alone and stays partial, the outputs kept
    assert cli(["run", str(wf), "-i", str(study), "-o", str(out)]) == PARTIAL_EXIT
    capsys.readouterr()
    rec = read_status(out)[rec["key"]]
    assert rec["status"] == "partial" and rec["retried"] == [FORMAT]
    assert _files(folder) == before

    # 3. fixed: the re-run writes findings.csv and touches nothing else
    failing_exporter.write_text("label probability threshold\n")
    assert cli(["run", str(wf), "-i", str(study), "-o", str(out)]) == 0
    capsys.readouterr()
    rec = read_status(out)[rec["key"]]
    assert rec["status"] == "ok" and rec["retried"] == [FORMAT] and "failed" not in rec
    after = _files(folder)
    assert {k: v for k, v in after.items() if k != "findings.csv"} == before  # same files
    rows = list(csv.DictReader((folder / "findings.csv").open()))
    document = json.loads((folder / "prediction.json").read_text())
    assert [r["label"] for r in rows] == [f["label"] for f in document["findings"]]
    assert "findings.csv" in rec["outputs"] and len(rec["outputs"]) == len(after)
    assert len((out / STATUS_FILE).read_text().splitlines()) == 3

    # 4. a finished study is skipped; --force redoes every format
    assert cli(["run", str(wf), "-i", str(study), "-o", str(out)]) == 0
    assert len((out / STATUS_FILE).read_text().splitlines()) == 3
    assert cli(["run", str(wf), "-i", str(study), "-o", str(out), "--force"]) == 0
    rec = read_status(out)[rec["key"]]
    assert rec["status"] == "ok" and "retried" not in rec
    forced = _files(folder)
    assert set(forced) == set(after)
    assert all(forced[k][0] != after[k][0] for k in forced)  # every file written anew


def test_every_format_failing_is_an_error(failing_exporter, tmp_path):
    """A study none of whose formats could be written is an ``error`` (nothing committed)."""
    study = tmp_path / "chest"
    shutil.copytree(SAMPLES / "chest_ct_0003", study)
    wf = load_workflow(
        {
            "name": "only_failing",
            "model": "chest_ct_demo",
            "explain": {"methods": []},
            "export": {"formats": [FORMAT]},
        }
    )
    summary = run_workflow(wf, [study], tmp_path / "out")
    [rec] = summary.records
    assert rec["status"] == "error" and summary.failed == [rec] and not summary.partial
    assert set(rec["failed"]) == {FORMAT} and "FileNotFoundError" in rec["reason"]
    assert not (tmp_path / "out" / rec["key"]).exists()


def test_export_each_reports_every_format(failing_exporter, tmp_path):
    """``export_each`` runs every exporter whatever another does; ``export`` raises the
    failure once the others have written their files."""
    import medfuse
    from medfuse.models.model import load_model
    from medfuse.types import Case

    study = medfuse.read_study(SAMPLES / "chest_ct_0003")
    model = load_model("chest_ct_demo").eval()
    pred = medfuse.predict(model, Case(volume=study.volume, study=study, key="k"), explain=False)
    result = export_each(pred, tmp_path / "a", ["json", FORMAT, "fhir"], workers=2)
    assert set(result.written) == {"json", "fhir"} and set(result.failed) == {FORMAT}
    assert isinstance(result.failed[FORMAT], ExportError) and not result.ok
    assert (tmp_path / "a" / "prediction.json").is_file() and (
        tmp_path / "a" / "fhir.json"
    ).is_file()
    with pytest.raises(ExportError, match="FileNotFoundError"):
        medfuse.export(pred, tmp_path / "b", ["json", FORMAT, "fhir"], workers=1)
    assert (tmp_path / "b" / "fhir.json").is_file()
