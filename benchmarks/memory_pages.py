"""How memory is handed out on this machine, and the two settings medfuse takes from it (issue 27).

    python benchmarks/memory_pages.py [--dir .bench] [--repeats 5] [--pause 4]

1. **Write pieces.** 256 MiB written to a new file in ``--dir`` (the project's disk) as 8 MiB
   ``write()`` calls (what ``open(...).write`` of a large block does) against
   :func:`medfuse._atomic.atomic_open`, which hands the kernel 1 MiB at a time; alternating,
   ``--pause`` seconds apart, every file kept until the end (as the outputs of a batch are), so
   that each write's page cache comes from memory that has been free a while.
2. **Huge-page advice.** The first allocation and touch of a 315 MB float32 array (a 512² × 300
   volume) in a fresh process, with numpy's transparent-huge-page advice on (numpy's default)
   and off (what ``medfuse`` and :func:`medfuse._pages.small_pages` set); alternating processes.

Prints the medians and the ratios (1 MiB ÷ 8 MiB; advice off ÷ on), measured in one run. On a
machine whose kernel does not stall there, both ratios are about 1.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SIZE = 256 << 20
ALLOC = """
import time, numpy as np
t = time.perf_counter()
a = np.empty((300, 512, 512), np.float32)
a[...] = 1.0
print(time.perf_counter() - t)
"""


def write_whole_pieces(path: Path, block: memoryview) -> float:
    t = time.perf_counter()
    with open(path, "wb") as fh:
        for _ in range(SIZE // len(block)):
            fh.write(block)
    return time.perf_counter() - t


def write_atomic_open(path: Path, block: memoryview) -> float:
    from medfuse._atomic import atomic_open

    t = time.perf_counter()
    with atomic_open(path) as fh:
        for _ in range(SIZE // len(block)):
            fh.write(block)
    return time.perf_counter() - t


def first_allocation(advice: str) -> float:
    env = {**os.environ, "NUMPY_MADVISE_HUGEPAGE": advice}
    out = subprocess.run(
        [sys.executable, "-c", ALLOC], env=env, capture_output=True, text=True, check=True
    )
    return float(out.stdout)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", type=Path, default=REPO / ".bench")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--pause", type=float, default=4.0, help="seconds between two writes")
    args = ap.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)
    block = memoryview(bytearray(os.urandom(1 << 16)) * 128)  # 8 MiB
    times: dict[str, list[float]] = {"8 MiB writes": [], "atomic_open (1 MiB)": []}
    written: list[Path] = []  # kept until the end: each file's pages come from free memory
    try:
        for i in range(args.repeats):
            for name in list(times) if i % 2 == 0 else list(times)[::-1]:
                time.sleep(args.pause)
                written.append(args.dir / f"memory_pages_{len(written)}.bin")
                fn = write_whole_pieces if name == "8 MiB writes" else write_atomic_open
                times[name].append(fn(written[-1], block))
    finally:
        for path in written:
            path.unlink(missing_ok=True)
    alloc: dict[str, list[float]] = {"advice on": [], "advice off": []}
    for i in range(args.repeats):
        for name in list(alloc) if i % 2 == 0 else list(alloc)[::-1]:
            alloc[name].append(first_allocation("1" if name == "advice on" else "0"))

    load = os.getloadavg()[0]
    print(f"\n{os.uname().machine}, {os.cpu_count()} CPUs, load {load:.2f}; median of {args.repeats}")
    print(f"\n256 MiB to a new file in {args.dir}, {args.pause:g} s apart:")
    med = {k: statistics.median(v) for k, v in times.items()}
    for k, v in med.items():
        print(f"  {k:<22}{v:8.3f} s  {SIZE / v / 1e6:8.0f} MB/s   {[round(x, 3) for x in times[k]]}")
    print(f"  atomic_open ÷ 8 MiB writes = {med['atomic_open (1 MiB)'] / med['8 MiB writes']:.3f}")
    print("\nfirst 315 MB array of a fresh process (allocate + touch):")
    amed = {k: statistics.median(v) for k, v in alloc.items()}
    for k, v in amed.items():
        print(f"  {k:<22}{v:8.3f} s   {[round(x, 3) for x in alloc[k]]}")
    print(f"  off ÷ on = {amed['advice off'] / amed['advice on']:.3f}")


if __name__ == "__main__":
    main()
