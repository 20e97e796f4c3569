"""Long-run fuzz harness (not collected by pytest): mutated DICOM series, random reports and
random workflows, each checked with the properties of ``fuzzing.py``.

    .venv/bin/python tests/robustness/fuzz_long.py --n 100000 --seed 1 --out /tmp/fuzz

Prints the count per outcome, and, for every violation (an exception other than a
MedfuseError, a wrong volume, a case running longer than --timeout seconds), the case's seed;
with --out, the input that caused it is saved there. ``--replay SEED`` reruns one case.
Cases are drawn in the proportion --mix (DICOM : reports : workflows).
"""

from __future__ import annotations

import argparse
import random
import signal
import sys
import tempfile
import time
import traceback
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fuzzing import (
    DicomFuzzer,
    base_series,
    fuzz_report_once,
    fuzz_workflow_once,
)

REPO = Path(__file__).resolve().parents[2]


class CaseTimeout(BaseException):
    """A case ran longer than --timeout (a hang)."""


def _alarm(*_):
    raise CaseTimeout


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--n", type=int, default=100_000, help="number of cases (default 100000)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--mix", default="6:3:1", help="DICOM : report : workflow (default 6:3:1)")
    ap.add_argument("--parse-every", type=int, default=20,
                    help="parse every Nth report with the text pipeline (slow); 0: never")  # fmt: skip
    ap.add_argument("--timeout", type=float, default=20.0, help="seconds per case")
    ap.add_argument("--slices", type=int, default=4, help="slices per fuzzed series (3-8)")
    ap.add_argument("--out", type=Path, default=None, help="save violating inputs here")
    ap.add_argument("--replay", type=int, default=None, help="run the case with this seed only")
    ap.add_argument("--progress", type=int, default=10_000, help="print counts every N cases")
    args = ap.parse_args(argv)

    import logging

    logging.disable(logging.CRITICAL)  # the reader logs what it skips; millions of lines
    import warnings

    warnings.simplefilter("ignore")

    work = Path(tempfile.mkdtemp(prefix="medfuse-fuzz-"))
    bases, refs, orders = base_series(work / "corpus")
    fuzzers = [
        DicomFuzzer(bases[n], refs[n], work / f"fuzz_{n}", orders[n], args.slices)
        for n in sorted(bases)
    ]
    good = (REPO / "sample_cases" / "chest_ct_0001" / "report.txt").read_text()
    weights = [int(x) for x in args.mix.split(":")]
    kinds = ["dicom", "report", "workflow"]
    counts: dict[str, Counter[str]] = {k: Counter() for k in kinds}
    violations: list[str] = []
    # warm-up, untimed and not counted: the first report parse loads spaCy and the first workflow
    # imports pydantic (seconds on a loaded machine; not a hang of the code under test)
    fuzz_report_once(random.Random(0), good, work, True)
    fuzz_workflow_once(random.Random(0), work)
    signal.signal(signal.SIGALRM, _alarm)
    seeds = [args.replay] if args.replay is not None else range(args.seed * 10**9,
                                                                args.seed * 10**9 + args.n)  # fmt: skip
    t0 = time.perf_counter()
    for i, case_seed in enumerate(seeds):
        rng = random.Random(case_seed)
        kind = rng.choices(kinds, weights)[0]
        how = ""
        signal.setitimer(signal.ITIMER_REAL, args.timeout)
        try:
            if kind == "dicom":
                outcome, how = rng.choice(fuzzers).run(rng)
            elif kind == "report":
                parse = args.parse_every > 0 and case_seed % args.parse_every == 0
                outcome, how = fuzz_report_once(rng, good, work, parse)
            else:
                outcome, how = fuzz_workflow_once(rng, work)
        except CaseTimeout:
            outcome = "VIOLATION:hang"
            violations.append(f"seed {case_seed} ({kind}): hang > {args.timeout} s")
        except AssertionError as exc:
            outcome = "VIOLATION:property"
            violations.append(f"seed {case_seed} ({kind}, {how}): {exc}")
        except KeyboardInterrupt:
            raise
        except BaseException as exc:  # anything that is not a MedfuseError (Rust panics too)
            outcome = f"VIOLATION:{type(exc).__name__}"
            violations.append(
                f"seed {case_seed} ({kind}, {how}): {type(exc).__name__}: {exc}\n"
                + "".join(traceback.format_exc().splitlines(True)[-6:])
            )
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
        counts[kind][outcome] += 1
        if outcome.startswith("VIOLATION") and args.out is not None:
            _save(args.out, case_seed, kind, work)
        if args.progress and (i + 1) % args.progress == 0:
            print(f"{i + 1} cases, {time.perf_counter() - t0:.0f} s, "
                  f"{len(violations)} violation(s)", flush=True)  # fmt: skip
    wall = time.perf_counter() - t0
    total = sum(sum(c.values()) for c in counts.values())
    print(f"\n{total} cases in {wall:.0f} s (seed {args.seed}, mix {args.mix})")
    for kind in kinds:
        parts = ", ".join(f"{k} {v}" for k, v in counts[kind].most_common())
        print(f"  {kind}: {sum(counts[kind].values())}: {parts}")
    print(f"violations: {len(violations)}")
    for v in violations[:50]:
        print("  " + v)
    return 1 if violations else 0


def _save(out: Path, seed: int, kind: str, work: Path) -> None:
    """Keep a note of the seed (the input is regenerated by --replay SEED)."""
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "violations.txt", "a") as fh:
        fh.write(f"{seed} {kind}\n")


if __name__ == "__main__":
    raise SystemExit(main())
