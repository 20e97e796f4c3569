"""Does the chest demo model read a finding's words, or the template around them?

Grammar 3 of the fusion cohort (``medfuse/train/cohort.py``) wrote "mm" only in lesion
sentences, and its technique line never gave a slice thickness; the sample reports say
"reconstructed at 5 mm.", and the demo model trained on grammar 3 credited that line for
lung_lesion. This script measures, from the reports alone (the image missing, so the report is
all the model sees), on the held-back test cohort (seed ``TEST_SEED``, clean labels):

* **the same facts in two wordings**: AUROC per label when the cohort's reports are written in
  grammar 3 and in grammar 4 (the cases' facts are drawn before their reports, so they are the
  same cases);
* **edits that change no fact**: the mean change of each label's logit, with a 95 % bootstrap
  CI, when one neutral sentence is edited into every grammar-3 report: the technique line with
  a slice thickness (:data:`EDITS`), or a vessel measurement after FINDINGS. A model that reads
  the findings moves by about as much as it does for the control, a neutral sentence that both
  grammars write ("The central airways are patent.") in the same place.

    python benchmarks/wording_shift.py                       # the shipped chest_ct_demo
    python benchmarks/wording_shift.py --model out/train/chest_ct_demo/model --n 300

It prints Markdown tables (``docs/model_card.md`` records them for the shipped model).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from image_missing_auroc import load, measure, report_only_proba, test_reports

GRAMMAR_3_TECHNIQUE = "TECHNIQUE: Axial CT images of the chest without intravenous contrast."
#: edits that state no finding: name -> text transformation of a grammar-3 report
EDITS: dict[str, Callable[[str], str]] = {
    'technique "reconstructed at 5 mm."': lambda r: r.replace(
        GRAMMAR_3_TECHNIQUE,
        "TECHNIQUE: Axial CT images of the chest were obtained without intravenous contrast and "
        "reconstructed at 5 mm.",
    ),
    '"The ascending aorta measures 33 mm."': lambda r: r.replace(
        "FINDINGS:\n", "FINDINGS:\nThe ascending aorta measures 33 mm. "
    ),
    # the control: a neutral sentence both grammars write, in the same place
    '"The central airways are patent."': lambda r: r.replace(
        "FINDINGS:\n", "FINDINGS:\nThe central airways are patent. "
    ),
}


def _logits(model, reports: list[str]) -> np.ndarray:
    p = np.clip(report_only_proba(model, reports), 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


def auroc_by_grammar(model, n: int = 500, n_boot: int = 1000) -> dict:
    """``{grammar: {label: {"value", "ci"}}}``: report-only AUROC with the same cases' reports
    written in grammar 3 and in grammar 4."""
    return {grammar: measure(model, n, n_boot, grammar) for grammar in (3, 4)}


def edit_shift(model, n: int = 500, n_boot: int = 1000) -> dict:
    """``{edit: {label: {"value", "ci", "n"}}}``: the mean logit change, report only, when each of
    :data:`EDITS` is made to the test cohort's grammar-3 reports (95 % bootstrap CI)."""
    reports, _ = test_reports(n, 3, model.labels)
    base = _logits(model, reports)
    rng = np.random.default_rng(0)
    out = {}
    for name, edit in EDITS.items():
        edited = [edit(r) for r in reports]
        changed = np.array([e != r for e, r in zip(edited, reports, strict=True)])
        delta = (_logits(model, edited) - base)[changed]
        boots = delta[rng.integers(0, len(delta), size=(n_boot, len(delta)))].mean(axis=1)
        out[name] = {
            lab: {
                "value": float(delta[:, j].mean()),
                "ci": [float(np.quantile(boots[:, j], q)) for q in (0.025, 0.975)],
                "n": int(changed.sum()),
            }
            for j, lab in enumerate(model.labels)
        }
    return out


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="chest_ct_demo", help="a registered name or a folder")
    ap.add_argument("--n", type=int, default=500, help="test cases (default 500)")
    args = ap.parse_args(argv)
    model = load(args.model)
    res = {"auroc": auroc_by_grammar(model, args.n), "edits": edit_shift(model, args.n)}
    labels = list(model.labels)
    print("| label | report-only AUROC, grammar 3 | grammar 4 |\n|---|---|---|")
    for lab in labels:
        a, b = res["auroc"][3][lab], res["auroc"][4][lab]
        print(
            f"| {lab} | {a['value']:.3f} [{a['ci'][0]:.3f}, {a['ci'][1]:.3f}] "
            f"| {b['value']:.3f} [{b['ci'][0]:.3f}, {b['ci'][1]:.3f}] |"
        )
    names = list(res["edits"])
    print("\n| label | " + " | ".join(f"Δ logit, {n}" for n in names) + " |")
    print("|---|" + "---|" * len(names))
    for lab in labels:
        cells = [res["edits"][n][lab] for n in names]
        print(
            f"| {lab} | "
            + " | ".join(f"{c['value']:+.3f} [{c['ci'][0]:+.3f}, {c['ci'][1]:+.3f}]" for c in cells)
            + " |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
