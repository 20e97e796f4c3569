"""Training throughput on the own-cohort manifest cache (issue 27, Deliver 5): does the data
path deliver batches at least 3× faster than the model consumes them?

    python benchmarks/train_throughput.py [--manifest .bench/own_cohort_dicom/cohort/manifest.csv]
                                          [--batches 20] [--batch-size 16] [--device auto]

The cohort is built once through :meth:`medfuse.data.Dataset.for_model` (per-case cache under
``--cache``, a hit after the first run) for the ``chest_ct_fusion_tiny`` preset the own-cohort
benchmark trains. Then, in this process, interleaved batch by batch over the same random
batches:

* **loader**: what the trainer does per step before the model: the cached float16 arrays read
  (``CaseImages[idx]``), cast to float32, the reports' token batch indexed, all moved to the
  device (``trainer._Data.batch``);
* **model**: one training step on that batch: forward, the diagnosis loss, backward, AdamW.

Prints batches per second of each and their ratio (target: loader ≥ 3 × model), on the CPU and,
when there is one, on a CUDA device. Generate the cohort first with
``python benchmarks/own_cohort_dicom.py`` (or ``medfuse train-cohort --dicom``).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
TARGET = 3.0


def measure(data, model, device: str, batches: int, batch_size: int) -> tuple[float, float]:
    """Median seconds per batch of the loader and of a training step (interleaved)."""
    import torch

    model = model.to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    rng = np.random.default_rng(0)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    load_t, step_t = [], []
    for b in range(batches + 1):  # batch 0 warms up both
        idx = np.sort(rng.choice(data.n, size=min(batch_size, data.n), replace=False))
        t0 = time.perf_counter()
        batch = data.batch(idx, device)
        sync()
        t1 = time.perf_counter()
        y = torch.from_numpy(np.nan_to_num(data.labels[idx], nan=0.0)).float().to(device)
        out = model(**batch)
        loss = model.diagnosis_head.loss(out.logits.float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sync()
        t2 = time.perf_counter()
        if b:
            load_t.append(t1 - t0)
            step_t.append(t2 - t1)
    return statistics.median(load_t), statistics.median(step_t)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--manifest", type=Path, default=REPO / ".bench/own_cohort_dicom/cohort/manifest.csv"
    )
    ap.add_argument("--cache", type=Path, default=REPO / ".bench/own_cohort_dicom/cache")
    ap.add_argument("--batches", type=int, default=20)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    args = ap.parse_args()
    if not args.manifest.is_file():
        print(
            f"training throughput: not measured ({args.manifest} not found: generate the own "
            "cohort first with python benchmarks/own_cohort_dicom.py, or medfuse train-cohort "
            f"--dicom); target loader ≥ {TARGET:g}× model"
        )
        return
    import torch

    import medfuse
    from medfuse.data import Dataset
    from medfuse.train.trainer import _Data

    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    labels = Dataset.from_manifest(args.manifest, images=False).labels
    model = medfuse.create_model("chest_ct_fusion_tiny", labels=labels)
    t0 = time.perf_counter()
    ds = Dataset.for_model(args.manifest, model, cache_dir=args.cache)
    built = time.perf_counter() - t0
    data = _Data(model, ds)
    shape = data.images.shape[1:] if data.images is not None else None
    print(
        f"{len(ds)} cases ({args.manifest}), cohort built in {built:.1f} s (cache "
        f"{args.cache}); image {shape}, batch {args.batch_size}, median of {args.batches}, "
        f"load average {os.getloadavg()[0]:.2f}"
    )
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for device in devices:
        load, step = measure(data, model, device, args.batches, args.batch_size)
        ratio = step / load
        label = (
            f"CPU, {torch.get_num_threads()} threads"
            if device == "cpu"
            else torch.cuda.get_device_name(0)
        )
        print(
            f"  {label}: loader {1 / load:.1f} batches/s ({1000 * load:.1f} ms), training step "
            f"{1 / step:.2f} batches/s ({1000 * step:.0f} ms): loader ÷ model = {ratio:.1f}× "
            f"(target ≥ {TARGET:g}×: {'met' if ratio >= TARGET else 'NOT met'})"
        )
    if not torch.cuda.is_available():
        print("  CUDA: not measured (no GPU)")


if __name__ == "__main__":
    main()
