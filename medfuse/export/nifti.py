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

FOLDER = "saliency"
QUANT = 32767.0


@exporters.register("nifti")
def export_nifti(prediction: Prediction, out_dir: Path, options: ExportOptions) -> list[Path]:
    """Write ``saliency/saliency.nii.gz`` and its sidecar (nothing without saliency maps on the
    original grid)."""
    import numpy as np

    from ..types import Volume

    maps = [s for s in saliency_maps(prediction, options) if s.original is not None]
    if not maps:
        return []
    first = maps[0].original
    # each map is stored as int16 scaled to [-1, 1] by its largest magnitude (half the bytes of
    # float32 and quicker to gzip; a heat map needs no more than 32767 levels); the sidecar has
    # each label's scale to recover the raw values
    peaks = [float(np.abs(s.original.array).max()) for s in maps]
    shape = (*first.shape[:3], len(maps)) if len(maps) > 1 else first.shape[:3]
    # int16 from the start, in Fortran order (i fastest, as NIfTI stores voxels and as the
    # resampled maps come), converted a slab at a time: no float copy of the 4D stack
    array = np.empty(shape, dtype=np.int16, order="F")
    for i, (s, peak) in enumerate(zip(maps, peaks, strict=True)):
        src, dst = s.original.array, (array[..., i] if len(maps) > 1 else array)
        scale = QUANT / peak if peak > 0 else 0.0
        step = max(1, (8 << 20) // max(1, src.shape[0] * src.shape[1] * 4))
        for k in range(0, src.shape[2], step):
            dst[:, :, k : k + step] = np.rint(src[:, :, k : k + step] * np.float32(scale))
    vol = Volume(
        array,
        first.affine,
        modality="OT",
        units="saliency",
        volume_labels=tuple(s.label for s in maps) if len(maps) > 1 else (),
        meta={
            "integer_valued": True,
            "value_bounds": (-QUANT, QUANT),
            "nifti_scale": 1.0 / QUANT,
        },
    )
    image = output_path(out_dir, f"{FOLDER}/saliency.nii.gz")
    image.parent.mkdir(parents=True, exist_ok=True)
    vol.save(image)
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
        "shape": list(array.shape),
    }
    atomic_write_text(sidecar, json.dumps(meta, indent=2) + "\n")
    return [image, sidecar]
