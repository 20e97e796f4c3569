"""Saliency export benchmark: where the DICOM Parametric Map and NIfTI exports of a 512² × N CT
spend their time, and each encoding against the one it replaced, in the same run.

    python benchmarks/exports.py [--slices 300] [--repeats 3] [--no-stages]

One prediction (chest CT demo model, Grad-CAM for the positive findings: three maps on the
source grid) of the study ``benchmarks/end_to_end.py`` generates, then, interleaved and
``--repeats`` times (median reported; wall and CPU seconds of this process):

* ``dicom_saliency`` alone with JPEG-LS Lossless pixels (default) and uncompressed;
* ``nifti`` alone with ISA-L deflate (default) and with zlib level 1 (what it used before);
* all seven formats in threads as ``medfuse.export`` runs them, new defaults against the old
  encodings (uncompressed maps, zlib);
* with stages (default): the parametric-map exporter's steps one by one, on one thread.

The ratios are taken within one run: on a machine shared with other jobs the seconds are not
comparable across runs.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
import zlib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

ALL = ["json", "html", "pdf", "dicom_sr", "dicom_saliency", "nifti", "fhir"]


def _timed(fn) -> tuple[float, float]:
    t0, c0 = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - t0, time.process_time() - c0


def _size(paths) -> int:
    return sum(Path(p).stat().st_size for ps in paths.values() for p in ps)


def stages(pred, out: Path) -> None:
    """The parametric-map exporter's steps, one after another on one thread (JPEG-LS encoding
    also on one thread per CPU)."""
    from medfuse.export import ExportOptions, _jpegls, dicom_saliency, saliency_maps

    maps = saliency_maps(pred, ExportOptions())
    series = dicom_saliency.series_uid(pred, maps)
    none = ExportOptions(dicom_saliency_compression="none")
    rows: list[tuple[str, float]] = []

    def step(name, fn):
        t0 = time.perf_counter()
        result = fn()
        rows.append((name, time.perf_counter() - t0))
        return result

    stored, _, _ = step(
        "float → uint16 frames (1 map)", lambda: dicom_saliency._stored_frames(maps[0])
    )
    pm = step(
        "highdicom build, 1st map (incl. conversion)",
        lambda: dicom_saliency.build_parametric_map(
            pred, maps[0], none, series_instance_uid=series
        ),
    )
    step(
        "write uncompressed (1 map)", lambda: pm.save_as(out / "raw.dcm", enforce_file_format=True)
    )
    step(
        "retarget to 2nd map (incl. conversion)",
        lambda: dicom_saliency.retarget_parametric_map(pm, pred, maps[1], instance_number=2),
    )
    order = dicom_saliency._frame_order(pm, maps[1])
    for workers in (1, os.cpu_count() or 1):
        frames = step(
            f"JPEG-LS encode, {workers} thread(s) (1 map)",
            lambda w=workers: _jpegls.encode_frames(lambda k: stored[k], order, w),
        )
    pm_jls = dicom_saliency.build_parametric_map(
        pred, maps[0], ExportOptions(), series_instance_uid=series
    )
    step("write JPEG-LS (1 map)", lambda: pm_jls.save_as(out / "jls.dcm", enforce_file_format=True))
    print("\nparametric map stages (s, one map unless said):")
    for name, seconds in rows:
        print(f"  {name:<46}{seconds:>7.3f}")
    raw, jls = (out / "raw.dcm").stat().st_size, (out / "jls.dcm").stat().st_size
    print(
        f"  file: {raw / 1e6:.1f} MB uncompressed, {jls / 1e6:.1f} MB JPEG-LS "
        f"({sum(map(len, frames)) / 1e6:.1f} MB of frames), CharLS without the GIL: "
        f"{_jpegls.parallel()}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--slices", type=int, default=300)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--no-stages", action="store_true")
    ap.add_argument("--cache", type=Path, default=REPO / ".bench")
    args = ap.parse_args()

    from end_to_end import make_study

    import medfuse
    from medfuse.export import ExportOptions, saliency_maps
    from medfuse.io import volumes

    study = make_study(args.cache, args.size, args.slices)
    model = medfuse.load_model("chest_ct_demo").eval()
    pred = medfuse.predict(
        model,
        (medfuse.read_study(study / "dicom"), medfuse.read_report(study / "report.txt")),
        explain=["gradcam"],
        labels="positive",
    )
    isal = volumes._deflater

    def zlib_deflater():  # what the NIfTI export used before
        return zlib

    def run(formats, compression, deflater):
        def go():
            volumes._deflater = deflater
            try:
                sizes[key] = _size(
                    medfuse.export(
                        pred,
                        work / key,
                        formats=formats,
                        options={"dicom_saliency_compression": compression},
                    )
                )
            finally:
                volumes._deflater = isal

        gz = "isal" if deflater is isal else "zlib"
        key = f"{'+'.join(formats) if len(formats) < 3 else 'all'}|{compression}|{gz}"
        return key, go

    variants = [
        run(["dicom_saliency"], "jpeg-ls", isal),
        run(["dicom_saliency"], "none", isal),
        run(["nifti"], "jpeg-ls", isal),
        run(["nifti"], "jpeg-ls", zlib_deflater),
        run(ALL, "jpeg-ls", isal),
        run(ALL, "none", zlib_deflater),
    ]
    work = Path(tempfile.mkdtemp(prefix="medfuse-bench-exports-"))
    sizes: dict[str, int] = {}
    for _, go in variants:  # warm-up
        go()
    times: dict[str, list[tuple[float, float]]] = {k: [] for k, _ in variants}
    for _ in range(args.repeats):
        for key, go in variants:
            times[key].append(_timed(go))
    labels = {
        "dicom_saliency|jpeg-ls|isal": "dicom_saliency, JPEG-LS (new)",
        "dicom_saliency|none|isal": "dicom_saliency, uncompressed (before)",
        "nifti|jpeg-ls|isal": "nifti, ISA-L deflate (new)",
        "nifti|jpeg-ls|zlib": "nifti, zlib level 1 (before)",
        "all|jpeg-ls|isal": "all 7 formats, threaded (new)",
        "all|none|zlib": "all 7 formats, threaded (before)",
    }
    maps = len(saliency_maps(pred, ExportOptions()))
    print(
        f"\n{args.size}²×{args.slices} CT, {maps} Grad-CAM maps; {os.cpu_count()} CPUs; "
        f"median of {args.repeats} interleaved rounds (load average "
        f"{os.getloadavg()[0]:.1f})\n"
    )
    print(f"  {'variant':<40}{'wall s':>8}{'CPU s':>8}{'MB':>9}")
    med = {}
    for key, _ in variants:
        wall = statistics.median(t[0] for t in times[key])
        cpu = statistics.median(t[1] for t in times[key])
        med[key] = wall
        print(f"  {labels[key]:<40}{wall:>8.2f}{cpu:>8.2f}{sizes[key] / 1e6:>9.1f}")
    for new, old in (
        ("dicom_saliency|jpeg-ls|isal", "dicom_saliency|none|isal"),
        ("nifti|jpeg-ls|isal", "nifti|jpeg-ls|zlib"),
        ("all|jpeg-ls|isal", "all|none|zlib"),
    ):
        print(f"  {labels[new]} ÷ before: {med[new] / med[old]:.2f}")
    if not args.no_stages:
        stages(pred, work)
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
