"""End-to-end benchmark: a DICOM folder (CT, 512² × N slices) + report → every export, with
Grad-CAM and modality contributions, per-stage breakdown, against a naive sequential version.

    python benchmarks/end_to_end.py [--slices 300] [--repeats 3] [--rss-slices 500] [--record]

* **medfuse**: ``medfuse.workflows.run_workflow`` with the chest CT demo model on one study
  (explain: Grad-CAM + modality Shapley for the positive findings; formats: all seven), in this
  process after one warm-up study (model loaded, libraries imported: what every study after the
  first costs in a batch). The stage times come from the study's status line.
* **naive**: the same steps written the obvious way: every file read whole with
  ``pydicom.dcmread``, sorted on the slice normal, stacked and rescaled in Python, then the same
  ``predict`` + ``export`` calls (medfuse's model, explanation and exporters, so only the reading
  differs... and nothing overlaps: the exporters run one after another, ``workers=1``).
* **peak RSS**: ``medfuse run`` on a 512² × ``--rss-slices`` CT as a whole process (cold), its
  peak resident memory (the process's own ``VmHWM``, Linux; target ≤ 3 GB).
* **in a batch**: ``medfuse run`` as a whole process on ``--batch`` copies of the study (hard
  links) and on 3 of them, three ways, alternating: one process (``workers: 1``) without the
  export worker (``export_worker: false``), one process with it (``auto``: the DICOM exports in
  a second process), and the worker processes ``run.workers: auto`` picks for the batch; a
  study's share once the processes have started is (wall(batch) − wall(3)) / (batch − 3), the
  same way in both runs.
* The single-study figure (**medfuse**, above) runs the workflow's defaults in a warm process:
  the export worker, started with each ``run_workflow`` call, is not ready in time for its one
  study, which is then exported in this process (``medfuse.workflows.export_worker``).

Target (issue 27): medfuse ≤ 2.0 s per warm study on this 2-core CPU, peak RSS ≤ 3 GB at
512² × 500 (≤ 0.5 s warm on a CUDA GPU: benchmarks/gpu.py).
"""

from __future__ import annotations

import argparse
import json
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
sys.path.insert(0, str(REPO / "benchmarks"))

WARM_TARGET_S = 2.0

WORKFLOW = {
    "name": "bench_end_to_end",
    "model": "chest_ct_demo",
    "input": {"modalities": ["CT"]},
    "explain": {"methods": ["gradcam", "modality_shapley"], "labels": "positive"},
    "export": {"formats": ["json", "html", "pdf", "dicom_sr", "dicom_saliency", "nifti", "fhir"]},
}


def make_study(cache: Path, size: int, slices: int) -> Path:
    """A cached CT study folder (``dicom/`` + ``report.txt``) with a 30 mm nodule."""
    from medfuse.synth.cohort import write_ct_series

    folder = cache / f"study_{size}x{size}x{slices}"
    if not (folder / ".complete").exists():
        shutil.rmtree(folder, ignore_errors=True)
        t0 = time.perf_counter()
        write_ct_series(
            folder,
            shape=(size, size, slices),
            spacing=(0.7, 0.7, 1.0),
            seed=0,
            lesions=[{"diameter_mm": 30.0, "lobe": "right lower lobe"}],
        )
        report = (REPO / "sample_cases" / "chest_ct_0001" / "report.txt").read_text()
        (folder / "report.txt").write_text(report)
        (folder / ".complete").touch()
        print(f"generated {size}²×{slices} in {time.perf_counter() - t0:.1f} s → {folder}")
    return folder


def naive_volume(dicom_dir: Path):
    import pydicom

    from medfuse.types import Volume

    dss = [pydicom.dcmread(p) for p in sorted(dicom_dir.glob("*.dcm"))]
    iop = np.array(dss[0].ImageOrientationPatient, float)
    n = np.cross(iop[:3], iop[3:])
    dss.sort(key=lambda d: float(np.dot(np.array(d.ImagePositionPatient, float), n)))
    arr = np.stack(
        [d.pixel_array * float(d.RescaleSlope) + float(d.RescaleIntercept) for d in dss], -1
    )
    arr = arr.astype(np.float32).transpose(1, 0, 2)
    p0 = np.array(dss[0].ImagePositionPatient, float)
    p1 = np.array(dss[-1].ImagePositionPatient, float)
    ps = [float(v) for v in dss[0].PixelSpacing]
    aff = np.eye(4)
    aff[:3, 0] = iop[:3] * ps[1]
    aff[:3, 1] = iop[3:] * ps[0]
    aff[:3, 2] = (p1 - p0) / (len(dss) - 1)
    aff[:3, 3] = p0
    return Volume(
        arr,
        np.diag([-1.0, -1, 1, 1]) @ aff,
        modality="CT",
        study_instance_uid=str(dss[0].StudyInstanceUID),
        series_instance_uid=str(dss[0].SeriesInstanceUID),
        frame_of_reference_uid=str(dss[0].FrameOfReferenceUID),
        source_files=tuple(str(d.filename) for d in dss),
        units="HU",
    )


def naive_run(study: Path, model, out: Path) -> dict[str, float]:
    import medfuse

    t: dict[str, float] = {}
    t0 = time.perf_counter()
    vol = naive_volume(study / "dicom")
    t["read"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    report = medfuse.read_report(study / "report.txt")
    t["report"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    pred = medfuse.predict(
        model, (vol, report), explain=["gradcam", "modality_shapley"], labels="positive"
    )
    t["predict+explain"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    medfuse.export(pred, out, workers=1)  # one format after another
    t["export"] = time.perf_counter() - t0
    t["wall"] = sum(t.values())
    return t


def medfuse_run(study: Path, out: Path) -> dict[str, float]:
    from medfuse.config import load_workflow
    from medfuse.workflows import run_workflow

    t0 = time.perf_counter()
    summary = run_workflow(load_workflow(WORKFLOW), [study], out, force=True)
    wall = time.perf_counter() - t0
    rec = summary.records[0]
    if rec["status"] != "ok":
        raise SystemExit(f"medfuse run failed: {rec['reason']}")
    timings = dict(rec["timings_s"])
    timings["process_wall"] = wall
    return timings


#: runs ``medfuse <args>`` and writes the process's own peak RSS (VmHWM, kB) to ``argv[1]`` at
#: exit. ``ru_maxrss`` from ``wait4`` would not do: Linux carries the high-water mark of the
#: memory the child started in (a vfork of this, by then large, benchmark process) over exec.
_HWM_SNIPPET = """
import atexit, sys
path = sys.argv.pop(1)

def report():
    with open("/proc/self/status") as status:
        kb = next(line.split()[1] for line in status if line.startswith("VmHWM"))
    with open(path, "w") as out:
        out.write(kb)

atexit.register(report)
from medfuse.cli.main import main
sys.exit(main())
"""


def peak_rss(study: Path) -> tuple[float, int]:
    """Wall seconds and peak RSS of ``medfuse run`` on ``study`` as a whole (cold) process."""
    tmp = Path(tempfile.mkdtemp(prefix="medfuse-bench-wf-"))
    wf = tmp / "wf.json"
    wf.write_text(json.dumps(WORKFLOW))  # JSON is YAML
    hwm = tmp / "vmhwm_kb"
    args = ["run", str(wf), "-i", str(study), "-o", str(tmp / "out")]
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", _HWM_SNIPPET, str(hwm), *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        check=False,
    )
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"medfuse run failed:\n{proc.stderr.decode()[-2000:]}")
    peak = int(hwm.read_text()) * 1024
    shutil.rmtree(tmp, ignore_errors=True)
    return wall, peak


def batch_runs(study: Path, n: int) -> dict[str, float]:
    """Seconds per study in a batch of ``n`` copies of ``study`` once the processes have started,
    by how the batch runs: one process without and with the export worker, and the worker
    processes ``auto_workers(n)`` gives (see the module docstring)."""
    from load import medfuse_bin

    from medfuse.workflows.engines import auto_workers

    tmp = Path(tempfile.mkdtemp(prefix="medfuse-bench-batch-"))
    for size in (3, n):
        for i in range(size):
            dst = tmp / f"batch{size}" / f"s{i}"
            (dst / "dicom").mkdir(parents=True)
            shutil.copy2(study / "report.txt", dst / "report.txt")
            for f in (study / "dicom").iterdir():
                try:
                    os.link(f, dst / "dicom" / f.name)
                except OSError:
                    shutil.copy2(f, dst / "dicom" / f.name)
    cmd = medfuse_bin()
    ways = {"1 process": (1, False), "1 process + export worker": (1, "auto")}
    if auto_workers(n) > 1:
        ways[f"{auto_workers(n)} worker processes"] = (auto_workers(n), "auto")
    workflows = {}
    for i, (way, (workers, export_worker)) in enumerate(ways.items()):
        workflows[way] = tmp / f"wf{i}.json"
        run = {"workers": workers, "export_worker": export_worker}
        workflows[way].write_text(json.dumps({**WORKFLOW, "run": run}))
    walls: dict[tuple[str, int], float] = {}
    for size in (3, n):  # the ways alternate
        for way, wf in workflows.items():
            args = ["-i", str(tmp / f"batch{size}"), "-o", str(wf.with_suffix(f".out{size}"))]
            t0 = time.perf_counter()
            subprocess.run(
                [*cmd, "run", str(wf), *args],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                check=True,
            )
            walls[way, size] = time.perf_counter() - t0
    per_study = {way: (walls[way, n] - walls[way, 3]) / (n - 3) for way in ways}
    for way in ways:
        print(
            f"  {way}: {walls[way, n]:.1f} s for {n} studies, {walls[way, 3]:.1f} s for 3 → "
            f"{per_study[way]:.2f} s a study ({per_study['1 process'] / per_study[way]:.2f}× "
            "1 process)"
        )
    shutil.rmtree(tmp, ignore_errors=True)
    return per_study


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--slices", type=int, default=300)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--rss-slices", type=int, default=500, help="0 skips the memory run")
    ap.add_argument("--batch", type=int, default=9, help="studies in the batch runs; 0 skips")
    ap.add_argument("--cache", type=Path, default=REPO / ".bench")
    ap.add_argument("--record", action="store_true", help="append the result to docs/benchmarks.md")
    args = ap.parse_args()

    import torch

    import medfuse

    study = make_study(args.cache, args.size, args.slices)
    model = medfuse.load_model("chest_ct_demo").eval()
    work = Path(tempfile.mkdtemp(prefix="medfuse-bench-e2e-"))
    medfuse_run(study, work / "warm")  # warm-up: imports, model, caches
    naive_run(study, model, work / "naive_warm")
    fast, slow = [], []
    for _ in range(args.repeats):  # interleaved
        fast.append(medfuse_run(study, work / "m"))
        slow.append(naive_run(study, model, work / "n"))
    med = lambda rows, k: statistics.median(r.get(k, 0.0) for r in rows)  # noqa: E731
    m_wall, n_wall = med(fast, "wall"), med(slow, "wall")

    print(
        f"\n{args.size}²×{args.slices} CT + report → 7 exports, Grad-CAM + modality Shapley "
        f"(positive findings); {os.cpu_count()} CPUs, torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), median of {args.repeats}, warm\n"
    )
    stages = [k for k in fast[0] if k not in ("wall", "process_wall")]
    print("medfuse per stage (s):")
    for k in stages:
        print(f"  {k:<22}{med(fast, k):>8.3f}")
    print(f"  {'wall (one study)':<22}{m_wall:>8.3f}")
    print("naive sequential per stage (s):")
    for k in ("read", "report", "predict+explain", "export"):
        print(f"  {k:<22}{med(slow, k):>8.3f}")
    print(f"  {'wall (one study)':<22}{n_wall:>8.3f}")
    print(f"\nmedfuse / naive = {m_wall / n_wall:.2f}")
    met = "met" if m_wall <= WARM_TARGET_S else "NOT met"
    print(f"medfuse per study = {m_wall:.2f} s (target ≤ {WARM_TARGET_S} s on this CPU: {met})")
    rss_txt = "skipped"
    if args.rss_slices:
        rss_study = make_study(args.cache, args.size, args.rss_slices)
        cold, rss = peak_rss(rss_study)
        rss_txt = f"{rss / 2**30:.2f}"
        print(
            f"peak RSS, medfuse run on {args.size}²×{args.rss_slices} (whole cold process, "
            f"{cold:.1f} s) = {rss / 2**30:.2f} GiB (target ≤ 3 GB: "
            f"{'met' if rss <= 3e9 else 'NOT met'})"
        )
    batch_txt = ""
    if args.batch > 3:
        print(f"\nin a batch of {args.batch} (whole processes; auto = the default run.workers):")
        per_study = batch_runs(study, args.batch)
        batch_txt = "; ".join(f"{way}: {s:.2f}" for way, s in per_study.items())
        for way, s in list(per_study.items())[1:]:
            print(
                f"medfuse per study in a batch, {way} = {s:.2f} s (target ≤ {WARM_TARGET_S} s: "
                f"{'met' if s <= WARM_TARGET_S else 'NOT met'})"
            )
    if args.record:
        from load import record_row

        top = ", ".join(f"{k} {med(fast, k):.2f}" for k in stages if med(fast, k) >= 0.05)
        row = (
            f"| {time.strftime('%Y-%m-%d')} | {platform.machine()}, {os.cpu_count()} CPUs, "
            f"{'CUDA' if torch.cuda.is_available() else 'CPU'} | {args.size}²×{args.slices} | "
            f"{m_wall:.2f} | {n_wall:.2f} | {m_wall / n_wall:.2f} | {top} | {rss_txt} | "
            f"{batch_txt or '—'} |"
        )
        record_row(REPO / "docs" / "benchmarks.md", "<!-- rows: benchmarks/end_to_end.py -->", row)
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
