"""medfuse: multimodal (3D image + radiology report) medical imaging analysis.

The public API is imported lazily, so ``import medfuse`` is instant and loads neither torch
nor MONAI::

    import medfuse
    study = medfuse.read_study("path/to/dicom_folder")   # headers only, series selected
    vol = study.volume                                    # decodes the selected series
    print(vol.shape, vol.spacing, vol.orientation)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._lazy import lazy_exports
from ._version import __version__

# public name -> module that defines it
_LAZY = {
    "read_study": "medfuse.io.study",
    "read_volume": "medfuse.io.study",
    "read_report": "medfuse.io.reports",
    "parse_report": "medfuse.text.pipeline",
    "Study": "medfuse.types",
    "Series": "medfuse.types",
    "Volume": "medfuse.types",
    "Report": "medfuse.types",
    "Finding": "medfuse.types",
    "Case": "medfuse.types",
    "MedfuseError": "medfuse.errors",
    "load_model": "medfuse.models.model",
    "create_model": "medfuse.models.model",
    "save_model": "medfuse.models.model",
    "explain": "medfuse.explain",
    "predict": "medfuse.prediction",
    "Prediction": "medfuse.prediction",
    "export": "medfuse.export",
    "Dataset": "medfuse.data.dataset",
    "evaluate": "medfuse.train.api",
    "train": "medfuse.train",
}

__all__ = ["__version__", *_LAZY]

if TYPE_CHECKING:
    from .data.dataset import Dataset  # noqa: F401
    from .errors import MedfuseError  # noqa: F401
    from .explain import explain  # noqa: F401
    from .export import export  # noqa: F401
    from .io.reports import read_report  # noqa: F401
    from .io.study import read_study, read_volume  # noqa: F401
    from .models.model import create_model, load_model, save_model  # noqa: F401
    from .prediction import Prediction, predict  # noqa: F401
    from .text.pipeline import parse_report  # noqa: F401
    from .train import train  # noqa: F401
    from .train.api import evaluate  # noqa: F401
    from .types import Case, Finding, Report, Series, Study, Volume  # noqa: F401


__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
