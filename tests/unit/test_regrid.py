"""Model grid → original grid (medfuse.regrid): the slab-wise resampling equals scipy's, any slab
equals those slices of the whole, and the bounded peak/range search equals a full scan."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from medfuse.regrid import OriginalGridMap, _axis_aligned, make_plan, to_original_grid
from medfuse.synth.geometry import make_geometry
from medfuse.transforms import PreprocessingConfig, preprocess
from medfuse.types import Volume


@pytest.mark.parametrize("perm", [(0, 1, 2), (2, 0, 1), (1, 2, 0)])
@pytest.mark.parametrize("flip", [(1, 1, 1), (-1, 1, -1)])
def test_separable_resampling_matches_scipy_in_any_slab(perm, flip):
    from scipy import ndimage

    a = np.random.default_rng(1).random((12, 10, 8)).astype(np.float32)
    m = np.eye(4)
    m[:3, :3] = 0.0
    out_shape = (90, 70, 50)
    for d, p in enumerate(perm):  # output axis d reads model axis p
        n = a.shape[p]
        step = (n - 1) / (out_shape[d] - 1) * flip[d]
        m[p, d] = step
        m[p, 3] = 0.0 if flip[d] > 0 else n - 1.0
    assert _axis_aligned(m) == list(perm)
    plan = make_plan(a, m, out_shape)
    got = np.empty(out_shape[::-1], np.float32)  # frames [k, j, i]
    plan.frames(0, out_shape[2], got)
    ref = ndimage.affine_transform(a, m[:3, :3], offset=m[:3, 3], output_shape=out_shape, order=1)
    np.testing.assert_allclose(got.T, ref, atol=1e-5)
    part = np.empty((7, *out_shape[1::-1]), np.float32)
    plan.frames(20, 27, part)
    np.testing.assert_array_equal(part, got[20:27])


def _record(orientation="axial", position="HFS", oblique=0.0, size=(12, 10, 14)):
    shape, spacing = (40, 36, 30), (1.0, 1.2, 2.5)
    geo = make_geometry(
        shape, spacing, orientation=orientation, patient_position=position, oblique_deg=oblique
    )
    vol = Volume(np.zeros(shape, np.float32), geo.affine_ras, modality="MR")
    cfg = PreprocessingConfig(
        modality="MR", mr_normalization="none", spacing=(3.0, 3.0, 3.0), spatial_size=size
    )
    return preprocess(vol, cfg)[1], vol


def _reference_stats(arr):
    flat = arr.ravel(order="F")  # the first maximum with i fastest
    top = int(np.argmax(flat))
    return float(arr.min()), float(arr.max()), np.unravel_index(top, arr.shape, order="F")


@pytest.mark.parametrize(
    "geometry, order",
    [
        (("axial", "HFS", 0.0), 1),
        (("sagittal", "FFS", 0.0), 1),
        (("coronal", "HFP", 0.0), 1),
        (("axial", "HFS", 17.0), 1),  # oblique model grid: scipy per slab
        (("axial", "HFS", 0.0), 0),  # nearest neighbour: scipy per slab
    ],
)
def test_map_equals_whole_resampling_and_full_scan_stats(geometry, order):
    rec, vol = _record(*geometry)
    rng = np.random.default_rng(3)
    model = rng.normal(size=rec.output_shape[-3:]).astype(np.float32)
    grid = OriginalGridMap(model, rec, order=order, cval=0.0)
    assert grid.shape == vol.shape and np.allclose(grid.affine, vol.affine)
    whole = grid.array
    assert whole.flags.f_contiguous and whole.dtype == np.float32
    assert np.array_equal(whole, to_original_grid(model, rec, order=order))
    m = rec.original_to_model
    if _axis_aligned(m) is None or order != 1:  # scipy per slice: scipy's whole resampling
        from scipy import ndimage

        ref = ndimage.affine_transform(
            model, m[:3, :3], offset=m[:3, 3], output_shape=vol.shape, order=order
        )
        if order == 1:
            np.testing.assert_allclose(whole, ref, atol=1e-5)
        else:  # nearest: coordinates at x.5 may round either way
            assert np.mean(np.abs(whole - ref) > 1e-5) < 0.01
    np.testing.assert_array_equal(grid.frames(5, 9), whole[:, :, 5:9].T)
    slabs = np.concatenate([f for _, f in grid.iter_frames(step=4)])
    np.testing.assert_array_equal(slabs, whole.T)
    lo, hi, at = _reference_stats(whole)
    assert (grid.stats.min, grid.stats.max) == (lo, hi)
    assert grid.stats.argmax == tuple(int(v) for v in at)
    assert grid.stats.abs_max == max(abs(lo), abs(hi))


@pytest.mark.parametrize("cval", [0.0, -0.5])
def test_stats_of_a_map_that_is_zero_over_half_the_volume(cval):
    """Grad-CAM-like (ReLU'd) maps: the minimum is attained on most slices."""
    rec, _ = _record(size=(10, 9, 12))
    model = np.maximum(np.random.default_rng(8).normal(size=rec.output_shape[-3:]), 0)
    grid = OriginalGridMap(model.astype(np.float32), rec, cval=cval)
    lo, hi, at = _reference_stats(grid.array)
    assert (grid.stats.min, grid.stats.max, grid.stats.argmax) == (lo, hi, tuple(map(int, at)))


def test_stats_break_ties_as_argmax_and_count_the_outside():
    """A constant map: every voxel inside the field of view ties; outside is cval."""
    rec, _ = _record(size=(8, 8, 6))  # a model grid smaller than the volume: cval around it
    grid = OriginalGridMap(np.full(rec.output_shape[-3:], 2.0, np.float32), rec, cval=-1.0)
    lo, hi, at = _reference_stats(grid.array)
    assert (lo, hi) == (-1.0, 2.0)
    assert (grid.stats.min, grid.stats.max, grid.stats.argmax) == (lo, hi, tuple(map(int, at)))


def test_saves_as_nifti_slab_by_slab(tmp_path):
    import nibabel as nib

    rec, vol = _record()
    model = np.random.default_rng(5).random(rec.output_shape[-3:]).astype(np.float32)
    grid = OriginalGridMap(model, rec)
    img = nib.load(grid.save(tmp_path / "map.nii.gz"))
    np.testing.assert_allclose(img.affine, vol.affine, atol=1e-4)
    np.testing.assert_array_equal(np.asarray(img.dataobj), grid.array)


def test_pickles_without_its_plan_and_wraps_a_volume():
    rec, vol = _record()
    model = np.random.default_rng(0).random(rec.output_shape[-3:]).astype(np.float32)
    grid = OriginalGridMap(model, rec)
    stats = grid.stats
    back = pickle.loads(pickle.dumps(grid))
    assert back.stats == stats and np.array_equal(back.array, grid.array)
    wrapped = OriginalGridMap.from_volume(Volume(grid.array, vol.affine))
    assert wrapped.stats == stats
    np.testing.assert_array_equal(wrapped.frames(3, 6), grid.frames(3, 6))
    with pytest.raises(IndexError):
        grid.frames(0, vol.shape[2] + 1)
