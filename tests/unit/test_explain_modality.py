"""Exact two-player Shapley over {image, report} with the learned missing-modality tokens."""

from __future__ import annotations

import pytest
import torch
from _explain_common import phantom_case, tiny_model

import medfuse
from medfuse.explain.modality import shapley_two_player


def test_two_player_formula():
    phi_i, phi_r = shapley_two_player(5.0, 3.0, 1.0, 0.5)
    assert phi_i + phi_r == pytest.approx(5.0 - 0.5)
    assert phi_i == pytest.approx(0.5 * ((3.0 - 0.5) + (5.0 - 1.0)))


@pytest.mark.parametrize(
    "preset", ["chest_ct_fusion_tiny", "chest_ct_gated_tiny", "chest_ct_late_tiny"]
)
@pytest.mark.parametrize("output", ["logit", "probability"])
def test_contributions_sum_to_prediction_minus_baseline(preset, output):
    model = tiny_model(preset)
    case, _, _ = phantom_case()
    expl = medfuse.explain(
        model, case, methods=["modality_shapley"], params={"modality_shapley": {"output": output}}
    )
    assert set(expl.modality) == set(model.labels)
    for lab, c in expl.modality.items():
        assert c.image + c.report == pytest.approx(c.value - c.baseline, abs=1e-6)
        if output == "logit":
            assert c.value == pytest.approx(expl.logits[lab], abs=1e-4)
        else:
            assert c.value == pytest.approx(expl.probabilities[lab], abs=1e-5)


def test_coalitions_match_separate_forward_passes():
    model = tiny_model()
    case, _, _ = phantom_case()
    expl = medfuse.explain(model, case, labels="lung_lesion", methods=["modality_shapley"])
    c = expl.modality["lung_lesion"]
    batch = model.prepare(volumes=[case.volume], reports=[case.report])
    batch.pop("records")
    k = model.labels.index("lung_lesion")
    with torch.no_grad():
        v_img = model(image=batch["image"]).logits[0, k]  # no report: learned missing token
        v_rep = model(text=batch["text"]).logits[0, k]
        v_none = model(
            image=batch["image"],
            text=batch["text"],
            image_present=torch.tensor([False]),
            text_present=torch.tensor([False]),
        ).logits[0, k]
    assert c.image_only == pytest.approx(float(v_img), abs=1e-4)
    assert c.report_only == pytest.approx(float(v_rep), abs=1e-4)
    assert c.baseline == pytest.approx(float(v_none), abs=1e-4)


def test_image_only_model_gives_report_nothing():
    model = tiny_model("chest_ct_image_only_tiny")
    case, _, _ = phantom_case()
    c = medfuse.explain(model, case, labels="lung_lesion", methods=["modality_shapley"]).modality[
        "lung_lesion"
    ]
    assert c.report == pytest.approx(0.0, abs=1e-6)
    assert c.image == pytest.approx(c.value - c.baseline, abs=1e-6)
