"""``read_study``: one entry point for DICOM folders/files, NIfTI and NRRD/MHA."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from ..errors import DicomError, GeometryError, InputError
from ..types import Series, Study, Volume
from .select import DEFAULT_MODALITIES, select_series
from .volumes import read_itk, read_nifti, volume_format

__all__ = ["load_series", "read_study", "read_volume"]

log = logging.getLogger(__name__)


def read_study(
    path: str | os.PathLike,
    *,
    series: str | None = None,
    modalities: tuple[str, ...] = DEFAULT_MODALITIES,
    policy=None,
) -> Study:
    """Scan ``path`` and select the series a model should use; pixels are decoded on demand.

    ``path`` is a DICOM folder (searched recursively), one DICOM file (e.g. an enhanced
    multi-frame or a mosaic), or a ``.nii``/``.nii.gz``/``.nrrd``/``.nhdr``/``.mha``/``.mhd`` file.
    ``series`` overrides the selection (SeriesInstanceUID, part key or description substring);
    ``policy`` is a :class:`medfuse.io.dicom.ReadPolicy` for imperfect geometry.

    >>> study = read_study("sample_cases/chest_ct_0001")       # doctest: +SKIP
    >>> study.volume.shape, study.volume.orientation            # doctest: +SKIP
    """
    p = Path(path)
    if not p.exists():
        raise InputError("no such file or folder", path=p)
    fmt = volume_format(p) if p.is_file() else None
    if fmt is not None:
        vol = read_nifti(p) if fmt == "nifti" else read_itk(p)
        s = Series(
            series_instance_uid=p.name,
            modality=vol.modality,
            description=p.name,
            files=(str(p),),
            kind="volume",
            rows=vol.shape[1],
            columns=vol.shape[0],
            n_slices=vol.shape[2],
            n_volumes=vol.shape[3] if vol.array.ndim == 4 else 1,
            pixel_spacing=vol.spacing[:2],
            slice_spacing=vol.spacing[2],
            orientation=vol.orientation,
            selected=True,
            reason="the only volume in the file",
        )
        study = Study(path=str(p), study_instance_uid=None, series=[s])
        study._volumes[s.key] = vol
        return study

    from .dicom import scan_dicom, series_from_headers

    headers, skipped = scan_dicom(p)
    all_series, bad, warns = series_from_headers(headers)
    skipped.extend(bad)
    if not all_series:
        raise DicomError(_nothing_usable(p, skipped), path=p, hint=_hint(skipped))
    study_uids = sorted({s.study_instance_uid for s in all_series if s.study_instance_uid})
    if len(study_uids) > 1:
        warns.append(f"{len(study_uids)} different StudyInstanceUIDs under one path")
    study = Study(
        path=str(p),
        study_instance_uid=study_uids[0] if len(study_uids) == 1 else None,
        series=all_series,
        skipped=skipped,
        warnings=warns,
        policy=policy,
    )
    if select_series(study, series, modalities=modalities) is None and series is None:
        reasons = "; ".join(f"{s.key}: {s.reason}" for s in all_series)
        raise DicomError(
            f"no series is suitable for a model ({reasons})",
            path=p,
            hint="pass series=... to choose one explicitly",
        )
    for w in warns:
        log.info("%s: %s", p, w)
    return study


def _nothing_usable(p: Path, skipped: list[tuple[str, str]]) -> str:
    if not skipped:
        return "no files found" if p.is_dir() else "empty file"
    reasons: dict[str, int] = {}
    for _f, r in skipped:
        reasons[r] = reasons.get(r, 0) + 1
    top = ", ".join(f"{n}× {r}" for r, n in sorted(reasons.items(), key=lambda kv: -kv[1])[:4])
    if len(skipped) == 1:
        return f"no DICOM image series: {skipped[0][0]}: {skipped[0][1]}"
    return f"no DICOM image series among {len(skipped)} file(s): {top}"


def _hint(skipped: list[tuple[str, str]]) -> str | None:
    if skipped and all(r == "not a DICOM file" for _f, r in skipped):
        return "point medfuse at a folder of DICOM files, or a .nii/.nii.gz/.nrrd/.mha file"
    return None


def load_series(series: Series, *, workers: int | None = None, policy=None, skipped=()) -> Volume:
    """Decode one series (part) of a study into a Volume.

    ``skipped`` are the (file, reason) pairs the scan could not use; when the series turns out
    to have missing slices, the unreadable DICOM files beside it are named in the error, since
    they are the likely missing ones."""
    from dataclasses import replace

    from .dicom import DEFAULT_POLICY, load_frames_volume

    pol = policy or DEFAULT_POLICY
    if workers is not None:
        pol = replace(pol, workers=workers)
    try:
        return load_frames_volume(series, pol)
    except GeometryError as exc:
        folders = {os.path.dirname(f) for f in series.files}
        nearby = [
            (f, r) for f, r in skipped if os.path.dirname(f) in folders and r != "not a DICOM file"
        ]
        if not nearby or "missing slice" not in exc.reason:
            raise
        named = "; ".join(f"{os.path.basename(f)}: {r}" for f, r in nearby[:3])
        raise GeometryError(
            f"{exc.reason}; unusable DICOM file(s) beside the series: {named}",
            path=nearby[0][0] if len(nearby) == 1 else exc.path,
            hint=exc.hint,
        ) from exc


def read_volume(path: str | os.PathLike, *, series: str | None = None, policy=None) -> Volume:
    """Shortcut: ``read_study(path, series=series).load()``."""
    study = read_study(path, series=series, policy=policy)
    return study.load()
