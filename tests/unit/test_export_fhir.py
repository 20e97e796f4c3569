"""The FHIR exporter on real sample cases: ``fhir.json`` parses back as an R4B Bundle with a
DiagnosticReport, one Observation per finding and one for the risk, the model as a Device,
and no PHI unless asked for."""

from __future__ import annotations

from pathlib import Path

import pydicom
import pytest
from fhir.resources.R4B.bundle import Bundle

import medfuse
from medfuse.export import ExportOptions, fhir
from medfuse.prediction import Prediction
from medfuse.types import Case

SAMPLES = Path(__file__).resolve().parents[2] / "sample_cases"
CT = SAMPLES / "chest_ct_0001"
KEY = "study-0123456789ab"


@pytest.fixture(scope="module")
def model():
    return medfuse.load_model("chest_ct_demo")


@pytest.fixture(scope="module")
def study():
    return medfuse.read_study(CT)


@pytest.fixture(scope="module")
def report():
    return medfuse.read_report(CT / "report.txt")


@pytest.fixture(scope="module")
def pred(model, study, report) -> Prediction:
    case = Case(volume=study.volume, report=report, study=study, key=KEY)
    return medfuse.predict(model, case)


@pytest.fixture(scope="module")
def header(pred) -> pydicom.Dataset:
    return pydicom.dcmread(pred.case.volume.source_files[0], stop_before_pixels=True)


@pytest.fixture(scope="module")
def written(pred, tmp_path_factory) -> Path:
    (path,) = medfuse.export(pred, tmp_path_factory.mktemp("fhir"), formats=["fhir"])["fhir"]
    return path


@pytest.fixture(scope="module")
def bundle(written) -> Bundle:
    return Bundle.model_validate_json(written.read_text())


def _resources(bundle: Bundle, kind: str) -> list:
    return [e.resource for e in bundle.entry if e.resource.get_resource_type() == kind]


def _by_url(bundle: Bundle) -> dict:
    return {e.fullUrl: e.resource for e in bundle.entry}


def _report(bundle: Bundle):
    (report,) = _resources(bundle, "DiagnosticReport")
    return report


def test_bundle_parses_back(bundle, written):
    assert written.name == "fhir.json"
    assert bundle.type == "collection"
    assert all(e.fullUrl.startswith("urn:uuid:") for e in bundle.entry)
    assert len({e.fullUrl for e in bundle.entry}) == len(bundle.entry)


def test_diagnostic_report(bundle, pred):
    report = _report(bundle)
    assert report.status == "preliminary"
    assert [(c.system, c.code) for c in report.category[0].coding] == [
        ("http://terminology.hl7.org/CodeSystem/v2-0074", "RAD")
    ]
    assert (report.code.coding[0].system, report.code.coding[0].code) == (
        "http://loinc.org",
        "24627-2",
    )
    (study_ref,) = report.imagingStudy
    assert study_ref.identifier.system == "urn:dicom:uid"
    assert study_ref.identifier.value == f"urn:oid:{pred.study_instance_uid}"
    assert "not for clinical use" in report.conclusion
    assert "not for clinical use" in report.text.div
    for f in pred.positive:
        assert f.label in report.conclusion
    sct = {c.coding[0].code for c in report.conclusionCode}
    # a label without a SNOMED concept (lung_lesion) is coded only as urn:medfuse:label
    assert sct == {
        fhir.FINDING_CODES[f.label][0] for f in pred.positive if f.label in fhir.FINDING_CODES
    }
    assert report.subject.identifier.value == KEY


def test_one_observation_per_finding_and_risk(bundle, pred):
    report = _report(bundle)
    urls = _by_url(bundle)
    results = [urls[r.reference] for r in report.result]
    assert all(r.get_resource_type() == "Observation" for r in results)
    assert len(results) == len(pred.findings) + 1 == len(_resources(bundle, "Observation"))
    (device,) = _resources(bundle, "Device")
    by_label = {}
    for obs in results:
        labels = [c.code for c in obs.code.coding if c.system == fhir.LABEL_SYSTEM]
        if labels:
            by_label[labels[0]] = obs
        assert obs.status == "preliminary"
        assert urls[obs.device.reference] is device
        assert obs.derivedFrom[0].identifier.value == f"urn:oid:{pred.study_instance_uid}"
    assert set(by_label) == set(pred.labels)
    for f in pred.findings:
        obs = by_label[f.label]
        assert float(obs.valueQuantity.value) == pytest.approx(f.probability, abs=1e-6)
        assert obs.valueQuantity.system == "http://unitsofmeasure.org"
        assert obs.interpretation[0].coding[0].code == ("POS" if f.positive else "NEG")
        assert f"{round(f.threshold, 6)}" in obs.note[0].text
        assert float(obs.component[0].valueQuantity.value) == pytest.approx(f.threshold, abs=1e-6)
        if f.label in fhir.FINDING_CODES:
            assert obs.code.coding[0].system == "http://snomed.info/sct"
    (risk,) = [o for o in results if o.code.coding[0].system == fhir.RISK_SYSTEM]
    assert float(risk.valueQuantity.value) == pytest.approx(pred.risk.score, abs=1e-6)
    assert risk.note[0].text == pred.risk.meaning


def test_device_identifies_the_model(bundle, pred):
    (device,) = _resources(bundle, "Device")
    assert device.deviceName[0].name == pred.model["name"]
    assert device.version[0].value == pred.model["version"]
    assert device.identifier[0].value == pred.model["sha256"]
    assert "not for clinical use" in device.note[0].text


def test_no_phi_by_default(written, header, pred):
    text = written.read_text()
    for value in (
        str(header.PatientName),
        header.PatientName.family_name + "^",
        header.PatientID,
        header.AccessionNumber,
        header.StudyDate,
        f"{header.StudyDate[:4]}-{header.StudyDate[4:6]}-{header.StudyDate[6:]}",
        str(pred.case.study.path),
        "sample_cases",
    ):
        assert value and value not in text, value
    assert '"Patient"' in text  # only as the pseudonymous reference type
    assert '"resourceType": "Patient"' not in text


def test_phi_only_when_asked(pred, header, tmp_path):
    (path,) = medfuse.export(pred, tmp_path, formats=["fhir"], options={"include_phi": True})[
        "fhir"
    ]
    bundle = Bundle.model_validate_json(path.read_text())
    (patient,) = _resources(bundle, "Patient")
    assert patient.identifier[0].value == header.PatientID
    assert patient.name[0].family == header.PatientName.family_name
    report = _report(bundle)
    assert _by_url(bundle)[report.subject.reference] is patient
    assert str(report.effectiveDateTime).replace("-", "") == header.StudyDate
    assert header.AccessionNumber in {i.value for i in report.identifier}


def test_same_prediction_same_document(pred, written, tmp_path):
    (again,) = medfuse.export(pred, tmp_path, formats=["fhir"])["fhir"]
    assert again.read_bytes() == written.read_bytes()


def test_image_only(model, study, tmp_path):
    pred = medfuse.predict(model, (study, None))
    path = fhir.export_fhir(pred, tmp_path, ExportOptions())[0]
    bundle = Bundle.model_validate_json(path.read_text())
    report = _report(bundle)
    assert len(report.result) == len(pred.findings) + 1
    assert "image-only" in report.text.div
    assert report.subject is None  # no key: no subject at all
    assert report.imagingStudy[0].identifier.value == f"urn:oid:{pred.study_instance_uid}"


def test_report_only(model, report, tmp_path):
    pred = medfuse.predict(model, (None, report))
    path = fhir.export_fhir(pred, tmp_path, ExportOptions())[0]
    bundle = Bundle.model_validate_json(path.read_text())
    rep = _report(bundle)
    assert rep.imagingStudy is None
    assert rep.code.coding[0].code == "18748-4"
    assert len(_resources(bundle, "Observation")) == len(pred.findings) + 1
    assert "report-only" in rep.text.div
    assert "MEDFUSE^" not in path.read_text()
