"""Grad-CAM, Grad-CAM++, HiResCAM, LayerCAM: frozen weights, hooks always removed, saliency where
the model looks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _explain_common import octant_case, octant_model, octant_share, phantom_case, tiny_model

import medfuse
from medfuse.explain.cam import WEIGHTINGS, CamHooks, _cam_from, cam_target_layer
from medfuse.explain.context import ExplainContext


def _hook_count(model: torch.nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


def test_gradcam_populates_no_parameter_grad_and_restores_flags():
    model = tiny_model()
    case, _, _ = phantom_case()
    flags = [p.requires_grad for p in model.parameters()]
    assert all(p.grad is None for p in model.parameters())
    expl = medfuse.explain(
        model, case, labels=["lung_lesion", "pleural_effusion"], methods=list(WEIGHTINGS)
    )
    assert all(p.grad is None for p in model.parameters())
    assert [p.requires_grad for p in model.parameters()] == flags
    assert _hook_count(model) == 0
    for method in WEIGHTINGS:
        sal = expl.saliency["lung_lesion"][method]
        assert sal.model.shape == (32, 32, 32)
        assert np.isfinite(sal.model).all() and (sal.model >= 0).all()
        run = next(r for r in expl.runs if r.method == method)
        assert run.forward_passes == 1 and run.params["layer"].endswith("layer4")


def test_hooks_removed_after_exception_and_flags_restored():
    model = tiny_model()
    layer = cam_target_layer(model.image_encoder)
    before = _hook_count(model)
    flags = [p.requires_grad for p in model.parameters()]
    with pytest.raises(RuntimeError, match="boom"), CamHooks(model, layer):
        assert _hook_count(model) == before + 1
        assert not any(p.requires_grad for p in model.parameters())
        raise RuntimeError("boom")
    assert _hook_count(model) == before
    assert [p.requires_grad for p in model.parameters()] == flags


def test_hooks_removed_when_the_forward_fails():
    model = tiny_model()
    layer = cam_target_layer(model.image_encoder)
    ctx = ExplainContext(model, torch.zeros(1, 3, 32, 32, 32), None, model.labels)
    with pytest.raises(Exception), CamHooks(model, layer):  # noqa: B017 (any failure)
        ctx.logits(torch.zeros(1, 5, 32, 32, 32))  # wrong channel count
    assert _hook_count(model) == 0


def test_training_mode_restored():
    model = tiny_model()
    case, _, _ = phantom_case()
    model.train()
    try:
        medfuse.explain(model, case, labels="lung_lesion", methods=["gradcam"])
        assert model.training
    finally:
        model.eval()


@pytest.mark.parametrize("method", list(WEIGHTINGS))
def test_octant_model_saliency_in_its_octant(method):
    expl = medfuse.explain(octant_model(), octant_case(), methods=[method])
    sal = expl.saliency["finding"][method]
    i, j, k = sal.peak_model
    assert i < 16 and j < 16 and k >= 16
    # the 8³ feature grid and trilinear upsampling blur one feature cell across the border
    assert octant_share(sal.model) > 0.6


def test_unet_encoder_target_layer():
    model = tiny_model("chest_ct_late_tiny")
    case, _, _ = phantom_case()
    expl = medfuse.explain(model, case, labels="lung_lesion", methods=["gradcam"])
    assert expl.saliency["lung_lesion"]["gradcam"].params["layer"].endswith("down_4")
    assert _hook_count(model) == 0


def test_gradcam_at_an_earlier_stage_gives_a_finer_map():
    from medfuse.errors import ConfigError
    from medfuse.explain.api import prepare_context
    from medfuse.explain.cam import grad_cam_maps

    model = tiny_model()
    case, _, _ = phantom_case()
    ctx = prepare_context(model, case)
    (last,), _ = grad_cam_maps(ctx, [0], upsample=False)
    (early,), _ = grad_cam_maps(ctx, [0], upsample=False, layer="net.layer2")
    assert all(e > c for e, c in zip(early.shape, last.shape, strict=True))
    expl = medfuse.explain(
        model, case, labels="lung_lesion", methods=["gradcam"],
        params={"gradcam": {"layer": "net.layer2"}},
    )  # fmt: skip
    sal = expl.saliency["lung_lesion"]["gradcam"]
    assert sal.model.shape == (32, 32, 32) and sal.params["layer"].endswith("net.layer2")
    assert _hook_count(model) == 0
    with pytest.raises(ConfigError, match="no module 'net.layer9'"):
        grad_cam_maps(ctx, [0], layer="net.layer9")


def test_voxel_weightings_keep_the_map_where_the_gradient_is():
    """One channel active everywhere, its gradient non-zero at one voxel: Grad-CAM's channel
    mean spreads the weight over the whole grid, HiResCAM and LayerCAM keep it at the voxel;
    where the gradient is the same everywhere, HiResCAM is Grad-CAM."""
    acts = torch.ones(1, 4, 4, 4)
    grads = torch.zeros(1, 4, 4, 4)
    grads[0, 1, 2, 3] = 2.0
    grads[0, 3, 0, 0] = -1.0
    flat = _cam_from(acts, grads, WEIGHTINGS["gradcam"])
    assert torch.allclose(flat, torch.full((4, 4, 4), 1.0 / 64))
    for method in ("hirescam", "layercam"):
        cam = _cam_from(acts, grads, WEIGHTINGS[method])
        assert cam[1, 2, 3] == 2.0 and int((cam > 0).sum()) == 1
    uniform = torch.full((1, 4, 4, 4), 0.5)
    acts = torch.rand(1, 4, 4, 4)
    assert torch.allclose(
        _cam_from(acts, uniform, WEIGHTINGS["hirescam"]),
        _cam_from(acts, uniform, WEIGHTINGS["gradcam"]),
    )
