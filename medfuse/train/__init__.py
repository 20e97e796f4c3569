"""Training and evaluation: a user's cohort or the synthetic fusion cohort, the trainer,
metrics and calibration.

Modules are imported on use (``medfuse.train.trainer``, ``medfuse.train.evaluate``,
``medfuse.train.metrics``, ``medfuse.train.cohort``); this package itself imports nothing heavy.

The package is also callable: ``medfuse.train(config)`` trains from a config (YAML path, mapping
or ``TrainConfig``) and returns a :class:`~medfuse.train.api.TrainResult`. (A package attribute
of the same name as a subpackage would be replaced by the subpackage as soon as anything imports
it, so the subpackage itself takes the call.)
"""

from __future__ import annotations

import sys
import types
from typing import Any


class _CallableTrainPackage(types.ModuleType):
    def __call__(self, config: Any, **kwargs: Any) -> Any:
        from .api import train_model

        return train_model(config, **kwargs)


sys.modules[__name__].__class__ = _CallableTrainPackage
