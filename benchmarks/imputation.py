"""Missing-modality imputation and adversarial alignment, measured (issue 25).

Trains the same model (preset ``chest_ct_fusion_tiny`` by default: cross-attention fusion) with
the same seed, cohort, split and budget six times: ``missing`` ∈ {token, regression, generative}
× ``align`` ∈ {off, adversarial}; then predicts one held-back synthetic test cohort (seed
``TEST_SEED``, clean labels, both modalities drawn) in three conditions (both present, report
missing, image missing) and reports the macro AUROC of each label group (image-only,
report-only, needs-both: :data:`medfuse.train.cohort.LABEL_SOURCES`) with 95 % bootstrap CIs,
and the paired bootstrap difference to ``token`` (align off) on the same resampled cases.
Also the imputer diagnostics the trainer wrote into each card (discriminator accuracy,
diversity ratio, Fréchet distance) and the training time.

    nice python benchmarks/imputation.py                       # n 500, 6 epochs, print
    nice python benchmarks/imputation.py --write-doc           # and the table in docs/models.md
    nice python benchmarks/imputation.py --manifest M.csv --labels a,b --needs a=image,b=both

With ``--manifest`` the six models train on the manifest's train / val rows and are tested on its
test rows (its ``split`` column, else ``--test-fraction`` of the cases drawn by patient); the
label groups are the medfuse cohort's for its label names, or ``--needs``.

All in one run, one torch thread. The issue's default rule — ``generative`` ships as the
default only where, on the needs-both labels with the report missing, its gain over ``token``
has a CI excluding 0 and no other group is worse beyond its CI — is evaluated and printed.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger("benchmarks.imputation")

VARIANTS = [(m, a) for m in ("token", "regression", "generative") for a in (None, "adversarial")]
CONDITIONS = ("both", "report_missing", "image_missing")
GROUPS = ("image", "report", "both")
DOC_START, DOC_END = "<!-- imputation:start -->", "<!-- imputation:end -->"


def _name(missing: str, align: str | None) -> str:
    return f"{missing}+align" if align else missing


def _group_auroc(y: np.ndarray, s: np.ndarray, cols: list[int]) -> float:
    from medfuse.train.metrics import auroc

    vals = [auroc(y[:, j], s[:, j]) for j in cols]
    vals = [v for v in vals if np.isfinite(v)]
    return float(np.mean(vals)) if vals else float("nan")


def run(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from medfuse.models.model import load_model
    from medfuse.train.cohort import LABEL_SOURCES
    from medfuse.train.evaluate import test_cohort
    from medfuse.train.trainer import TrainConfig, _Data, load_dataset, predict_cohort, train

    torch.set_num_threads(1)
    out = Path(args.out)
    if args.manifest:
        # a user's cohort: train / val / test from its split column (or drawn: test_fraction)
        labels_arg = _manifest_labels(args)
        data_cfg: dict[str, Any] = {
            "manifest": str(Path(args.manifest).resolve()), "labels": labels_arg,
            "cache_dir": str(out / "cache"), "test_fraction": args.test_fraction,
        }  # fmt: skip
    else:
        data_cfg = {
            "cohort": {"n": args.n, "seed": args.seed, "grammar": args.grammar},
            "cache_dir": str(out / "cohort"),
        }
    cfgs: dict[str, Any] = {}
    models: dict[str, Any] = {}
    info: dict[str, Any] = {}
    for missing, align in VARIANTS:
        name = _name(missing, align)
        if name not in args.variants:
            continue
        fk: dict[str, Any] = {"missing": missing}
        if align:
            fk["align"] = align
        cfg = TrainConfig.model_validate({
            "seed": args.seed,
            "out_dir": str(out / name),
            "resume": False,
            "num_threads": 1,
            "eval_n_boot": 50,
            "model": {"preset": args.preset, "name": f"imputation_{name}",
                      "overrides": {"fusion_kwargs": fk}},
            "data": data_cfg,
            "optim": {"epochs": args.epochs, "batch_size": 16},
            "early_stopping": {"patience": args.epochs},
            "imputation": {"stage": args.stage},
        })  # fmt: skip
        cfgs[name] = cfg
    test: Any = None
    if args.manifest:  # built once here (the trainings reuse its per-case cache)
        test = load_dataset(next(iter(cfgs.values())))
        indices = test.split_indices()["test"]
        if not indices.size:
            raise SystemExit(
                f"{args.manifest}: no test rows (give the manifest a split column with 'test' "
                "rows, or, without a split column, --test-fraction > 0)"
            )
    for name, cfg in cfgs.items():
        t0 = time.perf_counter()
        summary = train(cfg)
        model = load_model(summary["model_dir"]).eval()
        models[name] = model
        info[name] = {
            "seconds_train": round(time.perf_counter() - t0, 1),
            "epochs": summary["epochs"],
            "imputation": model.card.training_data.get("imputation"),
        }
        log.info("%s trained in %.0f s: %s", name, info[name]["seconds_train"], info[name])

    first = next(iter(models.values()))
    labels = list(first.labels)
    needs = {**LABEL_SOURCES, **_parse_needs(args.needs)}
    if test is None:
        test = test_cohort(n=args.test_n, grammar=args.grammar)
        indices = np.arange(len(test))
    cols = {g: [j for j, lab in enumerate(labels) if needs.get(lab) == g] for g in GROUPS}
    unplaced = [lab for lab in labels if needs.get(lab) not in GROUPS]
    if unplaced:
        log.warning("labels in no group (say which modality they need: --needs): %s", unplaced)
    data = _Data(first, test)
    y = data.labels[indices]
    scores: dict[str, dict[str, np.ndarray]] = {}
    for name, model in models.items():
        data.text = model.tokenize(test.reports())
        scores[name] = {
            cond: predict_cohort(
                model,
                test,
                data=data,
                indices=indices,
                drop_report=cond == "report_missing",
                drop_image=cond == "image_missing",
            )["logits"]
            for cond in CONDITIONS
        }
    rng = np.random.default_rng(args.seed)
    boots = [rng.integers(0, len(y), len(y)) for _ in range(args.n_boot)]
    base = _name("token", None)
    table: dict[str, Any] = {}
    for name in scores:
        table[name] = {}
        for cond in CONDITIONS:
            row = {}
            for g in GROUPS:
                s, s0 = scores[name][cond], scores[base][cond]
                value = _group_auroc(y, s, cols[g])
                bs = np.array([_group_auroc(y[i], s[i], cols[g]) for i in boots])
                d = np.array(
                    [_group_auroc(y[i], s[i], cols[g]) - _group_auroc(y[i], s0[i], cols[g])
                     for i in boots]
                ) if name != base else None  # fmt: skip
                row[g] = {
                    "auroc": round(value, 4),
                    "ci": [round(float(np.nanpercentile(bs, q)), 4) for q in (2.5, 97.5)],
                }
                if d is not None:
                    row[g]["diff_vs_token"] = round(value - _group_auroc(y, s0, cols[g]), 4)
                    row[g]["diff_ci"] = [
                        round(float(np.nanpercentile(d, q)), 4) for q in (2.5, 97.5)
                    ]
            table[name][cond] = row
    return {
        "config": {
            "preset": args.preset,
            "manifest": args.manifest,
            "n_train_cohort": args.n if not args.manifest else None,
            "test_n": len(indices),
            "epochs": args.epochs,
            "grammar": args.grammar,
            "stage": args.stage,
            "n_boot": args.n_boot,
            "seed": args.seed,
        },
        "label_groups": {g: [labels[j] for j in cols[g]] for g in GROUPS},
        "table": table,
        "models": info,
        "default_rule": default_rule(table) if "generative" in table else None,
    }


def _parse_needs(text: str | None) -> dict[str, str]:
    """``"a=image,b=report"`` -> {"a": "image", "b": "report"}."""
    out = {}
    for part in filter(None, (p.strip() for p in (text or "").split(","))):
        label, _, need = part.partition("=")
        if need not in GROUPS:
            raise SystemExit(f"--needs {part!r}: the modality must be one of {GROUPS}")
        out[label.strip()] = need
    return out


def _manifest_labels(args: argparse.Namespace) -> list[str]:
    """``--labels``, or the manifest's columns that are medfuse fusion cohort labels."""
    if args.labels:
        return [x.strip() for x in args.labels.split(",") if x.strip()]
    import csv

    from medfuse.train.cohort import LABEL_SOURCES

    with open(args.manifest, newline="", encoding="utf-8") as fh:
        header = next(csv.reader(fh))
    found = [c for c in header if c in LABEL_SOURCES]
    if not found:
        raise SystemExit(f"{args.manifest}: name the label columns with --labels")
    return found


def default_rule(table: dict[str, Any], cand: str = "generative") -> dict[str, Any]:
    """The issue's criterion for making ``cand`` the default over ``token``."""
    row = table[cand]["report_missing"]["both"]
    gain = row["diff_ci"][0] > 0
    worse = [
        f"{cond}/{g}"
        for cond in CONDITIONS
        for g in GROUPS
        if table[cand][cond][g]["diff_ci"][1] < 0
    ]
    return {"gain_ci_excludes_0": gain, "worse_beyond_ci": worse, "holds": gain and not worse}


def markdown(res: dict[str, Any]) -> str:
    c = res["config"]
    data = (
        f"manifest `{c['manifest']}` (train / val rows; test: its {c['test_n']} test rows)"
        if c.get("manifest")
        else f"synthetic cohort n {c['n_train_cohort']} (grammar {c['grammar']}, 80/20 split); "
        f"test cohort n {c['test_n']} (seed TEST_SEED, clean labels)"
    )
    lines = [
        DOC_START,
        f"Preset `{c['preset']}`, {data}, {c['epochs']} epochs, imputer stage `{c['stage']}`; "
        "macro AUROC per label "
        f"group [95 % bootstrap CI, {c['n_boot']} resamples]; Δ = paired difference to `token` "
        "(align off) [95 % CI]. Produced by `benchmarks/imputation.py --write-doc`.",
        "",
        "| model | condition | image-only | report-only | needs-both | Δ needs-both |",
        "|---|---|---|---|---|---|",
    ]
    for name, conds in res["table"].items():
        for cond, row in conds.items():
            cells = [
                f"{row[g]['auroc']:.3f} [{row[g]['ci'][0]:.3f}, {row[g]['ci'][1]:.3f}]"
                for g in GROUPS
            ]
            b = row["both"]
            delta = (
                f"{b['diff_vs_token']:+.3f} [{b['diff_ci'][0]:+.3f}, {b['diff_ci'][1]:+.3f}]"
                if "diff_vs_token" in b
                else "—"
            )
            lines.append(f"| {name} | {cond.replace('_', ' ')} | {' | '.join(cells)} | {delta} |")
    lines += [
        "",
        "| model | train s | D acc image / report | align D acc | diversity ratio image / "
        "report | Fréchet image / report |",
        "|---|---|---|---|---|---|",
    ]
    for name, m in res["models"].items():
        d = m.get("imputation") or {}
        ir, ti = d.get("image_from_report") or {}, d.get("text_from_image") or {}

        def f(v: Any) -> str:
            return "—" if v is None else f"{v:.3g}"

        lines.append(
            f"| {name} | {m['seconds_train']:.0f} | {f(d.get('disc_acc_image'))} / "
            f"{f(d.get('disc_acc_text'))} | {f(d.get('align_disc_acc'))} | "
            f"{f(ir.get('diversity_ratio'))} / {f(ti.get('diversity_ratio'))} | "
            f"{f(ir.get('frechet'))} / {f(ti.get('frechet'))} |"
        )
    r = res["default_rule"]
    if r is None:
        return "\n".join([*lines, "", DOC_END])
    lines += [
        "",
        f"Default rule (generative vs token, needs-both, report missing): gain CI excludes 0: "
        f"**{r['gain_ci_excludes_0']}**; groups worse beyond their CI: "
        f"{', '.join(r['worse_beyond_ci']) or 'none'}; rule holds: **{r['holds']}**.",
        DOC_END,
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="chest_ct_fusion_tiny")
    ap.add_argument("--n", type=int, default=500, help="training cohort size")
    ap.add_argument("--test-n", type=int, default=400)
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--grammar", type=int, default=3)
    ap.add_argument("--stage", choices=("joint", "second"), default="joint")
    ap.add_argument("--n-boot", type=int, default=500)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--manifest", help="a manifest CSV to train and test on instead")
    ap.add_argument("--labels", help="manifest: comma-separated label columns")
    ap.add_argument(
        "--needs",
        help="manifest: the modality each label needs, e.g. 'a=image,b=report,c=both' "
        "(default: the medfuse cohort's for its label names)",
    )
    ap.add_argument(
        "--test-fraction", type=float, default=0.2,
        help="manifest without a split column: the share of cases held out for the test",
    )  # fmt: skip
    ap.add_argument("--out", default="out/bench_imputation")
    ap.add_argument("--write-doc", action="store_true", help="replace the table in docs/models.md")
    names = [_name(m, a) for m, a in VARIANTS]
    ap.add_argument(
        "--variants", default=",".join(names),
        help="comma-separated models to train (token is the reference: always trained)",
    )  # fmt: skip
    args = ap.parse_args(argv)
    args.variants = {v.strip() for v in args.variants.split(",") if v.strip()} | {"token"}
    if args.variants - set(names):
        ap.error(f"--variants: unknown {sorted(args.variants - set(names))}; choose from {names}")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    for noisy in ("medfuse.train.trainer",):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    t0 = time.perf_counter()
    res = run(args)
    res["seconds"] = round(time.perf_counter() - t0, 1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    from medfuse._atomic import atomic_write_text

    atomic_write_text(out / "imputation.json", json.dumps(res, indent=2) + "\n")
    md = markdown(res)
    sys.stdout.write(md + f"\n\n(whole run {res['seconds']:.0f} s)\n")
    if args.write_doc:
        doc = Path(__file__).resolve().parent.parent / "docs" / "models.md"
        text = doc.read_text()
        if DOC_START in text and DOC_END in text:
            pre, rest = text.split(DOC_START, 1)
            text = pre + md + rest.split(DOC_END, 1)[1]
        else:
            text = text.rstrip("\n") + "\n\n" + md + "\n"
        atomic_write_text(doc, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
