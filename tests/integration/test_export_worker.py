"""The export worker (:mod:`medfuse.workflows.export_worker`): the DICOM outputs written in its
own process are the files this process writes, element for element, pixel data included, less
what highdicom makes anew for every file (de-identified ones too: one UID map for the output
set); a worker that dies costs time, not outputs, and one whose parent is killed ends; its log
records reach this process's handlers; a format replaced in this process stays here;
``run.export_worker`` and ``--dry-run``."""

from __future__ import annotations

import logging
import os
import signal
from pathlib import Path

import pydicom
import pytest

import medfuse
from medfuse.config import load_workflow
from medfuse.export import ExportContext, ExportOptions, export_each, exporter_of
from medfuse.registry import exporters
from medfuse.workflows import run_workflow
from medfuse.workflows.engines import SerialEngine
from medfuse.workflows.export_worker import AUTO_MIN_VOXELS, FORMATS, ExportWorker

CT = Path(__file__).resolve().parents[2] / "sample_cases" / "chest_ct_0001"
ALL = ["json", "dicom_sr", "dicom_saliency", "nifti"]


@pytest.fixture(scope="module")
def pred():
    model = medfuse.load_model("chest_ct_demo")
    case = (medfuse.read_study(CT), medfuse.read_report(CT / "report.txt"))
    return medfuse.predict(model, case, explain=["gradcam"], labels="positive")


@pytest.fixture(scope="module")
def worker():
    w = ExportWorker(min_voxels=0, wait=True, level=logging.DEBUG)
    w.start()
    yield w
    w.close()


def _context(pred, options: ExportOptions, **kw) -> ExportContext:
    case = pred.case
    return ExportContext(options, study=case.study, volume=case.volume, model=pred.model, **kw)


def _apart(worker: ExportWorker, pred, options: ExportOptions, out: Path, kill: bool = False):
    """The DICOM formats through the worker, as a workflow hands them over; the result and the
    context of this process (whose UID map the worker's copy shares)."""
    context = _context(pred, options)
    formats = worker.formats(FORMATS, pred.case.volume)
    assert formats == list(FORMATS)
    ticket = worker.prepare(context, formats, "study-1")
    if kill:
        ticket.prepared.result()
        os.kill(worker.pid, signal.SIGKILL)
    worker.export(ticket, pred, out)
    return worker.collect(ticket, pred, out, options, context), context


def _files(folder: Path) -> dict[str, list]:
    """Each DICOM file as its elements, less what highdicom makes anew for every file it writes
    (creation times, a random DimensionOrganizationUID): two exports in one process differ
    there too."""
    return {
        str(p.relative_to(folder)): _elements(pydicom.dcmread(p)) for p in folder.rglob("*.dcm")
    }


def _elements(ds, path: str = "") -> list:
    out = []
    for el in ds:
        name = f"{path}{el.keyword or el.tag}"
        if el.VR in ("DA", "TM", "DT") or el.keyword == "DimensionOrganizationUID":
            continue
        if el.VR == "SQ":
            out += [x for i, item in enumerate(el.value) for x in _elements(item, f"{name}[{i}].")]
        else:
            out.append((name, el.value))
    return out


@pytest.mark.parametrize("deidentify", [False, True])
def test_the_worker_writes_the_files_this_process_writes(worker, pred, tmp_path, deidentify):
    options = ExportOptions(deidentify=deidentify)
    result, context = _apart(worker, pred, options, tmp_path / "worker")
    assert result.ok and sorted(result.written) == sorted(FORMATS)
    assert all(p.parent.is_relative_to(tmp_path / "worker") for p in result.written["dicom_sr"])
    here = export_each(
        pred,
        tmp_path / "here",
        FORMATS,
        options,
        context=_context(pred, options, uids=context.uids),
    )
    assert here.ok
    theirs, ours = _files(tmp_path / "worker"), _files(tmp_path / "here")
    assert sorted(theirs) == sorted(ours) and len(ours) >= 2  # sr.dcm and a map at least
    assert [name for name in ours if theirs[name] != ours[name]] == []
    uids = [v for name in ours for k, v in ours[name] if k.endswith("SOPInstanceUID")]
    assert all(u.startswith("2.25.") for u in uids) == deidentify  # replaced, the same way


def test_its_log_records_are_handled_here(worker, pred, tmp_path, caplog):
    caplog.set_level(logging.DEBUG, logger="medfuse")
    _apart(worker, pred, ExportOptions(), tmp_path)
    mine = [r for r in caplog.records if r.process != os.getpid()]
    assert any(r.getMessage().startswith("exported dicom_sr") for r in mine), caplog.text


def test_a_worker_that_dies_costs_time_not_outputs(pred, tmp_path, caplog):
    worker = ExportWorker(min_voxels=0, wait=True)
    try:
        worker.start()
        first = worker.formats(FORMATS, pred.case.volume) and worker.pid
        result, _ = _apart(worker, pred, ExportOptions(), tmp_path / "a", kill=True)
        assert result.ok and sorted(result.written) == sorted(FORMATS)
        assert "the export worker could not write dicom_sr, dicom_saliency" in caplog.text
        assert sorted(_files(tmp_path / "a")) == sorted(
            str(p.relative_to(tmp_path / "a")) for ps in result.written.values() for p in ps
        )
        # the next study gets a fresh process
        result, _ = _apart(worker, pred, ExportOptions(), tmp_path / "b")
        assert result.ok and worker.pid not in (None, first)
    finally:
        worker.close()


def test_what_the_worker_takes(pred):
    worker = ExportWorker(min_voxels=pred.case.volume.array.size + 1)
    assert worker.formats(FORMATS, pred.case.volume) == []  # a small study stays here
    assert worker.formats(FORMATS, None) == []
    assert ExportWorker.capable(ALL) == ["dicom_sr", "dicom_saliency"]
    builtin = exporter_of("dicom_sr")
    exporters.register("dicom_sr", lambda *a: [], overwrite=True)  # replaced in this process
    try:
        assert ExportWorker.capable(ALL) == ["dicom_saliency"]
    finally:
        exporters.register("dicom_sr", builtin, overwrite=True)
    assert ExportWorker.capable(ALL) == ["dicom_sr", "dicom_saliency"]


def test_run_export_worker_picks_the_worker(monkeypatch):
    import medfuse.workflows.engines as engines

    wf = load_workflow({"name": "w", "model": "chest_ct_demo"})
    assert wf.run.export_worker == "auto"
    monkeypatch.setattr(engines, "usable_cpus", lambda: 2)
    auto = SerialEngine(export_worker="auto").export_worker_for(wf)
    assert auto is not None and auto.min_voxels == AUTO_MIN_VOXELS and not auto.wait
    always = SerialEngine(export_worker=True).export_worker_for(wf)
    assert always is not None and always.min_voxels == 0 and always.wait
    assert SerialEngine(export_worker=False).export_worker_for(wf) is None
    no_dicom = load_workflow(
        {"name": "w", "model": "chest_ct_demo", "export": {"formats": ["pdf"]}}
    )
    assert SerialEngine(export_worker=True).export_worker_for(no_dicom) is None
    monkeypatch.setattr(engines, "usable_cpus", lambda: 1)
    assert SerialEngine(export_worker="auto").export_worker_for(wf) is None


def test_a_workflow_with_the_worker_writes_the_same_outputs(tmp_path):
    def run(mode):
        wf = load_workflow(
            {
                "name": "w",
                "model": "chest_ct_demo",
                "explain": {"methods": ["gradcam"], "labels": "positive"},
                "export": {"formats": ALL},
                "run": {"workers": 1, "export_worker": mode},
            }
        )
        summary = run_workflow(wf, [CT], tmp_path / str(mode))
        (record,) = summary.records
        assert record.status == "ok", record.reason
        return record

    apart, here = run(True), run(False)
    assert apart.outputs == here.outputs and "sr.dcm" in apart.outputs
    assert any(o.startswith("saliency/") and o.endswith(".dcm") for o in apart.outputs)
    assert [k for k in apart.timings_s if k.startswith("export_")] == [f"export_{f}" for f in ALL]


def _alive(pid: int) -> bool:
    """Whether process ``pid`` runs (a zombie, exited but not yet reaped, does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().rsplit(")", 1)[1].split()[0] == "Z")


def test_the_worker_ends_with_its_parent(tmp_path):
    """A run killed with SIGKILL leaves no export worker behind, waiting for work forever."""
    import subprocess
    import sys
    import time

    script = tmp_path / "parent.py"
    script.write_text(
        "import time\n"
        "from medfuse.workflows.export_worker import ExportWorker\n"
        "if __name__ == '__main__':\n"
        "    worker = ExportWorker()\n"
        "    worker.start()\n"
        "    while worker.pid is None:\n"
        "        time.sleep(0.1)\n"
        "    print(worker.pid, flush=True)\n"
        "    time.sleep(600)\n"
    )
    parent = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        pid = int(parent.stdout.readline())
        assert _alive(pid)
    finally:
        parent.kill()
        parent.wait()
    deadline = time.monotonic() + 30
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    if _alive(pid):
        os.kill(pid, signal.SIGKILL)
        pytest.fail(f"the export worker {pid} outlived its parent by 30 s")


def test_dry_run_says_whether_the_export_worker_runs(tmp_path, capsys, monkeypatch):
    import yaml

    import medfuse.workflows.engines as engines
    from medfuse.cli.main import main as cli

    monkeypatch.setattr(engines, "usable_cpus", lambda: 2)
    for mode, said in ((True, True), ("auto", True), (False, False)):
        wf = tmp_path / f"wf_{mode}.yaml"
        wf.write_text(
            yaml.safe_dump(
                {
                    "name": "w",
                    "model": "chest_ct_demo",
                    "run": {"workers": 1, "export_worker": mode},
                }
            )
        )
        assert cli(["run", str(wf), "-i", str(CT), "-o", str(tmp_path / "o"), "--dry-run"]) == 0
        printed = capsys.readouterr().out
        assert ("an export worker for the DICOM outputs" in printed) == said, printed
        # Ray actors run the studies: no export worker, whatever the setting
        args = ["run", str(wf), "-i", str(CT), "-o", str(tmp_path / "o"), "--dry-run"]
        assert cli([*args, "--engine", "ray"]) == 0
        assert "export worker" not in capsys.readouterr().out
