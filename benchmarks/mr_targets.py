"""The brain MR demo model's card targets on its held-back test cohort (issues 22 / 23).

Evaluates a trained brain MR model (default: the shipped ``brain_mr_demo``; after
``medfuse train configs/train/brain_mr_demo.yaml`` pass ``--model out/train/brain_mr_demo/model``)
on a freshly drawn MR test cohort (seed :data:`~medfuse.train.mr_cohort.MR_TEST_SEED`, clean
labels, both modalities; the training cohort's generator parameters, so the same report
grammar), once as is and once with every report hidden, and on the MR sample case
``sample_cases/mr_sag_0001``. It prints each target of ``docs/model_card_brain_mr.md`` against
its figure:

* test AUROC ≥ 0.90 for every label;
* ECE after calibration, mean over the labels, ≤ 0.05 (the chest card's calibration target);
* report hidden: the image labels' AUROC within 0.03 of the full input's, and ``headache``
  (its evidence is only in the report) at chance (its 95 % CI contains 0.5);
* the sample case: focal_lesion and headache positive, hydrocephalus negative, the image alone
  finds the lesion, the focal_lesion Grad-CAM peak within 25 mm of the lesion centre, and no
  top-3 report phrase of a positive label is punctuation, a number or a stopword.

    python benchmarks/mr_targets.py --model out/train/brain_mr_demo/model
    python benchmarks/mr_targets.py --model out/train/brain_mr_demo/model --record-card

``--record-card`` stores the test metrics in the model's card.json (``metrics.test``,
``metrics.test_no_report``, ``training_data.test_cohort``; weights untouched), as
``benchmarks/fusion_targets.py --record-card`` does for the chest model; ``make train-mr-demo``
runs it on the freshly trained model before it is copied into ``medfuse/assets/models``. The
exit status is 1 when a target is not met.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "sample_cases" / "mr_sag_0001"

AUROC_MIN = 0.90
ECE_MAX = 0.05
REPORT_HIDDEN_DROP = 0.03
PEAK_MM = 25.0


def _strip(res: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in res.items() if k not in ("_pred", "model", "cohort")}


def sample_case(model: Any) -> dict[str, Any]:
    """What the model says on the MR sample case (positives, Grad-CAM peak distance, top
    report phrases of the positive labels)."""
    import medfuse
    from medfuse.explain.render import top_report_phrases

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from shortcut_audit import is_shortcut_phrase

    truth = json.loads((SAMPLE / "ground_truth.json").read_text())
    study = medfuse.read_study(SAMPLE / "dicom")
    report = medfuse.read_report(SAMPLE / "report.txt")
    pred = medfuse.predict(model, (study, report), explain=True)
    summary = pred.explanation_summary()
    peak = summary["labels"]["focal_lesion"]["saliency"]["peak"]
    dist = (
        float(
            np.linalg.norm(
                np.asarray(peak["ras_mm"]) - np.asarray(truth["lesions"][0]["center_ras_mm"])
            )
        )
        if peak
        else float("inf")
    )
    frac = summary["labels"]["focal_lesion"]["modality_contribution"]["fractions"]
    phrases: dict[str, list[str]] = {}
    expl = pred.explanation  # the default methods include integrated_gradients_text
    for f in pred.positive:
        tokens = expl.get_tokens(f.label) if expl is not None else None
        if tokens is not None:
            phrases[f.label] = [
                p.text for p in top_report_phrases(tokens, expl.report_text or "", 3)
            ]
    return {
        "probabilities": {f.label: round(float(f.probability), 4) for f in pred.findings},
        "positive": {f.label: bool(f.positive) for f in pred.findings},
        "image_only_focal_lesion": bool(
            medfuse.predict(model, study).finding("focal_lesion").positive
        ),
        "gradcam_peak_mm": round(dist, 1),
        "focal_lesion_fractions": frac,
        "top_phrases": phrases,
        "phrases_ok": all(not any(map(is_shortcut_phrase, p)) for p in phrases.values()),
    }


def _record(folder: Path, res: dict[str, Any], no_rep: dict[str, Any], cohort: Any) -> None:
    """Store the held-back test metrics in the model's card.json (weights untouched)."""
    from medfuse.models.card import ModelCard

    card = ModelCard.load(folder)
    card.metrics["test"] = _strip(res)
    card.metrics["test_no_report"] = _strip(no_rep)
    card.training_data["test_cohort"] = {
        "n": len(cohort),
        "seed": int(cohort.config.seed),
        "config": cohort.config.to_dict(),
    }
    card.save(folder)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="brain_mr_demo", help="model folder or shipped name")
    ap.add_argument("--n", type=int, default=200, help="test cases")
    ap.add_argument("--seed", type=int, default=None, help="test seed (default: held back)")
    ap.add_argument("--n-boot", type=int, default=200)
    ap.add_argument("--json", type=Path, default=ROOT / "out/mr_targets.json")
    ap.add_argument("--no-sample", action="store_true", help="skip the sample-case checks")
    ap.add_argument(
        "--record-card",
        action="store_true",
        help="write the test metrics into the model's card.json (a model folder only)",
    )
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    import torch

    from medfuse.models.model import load_model
    from medfuse.train.evaluate import evaluate_model, test_cohort_for
    from medfuse.train.mr_cohort import MR_LABEL_SOURCES

    torch.set_num_threads(1)
    model = load_model(args.model)
    t0 = time.perf_counter()
    cohort = test_cohort_for(model, args.n, args.seed)
    res = evaluate_model(model, cohort, n_boot=args.n_boot, seed=0)
    no_rep = evaluate_model(model, cohort, n_boot=args.n_boot, seed=0, drop_report=True)
    secs = time.perf_counter() - t0

    out = sys.stdout.write
    g = cohort.config.grammar
    out(
        f"test cohort: {len(cohort)} cases (seed {cohort.config.seed}, grammar {g}), clean labels\n"
    )
    ok_all = True

    def check(what: str, ok: bool) -> None:
        nonlocal ok_all
        ok_all &= ok
        out(f"  {what}: {'MET' if ok else 'NOT MET'}\n")

    def ci(m: dict[str, Any]) -> str:
        return f"{m['value']:.3f} [{m['ci'][0]:.3f}, {m['ci'][1]:.3f}]"

    for lab in model.labels:
        a, e, b = (
            res["labels"][lab]["auroc"],
            res["labels"][lab]["ece"],
            no_rep["labels"][lab]["auroc"],
        )
        out(f"{lab:14s} AUROC {ci(a)}  ECE {e['value']:.3f}  report hidden {ci(b)}\n")
        check(f"{lab} AUROC >= {AUROC_MIN}", a["value"] >= AUROC_MIN)
        if MR_LABEL_SOURCES.get(lab) == "report":
            check(f"{lab}, report hidden, CI contains 0.5", b["ci"][0] <= 0.5 <= b["ci"][1])
        else:
            check(
                f"{lab}, report hidden, within {REPORT_HIDDEN_DROP} of the full input",
                b["value"] >= a["value"] - REPORT_HIDDEN_DROP,
            )
    eces = [res["labels"][lab]["ece"]["value"] for lab in model.labels]
    out(f"ECE mean over labels {np.mean(eces):.3f}\n")
    check(f"mean ECE <= {ECE_MAX}", float(np.mean(eces)) <= ECE_MAX)
    report: dict[str, Any] = {
        "model": args.model,
        "n": len(cohort),
        "seed": int(cohort.config.seed),
        "grammar": g,
        "test": _strip(res),
        "test_no_report": _strip(no_rep),
        "seconds_eval": round(secs, 1),
    }
    if not args.no_sample and SAMPLE.is_dir():
        s = sample_case(model)
        report["sample_case"] = s
        out(f"sample case mr_sag_0001: {s['probabilities']}\n")
        p = s["positive"]
        check(
            "focal_lesion and headache positive, hydrocephalus negative",
            p["focal_lesion"] and p["headache"] and not p["hydrocephalus"],
        )
        check("the image alone finds the lesion", s["image_only_focal_lesion"])
        check(
            f"focal_lesion Grad-CAM peak {s['gradcam_peak_mm']} mm <= {PEAK_MM} mm",
            s["gradcam_peak_mm"] <= PEAK_MM,
        )
        fr = s["focal_lesion_fractions"]
        check("focal_lesion rests more on the image than the report", fr["image"] > fr["report"])
        for lab, ph in s["top_phrases"].items():
            out(f"  top phrases {lab}: {ph}\n")
        check("no top-3 phrase of a positive label is punctuation/number/stopword", s["phrases_ok"])
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=1) + "\n")
    if args.record_card:
        folder = Path(args.model)
        if not (folder / "card.json").is_file():
            out("--record-card needs a model folder\n")
            return 2
        _record(folder, res, no_rep, cohort)
        out(f"test metrics recorded in {folder / 'card.json'}\n")
    out(f"all targets {'MET' if ok_all else 'NOT MET'}; written to {args.json}\n")
    return 0 if ok_all else 1


if __name__ == "__main__":
    raise SystemExit(main())
