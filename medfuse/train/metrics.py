"""Evaluation metrics with bootstrap confidence intervals, calibration fitting and plots.

Classification metrics come from scikit-learn (AUROC, AUPRC, F1), the concordance index from
lifelines (Harrell's C with censoring); ECE (equal-width bins) and Brier are computed here.
Every metric gets a percentile bootstrap 95 % CI over cases (the same resamples for all labels,
so differences between two models evaluated on the same cases can be bootstrapped pairwise
with :func:`bootstrap_difference`).

    res = evaluate_predictions(probs, labels, names, thresholds=th, time=t, event=e, risk=r)
    res["labels"]["pneumonia"]["auroc"]  # {"value": 0.93, "ci": [0.91, 0.95]}
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "auprc",
    "auroc",
    "bootstrap_ci",
    "bootstrap_difference",
    "brier",
    "c_index",
    "ece",
    "evaluate_predictions",
    "fit_temperature",
    "fit_thresholds",
    "plot_calibration",
    "plot_roc",
    "threshold_metrics",
]

log = logging.getLogger(__name__)


def _valid(y: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y, dtype=float).reshape(-1)
    p = np.asarray(p, dtype=float).reshape(-1)
    keep = np.isfinite(y) & (y >= 0) & np.isfinite(p)
    return y[keep], p[keep]


def auroc(y: np.ndarray, p: np.ndarray) -> float:
    """Area under the ROC curve (NaN when only one class is present)."""
    from sklearn.metrics import roc_auc_score

    y, p = _valid(y, p)
    if len(np.unique(y)) < 2:
        return float("nan")
    return float(roc_auc_score(y, p))


def auprc(y: np.ndarray, p: np.ndarray) -> float:
    """Average precision (area under the precision-recall curve)."""
    from sklearn.metrics import average_precision_score

    y, p = _valid(y, p)
    if len(np.unique(y)) < 2:
        return float("nan")
    return float(average_precision_score(y, p))


def brier(y: np.ndarray, p: np.ndarray) -> float:
    """Mean squared error of the probabilities."""
    y, p = _valid(y, p)
    return float(np.mean((p - y) ** 2)) if len(y) else float("nan")


def ece(y: np.ndarray, p: np.ndarray, bins: int = 10) -> float:
    """Expected calibration error with ``bins`` equal-width probability bins."""
    y, p = _valid(y, p)
    if not len(y):
        return float("nan")
    idx = np.clip((p * bins).astype(int), 0, bins - 1)
    total = 0.0
    for b in range(bins):
        m = idx == b
        if m.any():
            total += m.sum() * abs(p[m].mean() - y[m].mean())
    return float(total / len(y))


def threshold_metrics(y: np.ndarray, p: np.ndarray, threshold: float) -> dict[str, float]:
    """Sensitivity, specificity, PPV and F1 when ``p >= threshold`` is called positive."""
    y, p = _valid(y, p)
    pred = p >= threshold
    pos = y == 1
    tp = float(np.sum(pred & pos))
    fp = float(np.sum(pred & ~pos))
    fn = float(np.sum(~pred & pos))
    tn = float(np.sum(~pred & ~pos))
    sens = tp / (tp + fn) if tp + fn else float("nan")
    spec = tn / (tn + fp) if tn + fp else float("nan")
    ppv = tp / (tp + fp) if tp + fp else float("nan")
    f1 = 2 * tp / (2 * tp + fp + fn) if (2 * tp + fp + fn) else float("nan")
    return {"sensitivity": sens, "specificity": spec, "ppv": ppv, "f1": f1}


def c_index(time: np.ndarray, event: np.ndarray, risk: np.ndarray) -> float:
    """Harrell's concordance index (higher ``risk`` = earlier event), via lifelines."""
    from lifelines.utils import concordance_index

    time = np.asarray(time, dtype=float).reshape(-1)
    event = np.asarray(event, dtype=float).reshape(-1)
    risk = np.asarray(risk, dtype=float).reshape(-1)
    keep = np.isfinite(time) & np.isfinite(risk) & np.isfinite(event)
    if keep.sum() < 2 or event[keep].sum() < 1:
        return float("nan")
    # lifelines scores predicted *survival times*: negate the risk.
    try:
        return float(concordance_index(time[keep], -risk[keep], event[keep]))
    except ZeroDivisionError:  # lifelines: no comparable pair (e.g. the only event is last)
        return float("nan")


def _resamples(n: int, n_boot: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, n, size=(n_boot, n))


def bootstrap_ci(
    fn: Callable[..., float],
    *arrays: np.ndarray,
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
) -> dict[str, Any]:
    """``fn(*arrays)`` and its percentile bootstrap CI (cases resampled with replacement)."""
    arrays = tuple(np.asarray(a) for a in arrays)
    value = fn(*arrays)
    n = len(arrays[0])
    stats = []
    for idx in _resamples(n, n_boot, seed):
        v = fn(*(a[idx] for a in arrays))
        if math.isfinite(v):
            stats.append(v)
    if not stats:
        return {"value": _f(value), "ci": [None, None]}
    lo, hi = np.percentile(stats, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    return {"value": _f(value), "ci": [_f(lo), _f(hi)]}


def bootstrap_difference(
    fn: Callable[..., float],
    a: Sequence[np.ndarray],
    b: Sequence[np.ndarray],
    *,
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
) -> dict[str, Any]:
    """Paired bootstrap of ``fn(*a) - fn(*b)`` (both argument lists describe the same cases)."""
    a = [np.asarray(x) for x in a]
    b = [np.asarray(x) for x in b]
    value = fn(*a) - fn(*b)
    stats = []
    for idx in _resamples(len(a[0]), n_boot, seed):
        v = fn(*(x[idx] for x in a)) - fn(*(x[idx] for x in b))
        if math.isfinite(v):
            stats.append(v)
    lo, hi = np.percentile(stats, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    return {"value": _f(value), "ci": [_f(lo), _f(hi)], "excludes_zero": bool(lo > 0 or hi < 0)}


def _f(v: Any) -> float | None:
    v = float(v)
    return round(v, 4) if math.isfinite(v) else None


def evaluate_predictions(
    probs: np.ndarray,
    labels: np.ndarray,
    names: Sequence[str],
    *,
    thresholds: Sequence[float] | None = None,
    time: np.ndarray | None = None,
    event: np.ndarray | None = None,
    risk: np.ndarray | None = None,
    n_boot: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """Per-label AUROC, AUPRC, ECE, Brier and (at ``thresholds``, default 0.5) sensitivity,
    specificity and F1, each with a bootstrap 95 % CI; their macro means; and the c-index of
    ``risk`` when ``time`` / ``event`` / ``risk`` are given."""
    probs = np.asarray(probs, dtype=float)
    labels = np.asarray(labels, dtype=float)
    th = list(thresholds) if thresholds is not None else [0.5] * len(names)
    out: dict[str, Any] = {"n": len(probs), "labels": {}}
    for j, name in enumerate(names):
        y, p = labels[:, j], probs[:, j]
        t = float(th[j])
        m: dict[str, Any] = {
            "prevalence": _f(np.nanmean(y)),
            "threshold": round(t, 4),
            "auroc": bootstrap_ci(auroc, y, p, n_boot=n_boot, seed=seed),
            "auprc": bootstrap_ci(auprc, y, p, n_boot=n_boot, seed=seed),
            "ece": bootstrap_ci(ece, y, p, n_boot=n_boot, seed=seed),
            "brier": bootstrap_ci(brier, y, p, n_boot=n_boot, seed=seed),
        }
        for key in ("sensitivity", "specificity", "f1"):
            m[key] = bootstrap_ci(
                lambda yy, pp, k=key, t=t: threshold_metrics(yy, pp, t)[k],
                y,
                p,
                n_boot=max(200, n_boot // 5),
                seed=seed,
            )
        out["labels"][name] = m
    for key in ("auroc", "auprc", "ece", "brier", "f1"):
        vals = [v[key]["value"] for v in out["labels"].values() if v[key]["value"] is not None]
        out[f"macro_{key}"] = _f(np.mean(vals)) if vals else None
    if time is not None and event is not None and risk is not None:
        out["c_index"] = bootstrap_ci(c_index, time, event, risk, n_boot=n_boot, seed=seed)
    return out


# -- calibration -----------------------------------------------------------------------------------
def fit_temperature(logits: np.ndarray, y: np.ndarray, *, bounds=(0.05, 20.0)) -> float:
    """The temperature T minimising the NLL of ``sigmoid(logits / T)`` on labelled data."""
    from scipy.optimize import minimize_scalar

    z = np.asarray(logits, dtype=float).reshape(-1)
    yy = np.asarray(y, dtype=float).reshape(-1)
    keep = np.isfinite(z) & np.isfinite(yy) & (yy >= 0)
    z, yy = z[keep], yy[keep]
    if len(np.unique(yy)) < 2:
        return 1.0

    def nll(log_t: float) -> float:
        s = z / math.exp(log_t)
        return float(np.mean(np.logaddexp(0.0, s) - yy * s))

    res = minimize_scalar(nll, bounds=(math.log(bounds[0]), math.log(bounds[1])), method="bounded")
    return float(math.exp(res.x))


#: How :func:`fit_thresholds` picks a label's decision threshold.
THRESHOLD_METHODS = ("youden", "sensitivity", "f1")


def fit_thresholds(
    probs: np.ndarray,
    labels: np.ndarray,
    *,
    method: str = "youden",
    target_sensitivity: float = 0.9,
) -> list[float]:
    """Per-label decision thresholds on (calibrated) probabilities: ``"youden"`` maximises
    sensitivity + specificity - 1; ``"sensitivity"`` takes the highest threshold whose
    sensitivity is at least ``target_sensitivity``; ``"f1"`` maximises F1 (the choice for rare
    findings, where Youden's point buys sensitivity with many false positives). Thresholds are
    clipped to [0.01, 0.99]."""
    from sklearn.metrics import precision_recall_curve, roc_curve

    from ..errors import ConfigError

    if method not in THRESHOLD_METHODS:
        raise ConfigError(f"threshold method must be one of {THRESHOLD_METHODS}, got {method!r}")
    out = []
    for j in range(probs.shape[1]):
        y, p = _valid(labels[:, j], probs[:, j])
        if len(np.unique(y)) < 2:
            out.append(0.5)
            continue
        if method == "f1":
            prec, rec, thr = precision_recall_curve(y, p)
            f1 = 2 * prec[:-1] * rec[:-1] / np.maximum(prec[:-1] + rec[:-1], 1e-12)
            out.append(float(np.clip(thr[int(np.argmax(f1))], 0.01, 0.99)))
            continue
        fpr, tpr, thr = roc_curve(y, p)
        thr = np.minimum(thr, 1.0)
        if method == "youden":
            k = int(np.argmax(tpr - fpr))
        else:
            ok = np.flatnonzero(tpr >= target_sensitivity)
            k = int(ok[0]) if ok.size else len(thr) - 1
        out.append(float(np.clip(thr[k], 0.01, 0.99)))
    return out


# -- plots -----------------------------------------------------------------------------------------
def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def plot_roc(
    probs: np.ndarray, labels: np.ndarray, names: Sequence[str], path: str | os.PathLike
) -> Path:
    """One ROC curve per label in one PNG."""
    from sklearn.metrics import roc_curve

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 5))
    for j, name in enumerate(names):
        y, p = _valid(labels[:, j], probs[:, j])
        if len(np.unique(y)) < 2:
            continue
        fpr, tpr, _ = roc_curve(y, p)
        ax.plot(fpr, tpr, label=f"{name} ({auroc(y, p):.3f})")
    ax.plot([0, 1], [0, 1], "k:", lw=0.8)
    ax.set(xlabel="1 - specificity", ylabel="sensitivity", title="ROC (AUROC)")
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def plot_calibration(
    probs: np.ndarray,
    labels: np.ndarray,
    names: Sequence[str],
    path: str | os.PathLike,
    bins: int = 10,
) -> Path:
    """Reliability diagram (observed frequency vs mean predicted probability per bin)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 5))
    for j, name in enumerate(names):
        y, p = _valid(labels[:, j], probs[:, j])
        idx = np.clip((p * bins).astype(int), 0, bins - 1)
        xs, ys = [], []
        for b in range(bins):
            m = idx == b
            if m.sum() >= 5:
                xs.append(p[m].mean())
                ys.append(y[m].mean())
        ax.plot(xs, ys, marker="o", ms=3, label=f"{name} (ECE {ece(y, p, bins):.3f})")
    ax.plot([0, 1], [0, 1], "k:", lw=0.8)
    ax.set(xlabel="predicted probability", ylabel="observed frequency", title="Calibration")
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)
