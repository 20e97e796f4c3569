"""DDP through torchrun: two CPU processes (gloo) train the tiny model on disjoint shards."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

TINY = {
    "seed": 0,
    "model": {
        "preset": "chest_ct_fusion_tiny",
        "preprocessing": {
            "spacing": [12.0] * 3,
            "spatial_size": [24, 16, 16],
            "ct_windows": ["lung"],
        },
        "tokenizer_min_freq": 1,
    },
    "data": {"cohort": {"n": 24, "seed": 3, "shape": [32, 32, 24]}, "val_fraction": 0.25},
    "optim": {"epochs": 1, "batch_size": 4},
    "num_threads": 1,
    "eval_n_boot": 20,
}


@pytest.mark.slow
def test_torchrun_two_cpu_processes(tmp_path):
    import yaml

    cfg = tmp_path / "train.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                **TINY,
                "out_dir": str(tmp_path / "run"),
                "data": {**TINY["data"], "cache_dir": str(tmp_path / "c")},
            }
        )
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        "-m", "medfuse.train.trainer", str(cfg),
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["world_size"] == 2 and summary["epochs"] == 1
    card = json.loads((tmp_path / "run" / "model" / "card.json").read_text())
    assert card["training_data"]["training"]["world_size"] == 2
