"""The model card: everything needed to rebuild, run and judge a saved model, as JSON.

A saved model folder holds ``card.json`` (this), ``weights.safetensors`` (its SHA-256 is in the
card) and, for token-based text encoders, ``tokenizer.json`` (vocabulary; SHA-256 in the card).
The card carries the labels with their calibrated temperatures and decision thresholds, the
exact preprocessing configuration, the component names and constructor arguments, a
description of the training data, metrics, intended use and a not-for-clinical-use statement.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..disclaimer import MODEL_CARD_STATEMENT
from ..errors import ModelError

__all__ = ["CARD_FILE", "NOT_FOR_CLINICAL_USE", "ModelCard"]

CARD_FILE = "card.json"
FORMAT_VERSION = 1
#: the card's not-for-clinical-use statement (:mod:`medfuse.disclaimer`)
NOT_FOR_CLINICAL_USE = MODEL_CARD_STATEMENT


@dataclass
class ModelCard:
    """JSON description of a saved model (see the module docstring)."""

    name: str
    labels: list[str] = field(default_factory=list)
    thresholds: list[float] = field(default_factory=list)
    temperatures: list[float] = field(default_factory=list)
    preprocessing: dict[str, Any] = field(default_factory=dict)
    #: {"image_encoder": {"name", "kwargs"} | None, "text_encoder": ..., "fusion": ..., "heads": {...}}
    components: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    training_data: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    intended_use: str = "Research on multimodal (3D image + report) models; demonstrations."
    limitations: str = ""
    not_for_clinical_use: str = NOT_FOR_CLINICAL_USE
    medfuse_version: str = ""
    weights_file: str = "weights.safetensors"
    weights_sha256: str = ""
    tokenizer_file: str | None = None
    tokenizer_sha256: str | None = None
    created: str = ""
    format_version: int = FORMAT_VERSION
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.medfuse_version:
            from .._version import __version__

            self.medfuse_version = __version__
        if not self.created:
            self.created = _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()
        self.validate()

    def validate(self) -> None:
        """Raise :class:`ModelError` when the card is inconsistent."""
        n = len(self.labels)
        if len(set(self.labels)) != n:
            raise ModelError(f"model card {self.name!r}: duplicate labels in {self.labels}")
        for key in ("thresholds", "temperatures"):
            vals = getattr(self, key)
            if vals and len(vals) != n:
                raise ModelError(f"model card {self.name!r}: {len(vals)} {key} for {n} labels")
        if any(not 0 < t < 1 for t in self.thresholds):
            raise ModelError(f"model card {self.name!r}: thresholds must lie in (0, 1)")
        if any(t <= 0 for t in self.temperatures):
            raise ModelError(f"model card {self.name!r}: temperatures must be positive")
        if self.format_version > FORMAT_VERSION:
            raise ModelError(
                f"model card format {self.format_version} is newer than this medfuse "
                f"understands ({FORMAT_VERSION})",
                hint="upgrade medfuse",
            )

    @classmethod
    def from_model(cls, model: Any, **info: Any) -> ModelCard:
        """A card describing ``model`` (a :class:`~medfuse.models.model.MedfuseModel`);
        ``info`` fills the descriptive fields (description, training_data, metrics, ...)."""
        cfg = model.config()
        head = model.diagnosis_head
        fields = {
            "name": model.name,
            "labels": list(model.labels),
            "thresholds": [float(v) for v in head.threshold.tolist()] if head is not None else [],
            "temperatures": [float(v) for v in head.temperature.tolist()]
            if head is not None
            else [],
            "preprocessing": cfg["preprocessing"],
            "components": {k: cfg[k] for k in ("image_encoder", "text_encoder", "fusion", "heads")},
            "description": cfg.get("description", ""),
        }
        fields.update(info)
        return cls(**fields)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, ensure_ascii=False, sort_keys=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelCard:
        if not isinstance(data, dict):
            raise ModelError("a model card is a JSON object")
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise ModelError(f"model card has unknown fields {sorted(unknown)}")
        if "name" not in data:
            raise ModelError("model card has no name")
        try:
            return cls(**data)
        except TypeError as exc:
            raise ModelError(f"bad model card: {exc}") from None

    def save(self, path: str | os.PathLike) -> Path:
        """Write the card atomically (``path`` is a file or a model folder)."""
        from .._atomic import atomic_write_text

        p = Path(path)
        if p.is_dir():
            p = p / CARD_FILE
        return atomic_write_text(p, self.to_json() + "\n")

    @classmethod
    def load(cls, path: str | os.PathLike) -> ModelCard:
        p = Path(path)
        if p.is_dir():
            p = p / CARD_FILE
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ModelError(f"cannot read model card: {exc}", path=p) from None
        try:
            return cls.from_dict(data)
        except ModelError as exc:
            raise ModelError(exc.reason, path=p, hint=exc.hint) from None
