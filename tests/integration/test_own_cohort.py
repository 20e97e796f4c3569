"""Own cohort end to end through the public path: synthetic DICOM studies on disk → manifest →
``medfuse dataset build`` / ``train`` / ``evaluate``; fine-tuning; a manifest with broken rows;
the real lung CT beside the sample cases; DDP (gloo) on a manifest."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from medfuse.cli.main import main

REPO = Path(__file__).resolve().parents[2]
LUNG_CT = REPO.parent / "shared" / "data" / "dicom" / "lung_ct_dev" / "Lung_Dx-A0002"
TINY_MODEL = {
    "preset": "chest_ct_fusion_tiny",
    "preprocessing": {"spacing": [12.0] * 3, "spatial_size": [24, 16, 16], "ct_windows": ["lung"]},
    "tokenizer_min_freq": 1,
}
LABELS = ["lung_lesion", "consolidation", "smoking_history"]


def _config(folder: Path, **extra) -> Path:
    cfg = {
        "model": TINY_MODEL,
        "data": {"manifest": "manifest.csv", "labels": LABELS, "cache_dir": str(folder / "cache")},
        "output": str(folder / "model"),
        "optim": {"epochs": 1, "batch_size": 8},
        "num_threads": 1,
        "eval_n_boot": 20,
    }
    for k, v in extra.items():
        cfg[k] = {**cfg[k], **v} if isinstance(v, dict) and k in cfg else v
    path = folder / "train.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.fixture(scope="module")
def cohort_on_disk(tmp_path_factory):
    out = tmp_path_factory.mktemp("own") / "cohort"
    rc = main(["train-cohort", "--out", str(out), "--n", "30", "--seed", "5", "--dicom"])
    assert rc == 0
    return out


@pytest.fixture(scope="module")
def trained(cohort_on_disk):
    cfg = _config(cohort_on_disk)
    assert main(["dataset", "build", str(cfg)]) == 0
    assert main(["train", str(cfg)]) == 0
    return cohort_on_disk


@pytest.mark.slow
def test_cohort_on_disk_trains_and_evaluates(trained, capsys):
    folder = trained
    rows = list(csv.DictReader((folder / "manifest.csv").open()))
    assert len(rows) == 30 and {"case_id", "image", "report", "time", "event"} <= set(rows[0])
    card = json.loads((folder / "model" / "card.json").read_text())
    td = card["training_data"]
    assert td["synthetic"] is False and td["manifest_sha256"]
    assert td["counts"]["train"] + td["counts"]["val"] == 30
    assert card["labels"] == LABELS and "risk" in card["components"]["heads"]
    assert "case_" not in json.dumps(td), "the card names no case"
    report = json.loads((folder / "model" / "training" / "dataset_report.json").read_text())
    assert report["used"] == 30 and report["images"]["modalities"] == {"CT": report["images"]["n"]}
    out = folder / "eval"
    assert main(["evaluate", str(folder / "model"), "--manifest", str(folder / "manifest.csv"),
                 "--out", str(out), "--n-boot", "50", "--cache-dir", str(folder / "cache")]) == 0  # fmt: skip
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n"] == 30
    for lab in LABELS:
        m = metrics["labels"][lab]
        assert m["n"] == 30 and "prevalence" in m
        if m["estimable"]:
            assert set(m["auroc"]) == {"value", "ci"} and "ece" in m and "brier" in m
    assert "c_index" in metrics and set(metrics["ablation"]) >= {"image_only", "report_only"}
    preds = list(csv.DictReader((out / "predictions.csv").open()))
    assert len(preds) == 30 and f"{LABELS[0]}_p" in preds[0]
    assert "roc.png" in (out / "metrics.html").read_text()


@pytest.mark.slow
def test_manifest_with_the_in_memory_split_trains_the_same_model(cohort_on_disk, tmp_path):
    """Same split, seed and config: the DICOM studies, report files and labels CSV give the
    model the in-memory cohort's inputs bit for bit (benchmarks/own_cohort_dicom.py at scale)."""
    from medfuse.models.model import load_model
    from medfuse.train.cohort import FUSION_LABELS
    from medfuse.train.evaluate import test_cohort as held_back
    from medfuse.train.trainer import cohort_split, predict_cohort

    rows = list(csv.DictReader((cohort_on_disk / "manifest.csv").open(newline="")))
    val = set(cohort_split(len(rows), 0.2, 0)[1].tolist())
    for i, row in enumerate(rows):
        row["split"] = "val" if i in val else "train"
    manifest = cohort_on_disk / "manifest_same_split.csv"
    with manifest.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    common = {"model": TINY_MODEL, "optim": {"epochs": 1, "batch_size": 8}, "num_threads": 1,
              "seed": 0, "eval_n_boot": 10, "resume": False}  # fmt: skip
    cfgs = {
        "in_memory": {**common, "data": {"cohort": {"n": 30, "seed": 5}},
                      "out_dir": str(tmp_path / "mem")},
        "manifest": {**common, "output": str(tmp_path / "man"),
                     "data": {"manifest": str(manifest), "labels": list(FUSION_LABELS),
                              "cache_dir": str(tmp_path / "cache")}},
    }  # fmt: skip
    for name, cfg in cfgs.items():
        (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump(cfg))
        assert main(["train", str(tmp_path / f"{name}.yaml")]) == 0
    test = held_back(12, seed=99)
    p_mem = predict_cohort(load_model(tmp_path / "mem" / "model"), test)["probs"]
    p_man = predict_cohort(load_model(tmp_path / "man"), test)["probs"]
    assert p_mem.shape == (12, len(FUSION_LABELS))
    assert (p_mem == p_man).all()


@pytest.mark.slow
def test_fine_tune_on_a_new_label_set(trained):
    folder = trained
    cfg = _config(
        folder,
        model={"init_from": str(folder / "model"), "freeze": True},
        data={"labels": ["pleural_effusion", "dyspnea"]},
        output=str(folder / "finetuned"),
    )
    assert main(["train", str(cfg)]) == 0
    from medfuse.models.model import load_model

    base, tuned = load_model(folder / "model"), load_model(folder / "finetuned")
    assert tuned.labels == ["pleural_effusion", "dyspnea"]
    assert tuned.card.training_data["init_from"] == str(folder / "model")
    b, t = base.state_dict(), tuned.state_dict()
    enc = [
        k
        for k in b
        if k.startswith(("image_encoder.", "text_encoder.")) and b[k].is_floating_point()
    ]
    assert enc and all((b[k] == t[k]).all() for k in enc), "frozen encoders keep their weights"


@pytest.mark.slow
def test_broken_rows_are_listed_and_the_rest_is_used(cohort_on_disk, tmp_path):
    src = list(csv.DictReader((cohort_on_disk / "manifest.csv").open()))
    rows = []
    for i in range(50):
        r = dict(src[i % len(src)])
        r["case_id"] = f"c{i:02d}"
        for col in ("image", "report"):
            if r[col]:
                r[col] = str(cohort_on_disk / r[col])
        rows.append(r)
    broken = tmp_path / "broken_study"
    broken.mkdir()
    (broken / "1.dcm").write_bytes(b"\0" * 128 + b"DICM" + b"\x02\x00garbage")
    (tmp_path / "bad_report.txt").write_bytes(b"\x00\x01\x02\xff" * 50)
    rows[3]["image"] = str(broken)
    rows[7]["report"] = str(tmp_path / "bad_report.txt")
    rows[11]["lung_lesion"] = "maybe"
    rows[12]["image"] = str(tmp_path / "does_not_exist")
    from medfuse.data.manifest import write_manifest

    write_manifest(tmp_path / "manifest.csv", rows, LABELS)
    cfg = _config(tmp_path, data={"on_invalid": "skip"})
    assert main(["train", str(cfg)]) == 0
    report = json.loads((tmp_path / "model" / "training" / "dataset_report.json").read_text())
    failed = {f["case_id"]: f for f in report["failures"]}
    assert set(failed) == {"c03", "c07", "c11", "c12"}
    assert failed["c03"]["stage"] == "image" and failed["c07"]["stage"] == "report"
    assert "lung_lesion" in failed["c11"]["reason"] and "not found" in failed["c12"]["reason"]
    assert report["used"] == 46
    # the strict default stops before any work, naming both bad cells
    cfg = _config(tmp_path)
    assert main(["train", str(cfg)]) == 2


@pytest.mark.slow
@pytest.mark.shared_data
def test_real_lung_ct_beside_the_sample_cases(tmp_path):
    if not LUNG_CT.is_dir():
        pytest.skip(f"real lung CT not found at {LUNG_CT} (../shared/data is not in this checkout)")
    rows = [
        {"case_id": "lung_dx_a0002", "image": str(LUNG_CT / "series3_ThoraxRoutine_B40f"),
         "lung_lesion": 1, "split": "train"},
    ] + [
        {"case_id": name, "image": str(REPO / "sample_cases" / name / "dicom"),
         "report": str(REPO / "sample_cases" / name / "report.txt")
         if (REPO / "sample_cases" / name / "report.txt").is_file() else None,
         "lung_lesion": int(name != "chest_ct_0003"), "split": "val" if name == "chest_ct_0002" else "train"}
        for name in ("chest_ct_0001", "chest_ct_0002", "chest_ct_0003")
    ]  # fmt: skip
    from medfuse.data.manifest import write_manifest

    write_manifest(tmp_path / "manifest.csv", rows, ["lung_lesion"])
    cfg = _config(tmp_path, data={"labels": ["lung_lesion"]})
    assert main(["train", str(cfg)]) == 0
    report = json.loads((tmp_path / "model" / "training" / "dataset_report.json").read_text())
    assert report["used"] == 4, report["failures"]
    assert "SIEMENS" in report["images"]["scanners"]
    assert main(["evaluate", str(tmp_path / "model"), "--manifest", str(tmp_path / "manifest.csv"),
                 "--out", str(tmp_path / "eval"), "--n-boot", "50",
                 "--cache-dir", str(tmp_path / "cache")]) == 0  # fmt: skip
    m = json.loads((tmp_path / "eval" / "metrics.json").read_text())["labels"]["lung_lesion"]
    assert m["estimable"] is False and "positive" in m["reason"]


@pytest.mark.slow
def test_torchrun_two_processes_on_a_manifest(trained, tmp_path):
    folder = tmp_path / "ddp"
    folder.mkdir()
    shutil.copy(trained / "manifest.csv", folder / "manifest.csv")
    os.symlink(trained / "studies", folder / "studies")
    cfg = _config(folder)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        "-m", "medfuse.train.trainer", str(cfg),
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    card = json.loads((folder / "model" / "card.json").read_text())
    assert card["training_data"]["training"]["world_size"] == 2
