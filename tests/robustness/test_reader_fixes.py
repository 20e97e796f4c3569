"""The reader bugs the bad-input corpus and the fuzzers found, one test each (each failed before
its fix: another exception, a hang, a wrong volume, or an error that did not name the file)."""

from __future__ import annotations

import json
import os
import struct
import time
from pathlib import Path

import numpy as np
import pydicom
import pytest
from dicom_edits import edit

import medfuse
from medfuse.errors import DicomError, GeometryError, ReportError
from medfuse.io.fastheader import ends_cleanly, read_fast_header
from medfuse.synth.dicom_write import write_series
from medfuse.synth.geometry import make_geometry
from medfuse.synth.phantom import chest_ct_phantom

SHAPE, SPACING = (24, 20, 6), (2.0, 2.0, 3.0)


@pytest.fixture
def series(tmp_path) -> tuple[Path, list[Path], np.ndarray]:
    """A small valid CT series: (folder, files in slice order, the volume in HU)."""
    g = make_geometry(SHAPE, SPACING, center_lps=(0.0, 0.0, -100.0))
    vol = chest_ct_phantom(SHAPE, SPACING, seed=3, geometry=g)
    folder = tmp_path / "ct"
    info = write_series(folder, vol, g, seed=3)
    return folder, [folder / f for f in info["files"]], vol


def _error(path, exc_type=medfuse.MedfuseError, policy=None):
    with pytest.raises(exc_type) as info:
        medfuse.read_study(path, policy=policy).volume  # noqa: B018
    return info.value


def test_deeply_nested_sequence_is_a_named_error_not_a_recursion_error(series):
    folder, files, _ = series
    data = files[2].read_bytes()
    at = data.rfind(b"\xe0\x7f\x10\x00")
    depth = 3000
    nested = struct.pack("<HH2sHI", 0x0009, 0x1010, b"SQ", 0, 0xFFFFFFFF)
    nested += struct.pack("<HHI", 0xFFFE, 0xE000, 0xFFFFFFFF)
    tail = struct.pack("<HHI", 0xFFFE, 0xE00D, 0) + struct.pack("<HHI", 0xFFFE, 0xE0DD, 0)
    creator = struct.pack("<HH2sH", 0x0009, 0x0010, b"LO", 8) + b"MEDFUZZ "
    files[2].write_bytes(data[:at] + creator + nested * depth + tail * depth + data[at:])
    assert read_fast_header(files[2]) is None  # declined, not a RecursionError
    err = _error(folder, GeometryError)
    assert files[2].name in str(err)


@pytest.mark.parametrize("value", ["0", "-1", "abc", "1000000000"])
def test_number_of_frames_is_checked_before_anything_is_expanded(series, value):
    folder, files, _ = series
    ds = pydicom.dcmread(files[2])
    ds.add_new(0x00280008, "LO", value)  # LO: pydicom refuses "abc" in an IS
    ds.SpacingBetweenSlices = "3"
    ds.save_as(files[2], enforce_file_format=False)
    t0 = time.perf_counter()
    err = _error(folder, GeometryError)
    assert time.perf_counter() - t0 < 10  # 10**9 frames were expanded one by one before
    assert files[2].name in str(err) and "NumberOfFrames" in str(err)


@pytest.mark.parametrize(("keyword", "value"), [("RescaleSlope", "1e300"), ("RescaleSlope", "1e38"),
                                               ("RescaleIntercept", "1e39")])  # fmt: skip
def test_rescale_beyond_float32_is_refused_not_made_infinite(series, keyword, value):
    folder, files, _ = series
    edit(files[2], **{keyword: value})
    err = _error(folder)
    assert "float32" in str(err) and files[2].name in str(err)


def test_rescale_missing_from_one_image_is_an_error_from_all_a_warning(series):
    folder, files, vol = series
    edit(files[2], RescaleIntercept=None)
    err = _error(folder, DicomError)
    assert "RescaleIntercept is missing from 1 of the 6" in str(err) and err.path == str(files[2])
    for f in files[:2] + files[3:]:
        edit(f, RescaleIntercept=None, RescaleSlope=None)
    edit(files[2], RescaleSlope=None)
    out = medfuse.read_volume(folder)
    np.testing.assert_array_equal(out.array, vol + 1024)  # the stored values, and it says so
    assert any("without RescaleIntercept" in w for w in out.warnings)


@pytest.mark.parametrize("bits", [8, 32])
def test_pixel_data_length_must_match_the_header(series, bits):
    """BitsAllocated 8 on 16-bit data used to give half of the slice, silently."""
    folder, files, _ = series
    edit(files[2], BitsAllocated=bits, BitsStored=bits, HighBit=bits - 1)
    err = _error(folder, DicomError)
    assert "pixel data holds" in str(err) and err.path == str(files[2])


def test_pixel_data_length_checked_on_the_pydicom_path_too(series):
    folder, files, _ = series
    for f in files:  # implicit VR: the header is read by pydicom, the pixels decoded by it
        ds = pydicom.dcmread(f)
        ds.file_meta.TransferSyntaxUID = pydicom.uid.ImplicitVRLittleEndian
        ds.save_as(f, implicit_vr=True, little_endian=True)
    edit(files[2], BitsAllocated=8, BitsStored=8, HighBit=7)
    assert _error(folder, DicomError).path == str(files[2])


def test_series_without_sop_instance_uids_keeps_every_slice(series):
    """Frames without a SOPInstanceUID were all taken for duplicates of one another."""
    folder, files, vol = series
    for f in files:
        edit(f, SOPInstanceUID=None)
    out = medfuse.read_volume(folder)
    assert out.shape == vol.shape
    np.testing.assert_array_equal(out.array, vol)


def test_a_gap_names_the_file_that_was_split_off(series):
    folder, files, _ = series
    edit(files[2], Rows=19)  # now in another stack of the series: the main stack has a gap
    err = _error(folder, GeometryError)
    assert "at a missing position" in str(err) and err.path == str(files[2])
    edit(files[2], Rows=20, SeriesInstanceUID="1.2.3.4.5")  # now in another series
    err = _error(folder, GeometryError)
    assert files[2].name in str(err) and "in another series" in str(err)


def test_duplicate_position_error_names_both_files(series):
    folder, files, _ = series
    ds = pydicom.dcmread(files[2])
    ds.SOPInstanceUID = pydicom.uid.generate_uid()
    ds.save_as(folder / "other.dcm")
    err = _error(folder, GeometryError)
    assert files[2].name in str(err) and "other.dcm" in str(err)


@pytest.mark.parametrize("keep", [0, 100, 700])
def test_unreadable_end_slice_is_recorded(series, keep):
    """An end slice cut short used to vanish without a word (no gap shows it)."""
    folder, files, vol = series
    files[0].write_bytes(files[0].read_bytes()[:keep])
    out = medfuse.read_volume(folder)
    np.testing.assert_array_equal(out.array, vol[:, :, 1:])
    assert any("left out" in w and files[0].name in w for w in out.warnings)


def test_short_file_in_a_gap_is_named(series):
    folder, files, _ = series
    files[2].write_bytes(b"")
    err = _error(folder, GeometryError)
    assert files[2].name in str(err) and "too short" in str(err)


def test_fast_header_never_reads_past_the_end(series, monkeypatch):
    _folder, files, _ = series
    data = bytearray(files[2].read_bytes())
    tag = struct.pack("<HH", 0x0008, 0x103E)  # SeriesDescription claims 4 GB
    at = data.find(tag, 132)
    (length,) = struct.unpack_from("<H", data, at + 6)
    files[2].write_bytes(
        bytes(data[:at]) + tag + b"UT\0\0" + struct.pack("<I", 0xFFFFFFF0) + data[at + 8 + length :]
    )
    import medfuse.io.fastheader as fh

    reads = []
    real = fh._Reader.need

    def need(self, end):
        reads.append(end)
        return real(self, end)

    monkeypatch.setattr(fh._Reader, "need", need)
    assert read_fast_header(files[2]) is None
    assert all(end <= os.path.getsize(files[2]) + 8 for end in reads[:-1])


def test_ends_cleanly(series, tmp_path):
    _folder, files, _ = series
    assert ends_cleanly(files[0]) is True
    cut = tmp_path / "cut.dcm"
    cut.write_bytes(files[0].read_bytes()[:-3])
    assert ends_cleanly(cut) is False
    assert ends_cleanly(tmp_path / "absent.dcm") is None


# -- reports ---------------------------------------------------------------------------------------
@pytest.mark.skipif(os.name != "posix", reason="FIFOs")
def test_report_fifo_is_refused_instead_of_blocking(tmp_path):
    os.mkfifo(tmp_path / "report.txt")
    with pytest.raises(ReportError, match="not a regular file"):
        medfuse.read_report(tmp_path / "report.txt", parse=False)


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
        (json.dumps({"resourceType": "DiagnosticReport", "presentedForm": [
            {"contentType": "text/plain", "data": "!!not base64!!"}]}), "base64"),
        (json.dumps({"resourceType": "DiagnosticReport", "presentedForm": "x"}), "attachments"),
        (json.dumps({"resourceType": "DiagnosticReport", "presentedForm": [3]}), "attachments"),
    ],
)  # fmt: skip
def test_malformed_json_reports_are_report_errors(tmp_path, content, words):
    path = tmp_path / "r.json"
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    with pytest.raises(ReportError, match=words) as info:
        medfuse.read_report(path, parse=False)
    assert info.value.path == str(path)


def test_truncated_sr_is_an_error_not_a_partial_report(tmp_path):
    from pydicom.dataset import FileMetaDataset

    ds = pydicom.Dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.88.33"
    ds.SOPInstanceUID = pydicom.uid.generate_uid()
    ds.Modality = "SR"
    item = pydicom.Dataset()
    item.ValueType = "TEXT"
    item.TextValue = "FINDINGS: no effusion. " * 20
    ds.ContentSequence = [item] * 10
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    path = tmp_path / "sr.dcm"
    ds.save_as(path, enforce_file_format=True)
    assert "no effusion" in medfuse.read_report(path, parse=False).text
    path.write_bytes(path.read_bytes()[:900])
    with pytest.raises(ReportError, match="truncated"):
        medfuse.read_report(path, parse=False)


def test_oversized_report_is_refused_before_reading(tmp_path, monkeypatch):
    import medfuse.io.reports as reports

    monkeypatch.setattr(reports, "MAX_REPORT_BYTES", 1000)
    path = tmp_path / "big.txt"
    path.write_text("no effusion. " * 200)
    with pytest.raises(ReportError, match="too large"):
        medfuse.read_report(path, parse=False)


def test_unknown_vr_is_a_named_skip_not_a_not_implemented_error(series):
    """pydicom converts values lazily: an element with an unknown VR raised NotImplementedError
    wherever it was first used (found by the fuzzer)."""
    folder, files, _ = series
    data = bytearray(files[2].read_bytes())
    at = data.find(struct.pack("<HH", 0x0020, 0x000E), 132)  # SeriesInstanceUID
    data[at + 4 : at + 6] = b"HI"
    files[2].write_bytes(bytes(data))
    err = _error(folder, GeometryError)
    assert files[2].name in str(err)


def test_a_panicking_rust_decoder_is_a_dicom_error(series, monkeypatch):
    """pylibjpeg-rle panics on some corrupt RLE data (found by the fuzzer); pyo3's
    PanicException is a BaseException, which escaped every `except Exception` up to the batch
    runner."""
    folder, _files, _ = series
    import medfuse.io.pixels as pixels

    class PanicException(BaseException):
        pass

    def panic(*_a, **_k):
        raise PanicException("index out of bounds: the len is 19712 but the index is 19713")

    monkeypatch.setattr(pixels, "_fast_pixels", lambda *a: None)
    monkeypatch.setattr(pydicom.Dataset, "pixel_array", property(panic))
    err = _error(folder, DicomError)
    assert "PanicException" in str(err) and err.path.endswith(".dcm")


def test_dcm_file_without_marker_beside_the_series_is_recorded(series):
    folder, files, vol = series
    data = bytearray(files[-1].read_bytes())
    data[128:132] = b"DICN"
    files[-1].write_bytes(bytes(data))
    out = medfuse.read_volume(folder)
    np.testing.assert_array_equal(out.array, vol[:, :, :-1])
    assert any("left out" in w and "no DICM marker" in w for w in out.warnings)


def test_end_slice_with_another_series_uid_is_recorded(series):
    folder, files, vol = series
    edit(files[-1], SeriesInstanceUID="1.2.3.4.5.6")
    out = medfuse.read_volume(folder)
    np.testing.assert_array_equal(out.array, vol[:, :, :-1])
    assert any("would continue this stack" in w and files[-1].name in w for w in out.warnings)


def test_absurd_bits_stored_does_not_overflow_the_value_bounds(series):
    """BitsStored 1025 made 2**1025 overflow a float (found by the long fuzz run)."""
    folder, files, vol = series
    edit(files[2], BitsStored=1025)
    try:
        out = medfuse.read_volume(folder)
    except medfuse.MedfuseError as exc:
        assert exc.path
    else:
        np.testing.assert_array_equal(out.array, vol)


def test_declared_size_above_the_cap_is_refused_before_allocating(series, monkeypatch):
    """Rows × Columns of 60000 in every header: refused from the header, nothing allocated."""
    from medfuse.io.policy import ReadPolicy

    folder, files, _ = series
    for f in files:
        edit(f, Rows=60000, Columns=60000)
    allocated = []
    real = np.empty

    def empty(shape, *args, **kwargs):
        allocated.append(shape)
        return real(shape, *args, **kwargs)

    monkeypatch.setattr(np, "empty", empty)
    err = _error(folder, DicomError)
    assert "above the limit" in str(err)
    err = _error(files[0].parent, DicomError, policy=ReadPolicy(max_bytes=10**6))
    assert not [s for s in allocated if np.prod(s) * 4 > 10**6], allocated


@pytest.mark.skipif(os.name != "posix", reason="FIFOs")
def test_reports_csv_fifo_is_refused_instead_of_blocking(tmp_path):
    from medfuse.io.reports import iter_csv_reports

    os.mkfifo(tmp_path / "reports.csv")
    with pytest.raises(ReportError, match="not a regular file"):
        list(iter_csv_reports(tmp_path / "reports.csv"))


def test_transfer_syntax_with_a_binary_vr_is_declined_not_a_type_error(series):
    """A mutated VR made TransferSyntaxUID a list: `TypeError: unhashable type` escaped the fast
    header reader (found by the long fuzz run)."""
    folder, files, _ = series
    data = bytearray(files[2].read_bytes())
    at = data.find(struct.pack("<HH", 0x0002, 0x0010), 128)
    data[at + 4 : at + 6] = b"US"
    files[2].write_bytes(bytes(data))
    assert read_fast_header(files[2]) is None
    err = _error(folder)  # pydicom reads it; its transfer syntax is then unusable
    assert err.path == str(files[2])


def test_text_in_bits_stored_is_a_dicom_error(series):
    """BitsStored 'NO' (a mutated tag number) raised ValueError from the pixel reader (found by
    the long fuzz run)."""
    folder, files, _ = series
    ds = pydicom.dcmread(files[2])
    ds[0x00280101] = pydicom.DataElement(0x00280101, "CS", "NO")
    ds.save_as(files[2], enforce_file_format=False)
    assert _error(folder).path == str(files[2])
