"""Evaluate a model on a (freshly generated) synthetic test cohort; ablation and fusion targets.

    res = evaluate_model(load_model("chest_ct_demo"), test_cohort(500), out_dir="out/eval")

writes ``metrics.json``, ``roc.png``, ``calibration.png`` and ``metrics.html`` into ``out_dir``.
:func:`fusion_targets` compares a fusion model with single-modality models on the same cases
(paired bootstrap of the AUROC difference on the labels that need both modalities, ECE after
calibration, c-index, and report-missing robustness on the image-only labels).
"""

from __future__ import annotations

import html
import json
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError

__all__ = [
    "ABLATION_VARIANTS",
    "TEST_SEED",
    "Evaluation",
    "ablation_markdown",
    "evaluate_dataset",
    "evaluate_model",
    "fusion_targets",
    "run_ablation",
    "test_cohort",
    "write_ablation_doc",
]

log = logging.getLogger(__name__)

#: Seed of the held-back test cohort (never used for training configs).
TEST_SEED = 20_240_917

#: Ablation variants: name -> create_model overrides applied on top of the training config.
ABLATION_VARIANTS: dict[str, dict[str, Any]] = {
    "image_only": {"text_encoder": None, "fusion": {"name": "concat", "kwargs": {}}},
    "text_only": {"image_encoder": None, "fusion": {"name": "concat", "kwargs": {}}},
    # per-modality LayerNorm: with one over the concatenation the image features set the scale
    # and the text was not learnt (smoking history 0.68 AUROC on validation)
    "concat": {"fusion": {"name": "concat", "kwargs": {"modality_norm": True}}},
    "gated": {"fusion": {"name": "gated", "kwargs": {}}},
    "cross_attention": {},
    "late": {"fusion": {"name": "late", "kwargs": {}}},
}


def test_cohort(n: int = 500, seed: int = TEST_SEED, **params: Any):
    """A held-back cohort with clean labels and both modalities present (``params`` override
    :class:`~medfuse.train.cohort.FusionCohortConfig` fields)."""
    from .cohort import make_fusion_cohort

    kw = {"label_noise": 0.0, "report_missing": 0.0, "image_missing": 0.0, **params}
    return make_fusion_cohort(n=n, seed=seed, **kw)


#: the generator parameters a held-back test cohort does not take from the training cohort
_TEST_OWN = ("n", "seed", "label_noise", "report_missing", "image_missing")


def test_cohort_for(model: Any, n: int = 500, seed: int | None = None):
    """The held-back synthetic test cohort drawn like ``model``'s training cohort: the same kind
    (chest fusion or brain MR) and generator parameters (volume shape, report grammar, rates),
    with clean labels and both modalities present; the kind's held-back seed unless ``seed`` is
    given."""
    drawn = model.card.training_data
    params = {k: v for k, v in (drawn.get("cohort") or {}).items() if k not in _TEST_OWN}
    if drawn.get("cohort_kind") == "brain_mr":
        from .mr_cohort import MR_TEST_SEED, mr_test_cohort

        return mr_test_cohort(n, MR_TEST_SEED if seed is None else seed, **params)
    return test_cohort(n, TEST_SEED if seed is None else seed, **params)


def _html(metrics: dict[str, Any], title: str, *, plots: bool = True) -> str:
    def cell(m: dict[str, Any] | None) -> str:
        if m is None:
            return "not estimable"
        v, ci = m["value"], m["ci"]
        if v is None:
            return "–"
        return f"{v:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]" if ci[0] is not None else f"{v:.3f}"

    cols = ("auroc", "auprc", "f1", "sensitivity", "specificity", "ece", "brier")
    rows = "".join(
        f"<tr><td>{html.escape(name)}</td><td>{m.get('n', '')}</td><td>{m.get('prevalence')}</td>"
        + "".join(f"<td>{cell(m.get(c))}</td>" for c in cols)
        + (f"<td>{html.escape(m['reason'])}</td>" if m.get("estimable") is False else "")
        + "</tr>"
        for name, m in metrics["labels"].items()
    )
    cidx = metrics.get("c_index")
    extra = f"<p>Risk c-index: {cell(cidx)}</p>" if cidx else ""
    return (
        f"<!doctype html><meta charset='utf-8'><title>{html.escape(title)}</title>"
        "<style>body{font-family:sans-serif;margin:1em 2em}table{border-collapse:collapse}"
        "td,th{padding:3px 8px;border:1px solid #ccc;font-size:90%}</style>"
        f"<h1>{html.escape(title)}</h1><p>n = {metrics['n']}"
        + (f" ({html.escape(metrics['split'])} split)" if metrics.get("split") else "")
        + "; values with 95 % bootstrap CIs; sensitivity, specificity and F1 at the model "
        "card's thresholds.</p>"
        "<table><tr><th>label</th><th>n</th><th>prevalence</th>"
        + "".join(f"<th>{c}</th>" for c in cols)
        + f"</tr>{rows}</table>{extra}{_ablation_html(metrics.get('ablation'))}"
        + ("<img src='roc.png'><img src='calibration.png'>" if plots else "")
        + (
            "<p>Synthetic data; no clinical validity.</p>"
            if "cohort" in metrics
            else "<p>Research evaluation; medfuse makes no claim of clinical validity.</p>"
        )
    )


def _ablation_html(ablation: dict[str, Any] | None) -> str:
    if not ablation:
        return ""
    cells = "".join(
        f"<tr><td>{html.escape(k)}</td><td>{v['macro_auroc']}</td></tr>"
        for k, v in ablation.items()
    )
    return (
        "<h2>Modality ablation (macro AUROC)</h2><p>Each case with only its image, only its "
        f"report, and both as recorded.</p><table>{cells}</table>"
    )


def evaluate_model(
    model: Any,
    cohort: Any,
    out_dir: str | os.PathLike | None = None,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    drop_report: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Metrics of ``model`` on ``cohort`` (clean labels) at the model's thresholds; with
    ``out_dir`` also the JSON, PNG and HTML files."""
    from .metrics import evaluate_predictions, plot_calibration, plot_roc
    from .trainer import predict_cohort

    pred = predict_cohort(model, cohort, drop_report=drop_report, progress=progress)
    names = model.labels
    y = cohort.label_matrix(clean=True, names=names)
    th = model.diagnosis_head.threshold.tolist()
    res = evaluate_predictions(
        pred["probs"],
        y,
        names,
        thresholds=th,
        time=cohort.times,
        event=cohort.events,
        risk=pred["risk"] if np.all(np.isfinite(pred["risk"])) else None,
        n_boot=n_boot,
        seed=seed,
    )
    res["model"] = getattr(model, "name", "model")
    res["cohort"] = cohort.config.to_dict()
    if out_dir is not None:
        from .._atomic import atomic_write_text

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / "metrics.json", json.dumps(res, indent=2) + "\n")
        plot_roc(pred["probs"], y, names, out / "roc.png")
        plot_calibration(pred["probs"], y, names, out / "calibration.png")
        atomic_write_text(out / "metrics.html", _html(res, f"medfuse evaluation: {res['model']}"))
    res["_pred"] = pred
    return res


#: A label with fewer known positives (or negatives) than this is reported as not estimable.
MIN_POSITIVES = 5


@dataclass
class Evaluation:
    """What :func:`evaluate_dataset` measured (``metrics`` is ``metrics.json``)."""

    metrics: dict[str, Any]
    #: one row per case: case_id, split, modalities present, per label target / p / positive
    predictions: list[dict[str, Any]]
    out_dir: Path | None = None

    def __getitem__(self, key: str) -> Any:
        return self.metrics[key]

    def _repr_html_(self) -> str:
        return _html(
            self.metrics, f"medfuse evaluation: {self.metrics.get('model', '')}", plots=False
        )

    def __repr__(self) -> str:
        return (
            f"Evaluation({self.metrics.get('model')}: n={self.metrics['n']}, "
            f"macro AUROC {self.metrics.get('macro_auroc')})"
        )


def evaluate_dataset(
    model: Any,
    dataset: Any,
    out_dir: str | os.PathLike | None = None,
    *,
    split: str | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    min_positives: int = MIN_POSITIVES,
    progress: Callable[[int, int], None] | None = None,
) -> Evaluation:
    """Metrics of ``model`` on a :class:`~medfuse.data.Dataset` (or its ``split``) at the card's
    thresholds: per label n, prevalence, AUROC, AUPRC, F1, sensitivity, specificity, ECE and
    Brier with bootstrap CIs; the c-index when the data has survival targets; and, for a model
    reading both modalities, the modality ablation (each case with only its image, only its
    report). With ``out_dir``: ``metrics.json``, ``metrics.html`` (ROC and calibration plots)
    and ``predictions.csv``."""
    from .metrics import auroc, evaluate_predictions, plot_calibration, plot_roc
    from .trainer import _Data, predict_cohort

    if split is not None:
        idx = dataset.split_indices().get(split)
        if idx is None or not idx.size:
            raise ConfigError(f"the dataset has no {split!r} cases", path=dataset.manifest.path)
        dataset = dataset.subset(idx)
    names = model.labels
    y = dataset.label_matrix(names=names)
    data = _Data(model, dataset)  # inputs read and reports tokenized once for every pass
    pred = predict_cohort(model, dataset, data=data, progress=progress)
    th = model.diagnosis_head.threshold.tolist()
    survival = dataset.has_survival and np.all(np.isfinite(pred["risk"]))
    res = evaluate_predictions(
        pred["probs"],
        y,
        names,
        thresholds=th,
        time=dataset.times if survival else None,
        event=dataset.events if survival else None,
        risk=pred["risk"] if survival else None,
        n_boot=n_boot,
        seed=seed,
    )
    for j, name in enumerate(names):
        known = np.isin(y[:, j], (0.0, 1.0))
        pos, neg = int((y[known, j] == 1).sum()), int((y[known, j] == 0).sum())
        m = res["labels"][name]
        m.update(n=int(known.sum()), positives=pos)
        if min(pos, neg) < min_positives:
            keep = {k: m[k] for k in ("n", "positives", "prevalence", "threshold")}
            keep.update(
                estimable=False,
                reason=f"{pos} positive and {neg} negative case(s); at least {min_positives} "
                "of each are needed",
            )
            res["labels"][name] = keep
        else:
            m["estimable"] = True
    for key in ("auroc", "auprc", "ece", "brier", "f1"):
        vals = [
            v[key]["value"]
            for v in res["labels"].values()
            if v.get("estimable") and v[key]["value"] is not None
        ]
        res[f"macro_{key}"] = round(float(np.mean(vals)), 4) if vals else None
    res["model"] = getattr(model, "name", "model")
    res["split"] = split
    res["manifest_sha256"] = dataset.manifest.sha256
    res["modalities"] = {
        "image": int(dataset.image_present().sum()),
        "report": int(dataset.report_present().sum()),
    }
    if len(model.modalities) == 2:
        res["ablation"] = {}
        for cond, kw in (
            ("image_only", {"drop_report": True}),
            ("report_only", {"drop_image": True}),
        ):
            p = predict_cohort(model, dataset, data=data, **kw)["probs"]
            per = {n: auroc(y[:, j], p[:, j]) for j, n in enumerate(names)}
            ok = [v for n, v in per.items() if res["labels"][n].get("estimable") and np.isfinite(v)]
            res["ablation"][cond] = {
                "macro_auroc": round(float(np.mean(ok)), 4) if ok else None,
                "labels": {n: (round(v, 4) if np.isfinite(v) else None) for n, v in per.items()},
            }
        res["ablation"]["image_and_report"] = {"macro_auroc": res["macro_auroc"]}
    rows = []
    img, rep = dataset.image_present(), dataset.report_present()
    for i, case in enumerate(dataset.case_ids):
        row: dict[str, Any] = {
            "case_id": case,
            "split": str(dataset.splits[i]),
            "image": int(img[i]),
            "report": int(rep[i]),
        }
        for j, name in enumerate(names):
            t = y[i, j]
            row[name] = "" if not np.isfinite(t) else int(t)
            row[f"{name}_p"] = round(float(pred["probs"][i, j]), 5)
            row[f"{name}_positive"] = int(pred["probs"][i, j] >= th[j])
        if np.isfinite(pred["risk"][i]):
            row["risk"] = round(float(pred["risk"][i]), 5)
        rows.append(row)
    out = None
    if out_dir is not None:
        import csv
        import io

        from .._atomic import atomic_write_text

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / "metrics.json", json.dumps(res, indent=2) + "\n")
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=list(rows[0]), extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
        atomic_write_text(out / "predictions.csv", buf.getvalue())
        plot_roc(pred["probs"], y, names, out / "roc.png")
        plot_calibration(pred["probs"], y, names, out / "calibration.png")
        atomic_write_text(out / "metrics.html", _html(res, f"medfuse evaluation: {res['model']}"))
    return Evaluation(res, rows, out)


def _macro_auroc(y: np.ndarray, p: np.ndarray) -> float:
    from .metrics import auroc

    vals = [auroc(y[:, j], p[:, j]) for j in range(y.shape[1])]
    return float(np.nanmean(vals))


def fusion_targets(
    fusion: Any,
    image_only: Any,
    text_only: Any,
    cohort: Any,
    *,
    n_boot: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """The issue's targets on one test cohort (see the module docstring)."""
    from .cohort import LABEL_SOURCES
    from .metrics import auroc, bootstrap_ci, bootstrap_difference, c_index, ece
    from .trainer import predict_cohort

    labels = fusion.labels
    y = cohort.label_matrix(clean=True, names=labels)
    pf = predict_cohort(fusion, cohort)
    pi = predict_cohort(image_only, cohort)
    pt = predict_cohort(text_only, cohort)
    pf_norep = predict_cohort(fusion, cohort, drop_report=True)
    groups = {
        src: [j for j, name in enumerate(labels) if LABEL_SOURCES.get(name) == src]
        for src in ("image", "report", "both")
    }
    out: dict[str, Any] = {"n": len(cohort), "labels": {}, "groups": groups}
    for j, name in enumerate(labels):
        out["labels"][name] = {
            "source": LABEL_SOURCES.get(name),
            **{
                key: bootstrap_ci(auroc, y[:, j], p["probs"][:, j], n_boot=n_boot, seed=seed)
                for key, p in (
                    ("fusion", pf),
                    ("image_only", pi),
                    ("text_only", pt),
                    ("fusion_no_report", pf_norep),
                )
            },
            "fusion_ece": round(ece(y[:, j], pf["probs"][:, j]), 4),
        }
    both = groups["both"]
    if both:
        yb = y[:, both]
        single = {
            "image_only": _macro_auroc(yb, pi["probs"][:, both]),
            "text_only": _macro_auroc(yb, pt["probs"][:, both]),
        }
        best = max(single, key=single.get)
        best_p = (pi if best == "image_only" else pt)["probs"][:, both]
        out["both_labels"] = {
            "labels": [labels[j] for j in both],
            "fusion_macro_auroc": round(_macro_auroc(yb, pf["probs"][:, both]), 4),
            "single_macro_auroc": {k: round(v, 4) for k, v in single.items()},
            "best_single": best,
            "difference": bootstrap_difference(
                _macro_auroc, [yb, pf["probs"][:, both]], [yb, best_p], n_boot=n_boot, seed=seed
            ),
        }
    out["ece_after_calibration"] = {
        "per_label_mean": round(
            float(np.mean([ece(y[:, j], pf["probs"][:, j]) for j in range(len(labels))])), 4
        ),
        "pooled": round(ece(y.reshape(-1), pf["probs"].reshape(-1)), 4),
    }
    if np.all(np.isfinite(pf["risk"])):
        out["c_index"] = bootstrap_ci(
            c_index, cohort.times, cohort.events, pf["risk"], n_boot=n_boot, seed=seed
        )
        out["c_index_oracle"] = round(c_index(cohort.times, cohort.events, cohort.eta), 4)
    img = groups["image"]
    if img:
        yi = y[:, img]
        out["report_missing"] = {
            "labels": [labels[j] for j in img],
            "fusion_no_report_macro_auroc": round(_macro_auroc(yi, pf_norep["probs"][:, img]), 4),
            "image_only_macro_auroc": round(_macro_auroc(yi, pi["probs"][:, img]), 4),
            "difference": bootstrap_difference(
                _macro_auroc,
                [yi, pf_norep["probs"][:, img]],
                [yi, pi["probs"][:, img]],
                n_boot=n_boot,
                seed=seed,
            ),
        }
    return out


def run_ablation(
    config: Any,
    cohort: Any,
    *,
    variants: Sequence[str] = tuple(ABLATION_VARIANTS),
    out_dir: str | os.PathLike = "out/ablation",
    n_boot: int = 1000,
    epochs: int | None = None,
    reuse: bool = False,
    progress: Callable[[str, int, int], None] | None = None,
) -> dict[str, Any]:
    """Train every variant with the same config, seed and splits (only the model differs) and
    evaluate each on ``cohort``; returns ``{"variants": {variant: metrics}, "table": ...}``
    (macro AUROC by label source, per-label AUROC with CIs, c-index, ECE, training seconds).

    ``epochs`` overrides the config's epoch budget (a reduced budget for CPU runs); ``reuse``
    skips training a variant whose ``out_dir/<variant>/model`` already exists."""
    from ..models.model import load_model
    from .cohort import LABEL_SOURCES
    from .trainer import train

    results: dict[str, Any] = {}
    for name in variants:
        if name not in ABLATION_VARIANTS:
            from ..errors import ConfigError

            raise ConfigError(
                f"unknown ablation variant {name!r}; known: {list(ABLATION_VARIANTS)}"
            )
        cfg = config.model_copy(deep=True)
        cfg.out_dir = str(Path(out_dir) / name)
        cfg.model.overrides = {**cfg.model.overrides, **ABLATION_VARIANTS[name]}
        if ABLATION_VARIANTS[name].get("text_encoder", 1) is None:
            cfg.model.overrides.pop("text_encoder_kwargs", None)
            cfg.modality_dropout.report = 0.0
        if ABLATION_VARIANTS[name].get("image_encoder", 1) is None:
            cfg.model.overrides.pop("image_encoder_kwargs", None)
            cfg.modality_dropout.image = 0.0
        if cfg.model.overrides.get("fusion", {}).get("name") in ("concat", "gated", "late"):
            cfg.model.overrides.pop("fusion_kwargs", None)
        cfg.model.name = f"ablation_{name}"
        if epochs is not None:
            cfg.optim.epochs = int(epochs)
        model_dir = Path(cfg.out_dir) / "model"
        if not (reuse and (model_dir / "card.json").is_file()):
            model_dir = Path(train(cfg, progress=progress)["model_dir"])
        model = load_model(model_dir)
        res = evaluate_model(model, cohort, Path(out_dir) / name / "eval", n_boot=n_boot)
        res.pop("_pred", None)
        tr = model.card.training_data.get("training", {})
        res["seconds_train"] = tr.get("seconds")
        res["epochs_run"] = tr.get("epochs_run")
        res["best_epoch"] = tr.get("best_epoch")
        results[name] = res
    table = {
        name: {
            "macro_auroc": r["macro_auroc"],
            "by_source": {
                src: round(
                    float(
                        np.nanmean(
                            [
                                m["auroc"]["value"]
                                for lab, m in r["labels"].items()
                                if LABEL_SOURCES.get(lab) == src and m["auroc"]["value"] is not None
                            ]
                            or [np.nan]
                        )
                    ),
                    4,
                )
                for src in ("image", "report", "both")
            },
            "auroc": {lab: m["auroc"] for lab, m in r["labels"].items()},
            "c_index": (r.get("c_index") or {}).get("value"),
            "macro_ece": r["macro_ece"],
            "seconds_train": r["seconds_train"],
            "epochs_run": r["epochs_run"],
            "best_epoch": r["best_epoch"],
        }
        for name, r in results.items()
    }
    return {"variants": results, "table": table}


ABLATION_START, ABLATION_END = "<!-- ablation:start -->", "<!-- ablation:end -->"


def ablation_markdown(table: dict[str, Any], *, n: int, note: str = "") -> str:
    """The ablation table (from :func:`run_ablation`) as a markdown block between the ablation
    markers: macro AUROC per label source, AUROC of the labels needing both modalities (with
    95 % bootstrap CIs), c-index, ECE, epochs and training time."""
    from .cohort import LABEL_SOURCES

    both = [
        lab
        for lab in next(iter(table.values()), {}).get("auroc", {})
        if LABEL_SOURCES.get(lab) == "both"
    ]

    def f(v: Any) -> str:
        return "–" if v is None or (isinstance(v, float) and not np.isfinite(v)) else f"{v:.3f}"

    def ci(m: dict[str, Any]) -> str:
        if m.get("value") is None:
            return "–"
        lo, hi = m["ci"]
        return f"{m['value']:.3f} [{lo:.3f}, {hi:.3f}]" if lo is not None else f"{m['value']:.3f}"

    head = (
        "| variant | image labels | report labels | needs-both labels | "
        + " | ".join(both)
        + " | c-index | ECE | epochs (best) | train s |"
    )
    lines = [
        ABLATION_START,
        "## Ablation (same config, seed and splits; only the model differs)",
        "",
        f"{n} held-back test cases (clean labels, both modalities present); macro AUROC over "
        "the labels of each evidence source, AUROC with 95 % bootstrap CIs for the labels that "
        "need both. Written by `medfuse evaluate chest_ct_demo --ablation "
        "configs/train/chest_ct_demo.yaml --write-doc docs/model_card.md`."
        + (f" {note}" if note else ""),
        "",
        head,
        "|" + "---|" * (8 + len(both)),
    ]
    for name, row in table.items():
        src = row["by_source"]
        lines.append(
            f"| {name} | {f(src.get('image'))} | {f(src.get('report'))} | {f(src.get('both'))} | "
            + " | ".join(ci(row["auroc"][lab]) for lab in both)
            + f" | {f(row.get('c_index'))} | {f(row.get('macro_ece'))} | "
            f"{row.get('epochs_run')} ({row.get('best_epoch')}) | {row.get('seconds_train')} |"
        )
    lines.append(ABLATION_END)
    return "\n".join(lines)


def write_ablation_doc(
    path: str | os.PathLike, table: dict[str, Any], *, n: int, note: str = ""
) -> None:
    """Replace the ablation block of the markdown file ``path`` (append it when absent)."""
    p = Path(path)
    text = p.read_text(encoding="utf-8") if p.is_file() else ""
    block = ablation_markdown(table, n=n, note=note)
    if ABLATION_START in text and ABLATION_END in text:
        a, b = text.index(ABLATION_START), text.index(ABLATION_END) + len(ABLATION_END)
        text = text[:a] + block + text[b:]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    p.write_text(text, encoding="utf-8")
