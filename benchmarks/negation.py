"""Negation benchmark: medfuse's context rules vs plain negspacy on the issue-29 test sentences.

    python benchmarks/negation.py [--json out.json] [--errors]

The sentences are ``CASES`` of ``tests/unit/test_negation_scope.py`` (class, sentence, target
phrase, expected status), written for the seven error classes of issue 29, with controls. As
the issue scored them, the target phrase is put into ``doc.ents`` in place of a lexicon:

* **medfuse**: :func:`medfuse.text.pipeline.target_status` (the parser's tokenizer, sentences,
  abbreviations and ``medfuse_context``, with the target as the only mention);
* **negspacy**: a blank English spaCy pipeline, spaCy's tokenizer and ``sentencizer``, negspacy
  ``Negex`` with its default ``en_clinical`` termset.

Prints, for the class "negated" (expected status ``absent``), precision / recall / F1 of both
systems over all sentences, and per class how many sentences each gets right (for negspacy,
"right" means negated exactly when the expected status is ``absent``; medfuse is scored the
same way in that table, its full three-way status is what the unit tests check).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CASES_FILE = REPO / "tests" / "unit" / "test_negation_scope.py"


def load_cases() -> list[tuple[int, str, str, str]]:
    spec = importlib.util.spec_from_file_location("negation_cases", CASES_FILE)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return list(mod.CASES)


def medfuse_negated() -> Callable[[str, str], bool]:
    from medfuse.text.pipeline import get_pipeline, target_status

    nlp = get_pipeline()
    return lambda text, target: target_status(text, target, nlp=nlp)[0] == "absent"


def negspacy_negated() -> Callable[[str, str], bool]:
    import negspacy.negation  # noqa: F401  (registers "negex")
    import spacy

    nlp = spacy.blank("en")
    nlp.add_pipe("sentencizer")
    nlp.add_pipe("negex")  # default termset: en_clinical

    def negated(text: str, target: str) -> bool:
        start = text.lower().find(target.lower())
        doc = nlp.make_doc(text)
        doc = nlp.get_pipe("sentencizer")(doc)
        ent = doc.char_span(start, start + len(target), label="TARGET", alignment_mode="expand")
        doc.ents = [ent]
        doc = nlp.get_pipe("negex")(doc)
        return bool(doc.ents[0]._.negex)

    return negated


def prf(pred: list[bool], gold: list[bool]) -> dict[str, float]:
    tp = sum(p and g for p, g in zip(pred, gold, strict=True))
    fp = sum(p and not g for p, g in zip(pred, gold, strict=True))
    fn = sum(g and not p for p, g in zip(pred, gold, strict=True))
    prec = tp / (tp + fp) if tp + fp else 0.0
    rec = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
    return {"tp": tp, "fp": fp, "fn": fn, "precision": prec, "recall": rec, "f1": f1}


def main(argv: list[str] | None = None) -> int:
    from rich.console import Console
    from rich.table import Table

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--json", type=Path, help="also write the results here")
    ap.add_argument("--errors", action="store_true", help="list each system's wrong sentences")
    args = ap.parse_args(argv)
    console = Console()

    cases = load_cases()
    gold = [c[3] == "absent" for c in cases]
    systems = {"medfuse": medfuse_negated(), "negspacy": negspacy_negated()}
    preds = {name: [fn(c[1], c[2]) for c in cases] for name, fn in systems.items()}
    scores = {name: prf(p, gold) for name, p in preds.items()}

    table = Table(title=f"Negation on {len(cases)} written sentences (issue 29 classes)")
    for col in ("class", "sentences", "negated", "medfuse right", "negspacy right"):
        table.add_column(col, justify="right")
    per_class = {}
    for cls in sorted({c[0] for c in cases}):
        idx = [i for i, c in enumerate(cases) if c[0] == cls]
        right = {n: sum(preds[n][i] == gold[i] for i in idx) for n in systems}
        per_class[cls] = {"n": len(idx), **right}
        table.add_row(
            str(cls),
            str(len(idx)),
            str(sum(gold[i] for i in idx)),
            str(right["medfuse"]),
            str(right["negspacy"]),
        )
    console.print(table)
    for name, s in scores.items():
        console.print(
            f"{name:9s} negated  P {s['precision']:.3f}  R {s['recall']:.3f}  "
            f"[bold]F1 {s['f1']:.3f}[/]  (tp {s['tp']}, fp {s['fp']}, fn {s['fn']})"
        )
    if args.errors:
        for name in systems:
            for c, p, g in zip(cases, preds[name], gold, strict=True):
                if p != g:
                    console.print(f"[yellow]{name}[/] class {c[0]} {c[1]!r} target {c[2]!r}")
    if args.json:
        args.json.write_text(json.dumps({"scores": scores, "per_class": per_class}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
