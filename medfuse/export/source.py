"""The source DICOM instances of a prediction, for the exporters that write into the source study
(``dicom_sr``, ``dicom_saliency``) and for the FHIR references.

Policy when a prediction has no DICOM source (a report-only prediction, an image read from
NIfTI / NRRD, a volume built in memory): the DICOM exporters *skip* — they log a warning that
names the reason and return no paths — so that ``medfuse.export(pred, out)`` with every format
still writes the others. :func:`volume_datasets` itself raises :class:`~medfuse.errors.ExportError`
with the reason, for callers that need the headers. A DICOM source that *is* named but cannot be
read any more (files moved, another study's files) is an error, not a skip.

This module keeps no state: it reads headers (``stop_before_pixels``) each time it is asked.
The exporters of one study read them once through their shared
:class:`~medfuse.export.context.ExportContext` (``context.source_datasets()``), which holds them
for the study's exports (and lends them, while an exporter runs, to :func:`volume_datasets`:
:data:`ACTIVE_CONTEXT`); treat those datasets as read-only.

Headers are taken as they come (de-identified research data, vendors that leave Type 2
attributes out): :func:`conform_header` completes each one as it is read, by these rules, so
that no exporter meets a missing attribute (``docs/security.md``, "Absent attributes"):

* a Type 2 attribute of the Patient and General Study modules (:data:`TYPE2_COPIED`) that the
  DICOM outputs copy is added **empty** when the source lacks it; a value the output cannot
  carry (PatientSex other than M / F / O, a date or time that is not a DICOM DA / TM) is
  emptied too (unknown rather than invalid);
* a Type 1 attribute is **generated**: SOPClassUID / SOPInstanceUID from the file meta
  (MediaStorage…), Modality from the SOP class, FrameOfReferenceUID as a UID derived from the
  study and series UIDs (the same for every instance of the series, a new one for another
  series), SliceThickness (Type 2, but the outputs need a number) as the distance between
  slice centres;
* an enhanced multi-frame header whose Pixel Measures / Plane Orientation are given per frame,
  with the same value in every frame (Philips), gets them in the shared functional groups;
* a SOPInstanceUID or StudyInstanceUID that cannot be had is an
  :class:`~medfuse.errors.ExportError` naming the file (the DICOM exporters' study then ends
  ``partial``: the other outputs are written).

The files themselves are never changed.
"""

from __future__ import annotations

import contextvars
import logging
import re
import uuid
from typing import TYPE_CHECKING, Any

from ..disclaimer import SHORT
from ..errors import ExportError

if TYPE_CHECKING:
    from pydicom import Dataset

    from ..prediction import Prediction
    from ..types import Volume

__all__ = [
    "ACTIVE_CONTEXT",
    "NOT_FOR_CLINICAL_USE",
    "TYPE2_COPIED",
    "conform_header",
    "derived_uid",
    "derived_uuid",
    "dicom_source_problem",
    "read_header",
    "read_volume_headers",
    "skip_reason",
    "source_volume",
    "uuid_uid",
    "volume_datasets",
    "volume_source_problem",
]

log = logging.getLogger(__name__)

#: The disclaimer every export carries in words (SeriesDescription fits 64 characters).
NOT_FOR_CLINICAL_USE = SHORT  # the wording lives in medfuse.disclaimer

#: Namespace of medfuse's name-based UUIDs (uuid5 of the URL below, fixed forever).
MEDFUSE_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:medfuse:export")

#: Type 2 attributes of the Patient and General Study modules that the DICOM outputs copy from the
#: first source header (highdicom reads them as attributes): added empty when absent.
TYPE2_COPIED = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "StudyDate",
    "StudyTime",
    "ReferringPhysicianName",
    "StudyID",
    "AccessionNumber",
)
#: Modality of the image storage SOP classes medfuse reads (when the source has no Modality).
SOP_CLASS_MODALITY = {
    "1.2.840.10008.5.1.4.1.1.2": "CT",
    "1.2.840.10008.5.1.4.1.1.2.1": "CT",
    "1.2.840.10008.5.1.4.1.1.2.2": "CT",
    "1.2.840.10008.5.1.4.1.1.4": "MR",
    "1.2.840.10008.5.1.4.1.1.4.1": "MR",
    "1.2.840.10008.5.1.4.1.1.4.4": "MR",
    "1.2.840.10008.5.1.4.1.1.128": "PT",
    "1.2.840.10008.5.1.4.1.1.130": "PT",
    "1.2.840.10008.5.1.4.1.1.7": "OT",
}


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


def read_header(path: str) -> Dataset:
    """The header of one source file (``stop_before_pixels``), not completed; an
    :class:`ExportError` naming the file when it is gone or is not DICOM."""
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


#: The export context whose exporter runs in this thread (:meth:`ExportContext.active
#: <medfuse.export.context.ExportContext.active>`; None outside an export): it lends its headers
#: to :func:`volume_datasets` for its own volume, so that code the exporters call (the saliency
#: peaks' InstanceNumbers, in :mod:`medfuse.explain.render`) reads no header twice.
ACTIVE_CONTEXT: contextvars.ContextVar[Any] = contextvars.ContextVar(
    "medfuse_export_context", default=None
)


def volume_datasets(vol: Volume) -> list[Dataset]:
    """Header-only pydicom datasets of the source instances (``Volume.source_files``), each
    completed by :func:`conform_header`: those of the export context active in this thread when
    it is ``vol``'s (:data:`ACTIVE_CONTEXT`), else read afresh (:func:`read_volume_headers`)."""
    ctx = ACTIVE_CONTEXT.get()
    if ctx is not None and ctx.volume is vol:
        return ctx.source_datasets()
    return read_volume_headers(vol)


def read_volume_headers(vol: Volume) -> list[Dataset]:
    """:func:`volume_datasets`, read from the files. Raises :class:`ExportError` when there is
    no DICOM source (the reason from :func:`volume_source_problem`) or a file cannot be read /
    belongs to another study."""
    problem = volume_source_problem(vol)
    if problem is not None:
        raise ExportError(f"no DICOM source: {problem}")
    datasets = [read_header(f) for f in vol.source_files]
    for f, ds in zip(vol.source_files, datasets, strict=True):
        conform_header(ds, vol, path=f)
        if ds.StudyInstanceUID != vol.study_instance_uid:
            raise ExportError(
                f"source file belongs to study {ds.StudyInstanceUID}, not to the predicted "
                f"study {vol.study_instance_uid}",
                path=f,
            )
    _same_frame_of_reference(datasets, vol)
    return datasets


_DA = re.compile(r"^\d{8}$")
_TM = re.compile(r"^\d{2}(\d{2}(\d{2}(\.\d{1,6})?)?)?$")


def conform_header(ds: Dataset, vol: Volume | None = None, *, path: str | None = None) -> Dataset:
    """Complete a source header (in place) by the rules of the module docstring, so that the
    exporters can read every attribute they copy. ``vol`` is the volume read from the series
    (for the slice thickness and the modality); ``path`` names the file in errors.
    Raises :class:`ExportError` when a SOPInstanceUID, SOPClassUID, StudyInstanceUID or
    SeriesInstanceUID cannot be had."""
    meta = getattr(ds, "file_meta", None)
    for kw, meta_kw in (
        ("SOPClassUID", "MediaStorageSOPClassUID"),
        ("SOPInstanceUID", "MediaStorageSOPInstanceUID"),
    ):
        if not ds.get(kw) and meta is not None and meta.get(meta_kw):
            setattr(ds, kw, meta.get(meta_kw))
    for kw in ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID"):
        if not ds.get(kw):
            raise ExportError(f"source DICOM file has no {kw}", path=path)
    for kw in TYPE2_COPIED:
        if kw not in ds:
            setattr(ds, kw, "")
    if str(ds.PatientSex or "").strip().upper() not in ("M", "F", "O", ""):
        log.debug("source PatientSex %r is not M / F / O: written empty", ds.PatientSex)
        ds.PatientSex = ""
    for kw, pattern in (("PatientBirthDate", _DA), ("StudyDate", _DA), ("StudyTime", _TM)):
        value = str(ds[kw].value or "").strip()
        if value and not pattern.match(value):
            log.debug("source %s %r is not a DICOM %s: written empty", kw, value, ds[kw].VR)
            setattr(ds, kw, "")
    if not ds.get("Modality"):
        modality = SOP_CLASS_MODALITY.get(str(ds.SOPClassUID)) or (
            str(vol.modality) if vol is not None and vol.modality else "OT"
        )
        ds.Modality = modality
    if "PerFrameFunctionalGroupsSequence" in ds:
        _share_functional_groups(ds)
    elif vol is not None and not _positive(ds.get("SliceThickness")):
        ds.SliceThickness = round(float(vol.spacing[2]), 6)
    return ds


def _positive(value: Any) -> bool:
    try:
        return value is not None and value != "" and float(value) > 0
    except (TypeError, ValueError):
        return False


def _share_functional_groups(ds: Dataset) -> None:
    """Pixel Measures and Plane Orientation given per frame with one value in every frame
    (as Philips writes them) moved to the shared functional groups, where highdicom looks."""
    from pydicom import Dataset as _Dataset
    from pydicom.sequence import Sequence

    per_frame = ds.PerFrameFunctionalGroupsSequence
    if not per_frame:
        return
    if not ds.get("SharedFunctionalGroupsSequence"):
        ds.SharedFunctionalGroupsSequence = Sequence([_Dataset()])
    shared = ds.SharedFunctionalGroupsSequence[0]
    for kw in ("PixelMeasuresSequence", "PlaneOrientationSequence"):
        if shared.get(kw):
            continue
        values = [item.get(kw) for item in per_frame]
        if any(not v for v in values) or any(v[0] != values[0][0] for v in values[1:]):
            continue
        shared[kw] = per_frame[0][kw]
        for item in per_frame:
            del item[kw]


def _same_frame_of_reference(datasets: list[Dataset], vol: Volume) -> None:
    """FrameOfReferenceUID (Type 1) where a source instance lacks it: the one the other
    instances of the series share, else a UID derived from the study and series UIDs."""
    present = {str(ds.FrameOfReferenceUID) for ds in datasets if ds.get("FrameOfReferenceUID")}
    if len(present) == len(datasets) and datasets:
        return
    if len(present) > 1:
        return  # several frames of reference: the exporters that need one report it
    uid = (
        present.pop()
        if present
        else uuid_uid("frame-of-reference", vol.study_instance_uid, vol.series_instance_uid)
    )
    for ds in datasets:
        if not ds.get("FrameOfReferenceUID"):
            ds.FrameOfReferenceUID = uid


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
