"""The notebook face of training: ``medfuse.train(config)`` and ``medfuse.evaluate(model, data)``.

ds = medfuse.Dataset.from_manifest("train.csv", labels=["cardiomegaly"])
result = medfuse.train({"model": {"preset": "text_only"},
                        "data": {"manifest": "train.csv", "labels": ["cardiomegaly"]},
                        "output": "models/my_model"})
result                                   # renders validation metrics in Jupyter
ev = medfuse.evaluate(result.model_dir, "test.csv")
ev                                       # per-label AUROC / F1 / ECE with CIs
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["TrainResult", "evaluate", "train_model"]


@dataclass
class TrainResult:
    """What :func:`train_model` did: the model folder, its validation metrics and history."""

    model_dir: Path
    summary: dict[str, Any] = field(repr=False)

    @property
    def validation(self) -> dict[str, Any]:
        return self.summary.get("validation", {})

    @property
    def model(self) -> Any:
        """The trained model (loaded from :attr:`model_dir`, checksums verified)."""
        from ..models.model import load_model

        return load_model(self.model_dir)

    def _repr_html_(self) -> str:
        from .evaluate import _html

        s = self.summary
        head = (
            f"<p>Model folder <code>{self.model_dir}</code>: {s['epochs']} epochs (best "
            f"{s['best_epoch']}), training {s['seconds_train']} s on {s['device']}.</p>"
        )
        body = _html({**self.validation, "model": "validation"}, "Validation", plots=False)
        return head + body.split("</title>", 1)[-1]

    def __repr__(self) -> str:
        return (
            f"TrainResult({self.model_dir}, epochs {self.summary['epochs']}, val macro AUROC "
            f"{self.validation.get('macro_auroc')})"
        )


def train_model(config: Any, *, progress: bool = True, **overrides: Any) -> TrainResult:
    """Train from a config: a YAML path, a mapping with the same keys (relative paths from the
    current folder) or a :class:`~medfuse.train.trainer.TrainConfig`; ``overrides`` replace
    top-level keys. Shows progress bars unless ``progress=False``."""
    from .trainer import TrainConfig, load_train_config, train

    if isinstance(config, TrainConfig):
        cfg = config.model_copy(update=overrides)
    elif isinstance(config, (str, os.PathLike)):
        cfg = load_train_config(config, overrides)
    else:
        cfg = TrainConfig.model_validate({**dict(config), **overrides})
    if not progress:
        summary = train(cfg)
    else:
        from ..cli._progress import PhaseBars, progress_bar

        with progress_bar() as p:
            summary = train(cfg, progress=PhaseBars(p))
    return TrainResult(Path(summary.get("model_dir") or cfg.model_dir()), summary)


def evaluate(
    model: Any,
    data: Any,
    out_dir: str | os.PathLike | None = None,
    *,
    split: str | None = None,
    n_boot: int = 1000,
    labels_from_reports: bool = False,
    cache_dir: str | os.PathLike | None = None,
) -> Any:
    """Evaluate ``model`` (a model, a model folder or a shipped name) on ``data`` (a
    :class:`~medfuse.data.Dataset` built with the model's preprocessing, or a manifest path)
    → :class:`~medfuse.train.evaluate.Evaluation` (renders in Jupyter); with ``out_dir`` also
    metrics.json, metrics.html and predictions.csv."""
    from ..data.dataset import Dataset
    from ..models.model import load_model
    from .evaluate import evaluate_dataset

    m = model if hasattr(model, "labels") else load_model(model)
    ds = data
    if not isinstance(data, Dataset):
        ds = Dataset.for_model(
            data, m, labels_from_reports=labels_from_reports, cache_dir=cache_dir
        )
    return evaluate_dataset(m, ds, out_dir, split=split, n_boot=n_boot)
