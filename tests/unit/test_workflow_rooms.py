"""The rooms of medfuse.workflows on their own: discovery by the io layer's DICOM sniff, the
typed status record and its file, the engine choice."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from medfuse.workflows import STATUS_FILE, StudyRecord, discover_studies, read_status
from medfuse.workflows.engines import ProcessEngine, RayEngine, SerialEngine, make_engine
from medfuse.workflows.state import append_status

SAMPLES = Path(__file__).resolve().parents[2] / "sample_cases"


def test_a_folder_holding_dicom_files_is_one_study(tmp_path):
    """The io layer's sniff decides: a genuine DICOM file makes its folder one study; a file
    that merely starts like an old DICOM group (and is not one) does not."""
    series = tmp_path / "batch" / "ct"
    shutil.copytree(SAMPLES / "chest_ct_0001" / "dicom", series)
    (tmp_path / "batch" / "other").mkdir()
    (tmp_path / "batch" / "other" / "notes.bin").write_bytes(b"\x08\x00" + b"\xff" * 200)
    (task,) = discover_studies([series])
    assert task.path == series and task.key.startswith("study-")
    found = discover_studies([tmp_path / "batch"])
    assert [t.path.name for t in found] == ["ct", "other"]  # a folder of two studies
    # the loose file does not make "other" one study: as an input, it is a folder of studies
    assert discover_studies([tmp_path / "batch" / "other"]) == []


def test_status_records_are_typed_and_read_like_their_lines(tmp_path):
    ok = StudyRecord(
        key="study-1",
        input="/in/a",
        status="ok",
        modalities_used=["image"],
        report="none found: image-only",
        positive=[],
        outputs=["prediction.json"],
        warnings=[],
        timings_s={"wall": 1.5},
    )
    err = StudyRecord(key="study-2", input="/in/b", status="error", error_type="DicomError",
                      reason="b/1.dcm: not DICOM", timings_s={})  # fmt: skip
    written = [append_status(tmp_path, r) for r in (ok, err)]
    lines = [json.loads(x) for x in (tmp_path / STATUS_FILE).read_text().splitlines()]
    # None fields are left out, empty lists kept; "finished" stamped on writing
    assert set(lines[0]) == {
        "key", "input", "status", "modalities_used", "report", "positive", "outputs",
        "warnings", "timings_s", "finished",
    }  # fmt: skip
    assert set(lines[1]) == {"key", "input", "status", "error_type", "reason", "timings_s",
                             "finished"}  # fmt: skip
    last = read_status(tmp_path)
    assert last == {"study-1": written[0], "study-2": written[1]}
    rec = last["study-2"]
    assert rec.status == rec["status"] == "error" and rec.get("outputs", []) == []
    assert "reason" in rec and "failed" not in rec and dict(rec) == lines[1]
    with pytest.raises(KeyError):
        rec["outputs"]
    # a line cut by a crash is not a finished study, and the next line does not glue onto it
    with (tmp_path / STATUS_FILE).open("a") as fh:
        fh.write('{"key": "study-3", "inp')
    append_status(tmp_path, StudyRecord(key="study-1", input="/in/a", status="error"))
    assert set(read_status(tmp_path)) == {"study-1", "study-2"}
    assert read_status(tmp_path)["study-1"].status == "error"


def test_one_engine_interface():
    assert make_engine("local", 1, 2) == SerialEngine(2)
    assert make_engine("local", 3, 1) == ProcessEngine(3, 1)
    assert make_engine("ray", 2, 1, "ray://head:10001") == RayEngine(2, 1, "ray://head:10001")
    for engine in (SerialEngine(), ProcessEngine(2), RayEngine(2)):
        assert callable(engine.run)


@pytest.mark.parametrize(
    ("cpus", "gib_available", "studies", "workers"),
    [
        (2, 24, 1, 1),  # one study: this process
        (2, 24, 3, 1),  # under two studies per worker
        (2, 24, 4, 2),
        (2, 24, 500, 2),  # one per core
        (16, 5, 500, 2),  # one per 2 GiB available
        (16, 1, 500, 1),
        (16, None, 9, 4),  # memory unknown: CPUs and studies decide
        (128, 512, 10_000, 64),  # the schema's maximum
    ],
)
def test_auto_workers(monkeypatch, cpus, gib_available, studies, workers):
    from medfuse.workflows import engines

    monkeypatch.setattr(engines, "usable_cpus", lambda: cpus)
    memory = None if gib_available is None else gib_available * 1024**3
    monkeypatch.setattr(engines, "_available_memory", lambda: memory)
    assert engines.auto_workers(studies) == workers


def test_available_memory_is_read_where_the_platform_says_it():
    from medfuse.workflows.engines import _available_memory, usable_cpus

    memory = _available_memory()
    if Path("/proc/meminfo").exists():
        assert memory is not None and memory > 0
    assert usable_cpus() >= 1


def test_resolve_workers(monkeypatch):
    from medfuse.workflows import engines

    monkeypatch.setattr(engines, "auto_workers", lambda n: min(n // 2, 2) or 1)
    assert engines.resolve_workers(4, 10) == 4
    assert engines.resolve_workers(4, 2) == 2  # no more processes than studies
    assert engines.resolve_workers(1, 100) == 1
    assert engines.resolve_workers("auto", 100) == 2
    assert engines.resolve_workers("auto", 1) == 1
