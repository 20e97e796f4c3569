"""Explanations of fused predictions: where in the volume, which words, and how much each
modality mattered — with measured faithfulness.

    import medfuse
    expl = medfuse.explain(model, case, labels=["nodule"], methods=["gradcam", "modality_shapley"])
    expl.saliency["nodule"]["gradcam"].original      # OriginalGridMap: on the source DICOM grid
    expl.tokens["nodule"]["integrated_gradients_text"].span_scores()
    expl.modality["nodule"].image, expl.modality["nodule"].report
    open("cam.png", "wb").write(expl.figure_png("nodule"))

Methods (registry :data:`medfuse.registry.explainers`): ``gradcam``, ``gradcam++``,
``occlusion``, ``integrated_gradients``, ``integrated_gradients_text``, ``attention``,
``modality_shapley``. See ``docs/explain.md``.

The package module is callable, so ``medfuse.explain(...)`` works whether ``medfuse.explain``
resolves to this package or to :func:`explain`.
"""

from __future__ import annotations

import sys
import types
from typing import Any

from . import attention, cam, ig, modality, occlusion  # noqa: F401  (register the explainers)
from .api import DEFAULT_METHODS, explain, prepare_context
from .context import ExplainContext, MethodResult
from .explanation import Explanation, MethodRun, ModalityContribution, Saliency, TokenAttribution

__all__ = [
    "DEFAULT_METHODS",
    "ExplainContext",
    "Explanation",
    "MethodResult",
    "MethodRun",
    "ModalityContribution",
    "Saliency",
    "TokenAttribution",
    "explain",
    "prepare_context",
]


class _CallableModule(types.ModuleType):
    """``medfuse.explain`` is both this package and the function: calling it explains."""

    def __call__(self, *args: Any, **kwargs: Any) -> Explanation:
        return explain(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
