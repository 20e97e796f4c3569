"""The source DICOM instances of a prediction, for the exporters that write into the source study
(``dicom_sr``, ``dicom_saliency``) and for the FHIR references.

Policy when a prediction has no DICOM source (a report-only prediction, an image read from
NIfTI / NRRD, a volume built in memory): the DICOM exporters *skip* — they log a warning that
names the reason and return no paths — so that ``medfuse.export(pred, out)`` with every format
still writes the others. :func:`source_datasets` itself raises :class:`~medfuse.errors.ExportError`
with the reason, for callers that need the headers. A DICOM source that *is* named but cannot be
read any more (files moved, another study's files) is an error, not a skip.

Headers are read once per source volume with ``stop_before_pixels`` and cached for its lifetime
(weakly keyed: the cache never keeps a volume alive). The datasets are shared: treat them
as read-only.
"""

from __future__ import annotations

import logging
import threading
import uuid
import weakref
from typing import TYPE_CHECKING, Any

from ..errors import ExportError

if TYPE_CHECKING:
    from pydicom import Dataset

    from ..prediction import Prediction
    from ..types import Volume

__all__ = [
    "NOT_FOR_CLINICAL_USE",
    "derived_uid",
    "derived_uuid",
    "dicom_source_problem",
    "skip_reason",
    "source_datasets",
    "source_header",
    "source_volume",
    "uuid_uid",
    "volume_datasets",
    "volume_source_problem",
]

log = logging.getLogger(__name__)

#: The disclaimer every export carries in words (SeriesDescription fits 64 characters).
NOT_FOR_CLINICAL_USE = "synthetic demo output, not for clinical use"

#: Namespace of medfuse's name-based UUIDs (uuid5 of the URL below, fixed forever).
MEDFUSE_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:medfuse:export")

_cache: weakref.WeakKeyDictionary[Any, list[Dataset]] = weakref.WeakKeyDictionary()
_lock = threading.Lock()


def source_volume(prediction: Prediction) -> Volume | None:
    """The image volume the prediction was made from (None for a report-only prediction)."""
    case = prediction.case
    return case.volume if case is not None else None


def dicom_source_problem(prediction: Prediction) -> str | None:
    """Why the prediction has no DICOM source to export into, in words; None when it has one."""
    case = prediction.case
    if case is None:
        return "the prediction keeps no case (it was loaded from prediction.json or built by hand)"
    return volume_source_problem(case.volume)


def volume_source_problem(vol: Volume | None) -> str | None:
    """:func:`dicom_source_problem` of the volume a prediction is (or will be) made from."""
    from ..io.volumes import volume_format

    if vol is None:
        return "report-only prediction: there is no image, hence no DICOM study to export into"
    if not vol.source_files:
        return "the image volume was not read from files (no source DICOM instances)"
    if any(volume_format(f) is not None for f in vol.source_files):
        return (
            f"the image was read from {vol.source_files[0]!r}, not from DICOM "
            "(DICOM outputs must reference the source DICOM instances)"
        )
    if not vol.study_instance_uid or not vol.series_instance_uid:
        return "the source volume has no StudyInstanceUID / SeriesInstanceUID"
    return None


def skip_reason(prediction: Prediction, fmt: str) -> str | None:
    """``dicom_source_problem``, logged as a warning naming the format when there is one."""
    problem = dicom_source_problem(prediction)
    if problem is not None:
        log.warning("%s export skipped for %s: %s", fmt, prediction.key or "<case>", problem)
    return problem


def _read_header(path: str) -> Dataset:
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        return pydicom.dcmread(path, stop_before_pixels=True)
    except FileNotFoundError:
        raise ExportError(
            "source DICOM file not found (moved or deleted since the prediction?)",
            path=path,
            hint="export from the same working folder the study was read from",
        ) from None
    except (InvalidDicomError, OSError) as exc:
        raise ExportError(f"source file is not readable DICOM: {exc}", path=path) from exc


def source_datasets(prediction: Prediction) -> list[Dataset]:
    """Header-only pydicom datasets of the source instances (``Volume.source_files``), cached
    per prediction. Raises :class:`ExportError` when there is no DICOM source (the reason from
    :func:`dicom_source_problem`) or a file cannot be read / belongs to another study."""
    problem = dicom_source_problem(prediction)
    if problem is not None:
        raise ExportError(f"no DICOM source: {problem}")
    vol = source_volume(prediction)
    assert vol is not None
    return volume_datasets(vol)


def volume_datasets(vol: Volume) -> list[Dataset]:
    """:func:`source_datasets` of a volume read from DICOM (cached per volume, so that a
    prediction's exporters, and work prepared before the prediction, read them once)."""
    problem = volume_source_problem(vol)
    if problem is not None:
        raise ExportError(f"no DICOM source: {problem}")
    with _lock:
        cached = _cache.get(vol)
    if cached is not None:
        return cached
    datasets = [_read_header(f) for f in vol.source_files]
    for f, ds in zip(vol.source_files, datasets, strict=True):
        for kw in ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID"):
            if not ds.get(kw):
                raise ExportError(f"source DICOM file has no {kw}", path=f)
        if ds.StudyInstanceUID != vol.study_instance_uid:
            raise ExportError(
                f"source file belongs to study {ds.StudyInstanceUID}, not to the predicted "
                f"study {vol.study_instance_uid}",
                path=f,
            )
    with _lock:
        _cache[vol] = datasets
    return datasets


def source_header(prediction: Prediction) -> Dataset | None:
    """The first source header (from the cache when there), or None when there is no DICOM
    source or it cannot be read: for exporters that only want descriptive attributes."""
    if dicom_source_problem(prediction) is not None:
        return None
    vol = source_volume(prediction)
    with _lock:
        cached = _cache.get(vol)
    if cached:
        return cached[0]
    try:
        return _read_header(vol.source_files[0])  # type: ignore[union-attr]
    except ExportError as exc:
        log.warning("source header not readable: %s", exc)
        return None


def derived_uuid(prediction: Prediction, *parts: Any) -> uuid.UUID:
    """A name-based (version 5) UUID from the prediction's identity and ``parts``: exporting
    the same prediction again gives the same identifiers (the same object, rewritten), another
    prediction or another content gives new ones."""
    model = prediction.model or {}
    name = "\x1f".join(
        [
            prediction.study_instance_uid or "",
            prediction.series_instance_uid or "",
            prediction.key or "",
            prediction.created or "",
            str(model.get("name", "")),
            str(model.get("version", "")),
            str(model.get("sha256", "")),
            *(str(p) for p in parts),
        ]
    )
    return uuid.uuid5(MEDFUSE_NAMESPACE, name)


def derived_uid(prediction: Prediction, *parts: Any) -> str:
    """The DICOM UID ``2.25.<integer of derived_uuid(...)>`` (PS3.5 B.2: a UID from a UUID)."""
    return f"2.25.{derived_uuid(prediction, *parts).int}"


def uuid_uid(*parts: Any) -> str:
    """A ``2.25.`` UID from a name-based UUID of ``parts`` alone (e.g. the model's identity)."""
    return f"2.25.{uuid.uuid5(MEDFUSE_NAMESPACE, chr(31).join(map(str, parts))).int}"
