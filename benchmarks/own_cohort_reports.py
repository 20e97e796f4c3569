"""Own-cohort path on real reports: a text-only model trained with ``medfuse train`` on a manifest
of ``iu_reports_train.csv`` and evaluated with ``medfuse evaluate`` on ``iu_reports_dev.csv``
(never trained on), beside scikit-learn TF-IDF + logistic regression trained on the same rows
and medfuse's rule labeler (whose rules were tuned on the dev file: a high bar there).

    python benchmarks/own_cohort_reports.py [--out .bench/own_cohort_reports] [--epochs 25]

Labels are the MeSH finding codes of ../shared/data/README.md (gold from the ``problems``
column); scores are over the codes with >= 20 gold positives in the dev file. Targets (issue
"Your own cohort"): train <= 10 min on this CPU, dev macro AUROC >= 0.98 and macro F1 >= 0.92
at the card's thresholds, AUROC above TF-IDF + LR.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from report_labels import GOLD_TERMS, MIN_POSITIVES, gold_labels, load_rows, report_text

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "reports"
CODES = list(GOLD_TERMS)

CONFIG = """\
model:
  preset: text_only
  name: iu_reports_text
  tokenizer: {{code_markers: true}}
data: {{manifest: train.csv, labels: [{labels}], val_fraction: 0.15, cache_dir: cache}}
output: model
seed: {seed}
num_threads: {threads}
optim: {{epochs: {epochs}, batch_size: 32, lr: 0.005, warmup_epochs: 1}}
early_stopping: {{patience: 6, monitor: auroc}}
calibration: {{thresholds: f1}}
eval_n_boot: 100
"""


def _children_cpu() -> float:
    """CPU seconds (user + system) of the finished child processes (steadier than wall time on
    a shared machine)."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def write_manifest(rows: list[dict[str, str]], path: Path) -> None:
    from medfuse.data.manifest import write_manifest as write

    out = []
    for r in rows:
        gold = gold_labels(r)
        out.append(
            {"case_id": f"iu{r['id']}", "report_text": report_text(r)}
            | {c: int(gold[c]) for c in CODES}
        )
    write(path, out, CODES)


def tfidf_baseline(train: list[dict[str, str]], dev: list[dict[str, str]]) -> dict[str, float]:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score

    vec = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True)
    xt = vec.fit_transform([report_text(r) for r in train])
    xd = vec.transform([report_text(r) for r in dev])
    out = {}
    for c in CODES:
        yt = np.asarray([gold_labels(r)[c] for r in train], dtype=int)
        yd = np.asarray([gold_labels(r)[c] for r in dev], dtype=int)
        if yt.sum() < 2 or yd.sum() == 0:
            continue
        clf = LogisticRegression(C=10.0, max_iter=2000, class_weight="balanced").fit(xt, yt)
        out[c] = float(roc_auc_score(yd, clf.predict_proba(xd)[:, 1]))
    return out


def rule_f1(dev: list[dict[str, str]]) -> dict[str, float]:
    from medfuse.text.labels import report_labels
    from medfuse.text.pipeline import parse_reports

    pred = [report_labels(rep) for rep in parse_reports([report_text(r) for r in dev])]
    out = {}
    for c in CODES:
        y = np.asarray([gold_labels(r)[c] for r in dev], dtype=bool)
        p = np.asarray([lab.get(c) == 1 for lab in pred], dtype=bool)
        tp, fp, fn = int((y & p).sum()), int((~y & p).sum()), int((y & ~p).sum())
        out[c] = 2 * tp / (2 * tp + fp + fn) if tp else 0.0
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=REPO / ".bench" / "own_cohort_reports")
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0, help="training seed (split, init, order)")
    ap.add_argument("--reuse", action="store_true", help="Reuse a trained model in --out.")
    args = ap.parse_args()
    if not (DATA / "iu_reports_train.csv").is_file():
        print(f"skipped: {DATA} not found")
        return 0
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    train, dev = load_rows(DATA / "iu_reports_train.csv"), load_rows(DATA / "iu_reports_dev.csv")
    write_manifest(train, out / "train.csv")
    write_manifest(dev, out / "dev.csv")
    (out / "config.yaml").write_text(
        CONFIG.format(
            labels=", ".join(CODES), epochs=args.epochs, threads=args.threads, seed=args.seed
        )
    )
    medfuse = [sys.executable, "-m", "medfuse.cli.main"]
    t0, cpu0 = time.perf_counter(), _children_cpu()
    if not (args.reuse and (out / "model" / "card.json").is_file()):
        subprocess.run([*medfuse, "train", "config.yaml", "--no-resume"], cwd=out, check=True)
    t_train, cpu_train = time.perf_counter() - t0, _children_cpu() - cpu0
    subprocess.run(
        [*medfuse, "evaluate", "model", "--manifest", "dev.csv", "--out", "eval",
         "--cache-dir", "cache", "--n-boot", "1000"],
        cwd=out, check=True, stdout=subprocess.DEVNULL,
    )  # fmt: skip
    metrics = json.loads((out / "eval" / "metrics.json").read_text())["labels"]
    t1 = time.perf_counter()
    base = tfidf_baseline(train, dev)
    t_tfidf = time.perf_counter() - t1
    rules = rule_f1(dev)
    scored = [c for c in CODES if sum(gold_labels(r)[c] for r in dev) >= MIN_POSITIVES]
    print(f"\nIU reports: train {len(train)} (medfuse train), dev {len(dev)} (medfuse evaluate)")
    print(f"codes with >= {MIN_POSITIVES} dev positives: {', '.join(scored)}\n")
    print(f"{'code':18s} {'n+':>4s} {'AUROC medfuse [95% CI]':>26s} {'TF-IDF+LR':>10s} "
          f"{'F1 medfuse':>10s} {'F1 rules':>9s}")  # fmt: skip
    rows = []
    for c in scored:
        m = metrics[c]
        a, f = m["auroc"], m["f1"]
        rows.append((a["value"], base.get(c, float("nan")), f["value"], rules[c]))
        print(
            f"{c:18s} {m['positives']:4d} {a['value']:.3f} [{a['ci'][0]:.3f}, {a['ci'][1]:.3f}]"
            f"{'':6s} {base.get(c, float('nan')):10.3f} {f['value']:10.3f} {rules[c]:9.3f}"
        )
    arr = np.asarray(rows, dtype=float)
    macro = arr.mean(0)
    print(
        f"{'macro':18s} {'':4s} {macro[0]:.3f}{'':20s} {macro[1]:10.3f} {macro[2]:10.3f} {macro[3]:9.3f}"
    )
    print(
        f"\ntrain time {t_train:.0f} s wall, {cpu_train:.0f} s CPU (target <= 600 s; load "
        f"average {os.getloadavg()[0]:.1f}); TF-IDF + LR fit {t_tfidf:.1f} s"
    )
    print(
        f"macro AUROC {macro[0]:.3f} (target >= 0.98): {'MET' if macro[0] >= 0.98 else 'NOT MET'}"
    )
    print(
        f"macro F1    {macro[2]:.3f} (target >= 0.92): {'MET' if macro[2] >= 0.92 else 'NOT MET'}"
    )
    print(
        f"medfuse AUROC - TF-IDF+LR AUROC: {macro[0] - macro[1]:+.3f} "
        f"({'beats' if macro[0] > macro[1] else 'does not beat'} the baseline)"
    )
    print(f"rule labeler macro F1 {macro[3]:.3f} (rules tuned on this dev file)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
