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
``--before-ref REF`` adds medfuse as of git commit ``REF`` (run in a worker process).

These sentences were written together with the rules they test: medfuse's score on them shows
the classes are handled, not how it does on unseen text.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
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


def medfuse_status() -> Callable[[str, str], str]:
    """medfuse's status of a target phrase, the target put into ``doc.ents`` in place of the
    lexicon's mentions (what :func:`medfuse.text.pipeline.target_status` does, written out so
    that ``--before-ref`` can run it on versions without that function)."""
    from medfuse.text.pipeline import get_pipeline

    nlp = get_pipeline()

    def status(text: str, target: str) -> str:
        start = text.lower().find(target.lower())
        doc = nlp.make_doc(text)
        for name, proc in nlp.pipeline:
            if name == "entity_ruler":
                span = (start, start + len(target))
                doc.ents = [doc.char_span(*span, label="TARGET", alignment_mode="expand")]
            elif name != "medfuse_findings":
                doc = proc(doc)
        return doc.ents[0]._.status

    return status


def medfuse_negated() -> Callable[[str, str], bool]:
    status = medfuse_status()
    return lambda text, target: status(text, target) == "absent"


def before_negated(ref: str, cases: list[tuple[int, str, str, str]]) -> list[bool]:
    """medfuse as of git commit ``ref`` (its package extracted to a temporary folder, run in a
    worker process) on the cases."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from report_labels import extract_ref

    tree = extract_ref(ref)
    out = subprocess.run(
        [sys.executable, __file__, "--worker"],
        input=json.dumps(cases),
        check=True,
        capture_output=True,
        text=True,
        cwd=str(tree),
        env=dict(os.environ, PYTHONPATH=str(tree)),
    ).stdout
    got = json.loads(out.strip().splitlines()[-1])
    if not got["medfuse"].startswith(str(tree)):
        raise SystemExit(f"the worker imported {got['medfuse']}, not the tree of {tree}")
    return [s == "absent" for s in got["statuses"]]


def worker() -> int:
    import medfuse

    status = medfuse_status()
    cases = json.loads(sys.stdin.read())  # the test module needs the current medfuse
    statuses = [status(c[1], c[2]) for c in cases]
    print(json.dumps({"statuses": statuses, "medfuse": medfuse.__file__}))
    return 0


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
    ap.add_argument("--before-ref", help="also score medfuse as of this git commit")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        return worker()
    console = Console()

    cases = load_cases()
    gold = [c[3] == "absent" for c in cases]
    systems = {"medfuse": medfuse_negated(), "negspacy": negspacy_negated()}
    preds = {name: [fn(c[1], c[2]) for c in cases] for name, fn in systems.items()}
    if args.before_ref:
        preds[f"medfuse@{args.before_ref}"] = before_negated(args.before_ref, cases)

    table = Table(title=f"Negation on {len(cases)} written sentences (issue 29 classes)")
    for col in ("class", "sentences", "negated", *(f"{n} right" for n in preds)):
        table.add_column(col, justify="right")
    per_class = {}
    for cls in sorted({c[0] for c in cases}):
        idx = [i for i, c in enumerate(cases) if c[0] == cls]
        right = {n: sum(preds[n][i] == gold[i] for i in idx) for n in preds}
        per_class[cls] = {"n": len(idx), **right}
        table.add_row(
            str(cls), str(len(idx)), str(sum(gold[i] for i in idx)), *map(str, right.values())
        )
    console.print(table)
    scores = {name: prf(p, gold) for name, p in preds.items()}
    for name, s in scores.items():
        console.print(
            f"{name:16s} negated  P {s['precision']:.3f}  R {s['recall']:.3f}  "
            f"[bold]F1 {s['f1']:.3f}[/]  (tp {s['tp']}, fp {s['fp']}, fn {s['fn']})"
        )
    if args.errors:
        for name in preds:
            for c, p, g in zip(cases, preds[name], gold, strict=True):
                if p != g:
                    console.print(f"[yellow]{name}[/] class {c[0]} {c[1]!r} target {c[2]!r}")
    if args.json:
        args.json.write_text(json.dumps({"scores": scores, "per_class": per_class}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
