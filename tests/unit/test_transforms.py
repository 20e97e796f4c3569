"""Preprocessing: geometry is tracked exactly (marked voxels land where the affine says and map
back within one voxel), CT windows, MR normalisation, foreground crop, records, saliency back."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch

from medfuse.errors import ConfigError
from medfuse.synth.geometry import make_geometry
from medfuse.transforms import (
    PreprocessingConfig,
    preprocess,
    preprocess_batch,
    to_original_grid,
    to_original_volume,
)
from medfuse.types import PreprocessingRecord, Volume

ORIENTATIONS = [
    ("axial", "HFS", 0.0),
    ("axial", "FFP", 0.0),
    ("axial", "HFP", 0.0),
    ("coronal", "HFS", 0.0),
    ("sagittal", "HFS", 0.0),
    ("axial", "HFS", 17.0),
    ("sagittal", "FFS", (12.0, -9.0)),
]


def _marked_volume(orientation, position, oblique, shape=(28, 24, 20), spacing=(1.2, 1.0, 2.0)):
    geo = make_geometry(
        shape, spacing, orientation=orientation, patient_position=position, oblique_deg=oblique
    )
    arr = np.zeros(shape, dtype=np.float32)
    mark = (17, 7, 12)
    arr[mark] = 1000.0
    return Volume(arr, geo.affine_ras, modality="MR"), np.array(mark, dtype=float)


@pytest.mark.parametrize(("orientation", "position", "oblique"), ORIENTATIONS)
def test_marked_voxel_lands_and_maps_back(orientation, position, oblique):
    vol, mark = _marked_volume(orientation, position, oblique)
    world = vol.voxel_to_world(mark)
    cfg = PreprocessingConfig(
        spacing=(1.5, 1.5, 1.5),
        interpolation="bilinear",
        modality="MR",
        mr_normalization="none",
        spatial_size=(32, 32, 32),
    )
    x, rec = preprocess(vol, cfg)
    assert tuple(x.shape) == (1, 32, 32, 32)
    model_aff = np.asarray(rec.model_affine)
    # the model grid is RAS: diagonal-dominant, positive directions
    assert all(model_aff[i, i] > 0 for i in range(3))
    expected = (np.linalg.inv(model_aff) @ np.append(world, 1.0))[:3]
    peak = np.array(np.unravel_index(int(x[0].argmax()), x.shape[1:]), dtype=float)
    assert np.abs(peak - expected).max() <= 1.0, (peak, expected)
    # the mapping back is the inverse of the mapping there
    np.testing.assert_allclose(rec.map_to_original(expected), mark, atol=1e-6)
    np.testing.assert_allclose(rec.map_to_model(mark), expected, atol=1e-6)
    # the model voxel found maps back within one (model) voxel, in mm
    back = rec.map_to_original(peak)
    assert np.linalg.norm(vol.voxel_to_world(back) - world) <= 1.5 * np.sqrt(3) + 1e-6
    # a saliency map peaked there comes back onto the original grid near the mark
    sal = np.zeros(x.shape[1:], dtype=np.float32)
    sal[tuple(peak.astype(int))] = 1.0
    orig = to_original_grid(sal, rec, order=1)
    assert orig.shape == vol.shape
    got = np.array(np.unravel_index(int(orig.argmax()), orig.shape), dtype=float)
    assert np.linalg.norm(vol.voxel_to_world(got) - world) <= 1.5 * np.sqrt(3) + max(vol.spacing)


def test_no_resample_is_exact_permutation():
    vol, mark = _marked_volume("axial", "HFS", 0.0)  # LPS axial: i points L, j points P in RAS
    x, rec = preprocess(vol, PreprocessingConfig(modality="MR", mr_normalization="none"))
    peak = np.unravel_index(int(x[0].argmax()), x.shape[1:])
    np.testing.assert_allclose(rec.map_to_original(np.array(peak, float)), mark, atol=1e-9)
    assert x.shape[1:] == vol.shape
    assert [s["name"] for s in rec.steps] == ["input", "orientation", "intensity"]


@pytest.mark.parametrize("layout", ["F", "flipped"])
def test_any_memory_layout_preprocesses_alike(layout):
    geo = make_geometry((20, 18, 10), (1.0, 1.2, 2.0))
    arr = np.random.default_rng(0).normal(0, 300, (20, 18, 10)).astype(np.float32)
    view = np.asfortranarray(arr) if layout == "F" else np.ascontiguousarray(arr[::-1])[::-1]
    cfg = PreprocessingConfig(spacing=(2.0, 2.0, 2.0), spatial_size=(12, 12, 12))
    want, want_rec = preprocess(Volume(arr, geo.affine_ras, modality="CT"), cfg)
    got, got_rec = preprocess(Volume(view, geo.affine_ras, modality="CT"), cfg)
    assert got_rec.steps == want_rec.steps
    # a Fortran-ordered volume is resampled as stored: equal within float32 rounding
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=0, atol=1e-6)


def test_ct_windows_are_channels_in_unit_range():
    geo = make_geometry((20, 20, 10), (1.0, 1.0, 2.0))
    arr = np.linspace(-1200, 1500, 20 * 20 * 10, dtype=np.float32).reshape(20, 20, 10)
    vol = Volume(arr, geo.affine_ras, modality="CT")
    cfg = PreprocessingConfig(
        ct_windows=("lung", "mediastinum", (400, 1800)), spatial_size=(16, 16, 16)
    )
    x, rec = preprocess(vol, cfg)
    assert x.shape == (3, 16, 16, 16) and x.dtype.is_floating_point
    assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0
    # padding is air (-1024 HU), seen through each window
    air = [(-1024 - lo) / (hi - lo) for lo, hi in cfg.window_ranges()]
    np.testing.assert_allclose(
        x[:, :, :, 0].amax(dim=(1, 2)).numpy(), np.clip(air, 0, 1), atol=1e-6
    )
    assert rec.steps[-1]["params"]["windows"][1] == [-160.0, 240.0]
    assert cfg.channels("CT") == 3


def test_mr_zscore_and_percentile():
    rng = np.random.default_rng(0)
    geo = make_geometry((16, 16, 16), (1.0, 1.0, 1.0), orientation="sagittal")
    arr = np.zeros((16, 16, 16), np.float32)
    arr[4:12, 4:12, 4:12] = rng.normal(300, 50, (8, 8, 8))
    vol = Volume(arr, geo.affine_ras, modality="MR")
    x, _ = preprocess(vol, PreprocessingConfig())
    inside = x[0][x[0] != 0]
    assert abs(float(inside.mean())) < 1e-3 and abs(float(inside.std()) - 1) < 0.05
    x2, _ = preprocess(vol, PreprocessingConfig(mr_normalization="percentile"))
    assert float(x2.min()) >= 0 and float(x2.max()) <= 1


def test_foreground_crop_records_shape_and_keeps_geometry():
    geo = make_geometry((40, 40, 20), (1.0, 1.0, 2.0))
    arr = np.full((40, 40, 20), -1000.0, np.float32)
    arr[10:25, 12:30, 5:15] = 40.0
    arr[20, 20, 10] = 900.0
    vol = Volume(arr, geo.affine_ras, modality="CT")
    x, rec = preprocess(
        vol, PreprocessingConfig(foreground_crop=True, foreground_margin=1, ct_windows=("bone",))
    )
    fg = next(s for s in rec.steps if s["name"] == "foreground")
    assert fg["shape"] == [1, 17, 20, 12]
    peak = np.unravel_index(int(x[0].argmax()), x.shape[1:])
    np.testing.assert_allclose(rec.map_to_original(np.array(peak, float)), [20, 20, 10], atol=1e-9)


def test_record_json_round_trip_and_volume_back():
    vol, _ = _marked_volume("coronal", "HFS", 0.0)
    _x, rec = preprocess(vol, PreprocessingConfig(spacing=(2, 2, 2), spatial_size=(16, 16, 16)))
    rec2 = PreprocessingRecord.from_dict(json.loads(json.dumps(rec.to_dict())))
    np.testing.assert_allclose(rec2.model_to_original, rec.model_to_original)
    assert rec2.steps == rec.steps
    back = to_original_volume(np.ones((2, 16, 16, 16), np.float32), rec2)
    assert back.shape == (*vol.shape, 2)
    np.testing.assert_allclose(back.affine, vol.affine)


def test_config_validation_and_round_trip():
    cfg = PreprocessingConfig(
        spacing=(1, 1, 2), ct_windows=("lung", (40, 400)), spatial_size=(8, 8, 8)
    )
    assert PreprocessingConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    for bad in (
        {"orientation": "RAR"},
        {"spacing": (1, 0, 1)},
        {"ct_windows": ("nope",)},
        {"ct_windows": ((40, -1),)},
        {"mr_normalization": "minmax"},
        {"spatial_size": (8, 8)},
        {"modality": "PET"},
    ):
        with pytest.raises(ConfigError):
            PreprocessingConfig(**bad)
    with pytest.raises(ConfigError, match="unknown preprocessing"):
        PreprocessingConfig.from_dict({"spacingg": 1})


def test_batch_with_missing_image():
    vol, _ = _marked_volume("axial", "HFS", 0.0)
    x, present, recs = preprocess_batch([vol, None], PreprocessingConfig(spatial_size=(8, 8, 8)))
    assert x.shape == (2, 1, 8, 8, 8) and present.tolist() == [True, False] and recs[1] is None
    with pytest.raises(ConfigError):
        preprocess_batch([vol], PreprocessingConfig())


@pytest.mark.parametrize(("orientation", "position", "oblique"), ORIENTATIONS)
def test_a_slice_stack_is_resampled_as_stored_like_monais_eager_transforms(
    orientation, position, oblique, eager_monai
):
    """A DICOM volume is a transposed view of its slice stack (Fortran order). MONAI gets the
    stack as it is stored, with the affine's columns permuted alike, and resamples it once
    (orientation and spacing applied lazily). The grid and the record's shapes and spacings are
    those of MONAI's eager Orientation then Spacing; the model affine agrees to 1e-12 mm (an
    oblique one's products are summed in another order) and the voxels within float32 rounding
    of the sampling coordinates."""
    from medfuse.transforms import _in_memory_order

    geo = make_geometry(
        (40, 36, 24),
        (0.7, 0.7, 1.25),
        orientation=orientation,
        patient_position=position,
        oblique_deg=oblique,
    )
    stack = np.random.default_rng(3).normal(-300, 400, size=(24, 36, 40)).astype(np.float32)
    vol = Volume(stack.transpose(2, 1, 0), geo.affine_ras, modality="MR")
    stored, _ = _in_memory_order(vol.array[None], vol.affine)
    assert stored.flags.c_contiguous and np.shares_memory(stored, stack)  # no copy
    cfg = PreprocessingConfig(spacing=(2.0, 2.0, 2.0), modality="MR", mr_normalization="none")
    x, rec = preprocess(vol, cfg)
    oriented, want = eager_monai(vol, None), eager_monai(vol, cfg.spacing)
    assert [s["shape"] for s in rec.steps] == [
        [1, 40, 36, 24],
        list(oriented.shape),
        list(want.shape),
        list(want.shape),
    ]
    assert rec.steps[2]["spacing"] == [2.0, 2.0, 2.0]
    np.testing.assert_allclose(rec.model_affine, want.affine.numpy(), rtol=0, atol=1e-12)
    np.testing.assert_allclose(x.numpy(), want.numpy(), rtol=0, atol=1e-5 * np.ptp(stack))
    # the same volume given in C order: the same record
    _, rec_c = preprocess(Volume(np.ascontiguousarray(vol.array), vol.affine, modality="MR"), cfg)
    np.testing.assert_allclose(rec_c.model_affine, rec.model_affine, rtol=0, atol=1e-12)
    assert rec_c.steps == rec.steps


def test_nearest_neighbour_resamples_as_monais_eager_steps_bit_for_bit(eager_monai):
    """Nearest neighbour is not resampled lazily: from 1 mm to 1.5 mm half the samples lie
    half-way between two voxels, and in the stack's order they would go to the other one."""
    geo = make_geometry((40, 36, 24), (1.0, 1.0, 1.0), orientation="sagittal")
    stack = np.random.default_rng(4).integers(0, 5, (24, 36, 40)).astype(np.float32)
    vol = Volume(stack.transpose(2, 1, 0), geo.affine_ras, modality="MR")
    cfg = PreprocessingConfig(
        spacing=(1.5, 1.5, 1.5), interpolation="nearest", modality="MR", mr_normalization="none"
    )
    x, rec = preprocess(vol, cfg)
    want = eager_monai(vol, cfg.spacing, mode="nearest")
    assert torch.equal(x, want.as_tensor())
    np.testing.assert_array_equal(rec.model_affine, want.affine.numpy())


def test_at_an_orientation_tie_the_stack_is_copied_rather_than_reoriented_otherwise():
    """nibabel picks each axis's nearest orientation axis in turn; where two axes tie (45°, exact
    here) the pick can follow the order of the axes. There the volume is given to MONAI in C order
    so that the orientation is the one of the volume as given."""
    from nibabel.orientations import io_orientation

    from medfuse.transforms import _in_memory_order

    affine = np.eye(4)
    affine[:3, :3] = np.array([(1, 1, 0), (0, 0, 1), (-1, 1, 0)], dtype=float).T  # columns
    data = np.zeros((4, 5, 6), dtype=np.float32).transpose(2, 1, 0)[None]
    permuted = affine[:, [2, 1, 0, 3]]
    assert not np.array_equal(io_orientation(permuted), io_orientation(affine)[[2, 1, 0]])
    got, got_affine = _in_memory_order(data, affine)
    assert got.flags.c_contiguous and got.shape == data.shape and got_affine is affine
    # and preprocessing orients the volume as it does the same volume given in C order
    arr = np.random.default_rng(1).normal(0, 1, (6, 5, 4)).astype(np.float32)
    cfg = PreprocessingConfig(modality="MR", mr_normalization="none")
    x_f, rec_f = preprocess(Volume(np.asfortranarray(arr), affine, modality="MR"), cfg)
    x_c, rec_c = preprocess(Volume(arr, affine, modality="MR"), cfg)
    assert rec_f.steps == rec_c.steps and torch.equal(x_f, x_c)


def test_non_finite_voxels_are_zeroed_with_a_warning_and_large_finite_ones_kept(caplog):
    """A NaN or infinite voxel is set to 0 before resampling, with a warning; a volume of finite
    values whose float32 sum overflows is left as it is (the sum only decides when it is
    finite)."""
    geo = make_geometry((20, 18, 10), (1.0, 1.2, 2.0))
    cfg = PreprocessingConfig(modality="MR", mr_normalization="none")
    bad = np.random.default_rng(0).normal(0, 1, (20, 18, 10)).astype(np.float32)
    bad[3, 4, 5], bad[0, 0, 0] = np.nan, np.inf
    with caplog.at_level("WARNING", logger="medfuse.transforms"):
        x, _ = preprocess(Volume(bad, geo.affine_ras, modality="MR"), cfg)
    assert torch.isfinite(x).all() and "non-finite voxels" in caplog.text
    caplog.clear()
    huge = np.full((20, 18, 10), 3e38, dtype=np.float32)
    with np.errstate(over="ignore"):
        assert not np.isfinite(huge.sum())
    with caplog.at_level("WARNING", logger="medfuse.transforms"), warnings.catch_warnings():
        warnings.simplefilter("error")  # and no numpy overflow warning either
        x, _ = preprocess(Volume(huge, geo.affine_ras, modality="MR"), cfg)
    assert "non-finite" not in caplog.text and float(x.min()) == pytest.approx(3e38)
