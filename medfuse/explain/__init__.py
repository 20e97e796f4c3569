"""Explanations of fused predictions: where in the volume, which words, and how much each
modality mattered — with measured faithfulness.

    import medfuse
    expl = medfuse.explain(model, case, labels=["lung_lesion"], methods=["gradcam"])
    expl.saliency["lung_lesion"]["gradcam"].original   # OriginalGridMap: on the source grid
    expl.tokens["lung_lesion"]["integrated_gradients_text"].span_scores()
    expl.modality["lung_lesion"].image, expl.modality["lung_lesion"].report
    open("cam.png", "wb").write(expl.figure_png("lung_lesion"))

Methods (registry :data:`medfuse.registry.explainers`, each entry with what it ``needs``):
``gradcam``, ``gradcam++``, ``hirescam``, ``layercam``, ``occlusion``, ``integrated_gradients``,
``integrated_gradients_text``, ``attention``, ``modality_shapley``; the default ones are
:data:`~medfuse.explain.methods.DEFAULT_METHODS`. See ``docs/explain.md``.

This room owns the explanation of one prediction of a loaded model (:class:`Explanation`, plain
numpy, and its JSON view :meth:`Explanation.to_dict`) and the pictures of it. It reads the
model and the case through their public interfaces and must not touch the readers, the
exporters' files or the workflows; the exporters and :mod:`medfuse.prediction` read an
:class:`Explanation`, never this room's internals.

Names load on first use (the explainer modules import torch); the package module is callable,
so ``medfuse.explain(...)`` works whether ``medfuse.explain`` resolves to this package or to
:func:`explain`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .._lazy import callable_module, lazy_exports

_LAZY = {
    "DEFAULT_METHODS": ".methods",
    "method_needs": ".methods",
    "saliency_methods": ".methods",
    "ExplainContext": ".context",
    "MethodResult": ".context",
    "Explanation": ".explanation",
    "MethodRun": ".explanation",
    "ModalityContribution": ".explanation",
    "Saliency": ".explanation",
    "TokenAttribution": ".explanation",
    "explain": ".api",
    "prepare_context": ".api",
}

__all__ = list(_LAZY)

if TYPE_CHECKING:
    from .api import explain, prepare_context  # noqa: F401
    from .context import ExplainContext, MethodResult  # noqa: F401
    from .explanation import (  # noqa: F401
        Explanation,
        MethodRun,
        ModalityContribution,
        Saliency,
        TokenAttribution,
    )
    from .methods import DEFAULT_METHODS, method_needs, saliency_methods  # noqa: F401


def _explain(*args: Any, **kwargs: Any) -> Any:
    from .api import explain as run

    return run(*args, **kwargs)


_explain.__name__ = "explain"
__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
callable_module(__name__, _explain)
