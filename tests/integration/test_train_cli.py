"""``medfuse train`` (tiny model): checkpoints, resume, calibration in the card; ``medfuse
evaluate`` outputs; config validation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from medfuse.cli.main import main

TINY = {
    "seed": 0,
    "model": {
        "preset": "chest_ct_fusion_tiny",
        "name": "tiny_fusion",
        "preprocessing": {
            "spacing": [12.0, 12.0, 12.0],
            "spatial_size": [24, 16, 16],
            "ct_windows": ["lung"],
        },
        "tokenizer_min_freq": 1,
    },
    "data": {"cohort": {"n": 24, "seed": 3, "shape": [32, 32, 24]}, "val_fraction": 0.25},
    "optim": {"epochs": 1, "batch_size": 6, "grad_accum": 2},
    "num_threads": 1,
    "eval_n_boot": 20,
}


def tiny_config(tmp: Path, **over) -> Path:
    cfg = json.loads(json.dumps(TINY))
    cfg["out_dir"] = str(tmp / "run")
    cfg["data"]["cache_dir"] = str(tmp / "cohort")
    cfg.update(over)
    p = tmp / "train.yaml"
    p.write_text(yaml.safe_dump(cfg))
    return p


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("train")
    cfg = tiny_config(tmp)
    assert main(["train", str(cfg)]) == 0
    return tmp, cfg


def test_train_writes_calibrated_model_and_checkpoints(trained):
    import medfuse
    from medfuse.train.cohort import FUSION_LABELS

    tmp, _ = trained
    model = medfuse.load_model(tmp / "run" / "model")
    card = model.card
    assert card.labels == list(FUSION_LABELS)
    assert len(card.temperatures) == len(FUSION_LABELS) == len(card.thresholds)
    assert card.training_data["synthetic"] is True
    assert "no clinical validity" in card.limitations
    assert model.diagnosis_head.temperature.tolist() == pytest.approx(card.temperatures)
    assert "validation" in card.metrics
    state = json.loads((tmp / "run" / "checkpoints" / "last" / "state.json").read_text())
    assert state["epoch"] == 1
    assert (tmp / "run" / "checkpoints" / "last" / "optimizer.safetensors").is_file()
    assert (tmp / "run" / "checkpoints" / "best.safetensors").is_file()


def test_resume_continues_from_the_checkpoint(trained):
    tmp, cfg = trained
    first = json.loads((tmp / "run" / "checkpoints" / "last" / "state.json").read_text())
    assert main(["train", str(cfg), "--epochs", "2"]) == 0
    state = json.loads((tmp / "run" / "checkpoints" / "last" / "state.json").read_text())
    assert state["epoch"] == 2 and len(state["history"]) == 2
    assert state["history"][0] == first["history"][0]


def test_evaluate_writes_metrics_and_plots(trained, tmp_path):
    tmp, _ = trained
    out = tmp_path / "eval"
    rc = main(
        ["evaluate", str(tmp / "run" / "model"), "--n", "16", "--n-boot", "50", "-o", str(out)]
    )
    assert rc == 0
    res = json.loads((out / "metrics.json").read_text())
    assert res["n"] == 16 and "c_index" in res and "pneumonia" in res["labels"]
    for f in ("roc.png", "calibration.png", "metrics.html"):
        assert (out / f).stat().st_size > 500


def test_bad_configs_are_refused(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("optim: {epochs: 1, bogus: 3}\n")
    assert main(["train", str(bad)]) == 2
    evil = tmp_path / "evil.yaml"
    evil.write_text("seed: !!python/object/apply:os.system ['echo hi']\n")
    assert main(["train", str(evil)]) == 2
