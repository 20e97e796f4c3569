"""3D class activation maps at the image encoder's last stage (or a named earlier one): Grad-CAM,
Grad-CAM++, HiResCAM and LayerCAM. They differ only in how the stage's gradient weights its
activations:

* ``gradcam`` (Selvaraju et al., ICCV 2017): one weight per channel, the gradient's mean;
* ``gradcam++`` (Chattopadhay et al., WACV 2018): per channel, positive gradients weighted by
  higher-order terms;
* ``hirescam`` (Draelos & Carin, 2020, arXiv:2011.08891): the gradient itself, voxel by voxel;
  where the last map is average-pooled into a linear head, the map (before its ReLU) sums to the
  logit less the bias, and equals Grad-CAM's;
* ``layercam`` (Jiang et al., IEEE TIP 30, 2021): the gradient's positive part, voxel by voxel.

Channel-mean weights blur a map over every place the channel fires; voxel-wise weights keep it
where the score depends on the activation, which matters at an earlier, finer stage (a thin
structure in a 28³ volume: MedMNIST3D in docs/benchmarks.md).

The gradient is taken with :func:`torch.autograd.grad` with respect to the stage's feature
map only, with every parameter frozen (``requires_grad`` False for the duration), so no
parameter ``.grad`` is ever populated and the backward pass runs through the later stages (none
for the last one), the pooling, fusion and heads only — not through the earlier encoder. The
feature map is captured by a forward hook that re-roots it as a leaf tensor; :class:`CamHooks`
is a context manager that always removes its hook and restores the parameters' flags, also when
an exception is raised inside.

One forward pass serves every label (one cheap backward per label).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ConfigError
from ..registry import explainers
from .context import ExplainContext, MethodResult, eval_mode, frozen

__all__ = [
    "WEIGHTINGS",
    "CamHooks",
    "cam_target_layer",
    "grad_cam",
    "grad_cam_maps",
    "grad_cam_pp",
    "hires_cam",
    "layer_cam",
]

log = logging.getLogger(__name__)


def cam_target_layer(encoder: nn.Module, name: str | None = None) -> nn.Module:
    """The module whose output is the encoder's last feature map, or the encoder's submodule
    called ``name`` (a name of ``encoder.named_modules()``, e.g. ``"net.layer2"``: an earlier
    stage gives a finer map, useful for small inputs whose last grid is a few cells wide).

    An encoder may name its last stage with a ``cam_layer`` attribute; the built-in ResNets use
    ``net.layer4`` and the U-Net encoder ``net.down_4``.
    """
    if name is not None:
        modules = dict(encoder.named_modules())
        if not name or name not in modules:
            stages = [n for n in modules if n.count(".") == 1 and n.startswith("net.")]
            raise ConfigError(
                f"the image encoder {type(encoder).__name__} has no module {name!r}",
                hint=f"name one of its stages, e.g. {stages}",
            )
        return modules[name]
    layer = getattr(encoder, "cam_layer", None)
    if isinstance(layer, nn.Module):
        return layer
    net = getattr(encoder, "net", None)
    for name in ("layer4", "down_4"):
        mod = getattr(net, name, None) if net is not None else None
        if isinstance(mod, nn.Module):
            return mod
    raise ConfigError(
        f"cannot find the last feature stage of {type(encoder).__name__}",
        hint="give the encoder a `cam_layer` attribute naming the module whose output is its "
        "last feature map",
    )


class CamHooks:
    """Context manager: freeze the model's parameters and capture ``layer``'s output as a leaf
    tensor that requires grad (``self.activations``).

        with CamHooks(model, layer) as hooks:
            logits = model(...).logits
            grads = torch.autograd.grad(logits[0, k], hooks.activations)

    On exit (normal or exceptional) the hook is removed and ``requires_grad`` restored.
    """

    def __init__(self, model: nn.Module, layer: nn.Module):
        self.model = model
        self.layer = layer
        self.activations: Tensor | None = None
        self._handle: Any = None
        self._frozen: Any = None

    def _hook(self, module: nn.Module, inputs: Any, output: Tensor) -> Tensor:
        if not isinstance(output, Tensor) or output.ndim != 5:
            raise ConfigError(
                f"Grad-CAM layer {type(module).__name__} must output [B, D, x, y, z], "
                f"got {type(output).__name__}"
            )
        leaf = output.detach().requires_grad_(True)
        self.activations = leaf
        return leaf

    def __enter__(self) -> CamHooks:
        self._frozen = frozen(self.model)
        self._frozen.__enter__()
        try:
            self._handle = self.layer.register_forward_hook(self._hook)
        except BaseException:
            self._frozen.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc: Any) -> None:
        try:
            if self._handle is not None:
                self._handle.remove()
                self._handle = None
        finally:
            self._frozen.__exit__(*exc)
            self.activations = None


#: how each method weights the activations: its explainer name -> weighting
WEIGHTINGS = {
    "gradcam": "channel_mean",
    "gradcam++": "channel_plus_plus",
    "hirescam": "voxel",
    "layercam": "voxel_positive",
}


def _cam_from(acts: Tensor, grads: Tensor, weighting: str) -> Tensor:
    """[D, x, y, z] activations and gradients -> [x, y, z] non-negative map."""
    if weighting == "voxel":
        weights = grads
    elif weighting == "voxel_positive":
        weights = F.relu(grads)
    elif weighting == "channel_plus_plus":
        g2, g3 = grads.pow(2), grads.pow(3)
        sum_a = acts.sum(dim=(1, 2, 3), keepdim=True)
        denom = 2 * g2 + sum_a * g3
        alpha = torch.where(denom != 0, g2 / torch.where(denom != 0, denom, 1.0), 0.0)
        weights = (alpha * F.relu(grads)).sum(dim=(1, 2, 3))[:, None, None, None]
    else:
        weights = grads.mean(dim=(1, 2, 3))[:, None, None, None]
    return F.relu((weights * acts).sum(0))


def grad_cam_maps(
    ctx: ExplainContext,
    labels: list[int],
    *,
    method: str = "gradcam",
    upsample: bool = True,
    layer: str | None = None,
) -> tuple[list[np.ndarray], int]:
    """``method``'s maps (a key of :data:`WEIGHTINGS`) for ``labels`` on the model grid (or the
    feature grid with ``upsample=False``), and the number of forward passes (1). ``layer``: see
    :func:`cam_target_layer` (default: the last stage)."""
    if not ctx.has_image:
        raise ConfigError("Grad-CAM needs an image and an image encoder")
    model = ctx.model
    target = cam_target_layer(model.image_encoder, layer)
    maps: list[np.ndarray] = []
    with eval_mode(model), CamHooks(model, target) as hooks, torch.enable_grad():
        logits = ctx.logits(ctx.image)
        acts = hooks.activations
        if acts is None:
            raise ConfigError("the Grad-CAM layer did not run in the forward pass")
        for i, k in enumerate(labels):
            (grads,) = torch.autograd.grad(
                logits[0, k], acts, retain_graph=i < len(labels) - 1, allow_unused=True
            )
            if grads is None:
                grads = torch.zeros_like(acts)
            cam = _cam_from(acts[0].detach(), grads[0], WEIGHTINGS[method])
            if upsample:
                cam = F.interpolate(
                    cam[None, None],
                    size=tuple(ctx.image.shape[2:]),
                    mode="trilinear",
                    align_corners=False,
                )[0, 0]
            maps.append(cam.float().cpu().numpy())
    return maps, 1


def _run(
    ctx: ExplainContext, labels: list[int], method: str, layer: str | None
) -> list[MethodResult]:
    maps, passes = grad_cam_maps(ctx, labels, method=method, layer=layer)
    target = cam_target_layer(ctx.model.image_encoder, layer)
    name = next((n for n, m in ctx.model.named_modules() if m is target), type(target).__name__)
    params = {
        "layer": name,
        "score": "logit",
        "weighting": WEIGHTINGS[method],
        "upsample": "trilinear",
    }
    return [
        MethodResult(k, saliency=m, params=params, forward_passes=passes)
        for k, m in zip(labels, maps, strict=True)
    ]


@explainers.register("gradcam", needs="image")
def grad_cam(
    ctx: ExplainContext, labels: list[int], layer: str | None = None
) -> list[MethodResult]:
    """3D Grad-CAM at the last encoder stage, or at the image encoder's submodule ``layer``
    (gradient of the label's logit)."""
    return _run(ctx, labels, "gradcam", layer)


@explainers.register("gradcam++", needs="image")
def grad_cam_pp(
    ctx: ExplainContext, labels: list[int], layer: str | None = None
) -> list[MethodResult]:
    """3D Grad-CAM++ at the last encoder stage, or at the image encoder's submodule ``layer``."""
    return _run(ctx, labels, "gradcam++", layer)


@explainers.register("hirescam", needs="image")
def hires_cam(
    ctx: ExplainContext, labels: list[int], layer: str | None = None
) -> list[MethodResult]:
    """3D HiResCAM: activations times the label logit's gradient voxel by voxel, summed over
    channels, at the last encoder stage or the image encoder's submodule ``layer``."""
    return _run(ctx, labels, "hirescam", layer)


@explainers.register("layercam", needs="image")
def layer_cam(
    ctx: ExplainContext, labels: list[int], layer: str | None = None
) -> list[MethodResult]:
    """3D LayerCAM: activations times the positive part of the label logit's gradient voxel by
    voxel, at the last encoder stage or the image encoder's submodule ``layer``."""
    return _run(ctx, labels, "layercam", layer)
