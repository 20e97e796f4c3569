"""The explanation methods by name: which run by default, and what each one needs.

:data:`DEFAULT_METHODS` is the one default list: :func:`medfuse.explain`,
``medfuse.predict(..., explain=True)`` and the workflow schema's ``explain.methods`` read it here.
What a method needs is a fact of its registry entry (metadata ``needs``: ``"image"`` or
``"report"``; none: nothing in particular), read by :func:`method_needs`; the methods needing
the image give saliency maps of the volume (:func:`saliency_methods`).

A light module (no torch, no numpy): the workflow schema imports it.
"""

from __future__ import annotations

from ..registry import explainers

__all__ = ["DEFAULT_METHODS", "method_needs", "saliency_methods"]

#: Methods run when none are named: the cheap ones (one or a few forward passes each).
DEFAULT_METHODS: tuple[str, ...] = ("gradcam", "integrated_gradients_text", "modality_shapley")


def method_needs(method: str) -> str | None:
    """The modality ``method`` needs (``"image"``, ``"report"``), from its registry entry."""
    return explainers.metadata(method).get("needs")


def saliency_methods() -> frozenset[str]:
    """The registered methods that give a saliency map of the volume (those needing the image)."""
    return frozenset(m for m in explainers.names() if method_needs(m) == "image")
