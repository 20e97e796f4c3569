"""Every finding code medfuse writes is checked against one reference table of code + display
(issue 23): SNOMED CT concepts as SNOMED CT names them, a suspicion coded as a suspicion, every
shipped label coded, the private scheme written as documented, FHIR bundles declaring R4."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import medfuse
from medfuse.export import codes, dicom_sr, fhir

REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO / "sample_cases"

#: The reference: label -> (scheme, code, display). SNOMED CT concept ids and their preferred
#: terms; a change here is a change of meaning and must be reviewed as one.
REFERENCE = {
    "emphysema": ("SCT", "87433001", "Pulmonary emphysema"),
    "cardiomegaly": ("SCT", "8186001", "Cardiomegaly"),
    "pleural_effusion": ("SCT", "60046008", "Pleural effusion"),
    "consolidation": ("SCT", "95436008", "Lung consolidation"),
    "lung_lesion": ("SCT", "309529002", "Lung mass"),
    "smoking_history": ("SCT", "77176002", "Smoker"),
    "dyspnea": ("SCT", "267036007", "Dyspnea"),
    "pneumonia": ("SCT", "233604007", "Pneumonia"),
    "suspected_malignancy": ("SCT", "162572001", "Suspected malignancy"),
    "hydrocephalus": ("SCT", "230745008", "Hydrocephalus"),
    "headache": ("SCT", "25064002", "Headache"),
    "focal_lesion": ("99MEDFUSE", "LABEL:focal_lesion", "focal lesion"),
}
#: codes that must never stand for a finding the model only suspects
DIAGNOSES = {"363346000"}  # Malignant neoplastic disease


def test_table_matches_the_reference():
    for label, (scheme, code, display) in REFERENCE.items():
        assert codes.finding_code(label) == (code, scheme, display), label
    assert set(codes.FINDING_CODES) == {k for k, v in REFERENCE.items() if v[0] == "SCT"}
    assert not DIAGNOSES & {v[0] for v in codes.FINDING_CODES.values()}


@pytest.mark.parametrize("name", ["chest_ct_demo", "brain_mr_demo"])
def test_every_shipped_label_has_a_reference_code(name):
    model = medfuse.load_model(name)
    for label in model.labels:
        assert label in REFERENCE, f"{name}: label {label!r} has no reviewed code"
    standard = [lab for lab in model.labels if REFERENCE[lab][0] == "SCT"]
    if name == "chest_ct_demo":  # every chest label has a standard code
        assert standard == list(model.labels)


def test_private_label_code_is_written_as_documented():
    code = codes.finding_code("a_label_longer_than_sixteen_characters")
    assert code[0] == "LABEL:a_label_longer_than_sixteen_characters"
    concept = dicom_sr._cc(code)  # LongCodeValue: the value as documented, unhashed
    assert concept.value == code[0] and "LongCodeValue" in concept
    assert "LABEL:<label>" in (REPO / "docs" / "exports.md").read_text()
    assert "LABEL#" not in (REPO / "docs" / "exports.md").read_text()


@pytest.fixture(scope="module")
def chest_outputs(tmp_path_factory):
    model = medfuse.load_model("chest_ct_demo")
    case = SAMPLES / "chest_ct_0001"
    pred = medfuse.predict(
        model, (medfuse.read_study(case), medfuse.read_report(case / "report.txt"))
    )
    out = tmp_path_factory.mktemp("codes")
    medfuse.export(pred, out, formats=["dicom_sr", "fhir"])
    return pred, out


def test_sr_finding_codes_are_the_reference(chest_outputs):
    import pydicom

    pred, out = chest_outputs
    ds = pydicom.dcmread(out / "sr.dcm")
    seen = {}

    def walk(items):
        for item in items:
            if (
                item.ValueType == "CONTAINER"
                and item.ConceptNameCodeSequence[0].CodeValue == "125007"
            ):
                ident = next(
                    i.TextValue
                    for i in item.ContentSequence
                    if i.ConceptNameCodeSequence[0].CodeValue == "112039"
                )
                ftype = next(
                    i.ConceptCodeSequence[0]
                    for i in item.ContentSequence
                    if i.ConceptNameCodeSequence[0].CodeValue == "121071"  # Finding
                )
                seen[ident] = (ftype.CodingSchemeDesignator, ftype.CodeValue, ftype.CodeMeaning)
            walk(getattr(item, "ContentSequence", []))

    walk(ds.ContentSequence)
    for label in pred.labels:
        assert seen[label] == REFERENCE[label]
    schemes = {str(i.CodingSchemeDesignator) for i in ds.CodingSchemeIdentificationSequence}
    assert "99MEDFUSE" in schemes


def test_fhir_codes_are_the_reference_and_the_bundle_declares_r4(chest_outputs):
    pred, out = chest_outputs
    doc = json.loads((out / "fhir.json").read_text())
    assert doc["meta"]["profile"] == ["http://hl7.org/fhir/StructureDefinition/Bundle|4.0.1"]
    assert doc["meta"]["tag"][0] == {
        "system": "http://hl7.org/fhir/FHIR-version",
        "code": "4.0.1",
        "display": "R4",
    }
    resources = [e["resource"] for e in doc["entry"]]
    for r in resources:
        if r["resourceType"] != "Observation" or "risk" in r["code"]["text"].lower():
            continue
        label = next(c["code"] for c in r["code"]["coding"] if c["system"] == fhir.LABEL_SYSTEM)
        _, code, display = REFERENCE[label]
        snomed = [c for c in r["code"]["coding"] if c["system"] == "http://snomed.info/sct"]
        assert snomed == [{"system": "http://snomed.info/sct", "code": code, "display": display}]
    report = next(r for r in resources if r["resourceType"] == "DiagnosticReport")
    conclusion = {c["text"]: c["coding"][0]["code"] for c in report.get("conclusionCode", [])}
    for f in pred.positive:  # every positive finding, lung_lesion included, is coded
        assert conclusion[f.label] == REFERENCE[f.label][1]
    assert "lung_lesion" in conclusion or not pred.finding("lung_lesion").positive
