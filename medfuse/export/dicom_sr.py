"""``sr.dcm``: the prediction as a DICOM Comprehensive 3D SR holding a TID 1500 Measurement Report
(highdicom), in the source study, as a new series.

Content tree (``dsrdump sr.dcm`` shows it)::

    CONTAINER (126000, DCM, "Imaging Measurement Report")
      HAS CONCEPT MOD  language, procedure reported (77477000 SCT "Computed tomography", ...)
      HAS OBS CONTEXT  observer device: the model (UID derived from its weights' sha256,
                       name, manufacturer, model name "<name> <version>", serial = sha256[:16])
      CONTAINS  Image Library: one entry per source SOP instance (with its geometry)
      CONTAINS  Imaging Measurements
        one TID 1501 group per finding:
          tracking identifier = the label (+ a tracking UID), finding type = the finding's code,
          algorithm identification (TID 4019: model name, version, parameters
          "weights_sha256=…", "medfuse=…"),
          NUM  (122157, DCM, "Probability")       calibrated probability, UCUM {probability}
          NUM  (122411, DCM, "Threshold Value")   the model card's decision threshold
          CODE <finding code> = (10828004, SCT, "Positive") / (260385009, SCT, "Negative")
        one group for the risk score (when the model has a risk head):
          finding type (RISK, 99MEDFUSE, "Survival risk score"),
          NUM  (RISKCOX | RISKDT, 99MEDFUSE, …) unit UCUM "1",
          NUM  (RISKPCT, 99MEDFUSE, "Risk score percentile …") unit "%" when known
      CONTAINS  Qualitative Evaluations (C0034375, UMLS)
          TEXT (121106, DCM, "Comment") = the not-for-clinical-use disclaimer + warnings

Codes: every code (SNOMED CT, DICOM, UCUM and the private scheme ``99MEDFUSE``, described in
the dataset's CodingSchemeIdentificationSequence) comes from the one table of
:mod:`medfuse.export.codes`, which lists them with their meanings. ``suspected_malignancy`` is
the situation 162572001 "Suspected malignancy" (a suspicion, not a diagnosis); a label without
a standard code is ``LABEL:<label>`` exactly (LongCodeValue when longer than 16 characters).

Findings that are not assessable (the modality the model card says they need is missing: a
smoking history without a report) have no measurement group: a probability and a
Positive / Negative for them would claim what the model cannot know. They are named, with the
reason, in the Comment; so are findings with reduced evidence (a label needing image and
report, with one of them), with the card's AUROC for that condition.

The document is PRELIMINARY, PARTIAL and UNVERIFIED (a machine's output nobody signed), its
SeriesDescription says it is synthetic-demo output not for clinical use, and the patient /
study modules are copied from the source instances (``evidence``), whose SOP instances are
listed in CurrentRequestedProcedureEvidenceSequence and in the Image Library. Predictions
without a DICOM source are skipped with a logged reason (see :mod:`medfuse.export.source`).

Viewers: dcmtk ``dsrdump`` (the whole content tree as text), highdicom ``srread`` (the
measurement groups as objects), 3D Slicer with QuantitativeReporting (dcmqi reads TID 1500),
OHIF v3 (lists it as an SR series; its SR display is built around spatial SCOORD measurements,
which these groups do not have). Validated with dicom3tools ``dciodvfy``: no errors; it warns
that it does not know the private designator ``99MEDFUSE`` (expected for a private scheme).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._atomic import atomic_open
from ..registry import exporters
from . import deid, source
from .base import ExportOptions, output_path
from .codes import (  # the one table of codes (re-exported here)
    COMMENT,
    FINDING_CODES,
    IMAGING_PROCEDURE,
    NEGATIVE,
    POSITIVE,
    PRIVATE_SCHEME,
    PRIVATE_SCHEME_NAME,
    PROBABILITY,
    PROCEDURES,
    QUALITATIVE_EVALUATIONS,
    RISK_FINDING,
    RISK_PERCENTILE,
    SOURCE_IMAGE,
    THRESHOLD,
    UNIT_NONE,
    UNIT_PERCENT,
    UNIT_PROBABILITY,
    Code,
    finding_code,
    risk_code,
)
from .content import imputed_note

if TYPE_CHECKING:
    from ..prediction import FindingPrediction, Prediction
    from .context import ExportContext

__all__ = [
    "FILENAME",
    "FINDING_CODES",
    "PRIVATE_SCHEME",
    "SERIES_NUMBER",
    "finding_code",
    "risk_code",
]

log = logging.getLogger(__name__)

FILENAME = "sr.dcm"
#: Series number of the SR series (the saliency map series is 9002).
SERIES_NUMBER = 9001


def _cc(code: tuple[str, str, str]) -> Any:
    return Code(*code).concept()


def _algorithm(prediction: Prediction) -> Any:
    from highdicom.sr import AlgorithmIdentification

    model = prediction.model or {}
    params = [f"weights_sha256={model.get('sha256') or 'unknown'}"]
    if model.get("medfuse_version"):
        params.append(f"medfuse={model['medfuse_version']}")
    return AlgorithmIdentification(
        name=str(model.get("name") or "medfuse model")[:64],
        version=str(model.get("version") or "unknown")[:64],
        parameters=params,
    )


def _observation_context(prediction: Prediction, options: ExportOptions) -> Any:
    from highdicom.sr import (
        DeviceObserverIdentifyingAttributes,
        ObservationContext,
        ObserverContext,
    )
    from pydicom.sr.codedict import codes

    model = prediction.model or {}
    sha = str(model.get("sha256") or "")
    name = str(model.get("name") or "medfuse model")
    device = DeviceObserverIdentifyingAttributes(
        uid=_device_uid(model),
        name=name[:64],
        manufacturer_name=options.manufacturer[:64],
        model_name=f"{name} {model.get('version') or ''}".strip()[:64],
        serial_number=sha[:16] or None,
    )
    return ObservationContext(
        observer_device_context=ObserverContext(
            observer_type=codes.cid270.Device, observer_identifying_attributes=device
        )
    )


def _device_uid(model: dict[str, Any]) -> str:
    """The same UID for the same weights (the device observer is the model, not this export)."""
    return source.uuid_uid("model", model.get("name", ""), model.get("sha256", ""))


def _finding_group(f: FindingPrediction, algorithm: Any, uid: str) -> Any:
    from highdicom.sr import (
        Measurement,
        MeasurementsAndQualitativeEvaluations,
        QualitativeEvaluation,
        TrackingIdentifier,
    )

    code = _cc(finding_code(f.label))
    return MeasurementsAndQualitativeEvaluations(
        tracking_identifier=TrackingIdentifier(uid=uid, identifier=f.label[:64]),
        finding_type=code,
        algorithm_id=algorithm,
        measurements=[
            Measurement(
                name=_cc(PROBABILITY),
                value=round(float(f.probability), 6),
                unit=_cc(UNIT_PROBABILITY),
            ),
            Measurement(
                name=_cc(THRESHOLD), value=round(float(f.threshold), 6), unit=_cc(UNIT_PROBABILITY)
            ),
        ],
        qualitative_evaluations=[
            QualitativeEvaluation(name=code, value=_cc(POSITIVE if f.positive else NEGATIVE))
        ],
    )


def _risk_group(prediction: Prediction, algorithm: Any, uid: str) -> Any:
    from highdicom.sr import Measurement, MeasurementsAndQualitativeEvaluations, TrackingIdentifier

    risk = prediction.risk
    assert risk is not None
    measurements = [
        Measurement(
            name=_cc(risk_code(risk.kind)), value=round(float(risk.score), 6), unit=_cc(UNIT_NONE)
        )
    ]
    if risk.percentile is not None:
        measurements.append(
            Measurement(
                name=_cc(RISK_PERCENTILE),
                value=round(float(risk.percentile), 2),
                unit=_cc(UNIT_PERCENT),
            )
        )
    return MeasurementsAndQualitativeEvaluations(
        tracking_identifier=TrackingIdentifier(uid=uid, identifier="risk"),
        finding_type=_cc(RISK_FINDING),
        algorithm_id=algorithm,
        measurements=measurements,
    )


def disclaimer_text(prediction: Prediction) -> str:
    model = prediction.model or {}
    parts = [
        f"Generated by medfuse model {model.get('name')} ({model.get('version')}) from "
        f"{' + '.join(prediction.modalities_used) or 'nothing'}{imputed_note(prediction)}: "
        f"{source.NOT_FOR_CLINICAL_USE.capitalize()}.",
    ]
    if model.get("synthetic_training_data"):
        parts.append("The model was trained on synthetic data only.")
    for f in prediction.findings:
        if not f.assessable:
            parts.append(f"Not assessable, left out: {f.label} ({f.reason}).")
        elif f.reduced_evidence:
            parts.append(f"Reduced evidence: {f.label} ({f.reason}).")
    if prediction.risk is not None:
        parts.append(f"Risk score: {prediction.risk.meaning}")
    parts.extend(
        f"Warning: {w}" for w in prediction.warnings if not _finding_warning(w, prediction)
    )
    return " ".join(parts)


def _finding_warning(warning: str, prediction: Prediction) -> bool:
    """Whether ``warning`` is one of predict's per-finding warnings (said above already)."""
    return any(
        warning.startswith(f"{f.label}: ") and (not f.assessable or f.reduced_evidence)
        for f in prediction.findings
    )


def _disclaimer_container(prediction: Prediction) -> Any:
    from highdicom.sr import ContainerContentItem, RelationshipTypeValues, TextContentItem

    container = ContainerContentItem(
        name=_cc(QUALITATIVE_EVALUATIONS), relationship_type=RelationshipTypeValues.CONTAINS
    )
    container.ContentSequence = [
        TextContentItem(
            name=_cc(COMMENT),
            value=disclaimer_text(prediction)[:8192],  # UT: up to 2^32 - 2; keep it readable
            relationship_type=RelationshipTypeValues.CONTAINS,
        )
    ]
    return container


def _image_library(sources: list[Any]) -> Any:
    """A compact TID 1600 Image Library: one Image Library Group per (modality, frame of
    reference) with the descriptors the images share (from the first one: modality, frame of
    reference, rows, columns, pixel spacing, slice thickness, orientation), then one IMAGE
    reference per instance (per-image descriptors are optional in TID 1601; the positions are
    in the referenced instances). highdicom's ``ImageLibrary`` repeats every descriptor per
    image (~15 items each), which costs seconds per hundred slices to build and deep-copy."""
    from highdicom.sr import (
        ContainerContentItem,
        ImageContentItem,
        ImageLibraryEntryDescriptors,
        RelationshipTypeValues,
    )
    from pydicom.sr.codedict import codes

    position_values = {
        codes.DCM.ImagePositionPatientX.value,
        codes.DCM.ImagePositionPatientY.value,
        codes.DCM.ImagePositionPatientZ.value,
    }
    library = ContainerContentItem(
        name=codes.DCM.ImageLibrary, relationship_type=RelationshipTypeValues.CONTAINS
    )
    library.ContentSequence = []
    groups: dict[tuple[str, str], list[Any]] = {}
    for ds in sources:
        groups.setdefault((str(ds.SOPClassUID), str(ds.get("FrameOfReferenceUID", ""))), []).append(
            ds
        )
    for members in groups.values():
        group = ContainerContentItem(
            name=codes.DCM.ImageLibraryGroup, relationship_type=RelationshipTypeValues.CONTAINS
        )
        shared = [
            item
            for item in ImageLibraryEntryDescriptors(_descriptor_source(members[0]))
            if item.ConceptNameCodeSequence[0].CodeValue not in position_values
        ]
        images = []
        for ds in members:
            image = ImageContentItem(
                name=_cc(SOURCE_IMAGE),
                referenced_sop_class_uid=ds.SOPClassUID,
                referenced_sop_instance_uid=ds.SOPInstanceUID,
                relationship_type=RelationshipTypeValues.CONTAINS,
            )
            images.append(image)
        group.ContentSequence = [*shared, *images]
        library.ContentSequence.append(group)
    return library


#: what TID 1604 (cross-sectional image library descriptors) reads from an image
_DESCRIPTOR_ATTRIBUTES = (
    "PixelSpacing",
    "ImageOrientationPatient",
    "ImagePositionPatient",
    "SliceThickness",
)


def _descriptor_source(ds: Any) -> Any:
    """The image whose descriptors the library group shows, as highdicom reads them: a
    single-frame header as it is (completed by :func:`.source.conform_header`); an enhanced
    multi-frame header flattened (pixel spacing, slice thickness and orientation from its
    shared functional groups, the first frame's position). A geometry attribute that cannot be
    found is an :class:`~medfuse.errors.ExportError` naming it, never an AttributeError."""
    from pydicom import Dataset

    from ..errors import ExportError

    if "PerFrameFunctionalGroupsSequence" in ds:
        flat = Dataset()
        for kw in ("SOPClassUID", "SOPInstanceUID", "Modality", "FrameOfReferenceUID"):
            if kw in ds:
                flat[kw] = ds[kw]
        flat.Rows, flat.Columns = ds.Rows, ds.Columns
        groups = [
            *(ds.get("SharedFunctionalGroupsSequence") or [])[:1],
            ds.PerFrameFunctionalGroupsSequence[0],
        ]
        for group in groups:
            measures = (group.get("PixelMeasuresSequence") or [None])[0]
            if measures is not None:
                for kw in ("PixelSpacing", "SliceThickness"):
                    if kw in measures and kw not in flat:
                        flat[kw] = measures[kw]
            plane = (group.get("PlaneOrientationSequence") or [None])[0]
            if plane is not None and "ImageOrientationPatient" not in flat:
                flat.ImageOrientationPatient = plane.ImageOrientationPatient
            position = (group.get("PlanePositionSequence") or [None])[0]
            if position is not None and "ImagePositionPatient" not in flat:
                flat.ImagePositionPatient = position.ImagePositionPatient
        ds = flat
    missing = [kw for kw in _DESCRIPTOR_ATTRIBUTES if not ds.get(kw)]
    if missing:
        raise ExportError(
            f"source image {ds.get('SOPInstanceUID')} has no {', '.join(missing)}: "
            "the SR's image library cannot describe it"
        )
    return ds


def build_sr(
    prediction: Prediction, options: ExportOptions, context: ExportContext | None = None
) -> Any:
    """The SR document as it is written: a pydicom ``Dataset`` built by highdicom's
    ``Comprehensive3DSR`` (read it back with ``highdicom.sr.srread`` for its content tree).
    ``context``: the output set's, whose source headers it references; default a new one.

    The Image Library joins the content tree after highdicom has built the document. highdicom
    deep-copies and parses the whole tree, and searches it for image references to check them
    against the evidence; with one entry per source image, that was 0.5 s of a 300-slice
    study's 0.66 s. The library's references are the evidence's own instances, so the check
    holds by construction, and the file is the same byte for byte (tested)."""
    from highdicom.coding_schemes import CodingSchemeIdentificationItem
    from highdicom.sr import Comprehensive3DSR, MeasurementReport
    from pydicom import Dataset

    from .context import ExportContext

    ctx = context if context is not None else ExportContext.for_prediction(prediction, options)
    sources = ctx.source_datasets()
    first = sources[0]
    algorithm = _algorithm(prediction)
    groups = [  # a finding that is not assessable has no group (see the module docstring)
        _finding_group(f, algorithm, source.derived_uid(prediction, "sr-tracking", f.label))
        for f in prediction.findings
        if f.assessable
    ]
    if prediction.risk is not None:
        groups.append(_risk_group(prediction, algorithm, source.derived_uid(prediction, "sr-risk")))
    modality = str(first.get("Modality", "")).upper()
    report = MeasurementReport(
        observation_context=_observation_context(prediction, options),
        procedure_reported=_cc(PROCEDURES.get(modality, IMAGING_PROCEDURE)),
        imaging_measurements=groups,
    )
    report[0].ContentSequence.append(_disclaimer_container(prediction))
    model = prediction.model or {}
    sr = Comprehensive3DSR(
        evidence=sources,
        content=report[0],
        series_instance_uid=source.derived_uid(prediction, "sr-series"),
        series_number=SERIES_NUMBER,
        sop_instance_uid=source.derived_uid(prediction, "sr-instance"),
        instance_number=1,
        manufacturer=options.manufacturer[:64],
        is_complete=False,
        is_final=False,
        is_verified=False,
        series_description=f"medfuse AI findings, {source.NOT_FOR_CLINICAL_USE}"[:64],
        coding_schemes=[CodingSchemeIdentificationItem(PRIVATE_SCHEME, name=PRIVATE_SCHEME_NAME)],
        manufacturer_model_name=str(model.get("name") or "medfuse")[:64],
        software_versions=f"medfuse {model.get('medfuse_version') or ''}".strip()[:64],
        device_serial_number=(str(model.get("sha256") or "") or None),
    )
    sr.PreliminaryFlag = "PRELIMINARY"
    content = sr.ContentSequence  # ..., Imaging Measurements, Qualitative Evaluations
    content.insert(len(content) - 2, _image_library(sources))
    document = Dataset()
    document.update(sr)
    document.file_meta = sr.file_meta
    return document


@exporters.register("dicom_sr")
def export_dicom_sr(
    prediction: Prediction,
    out_dir: Path,
    options: ExportOptions,
    context: ExportContext | None = None,
) -> list[Path]:
    """Write ``sr.dcm`` (nothing, with a logged warning, without a DICOM source)."""
    from .context import ExportContext

    if source.skip_reason(prediction, "dicom_sr") is not None:
        return []
    ctx = context if context is not None else ExportContext.for_prediction(prediction, options)
    sr = build_sr(prediction, options, ctx)
    if options.deidentify:
        sr = deid.deidentify(sr, ctx.uids, deid.pseudonym(prediction))
    path = output_path(out_dir, FILENAME)
    with atomic_open(path) as fh:
        sr.save_as(fh, enforce_file_format=True)
    return [path]
