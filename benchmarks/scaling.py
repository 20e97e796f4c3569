"""Batch throughput with 1 and 2 workers (local processes, and Ray actors when installed).

    python benchmarks/scaling.py [--studies 8] [--workers 1,2] [--record]

Copies of the sample case chest_ct_0002 (112 × 88 × 48 CT + report) run through the chest CT
workflow (Grad-CAM + modality Shapley for the positive findings, all seven exports); each
configuration is a fresh ``run_workflow`` in this process (worker start-up included, as a user
sees it). Prints studies per minute and the speed-up over one worker.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

from end_to_end import WORKFLOW  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--studies", type=int, default=8)
    ap.add_argument("--workers", default="1,2")
    ap.add_argument("--record", action="store_true")
    args = ap.parse_args()

    from medfuse.config import load_workflow
    from medfuse.workflows import run_workflow

    work = Path(tempfile.mkdtemp(prefix="medfuse-bench-scale-"))
    for i in range(args.studies):
        shutil.copytree(REPO / "sample_cases" / "chest_ct_0002", work / "in" / f"s{i:03d}")
    wf = load_workflow(WORKFLOW)
    engines = ["local"]
    try:
        import ray  # noqa: F401

        engines.append("ray")
    except ImportError:
        print("Ray not installed: local engine only")
    rate: dict[tuple[str, int], float] = {}
    for engine in engines:
        for n in (int(w) for w in args.workers.split(",")):
            out = work / f"out_{engine}_{n}"
            t0 = time.perf_counter()
            summary = run_workflow(wf, [work / "in"], out, workers=n, engine=engine)
            wall = time.perf_counter() - t0
            assert not summary.failed, summary.failed
            rate[(engine, n)] = 60.0 * args.studies / wall
            print(
                f"{engine:<6} {n} worker(s): {wall:7.1f} s, {rate[(engine, n)]:6.1f} studies/min, "
                f"× {rate[(engine, n)] / rate[(engine, 1)] if (engine, 1) in rate else 1:.2f} vs 1"
            )
    if args.record:
        from load import record_row

        cells = ", ".join(f"{e} ×{n}: {r:.1f}" for (e, n), r in rate.items())
        row = (
            f"| {time.strftime('%Y-%m-%d')} | {platform.machine()}, {os.cpu_count()} CPUs | "
            f"{args.studies} | {cells} |"
        )
        record_row(REPO / "docs" / "benchmarks.md", "<!-- rows: benchmarks/scaling.py -->", row)
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
