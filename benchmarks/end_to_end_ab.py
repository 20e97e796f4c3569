"""The end-to-end benchmark's medfuse run, two versions of medfuse side by side in one run.

    python benchmarks/end_to_end_ab.py [--base-tree .bench/base_tree] [--repeats 5] [--model DIR]

:func:`end_to_end.medfuse_run` (``run_workflow`` on one 512² × 300 CT study with a report:
Grad-CAM + modality Shapley, all seven exports) in two warm worker processes, one importing
medfuse from ``--base-tree`` (``PYTHONPATH``), one from this working tree; the runs alternate
(base, new, new, base, ...) after one warm-up each, so that both see the same machine load. Both
use the same model folder (``--model``, default the base tree's ``chest_ct_demo``), so that a
model re-shipped meanwhile cannot make them differ. Prints the median per stage and the ratio
new / base of the median wall time (≤ 1: no slower), and of the median CPU time of the run
(every thread of the worker: the work done, less sensitive than wall time to other jobs
loading the machine).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def worker(model: str, cache: Path, size: int, slices: int) -> None:
    """Answer each ``run`` line on stdin with the JSON timings of one warm run."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    import end_to_end

    import medfuse

    end_to_end.WORKFLOW["model"] = model
    study = end_to_end.make_study(cache, size, slices)
    work = Path(tempfile.mkdtemp(prefix="medfuse-bench-ab-"))
    end_to_end.medfuse_run(study, work / "warm")  # warm-up: imports, model, caches
    print(json.dumps({"ready": medfuse.__file__}), flush=True)
    for line in sys.stdin:
        if line.strip() != "run":
            break
        cpu = time.process_time()
        timings = end_to_end.medfuse_run(study, work / "m")
        timings["process_cpu"] = time.process_time() - cpu  # every thread of the process
        print(json.dumps(timings), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--base-tree", type=Path, default=REPO / ".bench" / "base_tree")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--model", type=Path, default=None)
    ap.add_argument("--slices", type=int, default=300)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--cache", type=Path, default=REPO / ".bench")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    model = str((args.model or args.base_tree / "medfuse/assets/models/chest_ct_demo").resolve())
    if args.worker:
        worker(model, args.cache, args.size, args.slices)
        return
    if not (args.base_tree / "medfuse").is_dir():
        raise SystemExit(
            f"{args.base_tree} holds no medfuse checkout: "
            f"git worktree add {args.base_tree} <base commit>"
        )
    sides = {"base": args.base_tree.resolve(), "new": REPO}
    procs = {}
    for side, root in sides.items():
        cmd = [sys.executable, __file__, "--worker", "--model", model, "--cache", str(args.cache),
               "--slices", str(args.slices), "--size", str(args.size)]  # fmt: skip
        procs[side] = subprocess.Popen(
            cmd,
            env={**os.environ, "PYTHONPATH": str(root)},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        ready = json.loads(procs[side].stdout.readline())["ready"]  # type: ignore[union-attr]
        if not ready.startswith(str(root)):
            raise SystemExit(f"{side}: medfuse imported from {ready}, not from {root}")
        print(f"{side}: medfuse from {ready}")
    rows: dict[str, list[dict[str, float]]] = {side: [] for side in sides}
    for i in range(args.repeats):
        # ABBA: the side that runs first alternates, so that whatever one run leaves behind
        # for the next (page-cache writeback of its outputs, a warm cache) falls on both sides
        # alike (with a fixed order, base against an identical base gave 1.13× wall)
        order = list(procs.items()) if i % 2 == 0 else list(procs.items())[::-1]
        for side, proc in order:
            proc.stdin.write("run\n")  # type: ignore[union-attr]
            proc.stdin.flush()  # type: ignore[union-attr]
            rows[side].append(json.loads(proc.stdout.readline()))  # type: ignore[union-attr]
    for proc in procs.values():
        proc.stdin.close()  # type: ignore[union-attr]
        proc.wait()

    def med(side: str, key: str) -> float:
        return statistics.median(r.get(key, 0.0) for r in rows[side])

    keys = [k for k in rows["new"][0] if k not in ("wall", "process_wall", "process_cpu")]
    print(f"\nmodel {model}; median of {args.repeats}, warm, alternating base / new (ABBA)")
    print(f"{'stage (s)':<24}{'base':>9}{'new':>9}")
    for k in [*keys, "wall", "process_wall", "process_cpu"]:
        print(f"{k:<24}{med('base', k):>9.3f}{med('new', k):>9.3f}")
    print("walls base:", [round(r["wall"], 2) for r in rows["base"]])
    print("walls new: ", [round(r["wall"], 2) for r in rows["new"]])
    print(f"\nnew / base (median wall) = {med('new', 'wall') / med('base', 'wall'):.3f}")
    cpu = med("new", "process_cpu") / med("base", "process_cpu")
    print(f"new / base (median CPU seconds, all threads) = {cpu:.3f}")


if __name__ == "__main__":
    main()
