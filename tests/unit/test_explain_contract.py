"""Contract over every registered explainer: it runs on a tiny fusion model and a 32³ case and
returns well-formed results for every label asked."""

from __future__ import annotations

import numpy as np
import pytest
from _explain_common import phantom_case, tiny_model

from medfuse.explain import prepare_context
from medfuse.explain.context import MethodResult
from medfuse.registry import explainers

FAST = {
    "occlusion": {"coarse": 2, "levels": 2, "refine_top": 1},
    "integrated_gradients": {"n_steps": 4},
    "integrated_gradients_text": {"n_steps": 4},
}


@pytest.mark.parametrize("name", explainers.names())
def test_explainer_contract(name):
    model = tiny_model()
    case, _, _ = phantom_case()
    ctx = prepare_context(model, case)
    labels = [model.labels.index("lung_lesion"), model.labels.index("pleural_effusion")]
    results = explainers.get(name)(ctx, labels, **FAST.get(name, {}))
    assert isinstance(results, list) and [r.label_index for r in results] == labels
    for r in results:
        assert isinstance(r, MethodResult)
        assert isinstance(r.params, dict)
        assert r.forward_passes is None or r.forward_passes >= 1
        produced = False
        if r.saliency is not None:
            assert r.saliency.shape == tuple(ctx.image.shape[2:])
            assert np.isfinite(r.saliency).all()
            produced = True
        if r.tokens is not None:
            assert r.tokens.shape == (len(ctx.token_spans),)
            assert np.isfinite(r.tokens).all()
            produced = True
        if r.modality is not None:
            produced = True
        assert produced or r.note
    assert all(p.grad is None for p in model.parameters())


def test_builtin_explainers_registered():
    assert {
        "gradcam",
        "gradcam++",
        "hirescam",
        "layercam",
        "occlusion",
        "integrated_gradients",
        "integrated_gradients_text",
        "attention",
        "modality_shapley",
    } <= set(explainers.names())


def test_findings_text_encoder_token_attribution():
    model = tiny_model("chest_ct_gated_tiny")
    case, _, _ = phantom_case()
    ctx = prepare_context(model, case)
    (r,) = explainers.get("integrated_gradients_text")(ctx, [0], n_steps=4)
    assert r.tokens.shape == (len(model.text_encoder.codes),)
