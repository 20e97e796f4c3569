"""``saliency/saliency.nii.gz`` + ``saliency/saliency.json``: the exported saliency maps on the
original (DICOM) grid as one NIfTI-1 image.

The affine is the source volume's (RAS), so the map overlays the converted study
(``medfuse convert``, dcm2niix) voxel for voxel in ITK-SNAP, 3D Slicer or FSLeyes. With several
labels the image is 4D, one volume per label, in the order listed in ``saliency.json``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from .._atomic import atomic_write_text
from ..registry import exporters
from .base import ExportOptions, output_path, saliency_maps

if TYPE_CHECKING:
    from ..prediction import Prediction
    from .context import ExportContext

FOLDER = "saliency"
QUANT = 32767.0


@exporters.register("nifti")
def export_nifti(
    prediction: Prediction,
    out_dir: Path,
    options: ExportOptions,
    context: ExportContext | None = None,
) -> list[Path]:
    """Write ``saliency/saliency.nii.gz`` and its sidecar (nothing without saliency maps on the
    original grid)."""
    from ..io.volumes import write_nifti_int16_stack

    maps = [s for s in saliency_maps(prediction, options) if s.original is not None]
    if not maps:
        return []
    # each map is stored as int16 scaled to [-1, 1] by its largest magnitude (half the bytes of
    # float32 and quicker to gzip; a heat map needs no more than 32767 levels), resampled and
    # converted a slab at a time as it is written (neither the float maps nor an int16 stack
    # is ever whole in memory); the header's scl_slope and the sidecar's per-label scale give
    # the raw values back
    peaks = [s.original.stats.abs_max for s in maps]
    first = maps[0].original
    shape = (*first.shape[:3], len(maps)) if len(maps) > 1 else tuple(first.shape[:3])
    image = output_path(out_dir, f"{FOLDER}/saliency.nii.gz")
    image.parent.mkdir(parents=True, exist_ok=True)
    write_nifti_int16_stack(
        [s.original for s in maps],
        [QUANT / peak if peak > 0 else 0.0 for peak in peaks],
        first.affine,
        image,
        scl_slope=1.0 / QUANT,
    )
    sidecar = output_path(out_dir, f"{FOLDER}/saliency.json")
    meta = {
        "labels": [s.label for s in maps],
        "methods": [s.method for s in maps],
        "signed": [s.signed for s in maps],
        "scale": peaks,
        "values": "each label's map divided by its scale (largest magnitude): in [-1, 1]; "
        "multiply by scale for the raw saliency",
        "axis": "4th axis = labels" if len(maps) > 1 else None,
        "grid": "original (source volume affine, RAS mm)",
        "shape": list(shape),
    }
    atomic_write_text(sidecar, json.dumps(meta, indent=2) + "\n")
    return [image, sidecar]
