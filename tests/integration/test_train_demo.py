"""The shipped demo model: checksums match the card, it loads by name, and it re-evaluates on a
freshly generated synthetic test cohort within reasonable bounds of the card's metrics."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import medfuse

DEMO = Path(medfuse.__file__).parent / "assets" / "models" / "chest_ct_demo"
pytestmark = pytest.mark.skipif(not (DEMO / "card.json").is_file(), reason="demo model not built")


MM_SHIFT_BOUND = 0.1  # fifth version: 0.033-0.049 (n = 500); the fourth 0.141-0.289


def test_shipped_files_match_the_card():
    from medfuse.models.card import ModelCard
    from medfuse.models.weights import sha256_file

    card = ModelCard.load(DEMO)
    assert sha256_file(DEMO / card.weights_file) == card.weights_sha256
    assert sha256_file(DEMO / card.tokenizer_file) == card.tokenizer_sha256
    assert (DEMO / card.weights_file).stat().st_size <= 30 * 2**20
    assert card.training_data["synthetic"] is True
    assert "no clinical validity" in card.limitations
    assert len(card.temperatures) == len(card.labels) == len(card.thresholds)
    assert "test" in card.metrics and "validation" in card.metrics


def test_demo_model_reproduces_its_metrics_on_a_fresh_cohort():
    from medfuse.train.cohort import LABEL_SOURCES
    from medfuse.train.evaluate import evaluate_model, test_cohort

    model = medfuse.load_model("chest_ct_demo")
    card = model.card
    cohort = test_cohort(60, seed=777, shape=tuple(card.training_data["cohort"]["shape"]))
    res = evaluate_model(model, cohort, n_boot=100)
    ref = card.metrics["test"]["auroc"]
    for src in ("image", "report", "both"):
        names = [n for n in card.labels if LABEL_SOURCES[n] == src]
        got = np.nanmean([res["labels"][n]["auroc"]["value"] or np.nan for n in names])
        want = np.mean([ref[n]["value"] for n in names])
        assert got >= want - 0.12, (src, got, want)
    assert res["c_index"]["value"] >= card.metrics["test"]["c_index"]["value"] - 0.12


def test_demo_model_reads_no_lesion_in_a_slice_thickness_or_a_vessel_measurement():
    """Edits that state no finding (benchmarks/wording_shift.py) leave the lesion labels where
    they were: the fourth version, trained on grammar 3, raised lung_lesion's logit by 0.29 for
    "reconstructed at 5 mm." in the technique line and by 0.16 for an aorta measurement."""
    import importlib.util

    path = Path(__file__).resolve().parents[2] / "benchmarks" / "wording_shift.py"
    spec = importlib.util.spec_from_file_location("wording_shift_bench", path)
    ws = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ws)
    shift = ws.edit_shift(ws.load("chest_ct_demo"), n=120, n_boot=200)
    for edit in list(ws.EDITS)[:2]:
        for label in ("lung_lesion", "suspected_malignancy"):
            assert abs(shift[edit][label]["value"]) < MM_SHIFT_BOUND, (edit, label, shift[edit])
