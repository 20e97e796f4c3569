"""Linear-time guards, measured as ratios in one run (moved out of the unit tests, where wall-time
limits flaked on a loaded 2-core machine).

    python benchmarks/complexity.py [--repeats 3] [--check]

Each guard times the same operation on a small and on a large input (median of ``--repeats``)
and prints the ratio of the times beside the ratio of the sizes: linear work gives a time ratio
near the size ratio, quadratic work its square.

* ``phantom``: the chest phantom at 128 × 128 × 32 and at 256 × 256 × 64 voxels (8× the voxels).
* ``report parse``: pathological report texts (20,000 closing brackets, 5,000 nested brackets,
  one 96,000-character sentence, 3,000 repeated abbreviations) against a quarter of each: CPU
  time of this process (``time.process_time``), so other jobs do not count.
* ``read_report 1 MB``: reading a 1 MiB report (kept whole, the encoder text truncated at
  100,000 characters) against a 100 KiB one.

``--check`` exits 1 when a time ratio exceeds twice its size ratio (the guards' bound), so a
quadratic regression fails loudly without a wall-clock limit anywhere.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

#: the texts the unit tests once timed, as functions of a scale (1: the tested size)
PATHOLOGICAL: dict[str, Callable[[float], str]] = {
    "closing brackets": lambda k: ")" * int(20000 * k),
    "nested brackets": lambda k: "(" * int(5000 * k) + "pneumothorax" + ")" * int(5000 * k),
    "one long sentence": lambda k: "no pneumothorax " * int(6000 * k),
    "many abbreviations": lambda k: "No pneumothorax (PTX). PTX. " * int(3000 * k),
}
ORDINARY = "Mild cardiomegaly. No pneumothorax. Small left pleural effusion is unchanged.\n"


def median_time(fn: Callable[[], object], repeats: int, clock=time.perf_counter) -> float:
    times = []
    for _ in range(repeats):
        t0 = clock()
        fn()
        times.append(clock() - t0)
    return statistics.median(times)


def phantom(repeats: int) -> list[tuple[str, float, float]]:
    from medfuse.synth.geometry import make_geometry
    from medfuse.synth.phantom import ChestPhantom

    small = make_geometry((128, 128, 32), (3.0, 3.0, 8.0))
    large = make_geometry((256, 256, 64), (1.5, 1.5, 4.0))
    ChestPhantom(small).volume()  # warm-up
    t_small = median_time(lambda: ChestPhantom(small).volume(), repeats)
    t_large = median_time(lambda: ChestPhantom(large).volume(), repeats)
    print(f"phantom: {t_small:.3f} s at 128x128x32, {t_large:.3f} s at 256x256x64")
    return [("phantom 256x256x64 / 128x128x32", t_large / t_small, 8.0)]


def report_parse(repeats: int) -> list[tuple[str, float, float]]:
    from medfuse.text.pipeline import parse_report

    parse_report("warm up")
    rows = []
    for name, make in PATHOLOGICAL.items():
        quarter, full = make(0.25), make(1.0)
        t_quarter = median_time(lambda t=quarter: parse_report(t), repeats, time.process_time)
        t_full = median_time(lambda t=full: parse_report(t), repeats, time.process_time)
        print(
            f"report parse, {name}: {t_full:.3f} s CPU ({len(full)} characters), {t_quarter:.3f} s for a quarter"
        )
        rows.append((f"report parse {name}: whole / quarter", t_full / max(t_quarter, 1e-3), 4.0))
    return rows


def read_report_sizes(repeats: int) -> list[tuple[str, float, float]]:
    from medfuse.io.reports import read_report

    with tempfile.TemporaryDirectory() as tmp:
        paths = {}
        for size in (102_400, 1_048_576):
            p = Path(tmp) / f"report_{size}.txt"
            p.write_text(ORDINARY * (size // len(ORDINARY) + 1))
            paths[size] = p
        read_report(paths[102_400])  # warm-up
        t_small = median_time(lambda: read_report(paths[102_400]), repeats)
        t_large = median_time(lambda: read_report(paths[1_048_576]), repeats)
    print(f"read_report: {t_small:.3f} s for 100 KiB, {t_large:.3f} s for 1 MiB")
    return [("read_report 1 MiB / 100 KiB", t_large / t_small, 10.0)]


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--check", action="store_true", help="exit 1 when a guard's bound is broken")
    args = ap.parse_args()
    rows = phantom(args.repeats) + report_parse(args.repeats) + read_report_sizes(args.repeats)
    print()
    print("| guard | time ratio | size ratio | bound (2x size ratio) |")
    print("|---|---|---|---|")
    broken = []
    for name, ratio, size_ratio in rows:
        ok = ratio <= 2 * size_ratio
        broken += [] if ok else [name]
        print(f"| {name} | {ratio:.2f} | {size_ratio:g} | {'ok' if ok else 'BROKEN'} |")
    if broken and args.check:
        print(f"broken: {', '.join(broken)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
