"""``fhir.json``: the prediction as a FHIR R4 ``Bundle`` (type ``collection``), built and
validated with the ``fhir.resources.R4B`` models (R4B = 4.3.0; every element used here is
unchanged from R4 4.0.1).

Entries (``fullUrl`` = ``urn:uuid:<id>``; the ids are derived from the prediction, so exporting
the same prediction again gives the same document):

* ``Bundle.meta`` declares the FHIR version: profile
  ``http://hl7.org/fhir/StructureDefinition/Bundle|4.0.1`` and the tag ``4.0.1`` of
  ``http://hl7.org/fhir/FHIR-version`` (R4; serve it as ``application/fhir+json;
  fhirVersion=4.0``).
* ``DiagnosticReport``: status ``preliminary``; category v2-0074 ``RAD``; code LOINC (24627-2
  "CT Chest" for a CT of the chest, 18747-6 "CT Study report", 18755-9 "MR Study report",
  else 18748-4 "Diagnostic imaging study"); ``imagingStudy`` → the study by identifier
  ``urn:dicom:uid`` / ``urn:oid:<StudyInstanceUID>``; ``issued`` = the prediction time;
  ``conclusion`` (positive findings, risk, disclaimer) and ``conclusionCode`` (SNOMED CT codes
  of the positive findings; a finding that is not assessable is in neither); ``result`` → the Observations; narrative ``text`` with the
  not-for-clinical-use disclaimer and the warnings.
* One ``Observation`` per finding: status ``preliminary``, category ``imaging``, code = the
  finding's SNOMED CT code (the table of :mod:`medfuse.export.codes`) plus
  ``urn:medfuse:label|<label>``; ``valueQuantity`` = the calibrated probability (UCUM
  ``{probability}``); ``interpretation`` v3-ObservationInterpretation ``POS`` / ``NEG``
  relative to the threshold; the threshold as a ``component`` (DICOM DCM 122411 "Threshold
  Value") and in a ``note``; ``device`` → the model; ``derivedFrom`` → the study. A finding
  that is not assessable (the modality its label needs is missing) has no value and no
  interpretation but ``dataAbsentReason`` ``not-performed`` (data-absent-reason) with the
  reason; one with reduced evidence says so in its interpretation text and note.
* One ``Observation`` for the risk score (code ``urn:medfuse:risk|<kind>``, unit UCUM "1", its
  meaning in a ``note``, the percentile as a component when known).
* ``Device``: the model (deviceName, version of the model and of medfuse, identifier
  ``urn:medfuse:model-weights-sha256|<sha256>``, manufacturer, the disclaimer in a note).

PHI: by default (``ExportOptions.include_phi`` False) no patient name, ID, birth date, sex,
accession number, study date or source path is written, and no report text; the subject is a
pseudonymous ``Patient`` reference by identifier ``urn:medfuse:case-key|<prediction key>``
(omitted when the key is empty). With ``include_phi`` a ``Patient`` resource (name, ID, birth
date, sex from the source DICOM header) is added and referenced, the DiagnosticReport gets the
study date as ``effectiveDateTime`` and the accession number as an identifier. With
``deidentify`` the study reference carries the replaced StudyInstanceUID of the de-identified
DICOM outputs (:mod:`medfuse.export.deid`).

Works for every prediction, report-only included (no ``imagingStudy`` without a study UID).
Opens in any FHIR R4 tool: HAPI FHIR validator / server, Firely / Simplifier,
``fhir.resources`` (``Bundle.parse_file``).
"""

from __future__ import annotations

import html
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._atomic import atomic_write_text
from ..registry import exporters
from . import deid, source
from .base import ExportOptions, output_path
from .codes import (
    FINDING_CODES,
    IMAGING_REPORT,
    REPORT_CODES,
    SCHEME_URIS,
    THRESHOLD,
    Code,
    finding_code,
)
from .content import imputed_note
from .context import ExportContext

if TYPE_CHECKING:
    from ..prediction import FindingPrediction, Prediction

__all__ = ["FILENAME", "build_bundle"]

log = logging.getLogger(__name__)

FILENAME = "fhir.json"

SNOMED = SCHEME_URIS["SCT"]
LOINC = SCHEME_URIS["LN"]
UCUM = SCHEME_URIS["UCUM"]
DCM = SCHEME_URIS["DCM"]
V2_0074 = "http://terminology.hl7.org/CodeSystem/v2-0074"
V2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203"
OBS_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
INTERPRETATION = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
LABEL_SYSTEM = "urn:medfuse:label"
RISK_SYSTEM = "urn:medfuse:risk"
KEY_SYSTEM = "urn:medfuse:case-key"
SHA_SYSTEM = "urn:medfuse:model-weights-sha256"

DATA_ABSENT = "http://terminology.hl7.org/CodeSystem/data-absent-reason"
#: the FHIR version the bundle follows (declared in ``Bundle.meta``)
FHIR_VERSION = "4.0.1"
FHIR_VERSION_SYSTEM = "http://hl7.org/fhir/FHIR-version"


def _uuid(prediction: Prediction, *parts: Any) -> str:
    return str(source.derived_uuid(prediction, "fhir", *parts))


def _ref(uid: str) -> dict[str, str]:
    return {"reference": f"urn:uuid:{uid}"}


def _quantity(value: float, unit: str, code: str) -> dict[str, Any]:
    return {"value": value, "unit": unit, "system": UCUM, "code": code}


def _finding_coding(label: str) -> list[dict[str, str]]:
    """The finding's standard code (:mod:`medfuse.export.codes`) when it has one, and its label
    (``urn:medfuse:label``)."""
    codings = []
    if label in FINDING_CODES:
        codings.append(finding_code(label).coding())
    codings.append({"system": LABEL_SYSTEM, "code": label, "display": label.replace("_", " ")})
    return codings


def _report_code(prediction: Prediction, header: Any) -> Code:
    vol = source.source_volume(prediction)
    modality = str((header.get("Modality") if header is not None else None) or "").upper()
    if not modality and vol is not None:
        modality = str(vol.modality or "").upper()
    body = str(header.get("BodyPartExamined", "") if header is not None else "").upper()
    return REPORT_CODES.get((modality, body)) or REPORT_CODES.get((modality, "")) or IMAGING_REPORT


def _study_reference(
    prediction: Prediction, options: ExportOptions, context: ExportContext
) -> dict[str, Any] | None:
    uid = deid.output_uid(prediction.study_instance_uid, options, context.uids)
    if not uid:
        return None
    return {
        "type": "ImagingStudy",
        "identifier": {"system": "urn:dicom:uid", "value": f"urn:oid:{uid}"},
        "display": f"DICOM study {uid}",
    }


def _disclaimer(prediction: Prediction) -> str:
    text = f"medfuse AI output: {source.NOT_FOR_CLINICAL_USE}."
    if (prediction.model or {}).get("synthetic_training_data"):
        text += " The model was trained on synthetic data only."
    return text


def _finding_observation(
    prediction: Prediction, f: FindingPrediction, common: dict[str, Any]
) -> dict[str, Any]:
    prob = round(float(f.probability), 6)
    thr = round(float(f.threshold), 6)
    threshold = {
        "code": {"coding": [THRESHOLD.coding()]},
        "valueQuantity": _quantity(thr, "probability", "{probability}"),
    }
    needs = f" The model card says this label needs: {f.evidence}." if f.evidence else ""
    if not f.assessable:  # no value, no interpretation: the reason instead (obs-6)
        return {
            "resourceType": "Observation",
            "id": _uuid(prediction, "finding", f.label),
            **common,
            "code": {"coding": _finding_coding(f.label), "text": f"Probability of {f.label}"},
            "dataAbsentReason": {
                "coding": [
                    {"system": DATA_ABSENT, "code": "not-performed", "display": "Not Performed"}
                ],
                "text": f"not assessable: {f.reason}",
            },
            "note": [{"text": f"Not assessable: {f.reason}.{needs}"}],
            "component": [threshold],
        }
    reduced = f" Reduced evidence: {f.reason}." if f.reduced_evidence and f.reason else ""
    return {
        "resourceType": "Observation",
        "id": _uuid(prediction, "finding", f.label),
        **common,
        "code": {"coding": _finding_coding(f.label), "text": f"Probability of {f.label}"},
        "valueQuantity": _quantity(prob, "probability", "{probability}"),
        "interpretation": [
            {
                "coding": [
                    {
                        "system": INTERPRETATION,
                        "code": "POS" if f.positive else "NEG",
                        "display": "Positive" if f.positive else "Negative",
                    }
                ],
                "text": f"{'positive' if f.positive else 'negative'} at threshold {thr}"
                + (" (reduced evidence)" if f.reduced_evidence else ""),
            }
        ],
        "note": [
            {
                "text": (
                    f"Calibrated probability {prob}; decision threshold {thr} (model card): "
                    "positive when the probability is at or above the threshold." + needs + reduced
                )
            }
        ],
        "component": [threshold],
    }


def _risk_observation(prediction: Prediction, common: dict[str, Any]) -> dict[str, Any]:
    risk = prediction.risk
    assert risk is not None
    obs: dict[str, Any] = {
        "resourceType": "Observation",
        "id": _uuid(prediction, "risk"),
        **common,
        "code": {
            "coding": [
                {"system": RISK_SYSTEM, "code": risk.kind, "display": f"{risk.kind} risk score"}
            ],
            "text": "Survival risk score",
        },
        "valueQuantity": _quantity(round(float(risk.score), 6), "1", "1"),
        "note": [{"text": risk.meaning}],
    }
    if risk.percentile is not None:
        obs["component"] = [
            {
                "code": {
                    "coding": [
                        {"system": RISK_SYSTEM, "code": "percentile", "display": "percentile"}
                    ],
                    "text": "Percentile among the model's validation cases",
                },
                "valueQuantity": _quantity(round(float(risk.percentile), 2), "%", "%"),
            }
        ]
    return obs


def _device(prediction: Prediction, options: ExportOptions) -> dict[str, Any]:
    model = prediction.model or {}
    device: dict[str, Any] = {
        "resourceType": "Device",
        "id": _uuid(prediction, "device"),
        "status": "active",
        "manufacturer": options.manufacturer,
        "deviceName": [{"name": str(model.get("name") or "medfuse model"), "type": "model-name"}],
        "type": {"text": "AI model (software)"},
        "version": [
            {"type": {"text": "model"}, "value": str(model.get("version") or "unknown")},
        ],
        "note": [{"text": _disclaimer(prediction)}],
    }
    if model.get("medfuse_version"):
        device["version"].append(
            {"type": {"text": "medfuse"}, "value": str(model["medfuse_version"])}
        )
    if model.get("sha256"):
        device["identifier"] = [{"system": SHA_SYSTEM, "value": str(model["sha256"])}]
    return device


def _patient(prediction: Prediction, header: Any) -> dict[str, Any] | None:
    """A Patient from the source header (only with include_phi)."""
    if header is None:
        return None
    patient: dict[str, Any] = {"resourceType": "Patient", "id": _uuid(prediction, "patient")}
    pid = str(header.get("PatientID", "") or "")
    if pid:
        patient["identifier"] = [
            {"value": pid, "type": {"coding": [{"system": V2_0203, "code": "MR"}]}}
        ]
    name = header.get("PatientName")
    if name:
        patient["name"] = [
            {
                "text": str(name),
                **({"family": name.family_name} if name.family_name else {}),
                **({"given": [name.given_name]} if name.given_name else {}),
            }
        ]
    sex = {"M": "male", "F": "female", "O": "other"}.get(str(header.get("PatientSex", "")))
    if sex:
        patient["gender"] = sex
    dob = str(header.get("PatientBirthDate", "") or "")
    if len(dob) == 8 and dob.isdigit():
        patient["birthDate"] = f"{dob[:4]}-{dob[4:6]}-{dob[6:]}"
    return patient


def _study_datetime(header: Any) -> str | None:
    date = str(header.get("StudyDate", "") or "") if header is not None else ""
    if len(date) != 8 or not date.isdigit():
        return None
    return f"{date[:4]}-{date[4:6]}-{date[6:]}"


def _conclusion(prediction: Prediction) -> str:
    pos = [  # assessable findings only: one that is not assessable is no conclusion
        f"{f.label} (p={f.probability:.3f}, threshold {f.threshold:.3f}"
        + (", reduced evidence" if f.reduced_evidence else "")
        + ")"
        for f in prediction.positive
    ]
    parts = [f"Positive: {', '.join(pos)}." if pos else "No finding at or above its threshold."]
    if prediction.risk is not None:
        parts.append(f"Risk score ({prediction.risk.kind}): {prediction.risk.score:+.3f}.")
    parts.append(
        f"Inputs used: {' + '.join(prediction.modalities_used) or 'none'}"
        f"{imputed_note(prediction)}."
    )
    parts.append(_disclaimer(prediction))
    return " ".join(parts)


def _decision(f: FindingPrediction) -> str:
    if not f.assessable:
        return f"not assessable (needs {f.evidence})"
    return ("positive" if f.positive else "negative") + (
        " (reduced evidence)" if f.reduced_evidence else ""
    )


def _narrative(prediction: Prediction) -> dict[str, str]:
    e = html.escape
    rows = "".join(
        f"<tr><td>{e(f.label)}</td>"
        f"<td>{f'{f.probability:.3f}' if f.assessable else '—'}</td><td>{f.threshold:.3f}</td>"
        f"<td>{e(_decision(f))}</td></tr>"
        for f in prediction.findings
    )
    risk = (
        f"<p>Risk score ({e(prediction.risk.kind)}): {prediction.risk.score:+.3f}. "
        f"{e(prediction.risk.meaning)}</p>"
        if prediction.risk is not None
        else ""
    )
    warnings = (
        "<ul>" + "".join(f"<li>{e(w)}</li>" for w in prediction.warnings) + "</ul>"
        if prediction.warnings
        else ""
    )
    div = (
        '<div xmlns="http://www.w3.org/1999/xhtml">'
        f"<p><b>{e(_disclaimer(prediction))}</b></p>"
        "<table><tr><th>finding</th><th>probability</th><th>threshold</th><th>decision</th></tr>"
        f"{rows}</table>{risk}{warnings}</div>"
    )
    return {"status": "generated", "div": div}


def build_bundle(
    prediction: Prediction, options: ExportOptions, context: ExportContext | None = None
) -> Any:
    """The validated ``fhir.resources.R4B.bundle.Bundle`` (``context``: the output set's, for
    the source header and the UID map; default a new one)."""
    from fhir.resources.R4B.bundle import Bundle

    ctx = context if context is not None else ExportContext.for_prediction(prediction, options)
    header = ctx.source_header()
    device = _device(prediction, options)
    study_ref = _study_reference(prediction, options, ctx)

    patient = _patient(prediction, header) if options.include_phi else None
    if patient is not None:
        subject: dict[str, Any] | None = {**_ref(patient["id"]), "type": "Patient"}
    elif prediction.key:
        subject = {"type": "Patient", "identifier": {"system": KEY_SYSTEM, "value": prediction.key}}
    else:
        subject = None

    common: dict[str, Any] = {
        "status": "preliminary",
        "category": [
            {"coding": [{"system": OBS_CATEGORY, "code": "imaging", "display": "Imaging"}]}
        ],
        "device": _ref(device["id"]),
    }
    if subject is not None:
        common["subject"] = subject
    if prediction.created:
        common["issued"] = prediction.created
    if study_ref is not None:
        common["derivedFrom"] = [study_ref]

    observations = [_finding_observation(prediction, f, common) for f in prediction.findings]
    if prediction.risk is not None:
        observations.append(_risk_observation(prediction, common))

    code = _report_code(prediction, header)
    report_id = _uuid(prediction, "report")
    report: dict[str, Any] = {
        "resourceType": "DiagnosticReport",
        "id": report_id,
        "text": _narrative(prediction),
        "identifier": [{"system": "urn:ietf:rfc:3986", "value": f"urn:uuid:{report_id}"}],
        "status": "preliminary",
        "category": [{"coding": [{"system": V2_0074, "code": "RAD", "display": "Radiology"}]}],
        "code": {"coding": [code.coding()], "text": code.meaning},
        "result": [_ref(o["id"]) for o in observations],
        "conclusion": _conclusion(prediction),
    }
    if subject is not None:
        report["subject"] = subject
    if prediction.created:
        report["issued"] = prediction.created
    if study_ref is not None:
        report["imagingStudy"] = [study_ref]
    conclusion_codes = [  # the assessable positive findings with a SNOMED CT code
        {"coding": [c for c in _finding_coding(f.label) if c["system"] == SNOMED], "text": f.label}
        for f in prediction.positive
        if f.label in FINDING_CODES and FINDING_CODES[f.label][1] == "SCT"
    ]
    if conclusion_codes:
        report["conclusionCode"] = conclusion_codes
    if options.include_phi and header is not None:
        when = _study_datetime(header)
        if when:
            report["effectiveDateTime"] = when
        accession = str(header.get("AccessionNumber", "") or "")
        if accession:
            report["identifier"].append(
                {"type": {"coding": [{"system": V2_0203, "code": "ACSN"}]}, "value": accession}
            )

    resources = [report, *observations, device] + ([patient] if patient is not None else [])
    bundle: dict[str, Any] = {
        "resourceType": "Bundle",
        "id": _uuid(prediction, "bundle"),
        "meta": {  # the FHIR version this bundle follows (R4)
            "profile": [f"http://hl7.org/fhir/StructureDefinition/Bundle|{FHIR_VERSION}"],
            "tag": [{"system": FHIR_VERSION_SYSTEM, "code": FHIR_VERSION, "display": "R4"}],
        },
        "identifier": {
            "system": "urn:ietf:rfc:3986",
            "value": f"urn:uuid:{_uuid(prediction, 'bundle')}",
        },
        "type": "collection",
        "entry": [{"fullUrl": f"urn:uuid:{r['id']}", "resource": r} for r in resources],
    }
    if prediction.created:
        bundle["timestamp"] = prediction.created
    return Bundle.model_validate(bundle)


@exporters.register("fhir")
def export_fhir(
    prediction: Prediction,
    out_dir: Path,
    options: ExportOptions,
    context: ExportContext | None = None,
) -> list[Path]:
    """Write ``fhir.json``."""
    path = output_path(out_dir, FILENAME)
    bundle = build_bundle(prediction, options, context)
    atomic_write_text(path, bundle.model_dump_json(indent=2) + "\n")
    return [path]
