"""Exporters: one module per output object, each registered in ``medfuse.registry.exporters``.

    import medfuse
    pred = medfuse.predict(model, (study, report), explain=True)
    medfuse.export(pred, "out/case1")                         # every registered format
    medfuse.export(pred, "out/case1", formats=["json", "pdf"])

An exporter is a function ``(prediction, out_dir, options) -> list[Path]`` registered under a
name; it writes every file atomically (:mod:`medfuse._atomic`) inside ``out_dir`` and returns
the paths it wrote. Add your own::

    from medfuse.registry import exporters

    @exporters.register("csv_row")
    def export_csv_row(prediction, out_dir, options):
        ...
        return [path]

See ``docs/exports.md`` for what each built-in file contains and which viewers open it.
"""

from __future__ import annotations

from .._lazy import callable_module

# the built-in exporters register themselves on import (one module per output object)
from . import dicom_saliency, dicom_sr, fhir, html, json, nifti, pdf  # noqa: F401
from .base import (
    FORMATS,
    ExportFormat,
    ExportOptions,
    ExportResult,
    export,
    export_each,
    output_path,
    saliency_maps,
)

__all__ = [
    "FORMATS",
    "ExportFormat",
    "ExportOptions",
    "ExportResult",
    "export",
    "export_each",
    "output_path",
    "saliency_maps",
]


callable_module(__name__, export)
