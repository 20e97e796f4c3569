"""Own cohort: manifest validation, labels, splits, the per-case cache and the dataset report."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest

from medfuse.data.dataset import Dataset, assign_splits
from medfuse.data.labels import LabelTable, labels_from_reports
from medfuse.data.manifest import read_manifest, write_manifest
from medfuse.errors import ConfigError


def _csv(path: Path, header: list[str], rows: list[list[object]]) -> Path:
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)
    return path


def _nifti(path: Path, seed: int, shape=(20, 20, 12)) -> Path:
    import nibabel as nib

    arr = np.random.default_rng(seed).normal(0, 200, shape).astype(np.int16)
    nib.save(nib.Nifti1Image(arr, np.diag([2.0, 2.0, 3.0, 1.0])), str(path))
    return path


def test_every_problem_is_named_with_row_and_column(tmp_path):
    (tmp_path / "r.txt").write_text("FINDINGS: Heart is enlarged.")
    m = _csv(
        tmp_path / "m.csv",
        ["case_id", "patient_id", "image", "report", "cardiomegaly", "split"],
        [
            ["a", "p1", "", "r.txt", "1", "train"],
            ["a", "p2", "", "", "0", "train"],  # duplicate id
            ["c", "p3", "missing.nii.gz", "", "0", "val"],  # missing path
            ["d", "p4", "", "", "yes", "val"],  # bad label value
            ["e", "p1", "", "", "0", "val"],  # patient p1 in train and val
        ],
    )
    with pytest.raises(ConfigError) as info:
        read_manifest(m)
    msg = str(info.value)
    assert "row 2 (case_id 'a'), column 'case_id': duplicate of row 1" in msg
    assert "row 3 (case_id 'c'), column 'image': not found" in msg
    assert "row 4 (case_id 'd'), column 'cardiomegaly': label value 'yes'" in msg
    assert "column 'patient_id': patient 'p1' is in more than one split" in msg
    assert info.value.path == str(m)


def test_skip_leaves_bad_rows_out_and_lists_them(tmp_path):
    m = _csv(
        tmp_path / "m.csv",
        ["case_id", "report_text", "cardiomegaly", "edema"],
        [["a", "x", "1", ""], ["b", "y", "2", "0"], ["c", "z", "-1", "0"]],
    )
    man = read_manifest(m, on_invalid="skip")
    assert [r.case_id for r in man.rows] == ["a", "c"]
    assert [(p.row, p.column) for p in man.invalid] == [(2, "cardiomegaly")]
    a, c = man.rows
    assert a.labels["cardiomegaly"] == 1 and math.isnan(a.labels["edema"])
    assert c.labels["cardiomegaly"] == -1
    assert man.labels == ["cardiomegaly", "edema"]


def test_monai_datalist_json(tmp_path):
    _nifti(tmp_path / "a.nii.gz", 0)
    _nifti(tmp_path / "b.nii.gz", 1)
    dl = {
        "training": [{"image": "a.nii.gz", "label": 1}],
        "validation": [{"image": "b.nii.gz", "label": 0}],
    }
    (tmp_path / "d.json").write_text(json.dumps(dl))
    man = read_manifest(tmp_path / "d.json", ["abnormal"])
    assert [(r.case_id, r.split, r.labels["abnormal"]) for r in man.rows] == [
        ("a", "train", 1.0),
        ("b", "val", 0.0),
    ]


def test_multiline_report_text_keeps_its_line_breaks(tmp_path):
    """A quoted report cell spanning lines is read as written: its sections stay on their own
    lines (they once ran together, "PreopCOMPARISON:", and the parser lost the sections)."""
    text = (
        "INDICATION: Preop\r\nCOMPARISON: None\nFINDINGS: Mild cardiomegaly.\nIMPRESSION: Stable."
    )
    path = _csv(tmp_path / "m.csv", ["case_id", "report_text", "cardiomegaly"], [["a", text, 1]])
    man = read_manifest(path, ["cardiomegaly"])
    assert man.rows[0].report_text == text
    ds = Dataset.from_manifest(path, ["cardiomegaly"], cache_dir=tmp_path / "cache")
    assert ds.reports() == [text]


def test_survival_needs_time_and_event(tmp_path):
    m = _csv(tmp_path / "m.csv", ["case_id", "report_text", "x", "time", "event"],
             [["a", "t", "1", "2.5", "1"], ["b", "t", "0", "3", ""]])  # fmt: skip
    with pytest.raises(ConfigError, match="row 2 .*column 'event': time without event"):
        read_manifest(m)


def test_uncertainty_policies_and_unknown_always_masked():
    t = LabelTable(["a"], np.array([[1], [0], [-1], [np.nan]], np.float32), np.zeros((4, 1), bool))
    assert np.isnan(t.targets("ignore")[[2, 3], 0]).all()
    assert t.targets("positive")[2, 0] == 1 and np.isnan(t.targets("positive")[3, 0])
    assert t.targets("negative")[2, 0] == 0 and np.isnan(t.targets("negative")[3, 0])


def test_labels_from_reports_fill_only_empty_cells():
    vals = np.array([[1.0, np.nan], [np.nan, np.nan], [np.nan, np.nan]], np.float32)
    out = [
        {"cardiomegaly": 0, "edema": 1},
        {"cardiomegaly": -1, "edema": None},
        None,  # no report: stays unknown
    ]
    t = labels_from_reports(vals, ["cardiomegaly", "edema"], out)
    assert t.values[0].tolist() == [1.0, 1.0]  # the manifest's 1 wins
    assert t.values[1, 0] == -1 and t.values[1, 1] == 0  # not mentioned -> negative
    assert np.isnan(t.values[2]).all()
    assert t.weak == ["cardiomegaly", "edema"]
    t2 = labels_from_reports(vals, ["cardiomegaly", "edema"], out, not_mentioned="ignore")
    assert np.isnan(t2.values[1, 1])
    with pytest.raises(ConfigError, match="finding codes"):
        labels_from_reports(vals, ["smoker", "edema"], out)


def test_splits_grouped_by_patient_and_stratified(tmp_path):
    from medfuse.data.manifest import ManifestRow

    rng = np.random.default_rng(0)
    rows, y = [], []
    for i in range(300):
        rows.append(ManifestRow(i + 1, f"c{i}", f"p{i // 3}", None, None, "t", {}))
        y.append([float(rng.random() < 0.1)])
    splits = assign_splits(rows, np.array(y), val_fraction=0.2, test_fraction=0.1, seed=3)
    by_patient: dict[str, set] = {}
    for r, s in zip(rows, splits, strict=True):
        by_patient.setdefault(r.patient_id, set()).add(s)
    assert all(len(s) == 1 for s in by_patient.values())
    counts = {s: int((splits == s).sum()) for s in ("train", "val", "test")}
    assert 50 <= counts["val"] <= 70 and 20 <= counts["test"] <= 40
    assert (
        splits == assign_splits(rows, np.array(y), val_fraction=0.2, test_fraction=0.1, seed=3)
    ).all()


def test_dataset_build_cache_reuse_and_broken_study(tmp_path):
    for i in range(4):
        _nifti(tmp_path / f"v{i}.nii.gz", i)
    (tmp_path / "broken.nii.gz").write_bytes(b"not a nifti file at all")
    rows = [
        {"case_id": f"c{i}", "image": f"v{i}.nii.gz", "report_text": "FINDINGS: Small effusion.",
         "pleural_effusion": i % 2, "split": "train" if i < 3 else "val"}
        for i in range(4)
    ] + [{"case_id": "bad", "image": "broken.nii.gz", "pleural_effusion": 1, "split": "val"}]  # fmt: skip
    m = write_manifest(tmp_path / "m.csv", rows, ["pleural_effusion"])
    pre = {"spacing": [4.0, 4.0, 4.0], "spatial_size": [8, 8, 8], "modality": "MR"}
    ds = Dataset.from_manifest(m, preprocessing=pre, cache_dir=tmp_path / "cache")
    assert len(ds) == 4
    [fail] = ds.failures
    assert (fail.case_id, fail.stage) == ("bad", "image")
    x = ds.inputs(pre)[np.array([0, 3])]
    assert x.shape == (2, 1, 8, 8, 8) and x.dtype == np.float16
    files = sorted((tmp_path / "cache" / "images").rglob("*.npy"))
    assert len(files) == 4
    stamps = [f.stat().st_mtime_ns for f in files]
    ds2 = Dataset.from_manifest(m, preprocessing=pre, cache_dir=tmp_path / "cache")
    assert [f.stat().st_mtime_ns for f in files] == stamps  # nothing rebuilt
    assert np.array_equal(ds2.inputs()[np.arange(4)], ds.inputs()[np.arange(4)])
    report = json.loads(ds.write_report(tmp_path / "rep").read_text())
    assert report["used"] == 4 and report["failed"] == 1
    assert report["failures"][0]["case_id"] == "bad"
    assert report["splits"]["train"]["labels"]["pleural_effusion"]["positive"] == 1
    assert report["images"]["model_input_shape"] == [1, 8, 8, 8]
    assert "not a gzip file" in (tmp_path / "rep" / "dataset_report.html").read_text()
    assert "Left out" in ds._repr_html_()
    with pytest.raises(ConfigError, match="another preprocessing"):
        ds.inputs({**pre, "spatial_size": [4, 4, 4]})


def test_image_cache_key_follows_the_preprocessing_version(tmp_path, monkeypatch):
    """Inputs cached by an earlier version of ``preprocess`` (other values for the same config)
    are not reused."""
    import medfuse.transforms
    from medfuse.data.cache import ImageCache

    _nifti(tmp_path / "v.nii.gz", 0)
    cache = ImageCache(tmp_path / "cache", {"spacing": [4.0, 4.0, 4.0], "modality": "MR"})
    key = cache.key(tmp_path / "v.nii.gz")
    assert cache.key(tmp_path / "v.nii.gz") == key
    monkeypatch.setattr(medfuse.transforms, "PREPROCESS_VERSION", 1)
    assert cache.key(tmp_path / "v.nii.gz") != key


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["local", "ray"])
def test_parallel_build_equals_serial(tmp_path, engine):
    if engine == "ray":
        pytest.importorskip("ray", reason="the ray extra is not installed")
    rows = []
    for i in range(4):
        _nifti(tmp_path / f"v{i}.nii.gz", i)
        rows.append({"case_id": f"c{i}", "image": f"v{i}.nii.gz", "x": i % 2, "split": "train"})
    m = write_manifest(tmp_path / "m.csv", rows, ["x"])
    pre = {"spacing": [4.0, 4.0, 4.0], "spatial_size": [8, 8, 8], "modality": "MR"}
    serial = Dataset.from_manifest(m, preprocessing=pre, cache_dir=tmp_path / "a")
    parallel = Dataset.from_manifest(
        m, preprocessing=pre, cache_dir=tmp_path / "b", workers=2, engine=engine
    )
    assert np.array_equal(serial.inputs()[np.arange(4)], parallel.inputs()[np.arange(4)])
