"""Own-cohort path on DICOM on disk, measured in one run:

1. ``medfuse train-cohort --dicom`` writes N synthetic studies (DICOM + report + manifest.csv);
   the same fusion config is trained once from the in-memory cohort and once through the
   manifest (``medfuse train``; its ``split`` column holds the in-memory trainer's split, so
   only the data's path differs), and both are evaluated on the same held-back synthetic test
   cohort: the manifest model should reproduce the in-memory AUROCs within their CIs (the
   largest difference of a test probability is printed too).
2. ``medfuse dataset build`` twice: the second build (cache hit) vs the first.
3. Peak RSS of ``medfuse train`` (one epoch) on 500 vs 2,000 cases (small NIfTI volumes +
   reports): training streams from the per-case cache, so it should not grow with N.

    python benchmarks/own_cohort_dicom.py [--n 300] [--epochs 8] [--out .bench/own_cohort_dicom]
                                          [--recipe configs/train/chest_ct_demo.yaml]

``--recipe`` trains both sides with a training YAML's model, optimiser, modality dropout, early
stopping and calibration sections (and its cohort's grammar) instead of the tiny default; its
auxiliary finding-map supervision is left out on both sides, since a manifest carries no
finding masks.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[1]
LABELS = [
    "emphysema", "cardiomegaly", "pleural_effusion", "consolidation", "lung_lesion",
    "smoking_history", "dyspnea", "pneumonia", "suspected_malignancy",
]  # fmt: skip
MODEL = {"preset": "chest_ct_fusion_tiny", "tokenizer_min_freq": 1}


def medfuse(*args: str, cwd: Path) -> None:
    subprocess.run([sys.executable, "-m", "medfuse.cli.main", *args], cwd=cwd, check=True,
                   stdout=subprocess.DEVNULL)  # fmt: skip


def peak_rss_of(args: list[str], cwd: Path) -> float:
    """GiB: the child's own VmHWM (a child process per measurement)."""
    code = (
        "import sys; from medfuse.cli.main import main; rc = main(sys.argv[1:]); "
        "hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0]; "
        "print('VMHWM', int(hwm.split()[1])); sys.exit(rc)"
    )
    out = subprocess.run([sys.executable, "-c", code, *args], cwd=cwd, check=True,
                         capture_output=True, text=True).stdout  # fmt: skip
    kb = int(next(line for line in out.splitlines() if line.startswith("VMHWM")).split()[1])
    return kb / 2**20


RECIPE_KEYS = ("model", "optim", "modality_dropout", "early_stopping", "calibration", "num_threads")


def add_split_column(manifest: Path, seed: int) -> None:
    """Give the manifest the train / val split the trainer draws for the in-memory cohort (same
    seed, validation fraction 0.2), so the two trainings differ only in the path the data takes."""
    import csv

    from medfuse.train.trainer import cohort_split

    with manifest.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    _, val = cohort_split(len(rows), 0.2, seed)
    val_rows = set(val.tolist())
    for i, row in enumerate(rows):
        row["split"] = "val" if i in val_rows else "train"
    with manifest.open("w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def reproduce(out: Path, n: int, epochs: int | None, recipe: Path | None = None) -> None:
    from medfuse.models.model import load_model
    from medfuse.train.evaluate import TEST_SEED, evaluate_model, test_cohort
    from medfuse.train.trainer import predict_cohort

    common = {"model": MODEL, "optim": {"epochs": 8, "batch_size": 16}, "num_threads": 1,
              "seed": 0, "eval_n_boot": 50, "resume": False}  # fmt: skip
    grammar = 2
    if recipe is not None:
        base = yaml.safe_load(recipe.read_text())
        common.update({k: base[k] for k in RECIPE_KEYS if k in base})
        common["model"] = {**common["model"], "tokenizer_min_freq": 1}
        for key in ("name", "description"):
            common["model"].pop(key, None)
        kw = common["model"].get("overrides", {}).get("image_encoder", {}).get("kwargs", {})
        kw.pop("aux_maps", None)
        kw.pop("aux_features", None)
        grammar = int(base.get("data", {}).get("cohort", {}).get("grammar", 2))
    if epochs is not None:
        common["optim"] = {**common["optim"], "epochs": epochs}
    cohort = out / "cohort"
    t = time.perf_counter()
    medfuse("train-cohort", "--out", str(cohort), "--n", str(n), "--seed", "0", "--dicom",
            "--grammar", str(grammar), cwd=out)  # fmt: skip
    print(f"wrote {n} DICOM studies + manifest in {time.perf_counter() - t:.0f} s")
    add_split_column(cohort / "manifest.csv", common["seed"])
    mem = {**common, "data": {"cohort": {"n": n, "seed": 0, "grammar": grammar}},
           "out_dir": str(out / "in_memory")}  # fmt: skip
    man = {**common, "data": {"manifest": str(cohort / "manifest.csv"), "labels": LABELS,
                              "cache_dir": str(out / "cache")}, "output": str(out / "manifest_model")}  # fmt: skip
    (out / "in_memory.yaml").write_text(yaml.safe_dump(mem))
    (out / "manifest.yaml").write_text(yaml.safe_dump(man))
    # both sides train at the same time (a recipe's one thread each: 2 cores, about twice as fast)
    t = time.perf_counter()
    env = {**os.environ, "OMP_NUM_THREADS": str(common["num_threads"])}
    procs = {
        name: subprocess.Popen(
            [sys.executable, "-m", "medfuse.cli.main", "train", f"{name}.yaml", "--no-resume"],
            cwd=out, env=env, stdout=subprocess.DEVNULL,
        )
        for name in ("in_memory", "manifest")
    }  # fmt: skip
    for name, proc in procs.items():
        if proc.wait() != 0:
            raise subprocess.CalledProcessError(proc.returncode, proc.args)
        print(f"trained {name}: {time.perf_counter() - t:.0f} s (both at once)")
    test = test_cohort(300, TEST_SEED, grammar=grammar)
    res, probs = {}, {}
    for name, folder in (
        ("in_memory", out / "in_memory" / "model"),
        ("manifest", out / "manifest_model"),
    ):
        model = load_model(folder)
        res[name] = evaluate_model(model, test, n_boot=1000)["labels"]
        probs[name] = predict_cohort(model, test)["probs"]
    print(
        f"\nsame config, held-back synthetic test cohort (n=300, seed {TEST_SEED}): AUROC [95% CI]"
    )
    print(
        f"{'label':22s} {'in-memory cohort':>24s} {'DICOM via manifest':>24s}  manifest value in CI"
    )
    inside = 0
    for lab in LABELS:
        a, b = res["in_memory"][lab]["auroc"], res["manifest"][lab]["auroc"]
        ok = a["ci"][0] <= b["value"] <= a["ci"][1]
        inside += ok
        print(f"{lab:22s} {a['value']:.3f} [{a['ci'][0]:.3f}, {a['ci'][1]:.3f}]     "
              f"{b['value']:.3f} [{b['ci'][0]:.3f}, {b['ci'][1]:.3f}]     {'yes' if ok else 'NO'}")  # fmt: skip
    print(f"{inside}/{len(LABELS)} manifest AUROCs inside the in-memory model's 95% CI")
    delta = float(np.abs(probs["in_memory"] - probs["manifest"]).max())
    print(f"largest |p(in-memory) - p(manifest)| over the test cases and labels: {delta:.2e}")


def build_twice(out: Path) -> None:
    import shutil

    shutil.rmtree(out / "cache", ignore_errors=True)
    times = []
    for _ in range(2):
        t = time.perf_counter()
        medfuse("dataset", "build", "manifest.yaml", cwd=out)
        times.append(time.perf_counter() - t)
    print(f"\ndataset build, whole process: first {times[0]:.1f} s, second {times[1]:.1f} s "
          f"→ {times[1] / times[0]:.3f}× (target <= 0.1)")  # fmt: skip


def rss_scaling(out: Path) -> None:
    import nibabel as nib

    from medfuse.data.manifest import write_manifest

    data = out / "rss"
    (data / "vol").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    rows = []
    for i in range(2000):
        f = data / "vol" / f"v{i:04d}.nii.gz"
        if not f.is_file():
            arr = rng.normal(-700, 200, (48, 48, 32)).astype(np.int16)
            nib.save(nib.Nifti1Image(arr, np.diag([6.0, 6.0, 8.0, 1.0])), str(f))
        rows.append({"case_id": f"v{i:04d}", "image": f"vol/{f.name}",
                     "report_text": f"FINDINGS: Case {i}. {'Small effusion.' if i % 3 else 'No effusion.'}",
                     "pleural_effusion": int(i % 3 != 0)})  # fmt: skip
    peaks = {}
    for n in (500, 2000):
        write_manifest(data / f"m{n}.csv", rows[:n], ["pleural_effusion"])
        cfg = {"model": {"preset": "chest_ct_fusion_tiny", "preprocessing": {"modality": "CT"}},
               "data": {"manifest": f"m{n}.csv", "labels": ["pleural_effusion"],
                        "cache_dir": str(data / "cache")},
               "output": str(data / f"model{n}"), "optim": {"epochs": 1, "batch_size": 16},
               "num_threads": 2, "eval_n_boot": 10, "resume": False}  # fmt: skip
        (data / f"t{n}.yaml").write_text(yaml.safe_dump(cfg))
        medfuse("dataset", "build", f"t{n}.yaml", cwd=data)  # cache first: measure training
        peaks[n] = peak_rss_of(["train", f"t{n}.yaml", "--no-resume"], data)
    print(f"\npeak RSS of `medfuse train` (1 epoch): 500 cases {peaks[500]:.2f} GiB, 2,000 cases "
          f"{peaks[2000]:.2f} GiB → {peaks[2000] / peaks[500]:.2f}× (target: flat)")  # fmt: skip


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=REPO / ".bench" / "own_cohort_dicom")
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--epochs", type=int, default=None, help="Epochs (default 8, or the recipe's).")
    ap.add_argument(
        "--recipe", type=Path, default=None, help="A training YAML to train both sides."
    )
    ap.add_argument("--skip", default="", help="comma-separated parts to skip: reproduce,build,rss")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("OMP_NUM_THREADS", "2")
    skip = set(args.skip.split(","))
    if "reproduce" not in skip:
        reproduce(args.out, args.n, args.epochs, args.recipe)
    if "build" not in skip:
        build_twice(args.out)
    if "rss" not in skip:
        rss_scaling(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
