"""``prediction.json``: the versioned machine-readable result (``docs/prediction.schema.json``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from .._atomic import atomic_write_text
from ..registry import exporters
from .base import ExportOptions, output_path
from .deid import output_uid

if TYPE_CHECKING:
    from ..prediction import Prediction
    from .context import ExportContext
    from .deid import UIDMap

FILENAME = "prediction.json"


def prediction_document(
    prediction: Prediction, options: ExportOptions, uids: UIDMap | None = None
) -> dict:
    """``Prediction.to_dict()``; the source path is kept only with ``include_phi`` (folder
    names often carry patient names); with ``deidentify`` the study / series UIDs are the
    replaced ones of the DICOM outputs (``uids``: the output set's map, ``ExportContext.uids``;
    default a map of its own)."""
    doc = prediction.to_dict()
    if options.include_phi and prediction.case is not None and prediction.case.study is not None:
        doc["source_path"] = prediction.case.study.path
    if options.deidentify:  # the UIDs of the de-identified DICOM outputs
        from .context import ExportContext

        if uids is None:
            uids = ExportContext(options).uids
        for key in ("study_instance_uid", "series_instance_uid"):
            doc[key] = output_uid(doc.get(key), options, uids)
    return doc


@exporters.register("json")
def export_json(
    prediction: Prediction,
    out_dir: Path,
    options: ExportOptions,
    context: ExportContext | None = None,
) -> list[Path]:
    """Write ``prediction.json``."""
    path = output_path(out_dir, FILENAME)
    uids = context.uids if context is not None else None
    doc = prediction_document(prediction, options, uids)
    text = json.dumps(doc, indent=2, allow_nan=False)
    atomic_write_text(path, text + "\n")
    return [path]
