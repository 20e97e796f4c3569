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
    ref = card.extra["risk_reference"]
    assert len(ref) == 200 and ref == sorted(ref) and all(round(r, 4) == r for r in ref)
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


def test_ablation_trains_variants_and_writes_the_table(trained, tmp_path):
    tmp, cfg = trained
    out = tmp_path / "eval"
    doc = tmp_path / "card.md"
    doc.write_text("# Card\n\n<!-- ablation:start -->\nold\n<!-- ablation:end -->\n\nTail.\n")
    args = ["evaluate", str(tmp / "run" / "model"), "--n", "16", "--n-boot", "50", "-o", str(out)]
    args += ["--ablation", str(cfg), "--variants", "image_only,text_only", "--epochs", "1"]
    assert main([*args, "--write-doc", str(doc)]) == 0
    table = json.loads((out / "ablation.json").read_text())
    assert set(table) == {"image_only", "text_only"}
    assert table["text_only"]["epochs_run"] == 1 and "pneumonia" in table["text_only"]["auroc"]
    text = doc.read_text()
    assert "old" not in text and text.endswith("Tail.\n")
    assert "| image_only |" in text and "| text_only |" in text and "Reduced budget" in text
    # --reuse evaluates the trained variants again without training them
    stamp = (out / "ablation" / "text_only" / "model" / "weights.safetensors").stat().st_mtime_ns
    assert main([*args, "--variants", "text_only", "--reuse"]) == 0
    assert (
        out / "ablation" / "text_only" / "model" / "weights.safetensors"
    ).stat().st_mtime_ns == stamp


def test_auxiliary_finding_maps_are_trained(tmp_path):
    import medfuse

    cfg = tiny_config(
        tmp_path,
        aux_maps={"weight": 1.0, "findings": ["lung_lesion", "consolidation"], "target": "max"},
    )
    data = yaml.safe_load(cfg.read_text())
    data["model"]["overrides"] = {
        "image_encoder_kwargs": {"aux_maps": 2, "pool": "meanmax", "aux_features": True}
    }
    cfg.write_text(yaml.safe_dump(data))
    assert main(["train", str(cfg)]) == 0
    model = medfuse.load_model(tmp_path / "run" / "model")
    assert model.image_encoder.aux_maps == 2 and model.image_encoder.aux_features
    assert model.card.training_data["aux_maps"]["target"] == "max"
    assert model.card.training_data["aux_maps"]["findings"] == ["lung_lesion", "consolidation"]
    maps = list((tmp_path / "cohort").glob("maps_*_lung_lesion-consolidation.npy"))
    assert len(maps) == 1
    # an encoder without the maps is refused when the loss is on
    data["model"]["overrides"] = {}
    data["out_dir"] = str(tmp_path / "run2")
    cfg.write_text(yaml.safe_dump(data))
    assert main(["train", str(cfg)]) == 2


def test_bad_configs_are_refused(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("optim: {epochs: 1, bogus: 3}\n")
    assert main(["train", str(bad)]) == 2
    bad.write_text("aux_maps: {weight: 1.0, target: sum}\n")
    assert main(["train", str(bad)]) == 2
    evil = tmp_path / "evil.yaml"
    evil.write_text("seed: !!python/object/apply:os.system ['echo hi']\n")
    assert main(["train", str(evil)]) == 2


def test_train_cohort_help_states_the_generators_defaults(capsys):
    """train-cohort leaves the cohort's parameters to FusionCohortConfig; its help quotes them."""
    from medfuse.train.cohort import FusionCohortConfig

    assert main(["train-cohort", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.replace("│", " ").split())
    d = FusionCohortConfig(n=1).to_dict()
    for key in ("label_noise", "report_missing", "image_missing", "grammar"):
        assert f"(default {d[key]}" in text, key


def test_weight_average_is_validated_saved_and_resumed(tmp_path):
    """``optim.ema_decay``: the checkpoint keeps the moving average beside the raw weights, the
    best weights are the average's (not the raw ones), and a resumed run continues it."""
    from safetensors.torch import load_file

    optim = {**TINY["optim"], "ema_decay": 0.5}
    cfg = tiny_config(tmp_path, optim=optim)
    assert main(["train", str(cfg)]) == 0
    ckpt = tmp_path / "run" / "checkpoints"
    raw = load_file(ckpt / "last" / "model.safetensors")
    avg = load_file(ckpt / "last" / "average.safetensors")
    best = load_file(ckpt / "best.safetensors")
    assert (
        int(avg.pop("n_averaged")) == json.loads((ckpt / "last" / "state.json").read_text())["step"]
    )
    avg = {k.removeprefix("module."): v for k, v in avg.items()}
    assert avg.keys() == raw.keys() == best.keys()
    assert all(bool((avg[k] == best[k]).all()) for k in best)
    assert any(not bool((raw[k] == best[k]).all()) for k in best if best[k].is_floating_point())
    assert main(["train", str(cfg), "--epochs", "2"]) == 0
    state = json.loads((ckpt / "last" / "state.json").read_text())
    assert state["epoch"] == 2
    assert int(load_file(ckpt / "last" / "average.safetensors")["n_averaged"]) == state["step"]
