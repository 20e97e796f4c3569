"""``read_study``: one entry point for DICOM folders/files, NIfTI and NRRD/MHA."""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path

from .._pages import small_pages
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


@small_pages()
def load_series(
    series: Series,
    *,
    workers: int | None = None,
    policy=None,
    skipped=(),
    others=(),
    integers: bool = False,
) -> Volume:
    """Decode one series (part) of a study into a Volume.

    ``skipped`` are the (file, reason) pairs the scan could not use and ``others`` the other
    series (parts) of the study. When the series turns out to have missing slices, the error
    names the unreadable DICOM files beside it and the files of other series or stacks that lie
    at a missing position, since they are the likely missing ones. When it loads, unreadable
    DICOM files beside it are recorded in the volume's warnings (they may be slices of it).
    ``integers``: see :func:`medfuse.io.dicom.load_frames_volume` (an int16 array where the
    header says every value is an integer that fits; what ``medfuse convert`` writes)."""
    from dataclasses import replace

    from .dicom import DEFAULT_POLICY, load_frames_volume

    pol = policy or DEFAULT_POLICY
    if workers is not None:
        pol = replace(pol, workers=workers)
    try:
        vol = load_frames_volume(series, pol, integers=integers)
    except GeometryError as exc:
        if "missing slice" not in exc.reason:
            raise
        nearby = _unusable_beside(series, skipped, strict=False)
        in_gaps = _files_in_gaps(series, others, pol.gap_factor)
        if not nearby and not in_gaps:
            raise
        named = "; ".join(f"{os.path.basename(f)}: {r}" for f, r in nearby[:3])
        if nearby:
            named = f"unusable DICOM file(s) beside the series: {named}"
        if in_gaps:
            gap_files = "; ".join(f"{os.path.basename(f)} ({r})" for f, r in in_gaps[:3])
            named += ("; " if named else "") + f"file(s) at a missing position: {gap_files}"
        culprits = nearby + in_gaps
        raise GeometryError(
            f"{exc.reason}; {named}",
            path=culprits[0][0] if len(culprits) == 1 else exc.path,
            hint=exc.hint,
        ) from exc
    nearby = _unusable_beside(series, skipped, strict=True)
    if nearby:
        vol.warnings.append(
            f"{len(nearby)} unusable DICOM file(s) beside the series were left out (they may be "
            "slices of it): " + "; ".join(f"{os.path.basename(f)}: {r}" for f, r in nearby[:3])
        )
    beyond = _files_in_gaps(series, others, pol.gap_factor, ends=True)
    if beyond:
        vol.warnings.append(
            f"{len(beyond)} file(s) of another series would continue this stack and were left "
            "out: " + "; ".join(f"{os.path.basename(f)} ({r})" for f, r in beyond[:3])
        )
    return vol


def _unusable_beside(series: Series, skipped, *, strict: bool) -> list[tuple[str, str]]:
    """Skipped DICOM files in the series' folders (not the non-DICOM ones). ``strict``: only
    those that looked like images but could not be used (truncated, unreadable, no
    SeriesInstanceUID, colour, ...), not the objects that are no images at all (SR,
    presentation states, DICOMDIR, ...)."""
    from .dicom import NON_IMAGE_SOP_CLASSES

    benign = {"not a DICOM file"}
    if strict:
        benign |= set(NON_IMAGE_SOP_CLASSES.values())
    folders = {os.path.dirname(f) for f in series.files}
    return [(f, r) for f, r in skipped if os.path.dirname(f) in folders and r not in benign]


def _files_in_gaps(
    series: Series, others, gap_factor: float, *, ends: bool = False
) -> list[tuple[str, str]]:
    """Files of other series / stacks of the study whose position lies in a gap of ``series``;
    with ``ends``, instead, slices of the same size, spacing and orientation lying one step
    beyond either end of the stack (a slice with another SeriesInstanceUID that continues it)."""
    import numpy as np

    frames = series.headers or []
    if len(frames) < 2:
        return []
    f0 = frames[0]
    iop = f0.iop
    normal = np.cross(iop[:3], iop[3:])
    normal = normal / (np.linalg.norm(normal) or 1.0)
    d = np.unique(np.round([float(fr.ipp @ normal) for fr in frames], 2))
    steps = np.diff(d)
    if not len(steps):
        return []
    med = float(np.median(steps))
    if ends:
        reach = gap_factor * med
        intervals = [(d[0] - reach, d[0]), (d[-1], d[-1] + reach)]
    else:
        intervals = [(d[i], d[i + 1]) for i in np.nonzero(steps > gap_factor * med)[0]]
    hits: list[tuple[str, str]] = []
    for other in others:
        same_uid = other.series_instance_uid == series.series_instance_uid
        if same_uid:
            why = "in another stack of the series: size, spacing, orientation or image type differ"
        elif ends:  # a volume warning, exported with the prediction: no UID in it
            why = "another SeriesInstanceUID"
        else:
            why = f"in another series, {other.series_instance_uid[:64]}"
        for fr in other.headers or []:
            with contextlib.suppress(ValueError, TypeError, FloatingPointError):
                if ends and not (
                    (fr.rows, fr.cols) == (f0.rows, f0.cols)
                    and np.allclose(fr.spacing, f0.spacing, atol=1e-4)
                    and np.allclose(fr.iop, f0.iop, atol=1e-3)
                ):
                    continue
                x = float(fr.ipp @ normal)
                if any(a + 0.01 < x < b - 0.01 for a, b in intervals):
                    hits.append((str(fr.file), why))
    return list(dict.fromkeys(hits))


def read_volume(path: str | os.PathLike, *, series: str | None = None, policy=None) -> Volume:
    """Shortcut: ``read_study(path, series=series).load()``."""
    study = read_study(path, series=series, policy=policy)
    return study.load()
