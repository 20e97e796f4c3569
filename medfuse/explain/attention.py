"""Cross-attention maps from fusions that have them (``cross_attention``).

``text_to_image`` weights ``[B, H, T+1, N+1]`` (key 0 is the learned missing-image token) are
averaged over heads and over the report's valid tokens, reshaped to the feature grid and
upsampled to the model grid; ``image_to_text`` weights are averaged over heads and image
patches to give one weight per report token. Attention is not label-specific: every label gets
the same maps (``params["label_specific"]`` is False), and a fusion without attention gives an
empty result with a note.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..registry import explainers
from .context import ExplainContext, MethodResult, eval_mode

__all__ = ["attention_maps"]


@torch.no_grad()
def _forward(ctx: ExplainContext):
    with eval_mode(ctx.model):
        ctx.forward_count += 1
        return ctx.model(
            image=ctx.image if ctx.has_image else None, text=ctx.text if ctx.has_text else None
        )


@explainers.register("attention")
def attention_maps(ctx: ExplainContext, labels: list[int]) -> list[MethodResult]:
    """Head-averaged cross-attention: a 3D map (text → image) and per-token weights
    (image → text)."""
    out = _forward(ctx)
    att = out.attention or {}
    params = {"label_specific": False, "reduce": "mean over heads and queries"}
    if not att:
        return [
            MethodResult(k, params=params, forward_passes=1, note="fusion has no attention")
            for k in labels
        ]
    maps: dict[str, np.ndarray] = {}
    sal = tokens = None
    t2i = att.get("text_to_image")
    if t2i is not None and out.image is not None and ctx.image is not None:
        w = t2i[0].float().mean(0)  # [T+1, N+1]
        tmask = torch.ones(w.shape[0], dtype=torch.bool, device=w.device)
        if out.text is not None:
            tmask[1:] = out.text.mask[0].to(torch.bool)
            tmask[0] = not bool(tmask[1:].any())
        per_patch = w[tmask].mean(0)[1:]  # drop the missing-image key
        pool = int(getattr(ctx.model.fusion, "token_pool", 1))  # pooled patch tokens
        grid = tuple(-(-g // pool) for g in out.image.grid)
        m = per_patch.reshape(1, 1, *grid)
        m = F.interpolate(m, size=tuple(ctx.image.shape[2:]), mode="trilinear", align_corners=False)
        sal = m[0, 0].cpu().numpy().astype(np.float32)
        maps["text_to_image"] = sal
    i2t = att.get("image_to_text")
    if i2t is not None and out.text is not None:
        w = i2t[0].float().mean(0)  # [N+1, T+1]
        rows = w[1:] if w.shape[0] > 1 and out.image is not None else w
        tokens = rows.mean(0)[1:].cpu().numpy().astype(np.float32)  # drop the missing-text key
        maps["image_to_text"] = tokens
    return [
        MethodResult(
            k, saliency=sal, tokens=tokens, attention=maps, params=params, forward_passes=1
        )
        for k in labels
    ]
