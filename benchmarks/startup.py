"""Start-up benchmark: ``import medfuse`` and ``medfuse --help`` as whole processes.

    python benchmarks/startup.py [--repeats 7] [--record]

Each is run as a fresh ``python`` process (median of ``--repeats``, after one warm-up run), next
to a bare ``python -c pass`` so the interpreter's own start-up can be subtracted. Targets:
``import medfuse`` ≤ 0.3 s, ``medfuse --help`` ≤ 0.5 s (whole process, interpreter included).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

CASES = {
    "python -c pass": [sys.executable, "-c", "pass"],
    "import medfuse": [sys.executable, "-c", "import medfuse"],
    "medfuse --help": [sys.executable, "-c", "from medfuse.cli.main import main; main(['--help'])"],
}
TARGETS = {"import medfuse": 0.3, "medfuse --help": 0.5}


def wall(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--record", action="store_true", help="append the result to docs/benchmarks.md")
    args = ap.parse_args()
    times: dict[str, list[float]] = {k: [] for k in CASES}
    for rep in range(args.repeats + 1):  # round 0 warms the file cache
        for name, cmd in CASES.items():
            t = wall(cmd)
            if rep:
                times[name].append(t)
    med = {k: statistics.median(v) for k, v in times.items()}
    base = med["python -c pass"]
    print(f"{'process':<18}{'median s':>10}{'minus python':>14}{'target':>9}  met")
    for name, t in med.items():
        target = TARGETS.get(name)
        met = "" if target is None else ("yes" if t <= target else "no")
        print(f"{name:<18}{t:>10.3f}{t - base:>14.3f}{target if target else '':>9}  {met}")
    if args.record:
        from load import record_row

        row = (
            f"| {time.strftime('%Y-%m-%d')} | {platform.machine()}, {os.cpu_count()} CPUs, Python "
            f"{platform.python_version()} | {base:.3f} | {med['import medfuse']:.3f} | "
            f"{med['medfuse --help']:.3f} |"
        )
        record_row(REPO / "docs" / "benchmarks.md", "<!-- rows: benchmarks/startup.py -->", row)


if __name__ == "__main__":
    main()
