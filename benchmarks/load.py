"""Convert benchmark: a 512×512 CT series (300 and 500 slices) → NIfTI as whole processes, as a
user runs them: ``medfuse convert SERIES out.nii`` (the console script), SimpleITK
(``ImageSeriesReader`` + ``WriteImage``) and dcm2niix, interleaved, in one run.

    python benchmarks/load.py [--slices 300 500] [--repeats 5] [--naive] [--record]

Each round runs every converter once per series size, in turn, writing over the output of the
previous round (dcm2niix with ``-w 1``, overwrite); round 0 warms the page cache and is not
counted. Prints each converter's median wall time, peak RSS and its ratio to medfuse, checks
that every one wrote the same voxels in world space, and prints medfuse's ratios beside the
targets (issue 27): ≤ 0.5 × SimpleITK, ≤ 1.5 × dcm2niix, peak RSS ≤ 1.5 × the float32 volume.
``--naive`` adds a sequential pydicom loop (several seconds a run). ``--record`` appends one row
per series size to docs/benchmarks.md, with the machine's load average (``uptime``) at the end.
"""

from __future__ import annotations

import argparse
import compileall
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]

SIMPLEITK = """
import sys, SimpleITK as sitk
r = sitk.ImageSeriesReader()
r.SetFileNames(r.GetGDCMSeriesFileNames(sys.argv[1]))
sitk.WriteImage(r.Execute(), sys.argv[2])
"""

# What a careful newcomer writes: read every file whole, sort on the slice normal, stack, rescale.
NAIVE = """
import sys, os, numpy as np, pydicom, nibabel as nib
dss = [pydicom.dcmread(os.path.join(sys.argv[1], f)) for f in sorted(os.listdir(sys.argv[1]))]
iop = np.array(dss[0].ImageOrientationPatient, float)
n = np.cross(iop[:3], iop[3:])
dss.sort(key=lambda d: float(np.dot(np.array(d.ImagePositionPatient, float), n)))
vol = np.stack([d.pixel_array * float(d.RescaleSlope) + float(d.RescaleIntercept) for d in dss], -1)
vol = vol.astype(np.float32).transpose(1, 0, 2)
p0 = np.array(dss[0].ImagePositionPatient, float); p1 = np.array(dss[-1].ImagePositionPatient, float)
ps = [float(v) for v in dss[0].PixelSpacing]
aff = np.eye(4); aff[:3, 0] = iop[:3] * ps[1]; aff[:3, 1] = iop[3:] * ps[0]
aff[:3, 2] = (p1 - p0) / (len(dss) - 1); aff[:3, 3] = p0
nib.save(nib.Nifti1Image(vol, np.diag([-1, -1, 1, 1]) @ aff), sys.argv[2])
"""

TARGETS = {"SimpleITK": 0.5, "dcm2niix": 1.5}
RSS_TARGET = 1.5


def run(cmd: list[str]) -> tuple[float, int]:
    """Wall seconds and peak RSS (bytes) of one child process."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    if proc.returncode != 0:
        raise SystemExit(f"{cmd[:3]} failed ({proc.returncode}):\n{err[-2000:]}")
    return wall, usage.ru_maxrss * 1024


def dcm2niix_bin() -> str:
    exe = shutil.which("dcm2niix") or str(Path(sys.executable).with_name("dcm2niix"))
    if not Path(exe).exists():
        raise SystemExit("dcm2niix not found: pip install dcm2niix (it is in medfuse's test extra)")
    return exe


def medfuse_bin() -> list[str]:
    """The ``medfuse`` console script of this interpreter (what a user types), after compiling
    the checkout's bytecode as ``pip install`` compiles an installed package's: run with
    ``PYTHONDONTWRITEBYTECODE`` set (as on this project's machines), the checkout would otherwise
    compile each medfuse module it imports at every start (0.4 s of a cold ``medfuse run``)."""
    compileall.compile_dir(REPO / "medfuse", quiet=1)
    exe = Path(sys.executable).with_name("medfuse")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "medfuse"]


def has_simpleitk() -> bool:
    try:
        import SimpleITK  # noqa: F401
    except ImportError:
        return False
    return True


def record_row(doc: Path, marker: str, row: str) -> None:
    """Insert ``row`` after the table under ``marker`` in ``doc`` (the newest row last)."""
    lines = doc.read_text().splitlines()
    at = lines.index(marker) + 1
    while at < len(lines) and lines[at].startswith("|"):
        at += 1
    lines.insert(at, row)
    doc.write_text("\n".join(lines) + "\n")


def load_average() -> str:
    """The 1-minute load average, as ``uptime`` prints it."""
    return f"{os.getloadavg()[0]:.2f}"


def canonical(path: Path) -> tuple[np.ndarray, np.ndarray]:
    import nibabel as nib

    img = nib.as_closest_canonical(nib.load(path))
    return np.asarray(img.dataobj, dtype=np.float32), img.affine


def series(cache: Path, size: int, slices: int) -> Path:
    """A cached pydicom-written CT series (the studies benchmarks/end_to_end.py and
    benchmarks/cold_start.py read; generated once)."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    from end_to_end import make_study

    return make_study(cache, size, slices) / "dicom"


def converters(naive: bool) -> dict:
    out: dict = {
        "medfuse convert": lambda src, o: [
            *medfuse_bin(),
            "convert",
            str(src),
            str(o / "medfuse convert.nii"),
        ],
    }
    if has_simpleitk():
        out["SimpleITK"] = lambda src, o: [
            sys.executable,
            "-c",
            SIMPLEITK,
            str(src),
            str(o / "SimpleITK.nii"),
        ]
    out["dcm2niix"] = lambda src, o: [
        dcm2niix_bin(),
        "-z",
        "n",
        "-w",
        "1",
        "-f",
        "dcm2niix",
        "-o",
        str(o),
        str(src),
    ]
    if naive:
        out["naive pydicom"] = lambda src, o: [
            sys.executable,
            "-c",
            NAIVE,
            str(src),
            str(o / "naive pydicom.nii"),
        ]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--slices", type=int, nargs="+", default=[300, 500])
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--naive", action="store_true", help="add the sequential pydicom loop")
    ap.add_argument(
        "--cache", type=Path, default=REPO / ".bench", help="where series are generated"
    )
    ap.add_argument("--record", action="store_true", help="append the rows to docs/benchmarks.md")
    args = ap.parse_args()

    srcs = {n: series(args.cache, args.size, n) for n in args.slices}
    convs = converters(args.naive)
    work = Path(tempfile.mkdtemp(prefix="medfuse-bench-load-"))
    outs = {n: work / str(n) for n in srcs}
    for o in outs.values():
        o.mkdir()
    times = {(n, c): [] for n in srcs for c in convs}
    rss: dict[tuple[int, str], int] = {}
    subprocess.run(["sync"], check=False)
    for rep in range(args.repeats + 1):  # round 0 warms the page cache and is not counted
        for n, src in srcs.items():
            for name, cmd in convs.items():
                wall, peak = run(cmd(src, outs[n]))
                if rep:
                    times[n, name].append(wall)
                    rss[n, name] = max(rss.get((n, name), 0), peak)
    load = load_average()
    med = {k: statistics.median(v) for k, v in times.items()}
    failed = []
    print(
        f"\n{platform.machine()}, {os.cpu_count()} CPUs, load average {load}; median of "
        f"{args.repeats} whole processes each, interleaved, warm page cache, output overwritten"
    )
    for n, src in srcs.items():
        n_files = sum(1 for p in src.iterdir() if p.suffix == ".dcm")
        vol_bytes = args.size * args.size * n * 4
        ref, ref_aff = canonical(outs[n] / "medfuse convert.nii")
        print(f"\n{n_files} files, {args.size}²×{n}, float32 volume {vol_bytes / 2**20:.0f} MiB")
        print(
            f"  {'converter':<17}{'seconds':>9}{'÷ medfuse':>11}{'peak RSS MiB':>14}  same voxels"
        )
        m = med[n, "medfuse convert"]
        for name in convs:
            arr, aff = canonical(outs[n] / f"{name}.nii")
            same = (
                arr.shape == ref.shape
                and np.allclose(aff, ref_aff, atol=1e-3)
                and np.array_equal(arr, ref)
            )
            if not same:
                failed.append(f"{name} at {n} slices")
            print(
                f"  {name:<17}{med[n, name]:>9.3f}{med[n, name] / m:>11.2f}"
                f"{rss[n, name] / 2**20:>14.0f}  {same}"
            )
        ratios = {}
        for base, target in TARGETS.items():
            if (n, base) not in med:
                print(
                    f"  medfuse ÷ {base:<10} not measured ({base} not installed; target ≤ {target})"
                )
                continue
            ratios[base] = m / med[n, base]
            ok = "met" if ratios[base] <= target else "NOT met"
            print(f"  medfuse ÷ {base:<10} = {ratios[base]:.2f}  (target ≤ {target}: {ok})")
        r_mem = rss[n, "medfuse convert"] / vol_bytes
        ok = "met" if r_mem <= RSS_TARGET else "NOT met"
        print(f"  medfuse peak RSS ÷ volume = {r_mem:.2f}  (target ≤ {RSS_TARGET}: {ok})")
        if args.record:

            def fmt(k: str, n: int = n) -> str:
                return f"{med[n, k]:.3f}" if (n, k) in med else "—"

            def rat(k: str, ratios: dict = ratios) -> str:
                return f"{ratios[k]:.2f}" if k in ratios else "—"

            row = (
                f"| {time.strftime('%Y-%m-%d %H:%M')} | {platform.machine()}, {os.cpu_count()} CPUs, "
                f"load {load} | {args.size}²×{n} | {fmt('medfuse convert')} | {fmt('SimpleITK')} | "
                f"{fmt('dcm2niix')} | {rat('SimpleITK')} | {rat('dcm2niix')} | {r_mem:.2f} |"
            )
            record_row(
                REPO / "docs" / "benchmarks.md", "<!-- rows: benchmarks/load.py convert -->", row
            )
    shutil.rmtree(work, ignore_errors=True)
    if failed:
        raise SystemExit("converters disagree on the voxels: " + ", ".join(failed))


if __name__ == "__main__":
    main()
