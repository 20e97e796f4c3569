"""Report-labeler benchmark: medfuse's parser vs a plain negspacy baseline, same lexicon, one run.

    python benchmarks/report_labels.py [--data ../shared/data/reports/iu_reports_dev.csv]
                                       [--speed-n 1000] [--repeats 3] [--json out.json]
                                       [--errors] [--record]

Scores against the manual MeSH codes of the IU chest X-ray reports as described in
``../shared/data/README.md`` ("Gold labels from the manual MeSH codes"): a code is gold-positive
when the ``problems`` column holds one of its MeSH terms, and a labeler output of ``1``
(present) counts as positive. Each report's text is
``INDICATION: …\\nCOMPARISON: …\\nFINDINGS: …\\nIMPRESSION: …``.

Prints per-finding precision / recall / F1, macro-F1 over the codes with ≥ 20 gold positives,
and reports/s for parse + label of ``--speed-n`` reports (the set cycled) with ``nlp.pipe``:
the median of ``--repeats`` interleaved rounds, after the pipelines are built and warm.
``--record`` appends a row to the table in docs/benchmarks.md.

``--before-ref REF`` (a git commit, e.g. the one a change started from) also runs medfuse as it
was at ``REF``: its ``medfuse`` package is extracted with ``git archive`` into a temporary folder
and run in a worker process, which labels the same reports and joins the interleaved speed
rounds; the script then prints macro-F1 and reports/s before and after, and the after / before
ratio of wall time and of CPU time (each process's own; steadier on a shared machine), as the
median over rounds of each round's ratio (the two ran back to back).

The baseline is what a newcomer would build from the same parts: a blank English spaCy
pipeline with spaCy's own tokenizer and ``sentencizer``, an ``EntityRuler`` with medfuse's
lexicon, and negspacy's ``Negex`` with its default ``en_clinical`` termset; a finding is 1 when
any mention is not negated, 0 when all are negated.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import io
import json
import os
import platform
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "data" / "reports" / "iu_reports_dev.csv"

#: finding code -> MeSH `problems` terms (../shared/data/README.md)
GOLD_TERMS: dict[str, tuple[str, ...]] = {
    "cardiomegaly": ("Cardiomegaly",),
    "atelectasis": ("Pulmonary Atelectasis", "Atelectasis"),
    "lung_opacity": ("Opacity", "Airspace Disease", "Infiltrate"),
    "pleural_effusion": ("Pleural Effusion",),
    "fracture": ("Fractures, Bone",),
    "support_devices": (
        "Catheters, Indwelling",
        "Implanted Medical Device",
        "Medical Device",
        "Tube, Inserted",
        "Stents",
    ),
    "nodule": ("Nodule",),
    "emphysema": ("Emphysema", "Pulmonary Emphysema"),
    "edema": ("Pulmonary Edema", "Pulmonary Congestion"),
    "consolidation": ("Consolidation",),
    "pneumonia": ("Pneumonia",),
    "pneumothorax": ("Pneumothorax",),
    "mass": ("Mass",),
}
MIN_POSITIVES = 20


def load_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def report_text(row: dict[str, str]) -> str:
    """The README's text for one row."""
    return (
        f"INDICATION: {row['indication']}\nCOMPARISON: {row['comparison']}\n"
        f"FINDINGS: {row['findings']}\nIMPRESSION: {row['impression']}"
    )


def gold_labels(row: dict[str, str]) -> dict[str, bool]:
    problems = {p.strip() for p in row["problems"].split(";")}
    return {code: bool(problems & set(terms)) for code, terms in GOLD_TERMS.items()}


# -- labelers -------------------------------------------------------------------------------
def medfuse_labeler() -> Callable[[Sequence[str]], list[dict[str, int | None]]]:
    from medfuse.text.pipeline import get_pipeline, parse_reports

    nlp = get_pipeline()

    def label(texts: Sequence[str]) -> list[dict[str, int | None]]:
        return [r.labels() for r in parse_reports(texts, nlp=nlp, batch_size=64)]

    return label


def baseline_labeler() -> Callable[[Sequence[str]], list[dict[str, int | None]]]:
    import negspacy.negation  # noqa: F401  (registers "negex")
    import spacy

    from medfuse.text.lexicon import FINDING_CODES, IGNORE_LABEL, load_lexicon

    nlp = spacy.blank("en")
    nlp.add_pipe("sentencizer")
    ruler = nlp.add_pipe("entity_ruler", config={"phrase_matcher_attr": "LOWER"})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        ruler.add_patterns(load_lexicon().ruler_patterns())
    nlp.add_pipe("negex")  # default termset: en_clinical

    def label(texts: Sequence[str]) -> list[dict[str, int | None]]:
        out = []
        for doc in nlp.pipe(texts, batch_size=64):
            labels: dict[str, int | None] = dict.fromkeys(FINDING_CODES)
            for ent in doc.ents:
                if ent.label_ == IGNORE_LABEL:
                    continue
                value = 0 if ent._.negex else 1
                labels[ent.label_] = max(labels[ent.label_] or 0, value)
            labels["no_finding"] = (
                0 if any(v == 1 for k, v in labels.items() if k != "no_finding") else 1
            )
            out.append(labels)
        return out

    return label


def extract_ref(ref: str) -> Path:
    """The ``medfuse`` package of git commit ``ref``, extracted into a new temporary folder."""
    blob = subprocess.run(
        ["git", "-C", str(REPO), "archive", "--format=tar", ref, "medfuse"],
        check=True,
        capture_output=True,
    ).stdout
    dest = Path(tempfile.mkdtemp(prefix="medfuse_before_"))
    with tarfile.open(fileobj=io.BytesIO(blob)) as tar:
        tar.extractall(dest, filter="data")
    return dest


class BeforeWorker:
    """medfuse at another commit, in its own process: labels texts, times speed rounds."""

    def __init__(self, tree: Path, data: Path, speed_n: int):
        env = dict(os.environ, PYTHONPATH=str(tree))
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--worker", "--data", str(data), "--speed-n", str(speed_n)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
            cwd=str(tree),
        )
        first = json.loads(self._read())
        self.preds: list[dict[str, int | None]] = first["preds"]
        self.where: str = first["medfuse"]

    def _read(self) -> str:
        line = self.proc.stdout.readline()
        if not line:
            raise SystemExit(f"the --before-ref worker stopped (exit {self.proc.wait()})")
        return line

    def time_round(self) -> tuple[float, float]:
        """(wall, CPU) seconds of one speed round in the worker."""
        self.proc.stdin.write("time\n")
        self.proc.stdin.flush()
        wall, cpu = self._read().split()
        return float(wall), float(cpu)

    def close(self) -> None:
        self.proc.stdin.write("quit\n")
        self.proc.stdin.flush()
        self.proc.wait(timeout=60)


def worker(data: Path, speed_n: int) -> int:
    """The --before-ref side: label the reports once, then answer "time" lines with seconds."""
    import medfuse

    rows = load_rows(data)
    texts = [report_text(r) for r in rows]
    med = medfuse_labeler()
    preds = med(texts)
    print(json.dumps({"preds": preds, "medfuse": medfuse.__file__}), flush=True)
    speed_texts = [texts[i % len(texts)] for i in range(speed_n)]
    for line in sys.stdin:
        if line.strip() != "time":
            break
        c0 = time.process_time()
        wall = timed(med, speed_texts)[1]
        print(wall, time.process_time() - c0, flush=True)
    return 0


# -- scoring --------------------------------------------------------------------------------
def score(preds: list[dict[str, int | None]], golds: list[dict[str, bool]]) -> dict[str, dict]:
    out: dict[str, dict] = {}
    for code in GOLD_TERMS:
        tp = fp = fn = 0
        for p, g in zip(preds, golds, strict=True):
            pos = p.get(code) == 1
            tp += pos and g[code]
            fp += pos and not g[code]
            fn += (not pos) and g[code]
        prec = tp / (tp + fp) if tp + fp else 0.0
        rec = tp / (tp + fn) if tp + fn else 0.0
        f1 = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
        out[code] = {
            "tp": tp,
            "fp": fp,
            "fn": fn,
            "gold": tp + fn,
            "precision": prec,
            "recall": rec,
            "f1": f1,
        }
    return out


def macro_f1(
    scores: dict[str, dict], min_positives: int = MIN_POSITIVES
) -> tuple[float, list[str]]:
    codes = [c for c, s in scores.items() if s["gold"] >= min_positives]
    return (sum(scores[c]["f1"] for c in codes) / len(codes) if codes else 0.0), codes


def timed(fn: Callable[[Sequence[str]], list], texts: Sequence[str]) -> tuple[list, float]:
    t0 = time.perf_counter()
    out = fn(texts)
    return out, time.perf_counter() - t0


def record(med, base, med_macro, base_macro, med_rate, base_rate, n) -> None:
    """Append a result row under the report-labels marker of docs/benchmarks.md."""
    doc = REPO / "docs" / "benchmarks.md"
    marker = "<!-- rows: benchmarks/report_labels.py -->"
    text = doc.read_text(encoding="utf-8")
    if marker not in text:
        raise SystemExit(f"{doc} has no {marker!r} table")
    head, tail = text.split(marker, 1)
    lines = tail.split("\n")
    end = 3  # marker line rest, header, rule
    while end < len(lines) and lines[end].startswith("|"):
        end += 1
    f1 = " / ".join(
        f"{med[c]['f1']:.3f}"
        for c in ("cardiomegaly", "atelectasis", "lung_opacity", "support_devices")
    )
    bf1 = " / ".join(
        f"{base[c]['f1']:.3f}"
        for c in ("cardiomegaly", "atelectasis", "lung_opacity", "support_devices")
    )
    row = (
        f"| {datetime.date.today()} | {platform.machine()} {_cpus()} CPU | {n} | **{med_macro:.3f}** | {base_macro:.3f} "
        f"| {f1} | {bf1} | {med_rate:,.0f} | {base_rate:,.0f} | {1000 / med_rate:.2f} |"
    )
    lines.insert(end, row)
    doc.write_text(head + marker + "\n".join(lines), encoding="utf-8")


def _cpus() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def main(argv: list[str] | None = None) -> int:
    from rich.console import Console
    from rich.table import Table

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="iu_reports_dev.csv")
    ap.add_argument("--speed-n", type=int, default=1000, help="reports in the speed run")
    ap.add_argument("--repeats", type=int, default=3, help="timed rounds (median reported)")
    ap.add_argument("--json", type=Path, help="also write the results here")
    ap.add_argument("--record", action="store_true", help="append a row to docs/benchmarks.md")
    ap.add_argument("--errors", action="store_true", help="list medfuse's errors per finding")
    ap.add_argument("--before-ref", help="also run medfuse as of this git commit (before/after)")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        return worker(args.data, args.speed_n)
    console = Console()
    if not args.data.is_file():
        console.print(f"[red]data not found:[/] {args.data} (see ../shared/data/README.md)")
        return 2
    before = None
    if args.before_ref:
        tree = extract_ref(args.before_ref)
        before = BeforeWorker(tree, args.data, args.speed_n)
        if not before.where.startswith(str(tree)):
            raise SystemExit(f"the worker imported {before.where}, not the tree of {tree}")

    rows = load_rows(args.data)
    texts = [report_text(r) for r in rows]
    golds = [gold_labels(r) for r in rows]

    t0 = time.perf_counter()
    med = medfuse_labeler()
    med_build = time.perf_counter() - t0
    t0 = time.perf_counter()
    base = baseline_labeler()
    base_build = time.perf_counter() - t0

    med_preds, _ = timed(med, texts)
    base_preds, _ = timed(base, texts)
    med_scores, base_scores = score(med_preds, golds), score(base_preds, golds)
    med_macro, macro_codes = macro_f1(med_scores)
    base_macro, _ = macro_f1(base_scores)

    speed_texts = [texts[i % len(texts)] for i in range(args.speed_n)]
    med_times, base_times, before_times = [], [], []
    med_cpu, before_cpu = [], []  # CPU seconds: steadier than wall time on a shared machine
    for _ in range(max(1, args.repeats)):  # interleaved, so that machine noise hits all
        c0 = time.process_time()
        med_times.append(timed(med, speed_texts)[1])
        med_cpu.append(time.process_time() - c0)
        if before is not None:
            wall, cpu = before.time_round()
            before_times.append(wall)
            before_cpu.append(cpu)
        base_times.append(timed(base, speed_texts)[1])
    med_s, base_s = statistics.median(med_times), statistics.median(base_times)

    table = Table(title=f"Report labels vs MeSH gold ({len(rows)} IU reports)")
    for col in ("finding", "gold+", "medfuse P", "R", "F1", "baseline P", "R", "F1"):
        table.add_column(col, justify="right" if col != "finding" else "left")
    for code in GOLD_TERMS:
        m, b = med_scores[code], base_scores[code]
        mark = "*" if code in macro_codes else ""
        table.add_row(
            code + mark,
            str(m["gold"]),
            f"{m['precision']:.3f}",
            f"{m['recall']:.3f}",
            f"{m['f1']:.3f}",
            f"{b['precision']:.3f}",
            f"{b['recall']:.3f}",
            f"{b['f1']:.3f}",
        )
    console.print(table)
    console.print(f"* in the macro-F1 (≥ {MIN_POSITIVES} gold positives): {', '.join(macro_codes)}")
    console.print(f"macro-F1  medfuse [bold]{med_macro:.3f}[/]   baseline {base_macro:.3f}")
    console.print(
        f"speed ({args.speed_n} reports, parse + label, nlp.pipe, median of {len(med_times)}):  "
        f"medfuse [bold]{args.speed_n / med_s:,.0f} reports/s[/] ({med_s:.2f} s)   "
        f"baseline {args.speed_n / base_s:,.0f} reports/s ({base_s:.2f} s)"
    )
    console.print(f"pipeline build: medfuse {med_build:.2f} s, baseline {base_build:.2f} s")
    before_result = None
    if before is not None:
        before.close()
        before_scores = score(before.preds, golds)
        before_macro, _ = macro_f1(before_scores)
        before_s = statistics.median(before_times)
        # each round's after / before (the two ran back to back), then the median over rounds
        cpu_ratio = statistics.median(a / b for a, b in zip(med_cpu, before_cpu, strict=True))
        wall_ratio = statistics.median(a / b for a, b in zip(med_times, before_times, strict=True))
        before_result = {
            "ref": args.before_ref,
            "macro_f1": before_macro,
            "per_finding": before_scores,
            "reports_per_s": args.speed_n / before_s,
            "after_over_before_wall": wall_ratio,
            "after_over_before_cpu": cpu_ratio,
        }
        console.print(
            f"before ({args.before_ref}) → after:  macro-F1 {before_macro:.3f} → "
            f"[bold]{med_macro:.3f}[/];  per finding F1 "
            + ", ".join(
                f"{c} {before_scores[c]['f1']:.3f}→{med_scores[c]['f1']:.3f}"
                for c in GOLD_TERMS
                if before_scores[c]["f1"] != med_scores[c]["f1"]
            )
        )
        console.print(
            f"speed before {args.speed_n / before_s:,.0f} reports/s ({before_s:.2f} s), after "
            f"{args.speed_n / med_s:,.0f} reports/s ({med_s:.2f} s): after takes "
            f"[bold]{wall_ratio:.2f}×[/] the wall time and [bold]{cpu_ratio:.2f}×[/] the CPU "
            f"time of before (median of the rounds' ratios; CPU s per round: before "
            f"{', '.join(f'{t:.2f}' for t in before_cpu)}; after "
            f"{', '.join(f'{t:.2f}' for t in med_cpu)})"
        )

    if args.errors:
        for code in GOLD_TERMS:
            for row, p, g in zip(rows, med_preds, golds, strict=True):
                if (p.get(code) == 1) != g[code]:
                    kind = "FP" if p.get(code) == 1 else "FN"
                    console.print(
                        f"[yellow]{code} {kind}[/] id={row['id']} label={p.get(code)} problems={row['problems']!r}"
                    )

    if args.record:
        record(
            med_scores,
            base_scores,
            med_macro,
            base_macro,
            args.speed_n / med_s,
            args.speed_n / base_s,
            len(rows),
        )
        console.print("row added to docs/benchmarks.md")

    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "data": str(args.data),
                    "n_reports": len(rows),
                    "machine": {
                        "python": platform.python_version(),
                        "cpu": platform.processor() or platform.machine(),
                    },
                    "macro_codes": macro_codes,
                    "medfuse": {
                        "macro_f1": med_macro,
                        "per_finding": med_scores,
                        "reports_per_s": args.speed_n / med_s,
                    },
                    "baseline": {
                        "macro_f1": base_macro,
                        "per_finding": base_scores,
                        "reports_per_s": args.speed_n / base_s,
                    },
                    "before": before_result,
                },
                indent=2,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
