"""Training augmentations (medfuse.data.augment): off by default, seeded, shape-preserving, each
transform does what its name says on a marked volume, and bad YAML is a ConfigError."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medfuse.data.augment import Augmentation, AugmentConfig, build_augmentation
from medfuse.errors import ConfigError


def _marked_batch(b: int = 6, size: int = 12) -> torch.Tensor:
    x = torch.zeros(b, 1, size, size, size)
    x[:, 0, 1, 2, 3] = 1.0  # one bright voxel off every symmetry axis
    return x


def _peaks(x: torch.Tensor) -> list[tuple[int, int, int]]:
    return [
        tuple(int(v) for v in np.unravel_index(int(x[i, 0].argmax()), x.shape[2:]))
        for i in range(x.shape[0])
    ]


def test_off_by_default_and_when_disabled():
    assert build_augmentation(None) is None
    assert build_augmentation({}) is None
    assert build_augmentation({"enabled": False, "flip": {"axes": [1]}}) is None
    assert not AugmentConfig.from_dict({}).active


def test_flip_moves_the_marked_voxel_to_its_mirror_only():
    aug = build_augmentation({"flip": {"axes": [0], "prob": 1.0}}, seed=0)
    assert isinstance(aug, Augmentation)
    x = _marked_batch()
    y = aug(x)
    assert y.shape == x.shape and y.dtype == torch.float32
    assert set(_peaks(y)) == {(10, 2, 3)}
    assert torch.equal(x, _marked_batch())  # the input is not modified in place


def test_rotate90_keeps_the_voxel_set_and_varies_per_sample():
    aug = build_augmentation({"rotate90": {"planes": [[0, 1]], "prob": 1.0}}, seed=3)
    x = _marked_batch(16)
    y = aug(x)
    # quarter turns in the X-Y plane: z unchanged, the voxel count and values unchanged
    assert all(p[2] == 3 for p in _peaks(y))
    assert torch.equal(y.sum(dim=(1, 2, 3, 4)), x.sum(dim=(1, 2, 3, 4)))
    assert len(set(_peaks(y))) > 1  # each sample draws its own k
    assert set(_peaks(y)) <= {(1, 2, 3), (9, 1, 3), (10, 9, 3), (2, 10, 3)}


def test_seeded_runs_repeat_and_different_seeds_differ():
    cfg = {
        "flip": {},
        "rotate90": {},
        "affine": {"prob": 0.5, "rotate_deg": 10, "scale": 0.1, "translate": 1},
        "intensity": {"prob": 0.5, "scale": 0.1, "shift": 0.05, "noise_std": 0.01},
    }
    torch.manual_seed(0)
    x = torch.rand(4, 1, 12, 12, 12)
    a1, a2, b = (build_augmentation(cfg, seed=s) for s in (7, 7, 8))
    first = [a1(x), a1(x)]
    second = [a2(x), a2(x)]
    assert all(torch.equal(p, q) for p, q in zip(first, second, strict=True))
    assert not torch.equal(first[0], first[1])  # the state moves on between batches
    assert not torch.equal(first[0], b(x))


def test_affine_and_elastic_resample_smoothly_within_the_range():
    x = torch.zeros(2, 1, 16, 16, 16)
    x[:, :, 4:12, 4:12, 4:12] = 1.0
    aug = build_augmentation(
        {"affine": {"prob": 1.0, "rotate_deg": 15, "scale": 0.1, "translate": 1},
         "elastic": {"prob": 1.0, "sigma": [4, 5], "magnitude": [2, 4]}},
        seed=0,
    )  # fmt: skip
    y = aug(x)
    assert y.shape == x.shape
    assert float(y.min()) >= -1e-5 and float(y.max()) <= 1 + 1e-5
    assert not torch.equal(y, x)
    # the cube is moved a little, not destroyed: most of its mass stays
    assert 0.6 < float(y.sum() / x.sum()) < 1.4


def test_intensity_jitter_changes_values_not_geometry():
    x = _marked_batch(4)
    aug = build_augmentation({"intensity": {"prob": 1.0, "scale": 0.5, "shift": 0.0}}, seed=1)
    y = aug(x)
    assert _peaks(y) == _peaks(x)
    assert not torch.allclose(y, x)
    assert torch.equal(y == 0, x == 0)  # scaling keeps zeros at zero


@pytest.mark.parametrize(
    ("cfg", "match"),
    [
        ({"flip": {"axis": 1}}, "flip.axis"),
        ({"flip": {"axes": [3]}}, "flip.axes"),
        ({"rotate90": {"planes": [[1, 1]]}}, "rotate90.planes"),
        ({"affine": {"prob": 2}}, "affine.prob"),
        ({"elastic": {"sigma": [5, 2]}}, "elastic.sigma"),
        ({"mixup": {}}, "mixup"),
        ([1, 2], "mapping"),
    ],
)
def test_bad_configs_are_config_errors(cfg, match):
    with pytest.raises(ConfigError, match=match):
        build_augmentation(cfg)


def test_rotation_of_a_non_square_plane_is_refused_and_bad_input_named():
    aug = build_augmentation({"rotate90": {"planes": [[0, 2]]}})
    with pytest.raises(ConfigError, match="equal sizes"):
        aug(torch.zeros(1, 1, 8, 8, 6))
    with pytest.raises(ConfigError, match=r"\[B, C, X, Y, Z\]"):
        aug(torch.zeros(1, 8, 8, 8))


def test_describe_is_json_able():
    import json

    aug = build_augmentation({"flip": {"axes": [1, 2]}}, seed=5)
    d = json.loads(json.dumps(aug.describe()))
    assert d == {"seed": 5, "enabled": True, "flip": {"axes": [1, 2], "prob": 0.5}}
