"""Metrics, bootstrap CIs, calibration fitting and plots."""

from __future__ import annotations

import numpy as np
import pytest

from medfuse.train import metrics as M


def test_basic_metrics():
    y = np.array([0, 0, 1, 1])
    assert M.auroc(y, [0.1, 0.2, 0.8, 0.9]) == 1.0
    assert M.auroc(y, [0.9, 0.8, 0.2, 0.1]) == 0.0
    assert np.isnan(M.auroc([1, 1], [0.2, 0.3]))
    assert M.brier(y, [0, 0, 1, 1]) == 0.0
    assert M.ece(y, [0.5, 0.5, 0.5, 0.5]) == pytest.approx(0.0)
    assert M.ece([0, 0, 0, 0], [0.9, 0.9, 0.9, 0.9]) == pytest.approx(0.9)
    t = M.threshold_metrics(y, [0.1, 0.6, 0.7, 0.4], 0.5)
    assert t["sensitivity"] == 0.5 and t["specificity"] == 0.5 and t["f1"] == 0.5
    # uncertain (-1) / NaN labels are ignored
    assert M.auroc([0, 1, -1, np.nan], [0.1, 0.9, 0.5, 0.5]) == 1.0


def test_c_index_against_pairs():
    rng = np.random.default_rng(0)
    n = 60
    time = rng.exponential(1.0, n)
    event = rng.random(n) < 0.7
    risk = -time + rng.normal(0, 0.5, n)
    num = den = 0.0
    for i in range(n):
        if not event[i]:
            continue
        for j in range(n):
            if time[j] > time[i]:
                den += 1
                num += 1.0 if risk[i] > risk[j] else (0.5 if risk[i] == risk[j] else 0.0)
    assert M.c_index(time, event, risk) == pytest.approx(num / den)
    assert M.c_index(time, event, -time) == 1.0


def test_bootstrap_and_difference():
    rng = np.random.default_rng(1)
    y = rng.random(300) < 0.4
    good = y + rng.normal(0, 0.5, 300)
    bad = y + rng.normal(0, 2.0, 300)
    ci = M.bootstrap_ci(M.auroc, y, good, n_boot=200)
    assert ci["ci"][0] <= ci["value"] <= ci["ci"][1]
    d = M.bootstrap_difference(M.auroc, [y, good], [y, bad], n_boot=200)
    assert d["value"] > 0 and d["excludes_zero"]


def test_temperature_and_thresholds():
    rng = np.random.default_rng(2)
    z = rng.normal(0, 2, 4000)
    y = (rng.random(4000) < 1 / (1 + np.exp(-z))).astype(float)
    # logits three times too confident -> temperature about 3
    assert M.fit_temperature(3 * z, y) == pytest.approx(3.0, rel=0.15)
    p = 1 / (1 + np.exp(-z))
    th = M.fit_thresholds(p[:, None], y[:, None])
    assert 0.2 < th[0] < 0.8
    ths = M.fit_thresholds(p[:, None], y[:, None], method="sensitivity", target_sensitivity=0.95)
    assert M.threshold_metrics(y, p, ths[0])["sensitivity"] >= 0.95


def test_evaluate_predictions_and_plots(tmp_path):
    rng = np.random.default_rng(3)
    y = (rng.random((200, 2)) < 0.3).astype(float)
    p = np.clip(y * 0.6 + rng.random((200, 2)) * 0.4, 0, 1)
    t = rng.exponential(1, 200)
    res = M.evaluate_predictions(p, y, ["a", "b"], time=t, event=np.ones(200), risk=-t, n_boot=50)
    assert res["labels"]["a"]["auroc"]["value"] > 0.9
    assert set(res["labels"]["a"]) >= {"auprc", "ece", "brier", "sensitivity", "specificity", "f1"}
    assert res["c_index"]["value"] == 1.0
    assert M.plot_roc(p, y, ["a", "b"], tmp_path / "roc.png").stat().st_size > 1000
    assert M.plot_calibration(p, y, ["a", "b"], tmp_path / "cal.png").stat().st_size > 1000


def test_c_index_without_a_comparable_pair_is_nan():
    import math

    import numpy as np

    from medfuse.train.metrics import c_index

    # the only event is the last time: no pair can be ordered
    assert math.isnan(
        c_index(np.array([1.0, 2.0, 3.0]), np.array([0, 0, 1.0]), np.array([0.1, 0.2, 0.3]))
    )
