"""``medfuse convert`` of two versions of medfuse side by side in one run (issue 27).

    python benchmarks/convert_ab.py [--base-tree .bench/base_tree] [--slices 500] [--repeats 12]

Each round converts the 512² series (``benchmarks/end_to_end.py``'s pydicom-written CT) with the
base tree's medfuse, this tree's, and dcm2niix (as ``benchmarks/load.py`` does, so that the
memory the three leave behind is the same as there), each writing over its previous output, in
alternating order (base, new / new, base); round 0 is not counted. Both medfuse versions run as
``python -c 'from medfuse.cli.entry import main; ...' convert SERIES OUT`` from their own folder
(``PYTHONPATH``), so that only the code differs. Prints the medians and new ÷ base (≤ 1: no
slower).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

LAUNCH = "import sys; from medfuse.cli.entry import main; sys.exit(main())"


def main() -> None:
    from end_to_end import make_study
    from load import dcm2niix_bin

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base-tree", type=Path, default=REPO / ".bench" / "base_tree")
    ap.add_argument("--slices", type=int, default=500)
    ap.add_argument("--repeats", type=int, default=12)
    ap.add_argument("--cache", type=Path, default=REPO / ".bench")
    args = ap.parse_args()
    if not (args.base_tree / "medfuse" / "cli" / "entry.py").is_file():
        raise SystemExit(f"no medfuse checkout at {args.base_tree} (git worktree add ...)")
    series = make_study(args.cache, 512, args.slices) / "dicom"
    out = Path(tempfile.mkdtemp(prefix="medfuse-convert-ab-"))
    trees = {"base": args.base_tree.resolve(), "new": REPO}
    dcm2niix = dcm2niix_bin()

    def run(who: str) -> float:
        if who == "dcm2niix":
            cmd = [dcm2niix, "-w", "1", "-z", "n", "-o", str(out), "-f", "dcm2niix", str(series)]
            cwd, env = out, None
        else:
            cmd = [sys.executable, "-c", LAUNCH, "convert", str(series), str(out / f"{who}.nii")]
            cwd, env = trees[who], {**os.environ, "PYTHONPATH": str(trees[who])}
        t0 = time.perf_counter()
        subprocess.run(cmd, cwd=cwd, env=env, check=True, capture_output=True)
        return time.perf_counter() - t0

    times: dict[str, list[float]] = {"base": [], "new": [], "dcm2niix": []}
    for r in range(args.repeats + 1):
        order = ["base", "new", "dcm2niix"] if r % 2 == 0 else ["new", "base", "dcm2niix"]
        for who in order:
            t = run(who)
            if r > 0:
                times[who].append(t)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(
        f"\n512²×{args.slices}, {os.uname().machine}, {os.cpu_count()} CPUs, load "
        f"{os.getloadavg()[0]:.2f}; median of {args.repeats}, interleaved, overwriting"
    )
    for k, v in med.items():
        print(f"  {k:<9}{v:7.3f} s   {[round(x, 2) for x in times[k]]}")
    print(f"new ÷ base = {med['new'] / med['base']:.3f}")
    for p in out.iterdir():
        p.unlink()
    out.rmdir()


if __name__ == "__main__":
    main()
