"""Durable batches: 100 small generated CT studies, 5 of them broken, through ``medfuse run`` with
a tiny model (explanations off, JSON and HTML only, so that the batch takes seconds):

* one run: 95 complete output folders, 5 error lines naming the broken file, nothing partial;
* ``python -m medfuse.cli.main run`` killed with SIGKILL in the middle, then run again: the
  second run finishes the batch; no partial file and no temporary folder is left, no study has
  two ``ok`` lines, the studies finished before the kill are not redone, and at most one study
  (the one interrupted between its folder's rename and its status line) is redone.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pydicom
import pytest

REPO = Path(__file__).resolve().parents[2]
N_STUDIES = 100
BROKEN = {7: "truncated_header", 29: "missing_slice", 48: "binary_report", 66: "only_sr",
          91: "truncated_pixels"}  # fmt: skip
SHAPE, SPACING = (24, 20, 6), (4.0, 4.0, 5.0)


@pytest.fixture(scope="module")
def batch(tmp_path_factory) -> dict:
    import torch

    import medfuse
    from medfuse.synth.dicom_write import make_uids, write_series
    from medfuse.synth.geometry import make_geometry

    root = tmp_path_factory.mktemp("durable")
    torch.manual_seed(0)
    model = medfuse.create_model("chest_ct_fusion_tiny")
    medfuse.save_model(model, None, root / "model", name="durable_test_tiny")
    geometry = make_geometry(SHAPE, SPACING, center_lps=(0.0, 0.0, -100.0))
    rng = np.random.default_rng(0)
    studies = root / "studies"
    for i in range(N_STUDIES):
        folder = studies / f"patient_{i:03d}"
        vol = rng.integers(-1000, 1000, SHAPE).astype(np.int16)
        info = write_series(folder / "dicom", vol, geometry, seed=i, uids=make_uids(i, f"s{i}"))
        (folder / "report.txt").write_text("FINDINGS: No pleural effusion.\nIMPRESSION: Normal.\n")
        files = [folder / "dicom" / f for f in info["files"]]  # slice order
        _break(BROKEN.get(i), folder, files)
    workflow = {
        "name": "durable_test",
        "model": str(root / "model"),
        "input": {"modalities": ["CT"]},
        "explain": {"methods": []},
        "export": {"formats": ["json", "html"]},
        "run": {"threads": 1},
    }
    import yaml

    wf_path = root / "workflow.yaml"
    wf_path.write_text(yaml.safe_dump(workflow))
    return {"root": root, "studies": studies, "workflow": wf_path}


def _break(how: str | None, folder: Path, files: list[Path]) -> None:
    if how == "truncated_header":
        files[2].write_bytes(files[2].read_bytes()[:600])
    elif how == "missing_slice":
        files[3].unlink()
    elif how == "binary_report":
        (folder / "report.txt").write_bytes(b"\x00\x01\x02PNG" * 50)
    elif how == "only_sr":
        for f in files:
            ds = pydicom.dcmread(f)
            ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.88.33"
            ds.save_as(f)
    elif how == "truncated_pixels":
        files[4].write_bytes(files[4].read_bytes()[:-300])


def _status_lines(out: Path) -> list[dict]:
    lines = []
    path = out / "status.jsonl"
    if path.is_file():
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                lines.append(json.loads(line))
            except ValueError:
                lines.append({"cut": line})
    return lines


def _check_outputs(out: Path) -> None:
    """Every visible file is complete: no temporary file outside the hidden partial folders,
    every prediction.json parses."""
    for p in out.rglob("*"):
        rel = p.relative_to(out)
        if rel.parts[0].startswith(".partial-") or rel.parts[0] == ".medfuse.lock":
            continue
        assert not p.name.startswith(".") and ".tmp" not in p.name, f"temporary file {rel}"
        if p.name == "prediction.json":
            json.loads(p.read_text())


def test_batch_of_100_with_5_broken(batch, tmp_path, monkeypatch):
    from medfuse.config import load_workflow
    from medfuse.workflows import engines, read_status, run_workflow

    # the default, run.workers: auto, as on a 2-core machine with memory to spare (whatever
    # machine runs the test): two worker processes
    monkeypatch.setattr(engines, "usable_cpus", lambda: 2)
    monkeypatch.setattr(engines, "_available_memory", lambda: 64 * 1024**3)
    out = tmp_path / "out"
    summary = run_workflow(load_workflow(batch["workflow"]), [batch["studies"]], out)
    assert len(summary.records) == N_STUDIES
    assert summary.workers == 2
    assert len(summary.ok) == N_STUDIES - len(BROKEN)
    failed = {Path(r["input"]).name: r for r in summary.failed}
    assert sorted(failed) == sorted(f"patient_{i:03d}" for i in BROKEN)
    for rec in failed.values():
        assert rec["error_type"] in ("DicomError", "GeometryError", "ReportError"), rec
        assert rec["input"] in rec["reason"], rec  # names the study's file or folder
    status = read_status(out)
    assert len(status) == N_STUDIES and len(_status_lines(out)) == N_STUDIES
    for rec in summary.ok:
        doc = json.loads((out / rec["key"] / "prediction.json").read_text())
        assert doc["key"] == rec["key"]
    for rec in summary.failed:
        assert not (out / rec["key"]).exists()
    _check_outputs(out)
    assert not list(out.glob(".partial-*"))


@pytest.mark.skipif(os.name != "posix", reason="SIGKILL and process groups")
def test_kill_9_in_the_middle_then_resume(batch, tmp_path):
    from medfuse.config import load_workflow
    from medfuse.workflows import run_workflow

    out = tmp_path / "out"
    # one process: at most one study is between its folder's rename and its status line
    cmd = [sys.executable, "-m", "medfuse.cli.main", "run", str(batch["workflow"]),
           "-i", str(batch["studies"]), "-o", str(out), "--workers", "1"]  # fmt: skip
    proc = subprocess.Popen(
        cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
    )
    try:
        deadline = time.monotonic() + 240
        while len(_status_lines(out)) < N_STUDIES // 3:
            assert proc.poll() is None, (
                f"the run ended early: {proc.stderr.read().decode()[-2000:]}"
            )
            assert time.monotonic() < deadline, "the run did not get a third of the way"
            time.sleep(0.01)
        # then kill while a study is being exported (its hidden .partial-* folder exists)
        until = time.monotonic() + 10
        while time.monotonic() < until and not any(
            e.name.startswith(".partial-") for e in os.scandir(out)
        ):
            time.sleep(0.0005)
        os.killpg(proc.pid, signal.SIGKILL)  # the run's own process group (start_new_session)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL

    before = [r for r in _status_lines(out) if "key" in r]
    assert N_STUDIES // 3 <= len(before) < N_STUDIES
    done_before = {r["key"] for r in before if r["status"] == "ok"}
    folders_before = {p.name: p.stat().st_mtime_ns for p in out.iterdir() if p.is_dir()
                      and not p.name.startswith(".")}  # fmt: skip
    assert set(folders_before) >= done_before
    interrupted = set(folders_before) - done_before  # renamed into place, no status line yet
    assert len(interrupted) <= 1
    partials = list(out.glob(".partial-*"))
    _check_outputs(out)  # a kill leaves at most a hidden .partial-* folder

    summary = run_workflow(load_workflow(batch["workflow"]), [batch["studies"]], out)
    redone = {r["key"] for r in summary.records}
    assert not redone & done_before, "studies finished before the kill were redone"
    assert {t.key for t in summary.skipped} == done_before
    assert len(redone & set(folders_before)) <= 1  # at most the interrupted study
    print(
        f"\nkilled after {len(before)} status lines ({len(done_before)} ok), "
        f"{len(partials)} .partial folder(s) and {len(interrupted)} folder without a status "
        f"line left; the re-run did {len(redone)} studies, "
        f"{len(redone & set(folders_before))} of them redone"
    )
    lines = _status_lines(out)
    ok_lines: dict[str, int] = {}
    for r in lines:
        if r.get("status") == "ok":
            ok_lines[r["key"]] = ok_lines.get(r["key"], 0) + 1
    assert len(ok_lines) == N_STUDIES - len(BROKEN)
    assert set(ok_lines.values()) == {1}, "a study has two ok lines"
    errors = {r["key"] for r in lines if r.get("status") == "error"}
    assert len(errors) == len(BROKEN)
    for key in done_before:  # untouched
        assert (out / key).stat().st_mtime_ns == folders_before[key]
    assert not list(out.glob(".partial-*"))
    _check_outputs(out)
    visible = sorted(p.name for p in out.iterdir() if not p.name.startswith("."))
    assert len(visible) == N_STUDIES - len(BROKEN) + 1  # the folders and status.jsonl
    shutil.rmtree(out)
