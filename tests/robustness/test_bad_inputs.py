"""Bad input ends in a specific MedfuseError naming the file and the reason, or in a recorded
warning where a documented policy allows it — never another exception, never a wrong volume."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pydicom
import pytest
from dicom_edits import edit

import medfuse
from medfuse.errors import CodecError, DicomError, GeometryError, MedfuseError
from medfuse.io.dicom import ReadPolicy
from medfuse.synth.dicom_write import write_series
from medfuse.synth.geometry import make_geometry
from medfuse.synth.phantom import chest_ct_phantom

SHAPE, SPACING = (40, 36, 10), (2.0, 2.0, 3.0)


@pytest.fixture
def series(tmp_path) -> tuple[Path, list[Path], np.ndarray]:
    """A small valid CT series; returns (folder, files in slice order, the volume in HU)."""
    g = make_geometry(SHAPE, SPACING, center_lps=(0.0, 0.0, -100.0))
    vol = chest_ct_phantom(SHAPE, SPACING, seed=1, geometry=g)
    folder = tmp_path / "ct"
    info = write_series(folder, vol, g, seed=1, scramble_instance_numbers=True)
    files = [folder / f for f in info["files"]]
    return folder, files, vol


def _raises(exc_type, path, *words):
    with pytest.raises(exc_type) as info:
        medfuse.read_study(path).volume  # noqa: B018
    msg = str(info.value)
    assert info.value.path, msg
    for w in words:
        assert w in msg, msg
    return info.value


def test_empty_folder(tmp_path):
    err = _raises(DicomError, tmp_path, "no files found")
    assert err.path == str(tmp_path)


def test_only_non_dicom_files(tmp_path):
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "scan.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 200)
    _raises(DicomError, tmp_path, "no DICOM image series", "not a DICOM file")


def test_truncated_in_pixel_data_names_the_file(series):
    folder, files, _ = series
    victim = files[4]
    victim.write_bytes(victim.read_bytes()[:-500])
    err = _raises(DicomError, folder, "truncated")
    assert Path(err.path).name == victim.name


def test_truncated_in_header_names_the_file(series):
    folder, files, _ = series
    victim = files[5]
    victim.write_bytes(victim.read_bytes()[:700])
    err = _raises(GeometryError, folder, "missing slice", victim.name, "truncated")
    assert Path(err.path).name == victim.name


def test_single_truncated_file(series):
    _folder, files, _ = series
    victim = files[0]
    victim.write_bytes(victim.read_bytes()[:400])
    err = _raises(DicomError, victim, "truncated")
    assert err.path == str(victim)


def test_missing_image_position_refuses_the_series(series):
    folder, files, _ = series
    edit(files[0], ImagePositionPatient=None)  # the first slice: no gap would reveal it
    err = _raises(GeometryError, folder, "ImagePositionPatient is missing")
    assert Path(err.path).name == files[0].name
    vol = medfuse.read_study(folder, policy=ReadPolicy(on_bad_file="skip")).volume
    assert vol.shape[2] == SHAPE[2] - 1 and any("left out" in w for w in vol.warnings)


@pytest.mark.parametrize("bad", [["a", "b", "c"], [0.0, 1.0], [float("nan"), 0, 0]])
def test_absurd_image_position(series, bad):
    folder, files, _ = series
    ds = pydicom.dcmread(files[3])
    if isinstance(bad[0], str):  # text where numbers belong: stored with a wrong VR
        ds["ImagePositionPatient"].VR = "LO"
    ds["ImagePositionPatient"].value = bad
    ds.save_as(files[3])
    _raises(GeometryError, folder, "ImagePositionPatient")


def test_missing_slice_is_a_gap(series):
    folder, files, _ = series
    files[6].unlink()
    _raises(GeometryError, folder, "missing slice", files[5].name, files[7].name)


def test_duplicate_file_copy_is_dropped_with_warning(series):
    folder, files, vol = series
    (folder / "copy.dcm").write_bytes(files[2].read_bytes())
    out = medfuse.read_volume(folder)
    np.testing.assert_array_equal(out.array, vol)
    assert any("duplicate of SOP instance" in w for w in out.warnings)


def test_duplicate_positions_with_different_instances(series):
    folder, files, _ = series
    ds = pydicom.dcmread(files[2])
    ds.SOPInstanceUID = pydicom.uid.generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.save_as(folder / "dup.dcm")
    _raises(GeometryError, folder, "different numbers of images")


def test_non_uniform_spacing(series):
    folder, files, _ = series
    ds = pydicom.dcmread(files[5])
    ipp = [float(v) for v in ds.ImagePositionPatient]
    ds.ImagePositionPatient = [ipp[0], ipp[1], ipp[2] + 0.6]  # 20 % of the 3 mm step
    ds.save_as(files[5])
    _raises(GeometryError, folder, "non-uniform slice spacing")
    vol = medfuse.read_study(folder, policy=ReadPolicy(on_nonuniform="warn")).volume
    assert any("non-uniform" in w for w in vol.warnings)


def test_gantry_tilt_gives_an_exact_sheared_affine(series):
    folder, files, _ = series
    tilt = np.tan(np.radians(15))
    for k, f in enumerate(files):
        ds = pydicom.dcmread(f)
        ipp = [float(v) for v in ds.ImagePositionPatient]
        ds.ImagePositionPatient = [ipp[0], round(ipp[1] + k * SPACING[2] * tilt, 4), ipp[2]]
        ds.GantryDetectorTilt = 15
        ds.save_as(f)
    vol = medfuse.read_volume(folder)
    assert any("sheared stack" in w and "15" in w for w in vol.warnings)
    for k, f in enumerate(files):  # every slice's first voxel is where its header says
        ipp = np.array(
            [float(v) for v in pydicom.dcmread(f, stop_before_pixels=True).ImagePositionPatient]
        )
        np.testing.assert_allclose(vol.voxel_to_world([0, 0, k]), ipp * [-1, -1, 1], atol=1e-3)
    with pytest.raises(GeometryError, match="sheared"):
        medfuse.read_study(folder, policy=ReadPolicy(on_shear="error")).volume  # noqa: B018


def test_mixed_sizes_in_one_series_are_split(series):
    folder, files, vol = series
    g = make_geometry((20, 20, 4), (4.0, 4.0, 3.0), center_lps=(0.0, 0.0, -100.0))
    other = chest_ct_phantom((20, 20, 4), (4.0, 4.0, 3.0), seed=2, geometry=g)
    ds0 = pydicom.dcmread(files[0], stop_before_pixels=True)
    from medfuse.synth.dicom_write import make_uids

    uids = make_uids(1)
    uids = type(uids)(
        **{**uids.__dict__, "series": ds0.SeriesInstanceUID, "study": ds0.StudyInstanceUID}
    )
    write_series(folder / "small", other, g, seed=9, uids=uids)
    study = medfuse.read_study(folder)
    assert len(study.series) == 2 and any("image sizes differ" in w for w in study.warnings)
    np.testing.assert_array_equal(study.volume.array, vol)  # the larger part is selected
    assert study.series[1].key.endswith("#1")


def test_two_series_select_the_larger_and_explain(series, tmp_path):
    folder, _files, vol = series
    g = make_geometry((40, 36, 4), SPACING, center_lps=(0.0, 0.0, -100.0))
    write_series(
        folder / "other",
        chest_ct_phantom((40, 36, 4), SPACING, seed=3, geometry=g),
        g,
        seed=3,
        series_number=2,
        series_description="THIN",
    )
    study = medfuse.read_study(folder)
    assert [s.selected for s in study.series].count(True) == 1
    np.testing.assert_array_equal(study.volume.array, vol)
    other = next(s for s in study.series if not s.selected)
    assert "ranked below" in other.reason
    assert study.get_series("thin") is other  # user override by description
    assert medfuse.read_study(folder, series="THIN").selected.key == other.key
    with pytest.raises(DicomError, match="no series matches"):
        medfuse.read_study(folder, series="nope")


def test_localizer_is_not_selected(series):
    folder, files, _ = series
    edit(
        files[0],
        ImageType=["ORIGINAL", "PRIMARY", "LOCALIZER"],
        SeriesInstanceUID=pydicom.uid.generate_uid(),
        SeriesDescription="Topogram 0.6 T20f",
    )
    study = medfuse.read_study(folder, policy=ReadPolicy(on_bad_file="skip"))
    loc = next(s for s in study.series if "LOCALIZER" in s.image_type)
    assert not loc.selected and "localizer" in loc.reason


def test_unsupported_transfer_syntax(series):
    folder, files, _ = series
    from pydicom.encaps import encapsulate

    for f in files:
        ds = pydicom.dcmread(f)
        ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.100"  # MPEG-2 video: no decoder
        ds.PixelData = encapsulate([b"\xff\x0a" + bytes(30)])
        ds["PixelData"].VR = "OB"
        ds.save_as(f, enforce_file_format=True)
    _raises(CodecError, folder, "unsupported transfer syntax", "1.2.840.10008.1.2.4.100")


def test_missing_codec_gives_an_install_hint(tmp_path, monkeypatch):
    g = make_geometry(SHAPE, SPACING)
    vol = chest_ct_phantom(SHAPE, SPACING, seed=1, geometry=g)
    write_series(tmp_path, vol, g, seed=1, transfer_syntax="jpegls")

    class Unavailable:
        is_available = False

    import pydicom.pixels

    monkeypatch.setattr(pydicom.pixels, "get_decoder", lambda uid: Unavailable())
    err = _raises(CodecError, tmp_path, "no decoder is installed", "pip install")
    assert err.path.endswith(".dcm")


def test_non_image_objects_only(series):
    folder, files, _ = series
    for f in files[1:]:
        f.unlink()
    edit(files[0], SOPClassUID="1.2.840.10008.5.1.4.1.1.88.33")  # Comprehensive SR
    (folder / "DICOMDIR").write_bytes(b"\0" * 128 + b"DICM")
    _raises(DicomError, folder, "no DICOM image series", "structured report", "DICOMDIR")


def test_memory_cap_refuses_before_decoding(series):
    folder, _files, _ = series
    with pytest.raises(DicomError, match="above the limit"):
        medfuse.read_study(folder, policy=ReadPolicy(max_bytes=1000)).volume  # noqa: B018


@pytest.mark.skipif(os.name != "posix", reason="symlinks")
def test_symlink_loop_is_harmless(series):
    folder, _files, vol = series
    (folder / "loop").symlink_to(folder, target_is_directory=True)
    np.testing.assert_array_equal(medfuse.read_volume(folder).array, vol)


def test_unreadable_file_is_skipped_with_reason(series):
    folder, _files, vol = series
    (folder / "garbage.dcm").write_bytes(b"\0" * 128 + b"DICM" + os.urandom(300))
    study = medfuse.read_study(folder)
    np.testing.assert_array_equal(study.volume.array, vol)
    assert any(f.endswith("garbage.dcm") for f, _r in study.skipped)


def test_every_error_is_a_medfuse_error(series):
    """A sweep of single-tag corruptions: each ends in a MedfuseError or a correct volume."""
    folder, files, vol = series
    original = files[3].read_bytes()
    outcomes = {}
    for tag, value in [
        ("Rows", 0),
        ("Columns", 7),
        ("PixelSpacing", [0, 0]),
        ("PixelSpacing", [-1, 1]),
        ("ImageOrientationPatient", [1, 0, 0, 1, 0, 0]),
        ("ImageOrientationPatient", [1, 0, 0]),
        ("BitsAllocated", 12),
        ("RescaleSlope", "abc"),
        ("SeriesInstanceUID", None),
        ("SamplesPerPixel", 3),
    ]:
        files[3].write_bytes(original)
        ds = pydicom.dcmread(files[3])
        if value is None:
            delattr(ds, tag)
        else:
            if isinstance(value, str):  # text where a number belongs: stored with a wrong VR
                ds[tag].VR = "LO"
            ds[tag].value = value
        ds.save_as(files[3], enforce_file_format=False)
        try:
            out = medfuse.read_study(folder).volume
        except MedfuseError as exc:
            assert exc.path and exc.reason
            outcomes[f"{tag}={value}"] = type(exc).__name__
        else:
            outcomes[f"{tag}={value}"] = "volume"
            assert out.shape == vol.shape
    print("outcomes:", outcomes)
    assert outcomes["SeriesInstanceUID=None"] in ("GeometryError", "DicomError")
    assert (
        outcomes["RescaleSlope=abc"] == "GeometryError"
    )  # the series is refused, not rescaled by 1
    assert (
        outcomes["Rows=0"] != "volume"
        and outcomes["ImageOrientationPatient=[1, 0, 0, 1, 0, 0]"] != "volume"
    )
