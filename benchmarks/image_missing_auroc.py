"""The chest demo model's test AUROC with the image missing (issue 23).

A label that needs image and report, predicted from the report alone, is reported with
``reduced_evidence`` and the card's AUROC measured in that condition
(:func:`medfuse.prediction.assess`). The card has it for a missing report
(``metrics.test.auroc_report_missing``, written by ``benchmarks/fusion_targets.py``); this script
measures the other condition on the same held-back test cohort (seed ``TEST_SEED``, clean
labels): every case through the model's learned missing-image token, 95 % bootstrap CIs.

    python benchmarks/image_missing_auroc.py                 # print the table
    python benchmarks/image_missing_auroc.py --record-card   # also metrics.test.auroc_image_missing

Only the report is read, so it takes seconds (no phantom is drawn).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # shortcut_audit


def load(model_ref: str):
    """The model, in eval mode, on one torch thread (as the card's figures were measured)."""
    import torch

    import medfuse

    torch.set_num_threads(1)
    return medfuse.load_model(model_ref).eval()


def report_only_proba(model, reports: Sequence[str]) -> np.ndarray:
    """``[n, labels]`` probabilities of ``model`` from ``reports`` alone (the image missing)."""
    import torch

    out = []
    with torch.no_grad():
        for i in range(0, len(reports), 100):
            batch = model.prepare(reports=list(reports[i : i + 100]))
            out.append(model.predict_proba(**batch).numpy())
    return np.concatenate(out)


def test_reports(n: int, grammar: int, labels: Sequence[str]) -> tuple[list[str], np.ndarray]:
    """The reports of the held-back test cohort's first ``n`` cases (seed ``TEST_SEED``, clean
    labels) in ``grammar``, and their labels ``[n, len(labels)]``."""
    from shortcut_audit import chest_reports

    from medfuse.train.evaluate import TEST_SEED

    texts, y, names = chest_reports(n, seed=TEST_SEED, grammar=grammar)
    return texts, y[:, [names.index(k) for k in labels]].astype(np.int64)


def measure(model, n: int = 500, n_boot: int = 1000, grammar: int | None = None) -> dict:
    """``{label: {"value", "ci"}}``: AUROC of ``model`` from the reports alone, on reports in
    ``grammar`` (default: the one its card says it learned)."""
    from medfuse.train.metrics import auroc, bootstrap_ci

    if grammar is None:
        grammar = int(model.card.training_data.get("cohort", {}).get("grammar", 2))
    reports, y = test_reports(n, grammar, model.labels)
    p = report_only_proba(model, reports)
    return {
        lab: bootstrap_ci(auroc, y[:, j], p[:, j], n_boot=n_boot)
        for j, lab in enumerate(model.labels)
    }


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="chest_ct_demo")
    ap.add_argument("--n", type=int, default=500)
    ap.add_argument("--record-card", action="store_true", help="write it into the card.json")
    args = ap.parse_args(argv)
    res = measure(load(args.model), args.n)
    print("| label | AUROC, image missing [95 % CI] |\n|---|---|")
    for lab, m in res.items():
        print(f"| {lab} | {m['value']:.3f} [{m['ci'][0]:.3f}, {m['ci'][1]:.3f}] |")
    if args.record_card:
        from medfuse.models.model import _assets_dir

        path = Path(_assets_dir()) / args.model / "card.json"
        card = json.loads(path.read_text())
        card["metrics"]["test"]["auroc_image_missing"] = {
            lab: {"value": round(m["value"], 4), "ci": [round(v, 4) for v in m["ci"]]}
            for lab, m in res.items()
        }
        path.write_text(json.dumps(card, indent=2) + "\n")
        print(f"recorded in {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
