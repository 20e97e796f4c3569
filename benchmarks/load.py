"""Load benchmark: a 500-slice 512×512 CT series → NIfTI, medfuse vs SimpleITK, dcm2niix and a
naive sequential pydicom loop, each run as a whole process, interleaved, in one run.

    python benchmarks/load.py [--slices 500] [--repeats 3] [--keep]

Prints each reader's median wall time, its ratio to medfuse, peak RSS, and checks that every
reader wrote the same voxels in world space. Appends a row to docs/benchmarks.md with --record.
"""

from __future__ import annotations

import argparse
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

MEDFUSE = """
import sys, medfuse
medfuse.read_volume(sys.argv[1]).save(sys.argv[2])
"""

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


def record_row(doc: Path, marker: str, row: str) -> None:
    """Insert ``row`` after the table under ``marker`` in ``doc`` (the newest row last)."""
    lines = doc.read_text().splitlines()
    at = lines.index(marker) + 1
    while at < len(lines) and lines[at].startswith("|"):
        at += 1
    lines.insert(at, row)
    doc.write_text("\n".join(lines) + "\n")


def canonical(path: Path) -> tuple[np.ndarray, np.ndarray]:
    import nibabel as nib

    img = nib.as_closest_canonical(nib.load(path))
    return np.asarray(img.dataobj, dtype=np.float32), img.affine


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--slices", type=int, default=500)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument(
        "--cache", type=Path, default=REPO / ".bench", help="where the series is generated"
    )
    ap.add_argument("--record", action="store_true", help="append the result to docs/benchmarks.md")
    args = ap.parse_args()

    from medfuse.synth.cohort import write_ct_series

    series_dir = args.cache / f"ct_{args.size}x{args.size}x{args.slices}"
    if not (series_dir / ".complete").exists():
        t0 = time.perf_counter()
        shutil.rmtree(series_dir, ignore_errors=True)
        write_ct_series(series_dir, shape=(args.size, args.size, args.slices), seed=0)
        (series_dir / ".complete").touch()
        print(
            f"generated {args.slices} slices of {args.size}² in {time.perf_counter() - t0:.1f} s → {series_dir}"
        )
    dicom_dir = series_dir if any(series_dir.glob("*.dcm")) else series_dir / "dicom"
    n_files = len([p for p in dicom_dir.iterdir() if p.suffix == ".dcm"])
    vol_bytes = args.size * args.size * args.slices * 4

    out = Path(tempfile.mkdtemp(prefix="medfuse-bench-"))
    readers = {
        "medfuse": lambda o: [
            sys.executable,
            "-c",
            MEDFUSE,
            str(dicom_dir),
            str(o / "medfuse.nii"),
        ],
        "SimpleITK": lambda o: [
            sys.executable,
            "-c",
            SIMPLEITK,
            str(dicom_dir),
            str(o / "SimpleITK.nii"),
        ],
        "dcm2niix": lambda o: [
            dcm2niix_bin(),
            "-z",
            "n",
            "-b",
            "n",
            "-f",
            "dcm2niix",
            "-o",
            str(o),
            str(dicom_dir),
        ],
        "naive pydicom": lambda o: [
            sys.executable,
            "-c",
            NAIVE,
            str(dicom_dir),
            str(o / "naive pydicom.nii"),
        ],
    }
    times: dict[str, list[float]] = {k: [] for k in readers}
    rss: dict[str, int] = {}
    for rep in range(args.repeats + 1):  # round 0 warms the page cache and is not counted
        for name, cmd in readers.items():
            wall, peak = run(cmd(out))
            if rep:
                times[name].append(wall)
                rss[name] = max(rss.get(name, 0), peak)

    ref, ref_aff = canonical(out / "medfuse.nii")
    same = {}
    for name in readers:
        arr, aff = canonical(out / f"{name}.nii")
        same[name] = (
            arr.shape == ref.shape
            and np.allclose(aff, ref_aff, atol=1e-3)
            and np.array_equal(arr, ref)
        )
    med = {k: statistics.median(v) for k, v in times.items()}
    print(
        f"\n{n_files} files, {args.size}×{args.size}×{args.slices}, float32 volume {vol_bytes / 2**20:.0f} MiB, "
        f"{os.cpu_count()} CPUs, median of {args.repeats} (interleaved, warm cache)\n"
    )
    print(f"{'reader':<15}{'seconds':>9}{'× medfuse':>11}{'peak RSS MiB':>14}  same voxels")
    for name in readers:
        print(
            f"{name:<15}{med[name]:>9.2f}{med[name] / med['medfuse']:>11.2f}{rss[name] / 2**20:>14.0f}  {same[name]}"
        )
    r_sitk = med["medfuse"] / med["SimpleITK"]
    r_d2n = med["medfuse"] / med["dcm2niix"]
    r_mem = rss["medfuse"] / vol_bytes
    print(f"\nmedfuse / SimpleITK = {r_sitk:.2f} (target ≤ 0.5)")
    print(f"medfuse / dcm2niix  = {r_d2n:.2f} (target ≤ 2)")
    print(f"medfuse peak RSS / volume size = {r_mem:.2f} (target ≤ 1.5)")
    if args.record:
        row = (
            f"| {time.strftime('%Y-%m-%d')} | {platform.machine()}, {os.cpu_count()} CPUs, Python "
            f"{platform.python_version()} | {args.size}²×{args.slices} | {med['medfuse']:.2f} | "
            f"{med['SimpleITK']:.2f} | {med['dcm2niix']:.2f} | {med['naive pydicom']:.2f} | "
            f"{r_sitk:.2f} | {r_d2n:.2f} | {r_mem:.2f} |"
        )
        record_row(REPO / "docs" / "benchmarks.md", "<!-- rows: benchmarks/load.py -->", row)
    shutil.rmtree(out, ignore_errors=True)
    if not all(same.values()):
        raise SystemExit(
            "readers disagree on the voxels: " + ", ".join(k for k, v in same.items() if not v)
        )


if __name__ == "__main__":
    main()
