"""A user's own cohort: manifest → labels → cached inputs → :class:`Dataset` (see
``docs/training.md``). Imports are lazy.

This room owns a user's cohort: the manifest and its validation, labels and their
uncertainty policies, the image cache and the :class:`Dataset` the trainer reads. It reads
studies and reports through io and text and preprocesses with :mod:`medfuse.transforms`; it
must not touch the models' internals, explanations, exporters, workflows or the CLI.
"""

from __future__ import annotations

from .._lazy import lazy_exports

_LAZY = {
    "Dataset": "medfuse.data.dataset",
    "BuildFailure": "medfuse.data.dataset",
    "Manifest": "medfuse.data.manifest",
    "ManifestRow": "medfuse.data.manifest",
    "read_manifest": "medfuse.data.manifest",
    "write_manifest": "medfuse.data.manifest",
    "LabelTable": "medfuse.data.labels",
    "ImageCache": "medfuse.data.cache",
}
__all__ = list(_LAZY)

__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
