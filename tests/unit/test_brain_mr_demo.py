"""The shipped brain MR demo model (``brain_mr_demo``) and its synthetic cohort: checksums match
the card, the committed MR sample case is predicted sensibly (lesion found, where it is), and a
freshly drawn test cohort is scored about as well as the card says."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import medfuse
from medfuse.errors import ModelError

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "sample_cases" / "mr_sag_0001"
MODEL_DIR = Path(medfuse.__file__).parent / "assets" / "models" / "brain_mr_demo"


@pytest.fixture(scope="module")
def model():
    return medfuse.load_model("brain_mr_demo")


def test_shipped_files_match_the_card():
    from medfuse.models.card import ModelCard
    from medfuse.models.weights import sha256_file

    card = ModelCard.load(MODEL_DIR)
    assert sha256_file(MODEL_DIR / card.weights_file) == card.weights_sha256
    assert sha256_file(MODEL_DIR / card.tokenizer_file) == card.tokenizer_sha256
    assert sum(p.stat().st_size for p in MODEL_DIR.iterdir()) <= 5 * 2**20
    assert card.name == "brain_mr_demo"
    assert card.labels == ["focal_lesion", "hydrocephalus", "headache"]
    assert card.training_data["synthetic"] is True
    assert card.training_data["label_sources"] == {
        "focal_lesion": "image",
        "hydrocephalus": "image",
        "headache": "report",
    }
    assert "No clinical validity" in card.description
    assert "no clinical validity" in card.limitations
    assert card.preprocessing["modality"] == "MR" and card.preprocessing["orientation"] == "RAS"
    assert len(card.temperatures) == len(card.labels) == len(card.thresholds)
    for split in ("validation", "test"):
        for lab in card.labels:
            m = card.metrics[split]["labels"][lab]
            assert m["auroc"]["ci"][0] is not None and m["ece"]["value"] is not None


def test_load_model_refuses_tampered_weights(tmp_path):
    copy = tmp_path / "brain_mr_demo"
    shutil.copytree(MODEL_DIR, copy)
    data = bytearray((copy / "weights.safetensors").read_bytes())
    data[-1] ^= 0x01
    (copy / "weights.safetensors").write_bytes(bytes(data))
    with pytest.raises(ModelError, match="checksum"):
        medfuse.load_model(copy)


def test_sample_case_lesion_is_found(model):
    truth = json.loads((SAMPLE / "ground_truth.json").read_text())
    study = medfuse.read_study(SAMPLE / "dicom")
    report = medfuse.read_report(SAMPLE / "report.txt")
    pred = medfuse.predict(model, (study, report), explain=True)
    assert pred.modalities_used == ("image", "report")
    assert pred.finding("focal_lesion").positive
    assert not pred.finding("hydrocephalus").positive
    assert pred.finding("headache").positive  # "CLINICAL HISTORY: Headache."
    # the image alone finds the lesion too
    assert medfuse.predict(model, study).finding("focal_lesion").positive
    # Grad-CAM peaks near the lesion (the feature grid has 2 cm cells)
    summary = pred.explanation_summary()
    peak = np.asarray(summary["labels"]["focal_lesion"]["saliency"]["peak"]["ras_mm"])
    centre = np.asarray(truth["lesions"][0]["center_ras_mm"])
    assert np.linalg.norm(peak - centre) <= 25.0
    fr = summary["labels"]["focal_lesion"]["modality_contribution"]["fractions"]
    assert fr["image"] > fr["report"]


def test_fresh_test_cohort_is_scored_as_the_card_says(model):
    from medfuse.train.metrics import auroc
    from medfuse.train.mr_cohort import mr_test_cohort
    from medfuse.train.trainer import predict_cohort

    grammar = model.card.training_data["cohort"].get("grammar", 2)
    cohort = mr_test_cohort(60, seed=4242, grammar=grammar)
    y = cohort.label_matrix(clean=True, names=model.labels)
    probs = predict_cohort(model, cohort)["probs"]
    j = model.labels.index("focal_lesion")
    got = auroc(y[:, j], probs[:, j])
    low = model.card.metrics["test"]["labels"]["focal_lesion"]["auroc"]["ci"][0]
    assert got >= min(0.9, low), got
    for lab in ("hydrocephalus", "headache"):
        k = model.labels.index(lab)
        assert auroc(y[:, k], probs[:, k]) >= 0.8, lab


def test_mr_cohort_is_seeded_and_labelled():
    from medfuse.train.mr_cohort import MR_LABELS, draw_mr_case, make_mr_cohort, render_mr_case

    c = make_mr_cohort(n=24, seed=7)
    again = draw_mr_case(c.config, 5)
    assert again == c.cases[5]
    assert c.labels == list(MR_LABELS)
    assert c.label_matrix(clean=True).shape == (24, 3)
    case = next(x for x in c.cases if x["factors"]["lesion"] is not None)
    arr, _geometry = render_mr_case(case)
    assert arr.shape == tuple(case["acquisition"]["shape"])
    les = case["factors"]["lesion"]
    i, j, k = (int(v) for v in les["center_ijk"])
    gain = case["acquisition"]["gain"]
    assert arr[i, j, k] > 1.05 * 950 * gain * (1 - case["acquisition"]["bias_strength"] * 1.5)
    for x in c.cases:
        text = x["report"]
        assert "CLINICAL HISTORY:" in text and "FINDINGS:" in text
        if not x["factors"]["headache"]:
            assert "Headache." not in text.split("TECHNIQUE:")[0]


def test_hydrocephalus_enlarges_the_ventricles():
    from medfuse.synth.geometry import make_geometry
    from medfuse.synth.phantom import MR_CSF, HeadPhantom

    g = make_geometry((48, 48, 40), (4.0, 4.0, 4.0), orientation="axial", center_lps=(0, -10, 20))
    normal = HeadPhantom(g, noise=0).volume(workers=1)
    big = HeadPhantom(g, noise=0, ventricle_scale=2.0).volume(workers=1)
    assert (big == MR_CSF).sum() > (normal == MR_CSF).sum() + 200
    with pytest.raises(Exception, match="ventricle_scale"):
        HeadPhantom(g, ventricle_scale=5.0)


def test_held_back_cohort_is_drawn_like_the_training_one(model):
    """``medfuse evaluate MODEL`` (no manifest) draws its test cohort by the card: the brain MR
    cohort in the grammar the model learned, the chest cohort in its shape and grammar."""
    from medfuse.train.cohort import FusionCohort
    from medfuse.train.evaluate import TEST_SEED, test_cohort_for
    from medfuse.train.mr_cohort import MR_TEST_SEED, MRCohort

    mr = test_cohort_for(model, 4)
    assert isinstance(mr, MRCohort) and mr.config.seed == MR_TEST_SEED
    assert mr.config.grammar == model.card.training_data["cohort"]["grammar"]
    assert mr.config.label_noise == 0.0 and mr.config.report_missing == 0.0
    chest = medfuse.load_model("chest_ct_demo")
    c = test_cohort_for(chest, 4, seed=5)
    assert isinstance(c, FusionCohort) and c.config.seed == 5 != TEST_SEED
    assert list(c.config.shape) == chest.card.training_data["cohort"]["shape"]
