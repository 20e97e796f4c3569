"""Training and evaluation: a user's cohort or the synthetic fusion cohort, the trainer,
metrics and calibration (temperatures and thresholds are fitted by ``medfuse.train.metrics``:
``fit_temperature``, ``fit_thresholds``; the trainer stores them in the card).

Modules are imported on use (``medfuse.train.trainer``, ``medfuse.train.evaluate``,
``medfuse.train.metrics``, ``medfuse.train.cohort``); this package itself imports nothing heavy.

This room owns learning a model: cohorts, the training loop, calibration, evaluation and the
model folder it writes (through :func:`medfuse.models.model.save_model`). It reads studies and
reports through the io / data rooms and builds models through the registries; it must not touch
the exporters or the workflows, and inference code must not import it.

``medfuse.train(config)`` trains from a config (YAML path, mapping or ``TrainConfig``) and
returns a :class:`~medfuse.train.api.TrainResult`: like ``medfuse.export``, the package is
callable, because the import system sets ``medfuse.train`` to the package as soon as anything
imports one of its modules.
"""

from __future__ import annotations

from typing import Any

from .._lazy import callable_module


def train(config: Any, **kwargs: Any) -> Any:
    """Train from a config (YAML path, mapping or ``TrainConfig``) → ``TrainResult``; see
    :func:`medfuse.train.api.train_model`."""
    from .api import train_model

    return train_model(config, **kwargs)


callable_module(__name__, train)
