"""Faithfulness mechanics on models whose output is a known function of a region."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _explain_common import octant_case, octant_model

import medfuse
from medfuse.errors import ConfigError
from medfuse.explain.faithfulness import (
    box_mask,
    deletion_insertion,
    label_score_fn,
    pointing_game,
    pointing_game_spheres,
    sphere_mask,
)

REGION = (slice(4, 12), slice(8, 16), slice(2, 10))


def region_score(x: torch.Tensor) -> torch.Tensor:
    """sigmoid(4 · (mean intensity of a fixed 8³ region − 0.5)): depends on that region only."""
    return torch.sigmoid(4.0 * (x[:, 0][:, REGION[0], REGION[1], REGION[2]].mean((1, 2, 3)) - 0.5))


def test_deletion_and_insertion_beat_random_for_the_true_region():
    image = torch.ones(1, 1, 16, 16, 16)
    sal = np.zeros((16, 16, 16), dtype=np.float32)
    sal[REGION] = 1.0
    res = deletion_insertion(region_score, image, sal, steps=16, baseline="zero", random_repeats=2)
    assert res.deletion[0] == pytest.approx(float(region_score(image)))
    floor = float(torch.sigmoid(torch.tensor(-2.0)))  # region fully at the baseline (0)
    assert res.deletion[-1] == pytest.approx(floor) and res.insertion[0] == pytest.approx(floor)
    assert res.deletion_auc < res.deletion_auc_random - 0.05
    assert res.insertion_auc > res.insertion_auc_random + 0.05
    # the map's region is 1/8 of the volume: after 1/8 deleted the score is at its floor
    assert res.deletion[2] == pytest.approx(floor, abs=1e-6)
    s = res.summary()
    assert set(s) >= {"deletion_auc", "deletion_auc_random", "insertion_auc", "forward_passes"}


def test_an_inverted_map_is_worse_than_random():
    image = torch.ones(1, 1, 16, 16, 16)
    sal = np.ones((16, 16, 16), dtype=np.float32)
    sal[REGION] = 0.0
    res = deletion_insertion(region_score, image, sal, steps=8, baseline="zero")
    assert res.deletion_auc > res.deletion_auc_random


def test_gradcam_on_the_octant_model_is_faithful():
    model, case = octant_model(), octant_case()
    expl = medfuse.explain(model, case, methods=["gradcam"])
    sal = expl.saliency["finding"]["gradcam"].model
    x = model.prepare(volumes=[case.volume])["image"]
    res = deletion_insertion(label_score_fn(model, "finding"), x, sal, steps=8, baseline="zero")
    assert res.deletion_auc < res.deletion_auc_random
    assert res.insertion_auc > res.insertion_auc_random


def test_pointing_game_masks_and_tolerance():
    aff = np.diag([2.0, 2.0, 2.0, 1.0])
    mask = sphere_mask((16, 16, 16), aff, [((10.0, 10.0, 10.0), 4.0)])
    assert mask[5, 5, 5] and not mask[0, 0, 0]
    assert mask.sum() == 33  # voxel centres within 4 mm at 2 mm spacing: 1 + 6 + 12 + 8 + 6
    sal = np.zeros((16, 16, 16))
    sal[5, 6, 5] = 1.0
    r = pointing_game(sal, mask, affine=aff)
    assert r["hit"] and r["distance_mm"] == 0.0 and 0 < r["chance"] < 0.01
    sal[:] = 0
    sal[5, 5, 9] = 1.0  # 8 mm from the centre, 2 mm beyond the mask (last voxel at z index 7)
    assert not pointing_game(sal, mask, affine=aff)["hit"]
    assert pointing_game(sal, mask, affine=aff, tolerance_mm=4.0)["hit"]
    assert pointing_game_spheres((10.0, 10.0, 18.0), [((10.0, 10.0, 10.0), 4.0)], tolerance_mm=4.5)
    with pytest.raises(ConfigError):
        pointing_game(sal, np.zeros_like(mask))


def test_box_mask():
    aff = np.eye(4)
    m = box_mask((10, 10, 10), aff, [((2, 3, 4), (4, 5, 6))])
    assert m.sum() == 27 and m[3, 4, 5]
