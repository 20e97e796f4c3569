"""Modality contribution: the exact two-player Shapley value over {image, report}.

A coalition's value is the model output with the modalities outside it replaced by the model's
learned missing-modality tokens (the same mechanism the model uses for a missing image or
report), so no modality is ever "zeroed". With v(S) the label's logit (or probability)::

    φ_image  = ½ [v({I}) − v(∅)] + ½ [v({I, R}) − v({R})]
    φ_report = ½ [v({R}) − v(∅)] + ½ [v({I, R}) − v({I})]

and φ_image + φ_report = v({I, R}) − v(∅) exactly. All four coalitions run as one batch of 4.
"""

from __future__ import annotations

import torch

from ..registry import explainers
from .context import ExplainContext, MethodResult, eval_mode, repeat_batch
from .explanation import ModalityContribution

__all__ = ["coalition_values", "modality_shapley", "shapley_two_player"]


def shapley_two_player(
    v_both: float, v_image: float, v_report: float, v_none: float
) -> tuple[float, float]:
    """(φ_image, φ_report) from the four coalition values."""
    phi_i = 0.5 * ((v_image - v_none) + (v_both - v_report))
    phi_r = 0.5 * ((v_report - v_none) + (v_both - v_image))
    return phi_i, phi_r


@torch.no_grad()
def coalition_values(ctx: ExplainContext) -> torch.Tensor:
    """Logits ``[4, L]`` for the coalitions (both, image only, report only, none)."""
    image_present = torch.tensor([True, True, False, False], device=ctx.device)
    text_present = torch.tensor([True, False, True, False], device=ctx.device)
    image = repeat_batch(ctx.image, 4) if ctx.has_image else None
    text = repeat_batch(ctx.text, 4) if ctx.has_text else None
    with eval_mode(ctx.model):
        ctx.forward_count += 4
        out = ctx.model(
            image=image,
            text=text,
            image_present=image_present if image is not None else None,
            text_present=text_present if text is not None else None,
        )
    return out.logits.float()


@explainers.register("modality_shapley")
def modality_shapley(
    ctx: ExplainContext, labels: list[int], *, output: str = "logit"
) -> list[MethodResult]:
    """Exact Shapley contribution of the image and of the report to each label's ``output``
    (``"logit"`` or ``"probability"``)."""
    if output not in ("logit", "probability"):
        raise ValueError(f"output must be 'logit' or 'probability', got {output!r}")
    logits = coalition_values(ctx)
    values = ctx.probabilities(logits) if output == "probability" else logits
    results = []
    for k in labels:
        both, img, rep, none = (float(v) for v in values[:, k].tolist())
        phi_i, phi_r = shapley_two_player(both, img, rep, none)
        contrib = ModalityContribution(
            label=ctx.label_names[k],
            image=phi_i,
            report=phi_r,
            value=both,
            baseline=none,
            image_only=img,
            report_only=rep,
            output=output,
        )
        results.append(
            MethodResult(k, modality=contrib, params={"output": output}, forward_passes=4)
        )
    return results
