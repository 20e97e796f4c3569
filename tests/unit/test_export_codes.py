"""Every code medfuse writes comes from one table, :mod:`medfuse.export.codes`, which this test
shares (issue 23, 24): the table agrees with the reviewed table in its docstring (SNOMED CT
concepts as SNOMED CT names them, a suspicion coded as a suspicion), every shipped label is
coded, the private scheme is written as documented, and the SR and FHIR outputs carry exactly
the table's codes; FHIR bundles declare R4."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

import medfuse
from medfuse.export import codes, fhir

REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO / "sample_cases"

#: codes that must never stand for a finding the model only suspects
DIAGNOSES = {"363346000"}  # Malignant neoplastic disease


def _reviewed_table() -> dict[str, tuple[str, str]]:
    """label -> (SCT code, meaning) from the table in :mod:`medfuse.export.codes`'s docstring
    (the reviewed record; its first meaning line)."""
    rows = {}
    for line in (codes.__doc__ or "").splitlines():
        m = re.match(r"^([a-z_]+)\s{2,}(\d{6,18})\s{2,}(.+?)(\s\(.*)?$", line)
        if m:
            rows[m.group(1)] = (m.group(2), m.group(3).strip())
    return rows


def test_table_matches_its_reviewed_docstring():
    reviewed = _reviewed_table()
    assert set(reviewed) == set(codes.FINDING_CODES)
    for label, code in codes.FINDING_CODES.items():
        assert code.scheme_designator == "SCT", label
        assert (code.value, code.meaning) == reviewed[label], label
    assert not DIAGNOSES & {c.value for c in codes.FINDING_CODES.values()}
    assert codes.finding_code("suspected_malignancy").meaning == "Suspected malignancy"


@pytest.mark.parametrize("name", ["chest_ct_demo", "brain_mr_demo"])
def test_every_shipped_label_has_a_code(name):
    model = medfuse.load_model(name)
    for label in model.labels:
        code = codes.finding_code(label)
        if label not in codes.FINDING_CODES:  # the documented private code
            assert code == ("LABEL:" + label, "99MEDFUSE", label.replace("_", " "))
    if name == "chest_ct_demo":  # every chest label has a standard code
        assert set(model.labels) <= set(codes.FINDING_CODES)


def test_private_label_code_is_written_as_documented():
    code = codes.finding_code("a_label_longer_than_sixteen_characters")
    assert code.value == "LABEL:a_label_longer_than_sixteen_characters"
    concept = code.concept()  # LongCodeValue: the value as documented, unhashed
    assert concept.value == code.value and "LongCodeValue" in concept
    assert "LABEL:<label>" in (REPO / "docs" / "exports.md").read_text()
    assert "LABEL#" not in (REPO / "docs" / "exports.md").read_text()


def test_codes_are_named_once():
    """No exporter spells a code of the table itself."""
    for module in ("dicom_sr", "fhir", "dicom_saliency"):
        text = (REPO / "medfuse" / "export" / f"{module}.py").read_text()
        for code in _all_codes():
            if code.scheme_designator in ("SCT", "DCM", "LN"):
                assert f'"{code.value}"' not in text, (module, code)


def _all_codes() -> list[codes.Code]:
    out = []
    for value in vars(codes).values():
        if isinstance(value, codes.Code):
            out.append(value)
        elif isinstance(value, dict):
            out.extend(v for v in value.values() if isinstance(v, codes.Code))
    return out


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
        code = codes.finding_code(label)
        assert seen[label] == (code.scheme_designator, code.value, code.meaning)
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
        snomed = [c for c in r["code"]["coding"] if c["system"] == "http://snomed.info/sct"]
        assert snomed == [codes.finding_code(label).coding()]
        if "component" in r:
            assert r["component"][0]["code"]["coding"] == [codes.THRESHOLD.coding()]
    report = next(r for r in resources if r["resourceType"] == "DiagnosticReport")
    assert report["code"]["coding"][0] in [
        c.coding() for c in (*codes.REPORT_CODES.values(), codes.IMAGING_REPORT)
    ]
    conclusion = {c["text"]: c["coding"][0]["code"] for c in report.get("conclusionCode", [])}
    for f in pred.positive:  # every positive finding, lung_lesion included, is coded
        assert conclusion[f.label] == codes.finding_code(f.label).value
    assert "lung_lesion" in conclusion or not pred.finding("lung_lesion").positive
