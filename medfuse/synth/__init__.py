"""Seeded synthetic studies: phantoms, genuine DICOM series, reports and ground truth.

Nothing here is imported by ``import medfuse``; the submodules import numpy / pydicom at module
level, so import them only where they are used::

    from medfuse.synth.cohort import make_study, make_cohort, make_samples, write_ct_series
    from medfuse.synth.geometry import make_geometry
    from medfuse.synth.phantom import chest_ct_phantom, head_mr_phantom, Lesion
    from medfuse.synth.dicom_write import write_series

Everything is deterministic per seed: the same arguments give byte-identical files.

This room owns the seeded synthetic data (phantoms, genuine DICOM writing, template reports,
studies and cohorts with their ground truth) that tests, demos and the training cohorts use.
It must not touch models, explanations, exporters or workflows; it reads back only through
the io room.
"""

from __future__ import annotations

from .._lazy import lazy_exports

# public name -> submodule that defines it (resolved lazily)
_LAZY = {
    "Geometry": ".geometry",
    "make_geometry": ".geometry",
    "Lesion": ".phantom",
    "ChestPhantom": ".phantom",
    "HeadPhantom": ".phantom",
    "chest_ct_phantom": ".phantom",
    "head_mr_phantom": ".phantom",
    "write_series": ".dicom_write",
    "TRANSFER_SYNTAXES": ".dicom_write",
    "make_study": ".cohort",
    "make_cohort": ".cohort",
    "make_samples": ".cohort",
    "write_ct_series": ".cohort",
}

__all__ = sorted(_LAZY)


__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
