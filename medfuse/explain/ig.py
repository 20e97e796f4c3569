"""Integrated gradients (Captum) for the image and for the report's token embeddings.

* ``integrated_gradients`` — attributions on the input volume ``[C, X, Y, Z]`` against a
  baseline volume (the per-channel minimum by default: air / padding for CT windows), summed
  over channels into a signed 3D map.
* ``integrated_gradients_text`` — layer integrated gradients on the text encoder's token
  embedding layer (``embed``), from the embedding of the padding token, summed over the
  embedding dimension into one score per token; for the ``findings`` encoder, plain integrated
  gradients on its finding-status vectors (one score per finding code). Scores are tied to the
  tokens' character spans in the report. The image is encoded once per explanation (eval
  mode, no gradient) and that encoding is reused by every interpolation step
  (``MedfuseModel.forward_encoded``): only the report changes between the steps.

Parameters are frozen during the computation (gradients are taken with respect to the inputs
only); Captum is imported on first use.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from ..errors import ConfigError
from ..registry import explainers
from .context import ExplainContext, MethodResult, eval_mode, frozen, repeat_batch

__all__ = ["integrated_gradients", "integrated_gradients_text"]


def _image_baseline(image: torch.Tensor, baseline: str | float) -> torch.Tensor:
    if isinstance(baseline, (int, float)):
        return torch.full_like(image, float(baseline))
    if baseline == "min":
        return image.amin(dim=(2, 3, 4), keepdim=True).expand_as(image).contiguous()
    if baseline == "zero":
        return torch.zeros_like(image)
    if baseline == "mean":
        return image.mean(dim=(2, 3, 4), keepdim=True).expand_as(image).contiguous()
    raise ConfigError(f"IG baseline must be 'min', 'zero', 'mean' or a number, not {baseline!r}")


@explainers.register("integrated_gradients", needs="image")
def integrated_gradients(
    ctx: ExplainContext,
    labels: list[int],
    *,
    n_steps: int = 16,
    baseline: str | float = "min",
    internal_batch_size: int = 4,
    method: str = "gausslegendre",
) -> list[MethodResult]:
    """Integrated gradients on the input volume (Captum), summed over channels."""
    from captum.attr import IntegratedGradients

    if not ctx.has_image:
        raise ConfigError("integrated gradients on the image need an image and an image encoder")

    def forward(x: torch.Tensor) -> torch.Tensor:
        return ctx.logits(x)

    ig = IntegratedGradients(forward)
    base = _image_baseline(ctx.image, baseline)
    params = {"n_steps": n_steps, "baseline": baseline, "method": method, "score": "logit"}
    return _per_label(
        ctx,
        labels,
        ig,
        ctx.image.detach(),
        base,
        params,
        dict(n_steps=n_steps, method=method, internal_batch_size=internal_batch_size),
        lambda attr: {"saliency": attr[0].sum(0).detach().float().cpu().numpy(), "signed": True},
    )


def _per_label(
    ctx: ExplainContext,
    labels: list[int],
    algo: Any,
    inputs: torch.Tensor,
    base: torch.Tensor,
    params: dict[str, Any],
    attribute_kwargs: dict[str, Any],
    fields: Callable[[torch.Tensor], dict[str, Any]],
) -> list[MethodResult]:
    """Run the Captum attribution ``algo`` once per label index; ``fields(attr)`` turns its
    attribution into the :class:`MethodResult` fields (a saliency map, token scores)."""
    results = []
    with eval_mode(ctx.model), frozen(ctx.model), torch.enable_grad():
        for k in labels:
            start = ctx.forward_count
            attr, delta = algo.attribute(
                inputs, baselines=base, target=k, return_convergence_delta=True, **attribute_kwargs
            )
            results.append(
                MethodResult(
                    k,
                    params={**params, "convergence_delta": float(delta.abs().max())},
                    forward_passes=ctx.forward_count - start,
                    **fields(attr),
                )
            )
    return results


def _embedding_layer(encoder: Any) -> torch.nn.Module | None:
    layer = getattr(encoder, "embed", None)
    if isinstance(layer, torch.nn.Embedding):
        return layer
    model = getattr(encoder, "model", None)
    if model is not None and hasattr(model, "get_input_embeddings"):
        return model.get_input_embeddings()
    return None


def _encode_image_once(ctx: ExplainContext) -> Any:
    """The case's image encoding (``ImageEncoding`` of batch one, or None without an image),
    computed in eval mode without gradients: exactly what ``forward`` computes for the image in
    every pass of a text attribution (whose image input never requires a gradient, and whose
    parameters are frozen), so it can be reused for all of them."""
    if not ctx.has_image or not hasattr(ctx.model, "forward_encoded"):
        return None
    with eval_mode(ctx.model), torch.no_grad():
        return ctx.model.encode_image(ctx.image)


@explainers.register("integrated_gradients_text", needs="report")
def integrated_gradients_text(
    ctx: ExplainContext,
    labels: list[int],
    *,
    n_steps: int = 32,
    internal_batch_size: int = 16,
    method: str = "gausslegendre",
) -> list[MethodResult]:
    """Integrated gradients on the report's token embeddings (one score per token)."""
    from captum.attr import IntegratedGradients, LayerIntegratedGradients

    if not ctx.has_text:
        raise ConfigError("integrated gradients on the text need a report and a text encoder")
    enc = ctx.model.text_encoder
    batch = ctx.text
    encoded = _encode_image_once(ctx)
    image = ctx.image if ctx.has_image and encoded is None else None
    params: dict[str, Any] = {"n_steps": n_steps, "method": method, "score": "logit"}

    def run(text: Any, n: int) -> torch.Tensor:
        # only the report changes between the interpolation steps: the image encoding computed
        # once above is repeated instead of re-running the image encoder on every step
        ctx.forward_count += n
        if image is not None:  # a model without the encode/fuse split: the whole forward
            out = ctx.model(image=repeat_batch(image, n), text=text)
        else:
            img = repeat_batch(encoded, n) if encoded is not None else None
            out = ctx.model.forward_encoded(img, text, batch_size=n)
        if out.logits is None:
            raise ConfigError("explanations need a model with a diagnosis head")
        return out.logits

    ids = getattr(batch, "input_ids", None)
    layer = _embedding_layer(enc)
    if ids is not None and layer is not None:
        pad = getattr(getattr(getattr(enc, "tokenizer", None), "vocab", None), "pad_id", 0)

        def forward_ids(x: torch.Tensor) -> torch.Tensor:
            n = int(x.shape[0])
            text = dataclasses.replace(repeat_batch(batch, n), input_ids=x)
            return run(text, n)

        algo: Any = LayerIntegratedGradients(forward_ids, layer)
        inputs, base = ids, torch.full_like(ids, int(pad))
        params.update(layer="embed", baseline="padding-token embedding")
    elif hasattr(batch, "features"):

        def forward_feats(x: torch.Tensor) -> torch.Tensor:
            n = int(x.shape[0])
            return run(dataclasses.replace(repeat_batch(batch, n), features=x), n)

        algo = IntegratedGradients(forward_feats)
        inputs, base = batch.features, torch.zeros_like(batch.features)
        params.update(layer="finding-status vectors", baseline="zeros")
    else:
        raise ConfigError(
            f"no token embedding layer found on text encoder {type(enc).__name__}",
            hint="give it an `embed` nn.Embedding",
        )

    def token_scores(attr: torch.Tensor) -> dict[str, Any]:
        scores = attr[0].detach().float().reshape(attr.shape[1], -1).sum(-1).cpu().numpy()
        return {"tokens": scores.astype(np.float32)}

    return _per_label(
        ctx,
        labels,
        algo,
        inputs,
        base,
        params,
        dict(n_steps=n_steps, method=method, internal_batch_size=internal_batch_size),
        token_scores,
    )
