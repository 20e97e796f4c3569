"""The CUDA path: the same predictions, explanations and workflow outputs on a GPU (skipped
without one; run them on a machine with CUDA: `pytest -m cuda`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import medfuse

REPO = Path(__file__).resolve().parents[2]
CASE = REPO / "sample_cases" / "chest_ct_0002"

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU on this machine"),
]


@pytest.fixture(scope="module")
def inputs():
    return medfuse.read_study(CASE), medfuse.read_report(CASE / "report.txt")


def test_gpu_prediction_matches_cpu(inputs):
    cpu = medfuse.load_model("chest_ct_demo")
    gpu = medfuse.load_model("chest_ct_demo", map_location="cuda").cuda()
    p_cpu = medfuse.predict(cpu, inputs)
    p_gpu = medfuse.predict(gpu, inputs)
    np.testing.assert_allclose(
        [f.probability for f in p_gpu.findings], [f.probability for f in p_cpu.findings], atol=2e-3
    )
    assert p_gpu.risk.score == pytest.approx(p_cpu.risk.score, abs=5e-3)


def test_gpu_explanation_and_memory_is_stable(inputs):
    gpu = medfuse.load_model("chest_ct_demo", map_location="cuda").cuda()
    pred = medfuse.predict(gpu, inputs, explain=["gradcam", "modality_shapley"], labels="positive")
    sal = pred.explanation.get_saliency(pred.explanation.labels[0], "gradcam")
    assert sal.original.shape == inputs[0].volume.shape
    torch.cuda.synchronize()
    before = torch.cuda.memory_allocated()
    for _ in range(5):
        medfuse.predict(gpu, inputs, explain=["gradcam"], labels="positive")
    torch.cuda.synchronize()
    assert torch.cuda.memory_allocated() <= before + (1 << 20)


def test_workflow_on_cuda(tmp_path):
    from medfuse.config import load_workflow
    from medfuse.workflows import run_workflow

    wf = load_workflow(
        {
            "name": "cuda_test",
            "model": "chest_ct_demo",
            "explain": {"methods": ["gradcam"]},
            "export": {"formats": ["json", "nifti"]},
            "run": {"device": "cuda"},
        }
    )
    summary = run_workflow(wf, [CASE], tmp_path)
    assert [r["status"] for r in summary.records] == ["ok"]


def test_gpu_training_on_a_manifest_with_amp(tmp_path):
    """The own-cohort path on CUDA: bf16 autocast, the model and batches on the GPU."""
    import json

    from medfuse.cli.main import main

    assert main(["train-cohort", "--out", str(tmp_path / "c"), "--n", "24", "--dicom"]) == 0
    cfg = {
        "model": {"preset": "chest_ct_fusion_tiny", "tokenizer_min_freq": 1},
        "data": {"manifest": str(tmp_path / "c" / "manifest.csv"),
                 "labels": ["lung_lesion", "consolidation"], "cache_dir": str(tmp_path / "cache")},
        "output": str(tmp_path / "m"), "optim": {"epochs": 1, "batch_size": 8},
        "amp": True, "device": "cuda", "eval_n_boot": 20,
    }  # fmt: skip
    import yaml

    (tmp_path / "t.yaml").write_text(yaml.safe_dump(cfg))
    assert main(["train", str(tmp_path / "t.yaml")]) == 0
    card = json.loads((tmp_path / "m" / "card.json").read_text())
    assert card["training_data"]["training"]["device"].startswith("cuda")
