"""De-identification corpus benchmark (issue 26): every case of ``tests/robustness/deid_corpus.py``
(the sample cases and the real CT / MR series of ``../shared/data`` with their headers edited as
the PS3.15 basic profile, Type 2 deletion, each patient / study / series / equipment attribute
deleted alone, private-tag removal, date shifts, consistent and inconsistent UID remapping leave
them) through ``run_workflow`` with all seven exporters, in each export mode, and the table:

    python benchmarks/deid_corpus.py [--modes phi deid] [--subset] [--deid-all] [--base B ...]

The ``phi`` mode (header values read into JSON / HTML / PDF / FHIR) runs every case; the
``deid`` mode (``--deidentify``) the kinds of ``KINDS`` (``--deid-all``: every case).
One row per case and mode: status (ok / partial / error), outputs written, formats written of
7, dciodvfy errors; then the totals: number of cases, outputs, dciodvfy errors, studies lost
(a study lost: no prediction where one was due; only inconsistent UIDs and a Siemens mosaic
stripped of its private CSA header may end in a clear error). Exit status 1 when any case is
not as required. ``--subset`` runs the test suite's subset instead of every case.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "robustness"))

import deid_corpus as dc  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--modes", nargs="+", default=["phi", "deid"], choices=sorted(dc.MODES))
    ap.add_argument("--subset", action="store_true", help="the test suite's cases only")
    ap.add_argument(
        "--deid-all",
        action="store_true",
        help="with --deidentify too, every case (default: the kinds of KINDS, not each "
        "attribute deleted alone)",
    )
    ap.add_argument("--base", nargs="*", default=None, help="only these base series")
    ap.add_argument("--keep", type=Path, default=None, help="build and run under this folder")
    ap.add_argument(
        "--check-only",
        type=Path,
        default=None,
        help="check the outputs of a run kept with --keep (its MODE folders) instead of running",
    )
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(1)
    logging.basicConfig(level=logging.ERROR)
    warnings.simplefilter("ignore")
    exe = shutil.which("dciodvfy")
    if exe is None:
        print("dciodvfy (dicom3tools) is not on PATH: apt-get install dicom3tools", file=sys.stderr)
        return 2
    cases = dc.default_cases() if args.subset else dc.all_cases()
    if args.base:
        cases = [c for c in cases if c.base in args.base]
    results = []
    t0 = time.perf_counter()
    if args.check_only is not None:
        for mode in args.modes:
            results += dc.check_run(args.check_only / mode, mode, exe)
        cases = sorted({r.case for r in results}, key=lambda c: c.name)
    root = args.keep or Path(tempfile.mkdtemp(prefix="medfuse-deid-corpus-"))
    try:
        for mode in args.modes if args.check_only is None else ():
            todo = cases
            if mode == "deid" and not args.deid_all:
                todo = [c for c in cases if not c.kind.startswith("deleted_")]
            results += dc.run_corpus(todo, root / mode, mode=mode, dciodvfy=exe)
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)
    wall = time.perf_counter() - t0
    print(dc.table(results))
    bases = sorted({c.base for c in cases})
    print(f"bases: {', '.join(bases)}; modes: {', '.join(args.modes)}; {wall:.0f} s")
    bad = [(r, dc.problems(r)) for r in results if dc.problems(r)]
    for r, p in bad:
        print(f"NOT AS REQUIRED {r.case.name} ({r.mode}): {'; '.join(p)}")
    for r in results:
        reason = dc.expected_error(r.case)
        if r.status != "ok" and reason and not r.lost:
            print(f"expected {r.status}: {r.case.name} ({r.mode}): {reason}: {r.reason[:160]}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
