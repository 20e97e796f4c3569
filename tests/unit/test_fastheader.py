"""The fast header reader must agree with pydicom on every element it reads, or decline."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest

from medfuse.io.fastheader import WANTED, read_fast_header


def _norm(value):
    if value is None or value == "":
        return None
    if isinstance(value, (list, tuple, pydicom.multival.MultiValue)):
        return [_norm(v) for v in value]
    if isinstance(value, (int, float)):
        return float(value)
    return str(value).strip()


def _dicom_files(root: Path) -> list[Path]:
    return sorted(
        p
        for p in root.rglob("*")
        if p.is_file() and p.suffix not in (".nii", ".gz", ".json", ".xml", ".csv")
    )


def _check_file(path: Path) -> bool:
    fast = read_fast_header(path)
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    if fast is None:
        return False
    for keyword in WANTED.values():
        theirs = (
            ds.file_meta.get(keyword)
            if keyword in ("TransferSyntaxUID", "MediaStorageSOPClassUID")
            else ds.get(keyword)
        )
        mine = fast.get(keyword)
        if (
            isinstance(mine, list)
            and not isinstance(theirs, (list, pydicom.multival.MultiValue))
            and theirs is not None
        ):
            theirs = [theirs]
        assert _norm(mine) == _norm(theirs), (path.name, keyword, mine, theirs)
    if fast.pixel_offset is not None:
        full = pydicom.dcmread(path)
        raw = np.fromfile(
            path,
            dtype=full.pixel_array.dtype.newbyteorder("<"),
            count=full.pixel_array.size,
            offset=fast.pixel_offset,
        )
        np.testing.assert_array_equal(raw.reshape(full.pixel_array.shape), full.pixel_array)
    return True


@pytest.mark.shared_data
def test_fast_header_matches_pydicom_on_real_files(shared_data):
    files = _dicom_files(shared_data / "dicom")
    used = [p for p in files if _check_file(p)]
    # The plain CT slices, the prone sagittal MR and the compressed files go the fast way; the
    # mosaics and the Philips enhanced file are declined (they need pydicom).
    names = {p.parent.parent.name if p.parent.name == "dicom" else p.parent.name for p in used}
    assert {"series3_ThoraxRoutine_B40f", "sag_t1_prone_HFP"} <= names
    assert not any("enhanced_philips" in str(p) or "cor_oblique" in str(p) for p in used)


def test_fast_header_declines_non_dicom_and_truncated(tmp_path):
    (tmp_path / "a.txt").write_text("hello")
    assert read_fast_header(tmp_path / "a.txt") is None
    trunc = tmp_path / "t.dcm"
    trunc.write_bytes(b"\0" * 128 + b"DICM" + b"\x02\x00\x10\x00UI")
    assert read_fast_header(trunc) is None


def test_fast_header_matches_pydicom_on_generated_files():
    root = Path(__file__).resolve().parents[2] / "sample_cases"
    files = _dicom_files(root)
    files = [p for p in files if p.suffix == ".dcm"]
    assert files and all(_check_file(p) for p in files)
