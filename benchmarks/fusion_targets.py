"""Fusion targets on a held-back synthetic test cohort (issue 6).

Trains (or reuses) an image-only and a text-only model with the demo model's training config
(same cohort, seed, splits and schedule; only the model differs), then evaluates them and the
fusion model on a fresh test cohort and prints / writes:

* cross-attention fusion AUROC vs the best single modality on the labels that need both
  modalities, with the paired bootstrap 95 % CI of the difference;
* ECE after calibration; risk c-index (and the oracle c-index of the true log-hazard);
* report-missing robustness: the fusion model with every report hidden vs the image-only
  model on the image-only labels.

    python benchmarks/fusion_targets.py                       # shipped demo model, 500 cases
    python benchmarks/fusion_targets.py --fusion out/train/chest_ct_demo/model --n 1000

Targets (issue 6): difference >= 0.05 with a CI excluding 0; ECE <= 0.05; c-index >= 0.75;
report-missing AUROC within 0.03 of the image-only model.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _single(config: Path, variant: str, out_root: Path, epochs: int | None) -> Path:
    from medfuse.train.evaluate import ABLATION_VARIANTS
    from medfuse.train.trainer import load_train_config, train

    log = logging.getLogger("fusion_targets")
    folder = out_root / variant
    cfg = load_train_config(config)
    cfg.out_dir = str(folder)
    cfg.model.name = f"chest_ct_demo_{variant}"
    cfg.model.overrides = {**cfg.model.overrides, **ABLATION_VARIANTS[variant]}
    if variant == "image_only":
        cfg.model.overrides.pop("text_encoder_kwargs", None)
        cfg.modality_dropout.report = 0.0
    else:
        cfg.model.overrides.pop("image_encoder_kwargs", None)
        cfg.modality_dropout.image = 0.0
    cfg.model.overrides.pop("fusion_kwargs", None)
    if epochs:
        cfg.optim.epochs = epochs
    # the single model is reused while the recipe it was trained with is unchanged, and its
    # checkpoints are resumed only by a run of the same recipe
    recipe = json.dumps(cfg.model_dump(mode="json", exclude={"resume", "out_dir"}), sort_keys=True)
    stamp = folder / "recipe.json"
    same = stamp.is_file() and stamp.read_text() == recipe
    if same and (folder / "model" / "card.json").is_file():
        return folder / "model"
    if not same:
        if stamp.is_file():
            log.info("%s: the recipe changed; training it again", variant)
        cfg.resume = False
        folder.mkdir(parents=True, exist_ok=True)
        stamp.write_text(recipe)
    t0 = time.perf_counter()
    summary = train(cfg)
    log.info("%s trained in %.0f s", variant, time.perf_counter() - t0)
    return Path(summary["model_dir"])


START, END = "<!-- results:start -->", "<!-- results:end -->"


def _ci(m: dict) -> str:
    return f"{m['value']:.3f} [{m['ci'][0]:.3f}, {m['ci'][1]:.3f}]"


def _write_doc(path: Path, res: dict, fusion) -> None:
    """Replace the text between the results markers of ``path`` with tables of ``res``."""
    from medfuse.train.evaluate import TEST_SEED

    b, e, c, r = (
        res["both_labels"],
        res["ece_after_calibration"],
        res["c_index"],
        res["report_missing"],
    )
    d, rd = b["difference"], r["difference"]
    secs = res["training_seconds"]
    lines = [
        START,
        "## Results on the held-back synthetic test set",
        "",
        f"{res['n']} fresh cases (seed {TEST_SEED}, clean labels, both modalities present), "
        "95 % bootstrap CIs (1,000 resamples over cases; differences are paired). Written by "
        "`python benchmarks/fusion_targets.py --write-doc docs/model_card.md`.",
        "",
        "| label | needs | cross-attention fusion | image-only model | text-only model "
        "| fusion, report missing | fusion ECE |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, m in res["labels"].items():
        lines.append(
            f"| {name} | {m['source']} | {_ci(m['fusion'])} | {_ci(m['image_only'])} | "
            f"{_ci(m['text_only'])} | {_ci(m['fusion_no_report'])} | {m['fusion_ece']:.3f} |"
        )
    best = b["best_single"]
    lines += [
        "",
        "| target (issue 6) | measured | met |",
        "|---|---|---|",
        f"| fusion AUROC ≥ best single modality + 0.05 on the labels needing both, CI of the "
        f"difference excludes 0 | fusion {b['fusion_macro_auroc']:.3f} vs {best} "
        f"{b['single_macro_auroc'][best]:.3f}: {d['value']:+.3f} [{d['ci'][0]:+.3f}, "
        f"{d['ci'][1]:+.3f}] | {'yes' if d['value'] >= 0.05 and d['excludes_zero'] else 'no'} |",
        f"| ECE ≤ 0.05 after calibration | {e['per_label_mean']:.3f} (mean over labels; pooled "
        f"{e['pooled']:.3f}) | {'yes' if e['per_label_mean'] <= 0.05 else 'no'} |",
        f"| risk c-index ≥ 0.75 | {_ci(c)} (oracle with the true log-hazard "
        f"{res['c_index_oracle']:.3f}) | {'yes' if c['value'] >= 0.75 else 'no'} |",
        f"| report missing: image-only findings within 0.03 AUROC of the image-only model | "
        f"{r['fusion_no_report_macro_auroc']:.3f} vs {r['image_only_macro_auroc']:.3f}: "
        f"{rd['value']:+.3f} [{rd['ci'][0]:+.3f}, {rd['ci'][1]:+.3f}] | "
        f"{'yes' if rd['value'] >= -0.03 else 'no'} |",
        "",
        f"Training time on 2 shared CPU cores: fusion {secs.get('fusion')} s, image-only "
        f"{secs.get('image_only')} s, text-only {secs.get('text_only')} s (plus input generation). "
        f"Weights: {fusion.card.weights_sha256[:16]}… ({fusion.card.name}).",
        END,
    ]
    text = path.read_text(encoding="utf-8") if path.is_file() else ""
    block = "\n".join(lines)
    if START in text and END in text:
        text = text[: text.index(START)] + block + text[text.index(END) + len(END) :]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    path.write_text(text, encoding="utf-8")


def _record(fusion, res: dict, args: argparse.Namespace) -> None:
    """Store the held-back test metrics in the fusion model's card (card.json only)."""
    from medfuse.models.card import ModelCard
    from medfuse.models.model import _assets_dir
    from medfuse.train.evaluate import TEST_SEED

    folder = Path(args.fusion)
    if not (folder / "card.json").is_file():
        folder = _assets_dir() / str(args.fusion)
    card = ModelCard.load(folder)
    card.metrics["test"] = {
        "cohort": {"n": res["n"], "seed": TEST_SEED, "label_noise": 0.0, "missing": 0.0},
        "auroc": {k: v["fusion"] for k, v in res["labels"].items()},
        "auroc_report_missing": {k: v["fusion_no_report"] for k, v in res["labels"].items()},
        "ece": {k: v["fusion_ece"] for k, v in res["labels"].items()},
        "ece_mean": res["ece_after_calibration"]["per_label_mean"],
        "c_index": res["c_index"],
        "both_labels_vs_best_single": res["both_labels"],
        "report_missing_vs_image_only": res["report_missing"],
    }
    card.save(folder)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--fusion", default="chest_ct_demo", help="fusion model (folder or name)")
    ap.add_argument("--config", type=Path, default=ROOT / "configs/train/chest_ct_demo.yaml")
    ap.add_argument("--singles", type=Path, default=ROOT / "out/train/single_modality")
    ap.add_argument("--n", type=int, default=500, help="test cases")
    ap.add_argument("--n-boot", type=int, default=1000)
    ap.add_argument("--epochs", type=int, default=None, help="override epochs of single models")
    ap.add_argument("--json", type=Path, default=ROOT / "out/fusion_targets.json")
    ap.add_argument(
        "--write-doc",
        type=Path,
        default=None,
        help="rewrite the results section of this markdown file (docs/model_card.md)",
    )
    ap.add_argument(
        "--record-card",
        action="store_true",
        help="write the test metrics into the fusion model's card.json (weights untouched)",
    )
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    import torch

    from medfuse.models.model import load_model
    from medfuse.train.evaluate import fusion_targets, test_cohort_for

    torch.set_num_threads(2)
    img = load_model(_single(args.config, "image_only", args.singles, args.epochs))
    txt = load_model(_single(args.config, "text_only", args.singles, args.epochs))
    fusion = load_model(args.fusion)
    t0 = time.perf_counter()
    cohort = test_cohort_for(fusion, args.n)  # same shape and report grammar as in training
    res = fusion_targets(fusion, img, txt, cohort, n_boot=args.n_boot)
    res["seconds_eval"] = round(time.perf_counter() - t0, 1)
    res["training_seconds"] = {
        name: m.card.training_data.get("training", {}).get("seconds")
        for name, m in (("fusion", fusion), ("image_only", img), ("text_only", txt))
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(res, indent=2) + "\n")

    out = sys.stdout.write
    out(f"test cohort: {res['n']} cases (seed held back), clean labels, both modalities\n\n")
    out(
        f"{'label':22s} {'source':7s} {'fusion':>22s} {'image-only':>22s} {'text-only':>22s} {'fusion, no report':>22s}\n"
    )

    def fmt(m: dict) -> str:
        return f"{m['value']:.3f} [{m['ci'][0]:.3f},{m['ci'][1]:.3f}]"

    for name, m in res["labels"].items():
        out(
            f"{name:22s} {m['source']:7s} {fmt(m['fusion']):>22s} {fmt(m['image_only']):>22s} "
            f"{fmt(m['text_only']):>22s} {fmt(m['fusion_no_report']):>22s}\n"
        )
    b = res["both_labels"]
    d = b["difference"]
    ok1 = d["value"] >= 0.05 and d["excludes_zero"]
    out(
        f"\nneeds-both labels {b['labels']}: fusion {b['fusion_macro_auroc']:.3f} vs best single "
        f"({b['best_single']}) {b['single_macro_auroc'][b['best_single']]:.3f}: difference "
        f"{d['value']:+.3f} [{d['ci'][0]:+.3f}, {d['ci'][1]:+.3f}]  target >= +0.05, CI excl. 0: "
        f"{'MET' if ok1 else 'NOT MET'}\n"
    )
    e = res["ece_after_calibration"]
    out(
        f"ECE after calibration: mean over labels {e['per_label_mean']:.3f} (pooled {e['pooled']:.3f})"
        f"  target <= 0.05: {'MET' if e['per_label_mean'] <= 0.05 else 'NOT MET'}\n"
    )
    c = res["c_index"]
    out(
        f"risk c-index {fmt(c)} (oracle {res['c_index_oracle']:.3f})  target >= 0.75: "
        f"{'MET' if c['value'] >= 0.75 else 'NOT MET'}\n"
    )
    r = res["report_missing"]
    rd = r["difference"]
    out(
        f"report missing, image-only labels: fusion {r['fusion_no_report_macro_auroc']:.3f} vs "
        f"image-only model {r['image_only_macro_auroc']:.3f} (difference {rd['value']:+.3f} "
        f"[{rd['ci'][0]:+.3f}, {rd['ci'][1]:+.3f}])  target within 0.03: "
        f"{'MET' if rd['value'] >= -0.03 else 'NOT MET'}\n"
    )
    if args.write_doc:
        _write_doc(args.write_doc, res, fusion)
        out(f"results written into {args.write_doc}\n")
    if args.record_card:
        _record(fusion, res, args)
        out(f"test metrics recorded in {fusion.card.name}'s card\n")
    out(f"\nwritten to {args.json}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
