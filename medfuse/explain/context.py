"""What every explainer receives (:class:`ExplainContext`) and returns (:class:`MethodResult`).

An explainer is a function registered in :data:`medfuse.registry.explainers`::

    @explainers.register("my_method", needs="image")   # needs: "image", "report" or none
    def my_method(ctx: ExplainContext, labels: list[int], **params) -> list[MethodResult]: ...

It gets the prepared single-case inputs and returns one :class:`MethodResult` per label index
(any of ``saliency`` [X, Y, Z] on the model grid, ``tokens`` [T], ``modality``, ``attention``),
with the parameters it used and the number of forward passes it made. :func:`medfuse.explain`
times it and turns the results into an :class:`~medfuse.explain.explanation.Explanation`.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ..errors import ConfigError

__all__ = [
    "ExplainContext",
    "MethodResult",
    "eval_mode",
    "frozen",
    "repeat_batch",
]


@dataclass
class MethodResult:
    """One explainer's output for one label."""

    label_index: int
    #: [X, Y, Z] float32 on the model grid, or None
    saliency: np.ndarray | None = None
    #: True when the saliency may be negative (signed attributions)
    signed: bool = False
    #: [T] per-token scores aligned with ``ExplainContext.token_spans``, or None
    tokens: np.ndarray | None = None
    #: ModalityContribution (see medfuse.explain.modality), or None
    modality: Any = None
    #: label-independent maps (attention) by name
    attention: dict[str, Any] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    forward_passes: int | None = None
    note: str = ""


def repeat_batch(batch: Any, n: int) -> Any:
    """A model input batch of one sample repeated ``n`` times (tensors along dim 0, lists by
    repetition); works for ``TokenBatch``, ``FindingsBatch``, dicts and tensors."""
    if batch is None:
        return None
    if isinstance(batch, Tensor):
        if batch.shape[0] != 1:
            raise ConfigError(f"repeat_batch expects a batch of one, got {batch.shape[0]}")
        return batch.expand(n, *batch.shape[1:]) if n != 1 else batch
    if isinstance(batch, list):
        if len(batch) != 1:
            raise ConfigError(f"repeat_batch expects a batch of one, got {len(batch)}")
        return batch * n
    if isinstance(batch, dict):
        return {k: repeat_batch(v, n) for k, v in batch.items()}
    if dataclasses.is_dataclass(batch) and not isinstance(batch, type):
        return dataclasses.replace(
            batch,
            **{f.name: repeat_batch(getattr(batch, f.name), n) for f in dataclasses.fields(batch)},
        )
    return batch


@contextlib.contextmanager
def frozen(module: nn.Module) -> Iterator[nn.Module]:
    """Parameters have ``requires_grad`` False inside; restored on exit (also on errors)."""
    saved = [(p, p.requires_grad) for p in module.parameters()]
    try:
        for p, _ in saved:
            p.requires_grad_(False)
        yield module
    finally:
        for p, flag in saved:
            p.requires_grad_(flag)


@contextlib.contextmanager
def eval_mode(module: nn.Module) -> Iterator[nn.Module]:
    """``module.eval()`` inside; the previous training flag is restored on exit."""
    was = module.training
    try:
        module.eval()
        yield module
    finally:
        module.train(was)


@dataclass
class ExplainContext:
    """The prepared inputs of one case and helpers to run the model on variations of them.

    ``image`` is ``[1, C, X, Y, Z]`` (None without an image), ``text`` the text encoder's batch
    of one (None without a report). ``label_names`` are the diagnosis head's labels.
    """

    model: Any
    image: Tensor | None
    text: Any
    label_names: list[str]
    token_strings: list[str] = field(default_factory=list)
    token_spans: list[tuple[int, int]] = field(default_factory=list)
    record: Any = None
    report_text: str | None = None
    #: forward passes made through :meth:`logits` (samples, not calls)
    forward_count: int = 0

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def has_image(self) -> bool:
        return self.image is not None and self.model.image_encoder is not None

    @property
    def has_text(self) -> bool:
        return self.text is not None and self.model.text_encoder is not None

    def logits(
        self,
        image: Tensor | None = None,
        *,
        text: Any = None,
        image_present: Tensor | None = None,
        text_present: Tensor | None = None,
        n: int | None = None,
    ) -> Tensor:
        """Diagnosis logits ``[n, L]`` for a batch of image variations (``image`` [n, C, ...];
        None keeps the case's image) with the case's report repeated; gradients flow."""
        if image is None and self.image is not None:
            image = self.image if n is None else repeat_batch(self.image, n)
        if n is None:
            n = int(image.shape[0]) if image is not None else 1
        if text is None and self.text is not None:
            text = repeat_batch(self.text, n)
        self.forward_count += n
        out = self.model(
            image=image if self.has_image else None,
            text=text if self.has_text else None,
            image_present=image_present,
            text_present=text_present,
        )
        if out.logits is None:
            raise ConfigError("explanations need a model with a diagnosis head")
        return out.logits

    def probabilities(self, logits: Tensor) -> Tensor:
        return self.model.diagnosis_head.probabilities(logits)
