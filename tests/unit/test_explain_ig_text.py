"""Integrated gradients on the report encodes the image once and reuses that encoding for every
interpolation step: its token scores equal those of a plain IG whose every forward pass runs the
whole model (image encoder included)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from _explain_common import phantom_case, tiny_model

from medfuse.explain import prepare_context
from medfuse.explain.context import eval_mode, frozen, repeat_batch
from medfuse.explain.ig import _embedding_layer
from medfuse.registry import explainers

N_STEPS = 6


def _full_forward_ig(ctx, k: int) -> np.ndarray:
    """Reference: Captum IG over the report with the whole model (image encoder included) in
    every forward pass."""
    from captum.attr import IntegratedGradients, LayerIntegratedGradients

    model, batch = ctx.model, ctx.text
    enc = model.text_encoder

    def full(text, n):
        return model(image=repeat_batch(ctx.image, n), text=text).logits

    layer = _embedding_layer(enc)
    if getattr(batch, "input_ids", None) is not None and layer is not None:
        pad = getattr(getattr(getattr(enc, "tokenizer", None), "vocab", None), "pad_id", 0)
        algo = LayerIntegratedGradients(
            lambda x: full(
                dataclasses.replace(repeat_batch(batch, x.shape[0]), input_ids=x), x.shape[0]
            ),
            layer,
        )
        inputs, base = batch.input_ids, torch.full_like(batch.input_ids, int(pad))
    else:
        algo = IntegratedGradients(
            lambda x: full(
                dataclasses.replace(repeat_batch(batch, x.shape[0]), features=x), x.shape[0]
            )
        )
        inputs, base = batch.features, torch.zeros_like(batch.features)
    with eval_mode(model), frozen(model), torch.enable_grad():
        attr = algo.attribute(
            inputs,
            baselines=base,
            target=k,
            n_steps=N_STEPS,
            method="gausslegendre",
            internal_batch_size=16,
        )
    return attr[0].detach().float().reshape(attr.shape[1], -1).sum(-1).numpy()


@pytest.mark.parametrize(
    "preset",
    [
        "chest_ct_fusion_tiny",  # transformer tokens, cross-attention fusion
        "chest_ct_late_tiny",  # BiLSTM tokens, late fusion
        "chest_ct_gated_tiny",  # finding-status vectors, gated fusion
    ],
)
def test_text_ig_with_one_image_encoding_equals_full_forward_ig(preset):
    model = tiny_model(preset)
    case, _, _ = phantom_case()
    ctx = prepare_context(model, case)
    assert ctx.has_image and ctx.has_text
    labels = [model.labels.index("lung_lesion"), model.labels.index("pleural_effusion")]

    calls: list[int] = []
    handle = model.image_encoder.register_forward_hook(
        lambda mod, args, out: calls.append(int(args[0].shape[0]))
    )
    try:
        results = explainers.get("integrated_gradients_text")(ctx, labels, n_steps=N_STEPS)
    finally:
        handle.remove()
    # the image encoder ran once, on the case's single image, for all labels and steps
    assert calls == [1]
    assert all(r.forward_passes >= N_STEPS for r in results)

    for r, k in zip(results, labels, strict=True):
        ref = _full_forward_ig(ctx, k)
        assert r.tokens.shape == ref.shape
        assert np.abs(ref).max() > 0
        np.testing.assert_allclose(r.tokens, ref, rtol=0, atol=1e-6)
    assert all(p.grad is None for p in model.parameters())


def test_image_encoding_taken_in_eval_mode_and_training_flag_restored():
    model = tiny_model()
    case, _, _ = phantom_case()
    ctx = prepare_context(model, case)
    k = model.labels.index("lung_lesion")
    ref = _full_forward_ig(ctx, k)
    model.train()
    try:
        (r,) = explainers.get("integrated_gradients_text")(ctx, [k], n_steps=N_STEPS)
        assert model.training and model.image_encoder.training
    finally:
        model.eval()
    np.testing.assert_allclose(r.tokens, ref, rtol=0, atol=1e-6)
