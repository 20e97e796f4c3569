"""The brain MR demo as a configuration of the one trainer (issue 22 item 5): the synthetic
cohort kind, labels and heads following the cohort, the intensity-detector init, left-right
flips on the RAS X axis, and the chest default left as it was."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from medfuse.errors import ConfigError
from medfuse.train.trainer import (
    build_model_for,
    cohort_kind,
    load_train_config,
    make_synthetic_cohort,
    train,
)

REPO = Path(__file__).resolve().parents[2]
MR_CONFIG = REPO / "configs" / "train" / "brain_mr_demo.yaml"
CHEST_CONFIG = REPO / "configs" / "train" / "chest_ct_demo.yaml"


def _mr_config(tmp_path: Path, **data: object):
    cfg = load_train_config(MR_CONFIG, {"out_dir": str(tmp_path / "run"), "resume": False})
    cfg.data.cohort = {"kind": "brain_mr", "n": 20, "seed": 3, "grammar": 3, **data}
    return cfg


def test_the_mr_config_draws_the_mr_cohort_and_builds_the_mr_model(tmp_path):
    from medfuse.train.mr_cohort import MR_LABELS, MRCohort

    cfg = _mr_config(tmp_path)
    assert cohort_kind(cfg) == "brain_mr"
    cohort = make_synthetic_cohort(cfg, None)
    assert isinstance(cohort, MRCohort) and cohort.config.grammar == 3 and len(cohort) == 20
    torch.manual_seed(0)
    model = build_model_for(cfg, cohort, np.arange(16))
    assert model.name == "brain_mr_demo"
    assert model.labels == list(MR_LABELS)  # the cohort's labels by default
    assert "risk" not in model.heads  # the MR cohort has no survival target
    assert model.preprocessing.modality == "MR"
    # model.init.intensity_detectors: the stem's first 8 channels are one-voxel taps
    net = model.image_encoder.net
    w = net.conv1.weight.detach()
    bw, bb = net.bn1.weight.detach(), net.bn1.bias.detach()
    for k in range(8):
        assert (
            float(w[k].abs().sum()) == 1.0
            and float(w[(k, k, *(s // 2 for s in w.shape[2:]))]) == 1.0
        )
        t = (2.4, 2.7)[k % 2]
        assert float(bw[k]) == pytest.approx(4.0)
        assert float(bb[k]) == pytest.approx(-4.0 * t)
    assert all(float(b.bn2.weight.detach().abs().sum()) == 0.0 for b in net.layer1)


def test_the_chest_config_keeps_its_cohort_labels_and_risk_head():
    from medfuse.train.cohort import FUSION_LABELS, FusionCohort

    cfg = load_train_config(CHEST_CONFIG)
    assert cohort_kind(cfg) == "chest_fusion" and "kind" not in cfg.data.cohort
    cfg.data.cohort = {**cfg.data.cohort, "n": 12}
    cohort = make_synthetic_cohort(cfg, None)
    assert isinstance(cohort, FusionCohort)
    model = build_model_for(cfg, cohort, np.arange(10))
    assert model.labels == list(FUSION_LABELS) and "risk" in model.heads
    # no init section: the stem is not a detector bank
    assert cfg.model.init.intensity_detectors is None


def test_bad_cohort_kind_and_init_are_config_errors(tmp_path):
    cfg = _mr_config(tmp_path)
    cfg.data.cohort = {"kind": "brain_ct", "n": 4}
    with pytest.raises(ConfigError, match="brain_ct"):
        make_synthetic_cohort(cfg, None)
    with pytest.raises(ConfigError, match="model.init"):
        load_train_config(MR_CONFIG, {"model": {"init": {"intensity_detector": {}}}})
    cfg = _mr_config(tmp_path)
    cfg.model.overrides = {**cfg.model.overrides, "image_encoder": {"name": "resnet10_3d"}}
    cohort = make_synthetic_cohort(cfg, None)
    with pytest.raises(ConfigError, match="space-to-depth"):
        build_model_for(cfg, cohort, np.arange(16))


def test_flip_axis_0_is_left_right_on_the_mr_model_grid():
    """``augment.flip.axes: [0]`` mirrors X of [B, C, X, Y, Z]; on the RAS model grid X runs
    along the patient's left-right axis for every acquisition orientation."""
    from medfuse.train.mr_cohort import make_mr_cohort

    cfg = load_train_config(MR_CONFIG)
    cohort = make_mr_cohort(n=6, seed=11, orientation_probs=(0.34, 0.33, 0.33))
    pre = {**cfg.model.preprocessing}
    aff = cohort.model_affines(pre)
    for a in aff:
        col = a[:3, 0] / np.linalg.norm(a[:3, 0])
        assert abs(col[0]) > 0.95, a  # the model grid's first axis is the RAS x axis (left-right)
    assert cfg.augment == {"flip": {"axes": [0], "prob": 0.5}}


def test_a_tiny_mr_training_writes_an_mr_card(tmp_path):
    cfg = _mr_config(tmp_path, n=16)
    cfg.optim.epochs = 1
    cfg.optim.batch_size = 8
    cfg.eval_n_boot = 10
    summary = train(cfg)
    import medfuse

    model = medfuse.load_model(summary["model_dir"])
    td = model.card.training_data
    assert td["cohort_kind"] == "brain_mr" and td["cohort"]["grammar"] == 3
    assert td["label_sources"] == {
        "focal_lesion": "image",
        "hydrocephalus": "image",
        "headache": "report",
    }
    assert td["init"] == {"intensity_detectors": {"thresholds": [2.4, 2.7], "gain": 4.0}}
    assert td["augment"] == {"flip": {"axes": [0], "prob": 0.5}}
    assert "risk" not in model.heads and "validation" in model.card.metrics
    assert "no clinical validity" in model.card.limitations
