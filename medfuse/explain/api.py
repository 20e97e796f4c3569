"""``medfuse.explain(model, case, labels=..., methods=...)`` → :class:`Explanation`."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from ..errors import ConfigError
from ..registry import explainers
from ..types import Case, Report, modality_names
from .context import ExplainContext, MethodResult, eval_mode
from .explanation import Explanation, MethodRun, Saliency, TokenAttribution
from .methods import DEFAULT_METHODS, method_needs, saliency_methods

__all__ = ["DEFAULT_METHODS", "explain", "prepare_context"]

log = logging.getLogger(__name__)


def prepare_context(model: Any, case: Any) -> ExplainContext:
    """Preprocess one case for ``model`` (its own preprocessing) into an :class:`ExplainContext`."""
    case = Case.coerce(case)
    vol = case.volume if model.image_encoder is not None else None
    rep = case.report if model.text_encoder is not None else None
    if vol is None and rep is None:
        raise ConfigError(
            f"nothing to explain: the case has none of the modalities model {model.name!r} reads "
            f"({', '.join(model.modalities)})"
        )
    batch = model.prepare(
        volumes=[vol] if vol is not None else None, reports=[rep] if rep is not None else None
    )
    records = batch.pop("records", None) or [None]
    text = batch.get("text")
    tokens = list(getattr(text, "tokens", [[]])[0]) if text is not None else []
    spans = [tuple(s) for s in (getattr(text, "spans", [[]])[0] if text is not None else [])]
    if text is not None and not tokens:
        codes = getattr(model.text_encoder, "codes", None)
        tokens = list(codes) if codes is not None else [f"token_{i}" for i in range(len(spans))]
    report_text = None
    if rep is not None:
        report_text = rep.encoder_text if isinstance(rep, Report) else str(rep)
    return ExplainContext(
        model=model,
        image=batch.get("image"),
        text=text,
        label_names=list(model.labels),
        token_strings=tokens,
        token_spans=spans,  # type: ignore[arg-type]
        record=records[0],
        report_text=report_text,
    )


def _label_indices(model: Any, labels: Sequence[str] | str | None) -> list[int]:
    names = list(model.labels)
    if not names:
        raise ConfigError(f"model {model.name!r} has no diagnosis head to explain")
    if labels is None:
        return list(range(len(names)))
    if isinstance(labels, str):
        labels = [labels]
    out = []
    for lab in labels:
        if lab not in names:
            raise ConfigError(
                f"unknown label {lab!r}", hint=f"the model's labels: {', '.join(names)}"
            )
        out.append(names.index(lab))
    return out


def __getattr__(name: str) -> Any:
    # SALIENCY_METHODS: read from the registry entries' metadata on use (see .methods)
    if name == "SALIENCY_METHODS":
        return saliency_methods()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def explain(
    model: Any,
    case: Any,
    *,
    labels: Sequence[str] | str | None = None,
    methods: Sequence[str] | str | None = None,
    params: dict[str, dict[str, Any]] | None = None,
    original_grid: bool = True,
    context: ExplainContext | None = None,
) -> Explanation:
    """Explain ``model``'s prediction for ``case`` (a :class:`~medfuse.types.Case`, a Volume, a
    Report or ``(volume, report)``).

    ``labels``: diagnosis labels to explain (all by default). ``methods``: names in the
    ``explainers`` registry (default :data:`DEFAULT_METHODS`; methods that need a modality the
    case or model lacks are skipped with a note). ``params``: per-method keyword arguments, e.g.
    ``{"occlusion": {"levels": 3}}``. Saliency maps are also given on the source volume's grid
    (its affine; resampled on demand) unless ``original_grid`` is False. ``context``: the case
    already prepared by :func:`prepare_context` for this model (saves preprocessing it again).
    """
    methods = [methods] if isinstance(methods, str) else list(methods or DEFAULT_METHODS)
    params = dict(params or {})
    unknown = [m for m in methods if m not in explainers]
    if unknown:
        raise ConfigError(
            f"unknown explanation method(s) {unknown}", hint=f"choose from {explainers.names()}"
        )
    case = Case.coerce(case)
    ctx = context if context is not None else prepare_context(model, case)
    idx = _label_indices(model, labels)
    names = [ctx.label_names[k] for k in idx]
    with eval_mode(model), torch.no_grad():
        out = model(
            image=ctx.image if ctx.has_image else None, text=ctx.text if ctx.has_text else None
        )
        logits = out.logits[0].float()
        probs = model.diagnosis_head.probabilities(out.logits)[0].float()
        used = modality_names(out.mask[0])
    expl = Explanation(
        labels=names,
        methods=methods,
        probabilities={ctx.label_names[k]: float(probs[k]) for k in idx},
        logits={ctx.label_names[k]: float(logits[k]) for k in idx},
        report_text=ctx.report_text,
        record=ctx.record,
        image=ctx.image[0, 0].float().cpu().numpy() if ctx.has_image else None,
        model_name=getattr(model, "name", ""),
        case_key=case.key,
        modalities_used=used,
    )
    model_affine = (
        np.asarray(ctx.record.model_affine, dtype=np.float64)
        if ctx.record is not None
        else np.eye(4)
    )
    for method in methods:
        need = method_needs(method)
        if (need == "image" and not ctx.has_image) or (need == "report" and not ctx.has_text):
            note = f"skipped: the case or model has no {need}"
            log.info("explain %s: %s", method, note)
            expl.runs.extend(MethodRun(method, n, {}, 0.0, 0, note) for n in names)
            continue
        fn = explainers.get(method)
        kwargs = dict(params.get(method, {}))
        t0 = time.perf_counter()
        results: list[MethodResult] = fn(ctx, idx, **kwargs)
        elapsed = time.perf_counter() - t0
        per = elapsed / max(len(results), 1)
        for res in results:
            label = ctx.label_names[res.label_index]
            expl.runs.append(
                MethodRun(method, label, dict(res.params), per, res.forward_passes, res.note)
            )
            if res.saliency is not None:
                original = None
                if original_grid and ctx.record is not None:
                    from ..regrid import OriginalGridMap

                    # resampled when an exporter asks, a slab at a time (0.5 GB per label
                    # at 512² × 500 if held whole)
                    original = OriginalGridMap(res.saliency, ctx.record, units="saliency")
                expl.saliency.setdefault(label, {})[method] = Saliency(
                    method,
                    label,
                    np.asarray(res.saliency, dtype=np.float32),
                    model_affine,
                    original=original,
                    signed=res.signed,
                    params=dict(res.params),
                    runtime_s=per,
                )
            if res.tokens is not None:
                n = len(res.tokens)
                expl.tokens.setdefault(label, {})[method] = TokenAttribution(
                    method,
                    label,
                    list(ctx.token_strings[:n]),
                    [tuple(s) for s in ctx.token_spans[:n]],  # type: ignore[misc]
                    np.asarray(res.tokens, dtype=np.float32),
                    params=dict(res.params),
                    runtime_s=per,
                )
            if res.modality is not None:
                res.modality.runtime_s = per
                expl.modality[label] = res.modality
            for key, value in res.attention.items():
                expl.attention.setdefault(key, value)
    return expl
