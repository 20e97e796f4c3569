"""The generative imputer trained by the one trainer on a tiny synthetic cohort: it does not
collapse (diversity of generated embeddings >= 0.5x that of real ones), its diagnostics reach
the card, the saved model loads with its imputer, and a prediction without a report says the
report was imputed while the report-only labels stay not assessable (issue 25)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from medfuse.models.impute import evaluate_imputation
from medfuse.models.model import load_model
from medfuse.prediction import predict
from medfuse.train.cohort import LABEL_SOURCES
from medfuse.train.trainer import TrainConfig, _Data, make_synthetic_cohort, train
from medfuse.types import Case


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("impute")
    cfg = TrainConfig.model_validate({
        "seed": 0,
        "out_dir": str(out / "run"),
        "resume": False,
        "eval_n_boot": 10,
        "model": {
            "preset": "chest_ct_fusion_tiny",
            "overrides": {"fusion_kwargs": {"missing": "generative", "align": "adversarial"}},
        },
        "data": {"cohort": {"n": 64, "seed": 3, "shape": [32, 32, 32]}},
        "optim": {"epochs": 3, "batch_size": 16},
        "modality_dropout": {"image": 0.2, "report": 0.4},
    })  # fmt: skip
    summary = train(cfg)
    return cfg, summary


def test_generative_imputer_does_not_collapse(trained):
    cfg, summary = trained
    card = json.loads((cfg.model_dir() / "card.json").read_text())
    diag = card["training_data"]["imputation"]
    assert diag["missing"] == "generative" and diag["align"] == "adversarial"
    assert diag["stage"] == "joint"
    for key in ("disc_acc_image", "disc_acc_text", "align_disc_acc"):
        assert 0.0 <= diag[key] <= 1.0
    # the per-epoch history logs the discriminators too
    assert {"disc_acc_image", "disc_acc_text", "recon_image"} <= set(summary["history"][-1])
    # diversity on every case of the cohort with both modalities (more pairs than validation)
    model = load_model(cfg.model_dir())
    cohort = make_synthetic_cohort(cfg, None)
    data = _Data(model, cohort)
    idx = np.arange(data.n)
    d = evaluate_imputation(
        model, (data.batch(idx[s : s + 32], "cpu") for s in range(0, data.n, 32))
    )
    for direction in ("image_from_report", "text_from_image"):
        res = d[direction]
        assert res["n"] >= 40
        assert res["diversity_generated"] >= 0.5 * res["diversity_real"], (direction, res)
        assert np.isfinite(res["frechet"]) and res["frechet"] >= -1e-6


def test_saved_model_keeps_its_imputer_and_prediction_says_imputed(trained):
    cfg, _ = trained
    model = load_model(cfg.model_dir())
    assert (
        model.fusion.missing == "generative"
        and model.card.components["fusion"]["kwargs"]["missing"] == "generative"
    )
    cohort = make_synthetic_cohort(cfg, None)
    i = int(np.flatnonzero(cohort.image_present())[0])
    pred = predict(model, Case(volume=cohort.volume(i), report=None))
    assert pred.modalities_used == ("image",) and pred.modalities_imputed == ("report",)
    assert pred.to_dict()["modalities_imputed"] == ["report"]
    assert any("imputed from the image" in w for w in pred.warnings)
    for f in pred.findings:  # an imputed report never makes a report-only label a finding
        if LABEL_SOURCES.get(f.label) == "report":
            assert f.status == "not_assessable" and f.positive is None, f
        if LABEL_SOURCES.get(f.label) == "both":
            assert f.reduced_evidence
    # both present: nothing imputed
    both = predict(model, Case(volume=cohort.volume(i), report=cohort.reports()[i] or "Normal."))
    assert both.modalities_imputed == () and both.modalities_used == ("image", "report")
    # every human-readable output says what was imputed (HTML, PDF text, SR, FHIR narrative)
    from medfuse.export import ExportOptions
    from medfuse.export.content import modalities_line
    from medfuse.export.dicom_sr import disclaimer_text
    from medfuse.export.fhir import build_bundle

    note = "the report was imputed from the image (not read)"
    assert modalities_line(pred) == f"image only (no report): image-only prediction; {note}"
    assert note in disclaimer_text(pred)
    assert note in build_bundle(pred, ExportOptions()).model_dump_json()
    assert "imputed" not in modalities_line(both)
