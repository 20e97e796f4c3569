"""NIfTI and NRRD/MHA reading into Volume, NIfTI writing, Volume coordinate helpers."""

from __future__ import annotations

import numpy as np
import pytest

import medfuse
from medfuse.errors import ExportError, InputError, VolumeError
from medfuse.types import Volume


def _oblique_affine() -> np.ndarray:
    theta = np.radians(20)
    rot = np.array(
        [[np.cos(theta), -np.sin(theta), 0], [np.sin(theta), np.cos(theta), 0], [0, 0, 1]]
    )
    aff = np.eye(4)
    aff[:3, :3] = rot @ np.diag([0.8, 0.9, 2.5])
    aff[:3, 3] = [-40.0, 12.5, 7.0]
    return aff


def test_volume_properties_and_coordinates():
    vol = Volume(array=np.zeros((4, 5, 6), np.float32), affine=np.diag([-2.0, 3.0, 4.0, 1.0]))
    assert vol.spacing == (2.0, 3.0, 4.0)
    assert vol.orientation == "LAS"
    pts = np.array([[1, 2, 3], [0, 0, 0]])
    np.testing.assert_allclose(vol.world_to_voxel(vol.voxel_to_world(pts)), pts)
    with pytest.raises(ValueError):
        Volume(array=np.zeros((4, 5)), affine=np.eye(4))


def test_nifti_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    arr = rng.normal(size=(7, 8, 9)).astype(np.float32)
    vol = Volume(array=arr, affine=_oblique_affine(), modality="CT")
    path = vol.save(tmp_path / "sub" / "v.nii.gz")
    assert not list((tmp_path / "sub").glob(".*tmp*")), "temporary file left behind"
    back = medfuse.read_volume(path)
    np.testing.assert_array_equal(back.array, arr)
    np.testing.assert_allclose(back.affine, vol.affine, atol=1e-5)
    study = medfuse.read_study(path)
    assert study.selected.kind == "volume" and study.selected.n_slices == 9


@pytest.mark.parametrize("suffix", [".nrrd", ".mha"])
def test_itk_formats_world_coordinates_agree_with_simpleitk(tmp_path, suffix):
    import SimpleITK as sitk

    rng = np.random.default_rng(1)
    zyx = rng.integers(-100, 100, size=(6, 5, 4)).astype(np.int16)
    img = sitk.GetImageFromArray(zyx)
    img.SetSpacing((0.7, 1.1, 3.0))
    img.SetOrigin((10.0, -20.0, 30.0))
    c, s = np.cos(0.3), np.sin(0.3)
    img.SetDirection((c, 0, s, 0, 1, 0, -s, 0, c))
    path = tmp_path / f"v{suffix}"
    sitk.WriteImage(img, str(path))
    vol = medfuse.read_volume(path)
    assert vol.shape == (4, 5, 6)
    for ijk in [(0, 0, 0), (3, 4, 5), (1, 2, 3)]:
        lps = np.array(img.TransformIndexToPhysicalPoint(tuple(int(v) for v in ijk)))
        ras = lps * [-1, -1, 1]
        np.testing.assert_allclose(vol.voxel_to_world(ijk), ras, atol=1e-6)
        assert vol.array[ijk] == zyx[ijk[2], ijk[1], ijk[0]]


def test_bad_volume_files(tmp_path):
    bad = tmp_path / "broken.nii.gz"
    bad.write_bytes(b"this is not gzip")
    with pytest.raises(VolumeError, match="broken.nii.gz"):
        medfuse.read_study(bad)
    bad_nrrd = tmp_path / "broken.nrrd"
    bad_nrrd.write_text("NRRD0004\ntype: float\ndimension: 3\nsizes: 4 4\n")
    with pytest.raises(VolumeError, match="broken.nrrd"):
        medfuse.read_study(bad_nrrd)
    with pytest.raises(InputError, match="no such file"):
        medfuse.read_study(tmp_path / "absent")
    vol = Volume(array=np.zeros((2, 2, 2), np.float32), affine=np.eye(4))
    with pytest.raises(ExportError, match=".nii"):
        vol.save(tmp_path / "x.png")


def test_axcodes_agree_with_nibabel_for_random_rotations():
    import nibabel as nib
    from scipy.spatial.transform import Rotation

    from medfuse.types import axcodes

    rots = Rotation.random(200, random_state=3).as_matrix()
    for i, rot in enumerate(rots):
        aff = np.eye(4)
        aff[:3, :3] = rot @ np.diag([0.5 + i % 3, 1.0, 2.0]) * (-1 if i % 2 else 1)
        assert axcodes(aff) == "".join(nib.aff2axcodes(aff)), aff


@pytest.mark.parametrize("seed", range(6))
def test_nifti_header_is_read_back_by_nibabel(tmp_path, seed):
    """Our hand-written NIfTI-1 header: nibabel recovers sform, qform (no shear) and values."""
    import nibabel as nib
    from scipy.spatial.transform import Rotation

    rng = np.random.default_rng(seed)
    aff = np.eye(4)
    flip = np.diag([1, 1, -1]) if seed % 2 else np.eye(3)  # left-handed voxel axes too
    aff[:3, :3] = (
        Rotation.random(random_state=seed).as_matrix() @ flip @ np.diag(rng.uniform(0.4, 5, 3))
    )
    aff[:3, 3] = rng.uniform(-200, 200, 3)
    integer = seed < 3
    arr = (
        rng.integers(-1024, 3000, size=(5, 6, 7)).astype(np.float32)
        if integer
        else rng.normal(size=(5, 6, 7, 2)).astype(np.float32)
    )
    vol = Volume(array=arr, affine=aff, meta={"integer_valued": integer})
    out = tmp_path / ("v.nii.gz" if seed == 2 else "v.nii")
    vol.save(out)
    img = nib.load(out)
    assert img.get_data_dtype() == (np.int16 if integer else np.float32)
    np.testing.assert_allclose(img.get_sform(), aff, atol=1e-4)
    np.testing.assert_allclose(img.get_qform(), aff, atol=1e-4)
    np.testing.assert_array_equal(img.get_fdata(dtype=np.float32), arr)


def test_nifti_with_sheared_affine_keeps_sform(tmp_path):
    import nibabel as nib

    aff = np.array([[0.7, 0, 0, 1], [0, 0.7, 0.9, 2], [0, 0, 2.5, 3], [0, 0, 0, 1.0]])
    Volume(array=np.ones((3, 3, 3), np.float32), affine=aff).save(tmp_path / "s.nii")
    img = nib.load(tmp_path / "s.nii")
    assert int(img.header["qform_code"]) == 0 and int(img.header["sform_code"]) == 1
    np.testing.assert_allclose(img.affine, aff, atol=1e-5)


def test_gzip_nifti_is_multi_member_and_reads_back_everywhere(tmp_path, monkeypatch):
    """.nii.gz is written as independent gzip members compressed in parallel: gzip, nibabel and
    SimpleITK read it as one stream, voxel for voxel (4D, Fortran-ordered int16 source)."""
    import gzip

    import nibabel as nib
    import SimpleITK as sitk

    from medfuse.io import volumes

    monkeypatch.setattr(volumes, "_BLOCK_BYTES", 4096)  # many members
    arr = np.asfortranarray(np.random.default_rng(0).integers(-900, 900, (37, 29, 23, 3)))
    vol = Volume(
        arr.astype(np.int16, order="F"),
        np.diag([2.0, 3.0, 4.0, 1.0]),
        modality="OT",
        meta={"integer_valued": True, "value_bounds": (-900, 900)},
    )
    path = tmp_path / "x.nii.gz"
    vol.save(path)
    raw = path.read_bytes()
    assert raw.count(b"\x1f\x8b\x08") >= 20  # gzip member headers
    assert len(gzip.decompress(raw)) == 352 + arr.size * 2
    back = nib.load(path)
    assert back.get_data_dtype() == np.int16
    np.testing.assert_array_equal(np.asarray(back.dataobj), arr)
    itk = sitk.GetArrayFromImage(sitk.ReadImage(str(path)))  # [label, k, j, i]
    np.testing.assert_array_equal(np.transpose(itk, (3, 2, 1, 0)), arr)


def test_gzip_members_use_isal_and_store_what_zlib_stores(tmp_path, monkeypatch):
    """.nii.gz members are deflated by ISA-L (python-isal, several times faster than zlib's
    level 1): the file inflates to the same bytes as the zlib-written one, and nibabel reads the
    same int16 saliency stack back exactly."""
    import gzip
    import zlib

    import nibabel as nib
    from isal import isal_zlib

    from medfuse.io import volumes

    assert volumes._deflater() is isal_zlib
    monkeypatch.setattr(volumes, "_BLOCK_BYTES", 1 << 14)
    rng = np.random.default_rng(2)
    zyx = np.mgrid[0:48, 0:40, 0:24].astype(np.float32)
    smooth = np.exp(-((zyx - 20) ** 2).sum(0) / 200).astype(np.float32)
    maps = [np.asfortranarray(smooth), np.asfortranarray(rng.normal(0, 1, smooth.shape))]
    maps = [m.astype(np.float32) for m in maps]
    scales = [32767 / float(np.abs(m).max()) for m in maps]
    fast, slow = tmp_path / "isal.nii.gz", tmp_path / "zlib.nii.gz"
    volumes.write_nifti_int16_stack(maps, scales, np.eye(4), fast, scl_slope=1 / 32767)
    monkeypatch.setattr(volumes, "_deflater", lambda: zlib)
    volumes.write_nifti_int16_stack(maps, scales, np.eye(4), slow, scl_slope=1 / 32767)
    assert fast.read_bytes() != slow.read_bytes()  # two encoders ...
    assert gzip.decompress(fast.read_bytes()) == gzip.decompress(slow.read_bytes())  # ... one file
    stored = np.asarray(nib.load(fast).dataobj.get_unscaled())
    for v, (m, scale) in enumerate(zip(maps, scales, strict=True)):
        np.testing.assert_array_equal(stored[..., v], np.rint(m * np.float32(scale)))


def test_int16_stack_is_scaled_slab_by_slab_and_checked(tmp_path, monkeypatch):
    import nibabel as nib

    from medfuse.io import volumes

    monkeypatch.setattr(volumes, "_BLOCK_BYTES", 4096)  # several slabs per map
    rng = np.random.default_rng(1)
    maps = [np.asfortranarray(rng.normal(0, s, (21, 17, 13)).astype(np.float32)) for s in (1, 5)]
    scales = [32767 / float(np.abs(m).max()) for m in maps]
    path = tmp_path / "s.nii.gz"
    volumes.write_nifti_int16_stack(maps, scales, np.eye(4), path, scl_slope=1 / 32767)
    img = nib.load(path)
    assert img.shape == (21, 17, 13, 2) and img.get_data_dtype() == np.int16
    stored = np.asarray(img.dataobj.get_unscaled())
    for v, (m, scale) in enumerate(zip(maps, scales, strict=True)):
        np.testing.assert_array_equal(stored[..., v], np.rint(m * np.float32(scale)))
    assert abs(float(img.dataobj.slope) - 1 / 32767) < 1e-9
    with pytest.raises(ExportError, match="one shape"):
        volumes.write_nifti_int16_stack(
            [maps[0], maps[1][:-1]], scales, np.eye(4), path, scl_slope=1
        )
    with pytest.raises(ExportError, match="one scale per array"):
        volumes.write_nifti_int16_stack(maps, scales[:1], np.eye(4), path, scl_slope=1)


def test_maps_resampled_into_one_reused_buffer_are_written_exactly(tmp_path, monkeypatch):
    """Maps (``OriginalGridMap``) are computed a slab at a time into one reused float32 buffer:
    with many gzip members compressed in threads, each block must keep its own slab, in a
    float32 map and in an int16 stack alike."""
    import nibabel as nib

    from medfuse.io import volumes
    from medfuse.regrid import OriginalGridMap

    monkeypatch.setattr(volumes, "_BLOCK_BYTES", 4096)  # two slices a block: many in flight
    rng = np.random.default_rng(3)
    arrays = [rng.normal(0, s, (23, 19, 31)).astype(np.float32) for s in (1, 4)]
    maps = [OriginalGridMap.from_volume(Volume(a, np.eye(4), modality="OT")) for a in arrays]
    single = tmp_path / "map.nii.gz"
    volumes.write_nifti_map(maps[0], single)
    np.testing.assert_array_equal(np.asarray(nib.load(single).dataobj), arrays[0])
    scales = [32767 / float(np.abs(a).max()) for a in arrays]
    stack = tmp_path / "stack.nii.gz"
    volumes.write_nifti_int16_stack(maps, scales, np.eye(4), stack, scl_slope=1 / 32767)
    stored = np.asarray(nib.load(stack).dataobj.get_unscaled())
    for v, (a, scale) in enumerate(zip(arrays, scales, strict=True)):
        np.testing.assert_array_equal(stored[..., v], np.rint(a * np.float32(scale)))
