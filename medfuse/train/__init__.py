"""Training and evaluation: synthetic fusion cohort, trainer, metrics and calibration.

Modules are imported on use (``medfuse.train.cohort``, ``medfuse.train.trainer``,
``medfuse.train.metrics``, ``medfuse.train.calibration``); this package itself imports nothing
heavy.
"""

from __future__ import annotations
