"""Exporters: one module per output object, each registered in ``medfuse.registry.exporters``.

    import medfuse
    pred = medfuse.predict(model, (study, report), explain=True)
    medfuse.export(pred, "out/case1")                         # every registered format
    medfuse.export(pred, "out/case1", formats=["json", "pdf"])

An exporter is a function ``(prediction, out_dir, options, context) -> list[Path]`` registered
under a name; it writes every file atomically (:mod:`medfuse._atomic`) inside ``out_dir``,
returns the paths it wrote and only reads the prediction. ``context`` is the study's
:class:`ExportContext` (the source headers read once, the UID map of the de-identified outputs,
what the exporter's ``prepare`` hook built before the prediction; :mod:`.context`). Add your
own, with or without a ``prepare`` hook::

    from medfuse.export import register_exporter

    @register_exporter("csv_row", prepare=lambda context: context.source_header())
    def export_csv_row(prediction, out_dir, options, context):
        header = context.take_prepared("csv_row")
        ...
        return [path]

(``medfuse.registry.exporters.register("csv_row", fn)`` registers one without a hook.)

See ``docs/exports.md`` for what each built-in file contains and which viewers open it.

This room owns the output files of one prediction (one module per output object), the
per-study :class:`ExportContext`, the coded concepts (:mod:`.codes`) and de-identification.
An exporter reads the :class:`~medfuse.prediction.Prediction` and its context and never
mutates them; the room must not touch models, training, workflows or the CLI.
"""

from __future__ import annotations

from .._lazy import callable_module

# the built-in exporters register themselves on import (one module per output object)
from . import dicom_saliency, dicom_sr, fhir, html, json, nifti, pdf  # noqa: F401
from .base import (
    FORMATS,
    Exporter,
    ExportFormat,
    ExportOptions,
    ExportResult,
    export,
    export_each,
    exporter_of,
    output_path,
    prepare_context,
    register_exporter,
    run_prepare_hooks,
    saliency_maps,
)
from .context import ExportContext

__all__ = [
    "FORMATS",
    "ExportContext",
    "ExportFormat",
    "ExportOptions",
    "ExportResult",
    "Exporter",
    "export",
    "export_each",
    "exporter_of",
    "output_path",
    "prepare_context",
    "register_exporter",
    "run_prepare_hooks",
    "saliency_maps",
]


callable_module(__name__, export)
