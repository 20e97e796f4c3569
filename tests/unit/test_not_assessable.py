"""A finding whose needed modality is missing is *not assessable* in every output (issue 23).

chest_ct_0003 has no report: the report-only labels of the chest demo model (smoking_history,
dyspnea) must not be positive — nor negative — in prediction.json, report.html, the PDF text,
the SR content items, the FHIR Observations / conclusion and status.jsonl; the labels that need
image and report carry ``reduced_evidence`` with the card's AUROC without the report. The same
for a report without an image and the image labels.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import jsonschema
import pydicom
import pytest

import medfuse
from medfuse.config import load_workflow
from medfuse.prediction import NOT_ASSESSABLE
from medfuse.workflows import run_workflow

REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO / "sample_cases"
SCHEMA = json.loads((REPO / "docs" / "prediction.schema.json").read_text())

REPORT_ONLY = ("smoking_history", "dyspnea")
IMAGE_ONLY = ("emphysema", "cardiomegaly", "pleural_effusion", "consolidation", "lung_lesion")
BOTH = ("pneumonia", "suspected_malignancy")

WORKFLOW = {
    "name": "not_assessable_test",
    "model": "chest_ct_demo",
    "input": {"modalities": ["CT"]},
    "explain": {"methods": ["gradcam", "modality_shapley"]},
    "export": {"formats": ["json", "html", "pdf", "dicom_sr", "fhir"]},
}


@pytest.fixture(scope="module")
def model():
    return medfuse.load_model("chest_ct_demo")


@pytest.fixture(scope="module")
def no_report_run(tmp_path_factory):
    """The workflow on chest_ct_0003 (no report): its output folder and status record."""
    root = tmp_path_factory.mktemp("in")
    shutil.copytree(SAMPLES / "chest_ct_0003", root / "no_report")
    out = tmp_path_factory.mktemp("out")
    summary = run_workflow(load_workflow(WORKFLOW), [root / "no_report"], out)
    (record,) = summary.records
    assert record["status"] == "ok", record
    return out / record["key"], record


@pytest.fixture(scope="module")
def no_image(model, tmp_path_factory):
    """A report without an image: the prediction and its JSON / HTML / PDF / FHIR outputs."""
    report = medfuse.read_report(SAMPLES / "chest_ct_0001" / "report.txt")
    pred = medfuse.predict(model, report, explain=["modality_shapley"])
    pred.key = "report_only"
    out = tmp_path_factory.mktemp("report_only")
    medfuse.export(pred, out, formats=["json", "html", "pdf", "fhir"])
    return pred, out


def _pdf_text(path: Path) -> str:
    from pypdf import PdfReader

    return "\n".join(p.extract_text() for p in PdfReader(str(path)).pages)


def _items(items):
    for item in items:
        yield item
        yield from _items(getattr(item, "ContentSequence", []))


def _pdf_row(text: str, label: str) -> str:
    """The findings-table row of ``label`` in the PDF text (pypdf puts each cell on a line)."""
    lines = [x.strip() for x in text.splitlines()]
    start = lines.index(label, lines.index("Findings"))
    return " | ".join(lines[start : start + 5])


def _html_rows(path: Path) -> dict[str, list[str]]:
    """The findings table of report.html: label -> its cells' text."""
    text = path.read_text()
    table = text[text.index("<h3>Findings</h3>") :]
    table = table[: table.index("</table>")]
    rows = {}
    for row in re.findall(r"<tr[^>]*>(.*?)</tr>", table, flags=re.S):
        cells = [re.sub("<[^>]+>", "", c) for c in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)]
        if cells:
            rows[cells[0]] = cells
    return rows


# -- the rule ----------------------------------------------------------------------------------------
def test_the_card_says_what_each_label_needs(model):
    sources = model.card.training_data["label_sources"]
    assert {k for k, v in sources.items() if v == "report"} == set(REPORT_ONLY)
    assert {k for k, v in sources.items() if v == "image"} == set(IMAGE_ONLY)
    assert {k for k, v in sources.items() if v == "both"} == set(BOTH)
    mr = medfuse.load_model("brain_mr_demo").card.training_data["label_sources"]
    assert mr == {"focal_lesion": "image", "hydrocephalus": "image", "headache": "report"}


def test_mr_headache_is_not_assessable_without_a_report():
    model = medfuse.load_model("brain_mr_demo")
    pred = medfuse.predict(model, medfuse.read_study(SAMPLES / "mr_sag_0001"))
    f = pred.finding("headache")
    assert f.status == NOT_ASSESSABLE and f.positive is None
    assert "headache" not in [p.label for p in pred.positive]
    assert pred.finding("focal_lesion").assessable


# -- no report -----------------------------------------------------------------------------------------
def test_prediction_json_without_report(no_report_run):
    folder, _ = no_report_run
    doc = json.loads((folder / "prediction.json").read_text())
    jsonschema.validate(doc, SCHEMA, cls=jsonschema.Draft202012Validator)
    findings = {f["label"]: f for f in doc["findings"]}
    for label in REPORT_ONLY:
        f = findings[label]
        assert f["status"] == "not_assessable" and f["positive"] is None
        assert f["probability"] is None and 0 <= f["raw_probability"] <= 1
        assert "needs the report" in f["reason"]
        assert label not in (doc["explanation"] or {}).get("labels", {})  # no map, no words
    for label in BOTH:
        f = findings[label]
        assert f["status"] == "assessed" and f["reduced_evidence"] is True
        card = medfuse.load_model("chest_ct_demo").card
        expected = card.metrics["test"]["auroc_report_missing"][label]["value"]
        assert f["reduced_evidence_auroc"] == pytest.approx(expected, abs=1e-4)
    for label in IMAGE_ONLY:
        assert findings[label]["status"] == "assessed"
        assert isinstance(findings[label]["positive"], bool)


def test_status_jsonl_without_report(no_report_run):
    folder, record = no_report_run
    lines = [json.loads(x) for x in (folder.parent / "status.jsonl").read_text().splitlines()]
    finished = [r for r in lines if r.get("key") == record["key"] and r["status"] == "ok"]
    assert finished
    for r in finished:
        assert not set(REPORT_ONLY) & set(r["positive"])


def test_html_without_report(no_report_run):
    folder, _ = no_report_run
    rows = _html_rows(folder / "report.html")
    for label in REPORT_ONLY:
        assert rows[label][1] == "n/a"  # no probability
        assert rows[label][3] == "n/a: needs report"
    for label in BOTH:
        assert "reduced evidence" in rows[label][3]
    html = (folder / "report.html").read_text()
    assert "evidence in training" not in html
    for label in REPORT_ONLY:  # no saliency figure
        assert f'alt="{label} saliency' not in html


def test_pdf_without_report(no_report_run):
    folder, _ = no_report_run
    text = _pdf_text(folder / "report.pdf")
    for label in REPORT_ONLY:
        row = _pdf_row(text, label)
        assert row == f"{label} | n/a | {row.split(' | ')[2]} | n/a: needs report | report", row
        assert f"{label}: not assessable" in text.replace("\n", " ")


def test_sr_without_report(no_report_run):
    folder, _ = no_report_run
    ds = pydicom.dcmread(folder / "sr.dcm")
    groups = []

    def walk(items):
        for item in items:
            if (
                item.ValueType == "CONTAINER"
                and item.ConceptNameCodeSequence[0].CodeValue == "125007"
            ):
                groups.append(item)
            walk(getattr(item, "ContentSequence", []))

    walk(ds.ContentSequence)
    ids = set()
    for g in groups:
        for item in g.ContentSequence:
            if item.ConceptNameCodeSequence[0].CodeValue == "112039":  # Tracking Identifier
                ids.add(item.TextValue)
    assert ids >= set(IMAGE_ONLY) | set(BOTH)
    assert not ids & set(REPORT_ONLY)  # left out: no measurement, no Positive / Negative
    comment = " ".join(
        str(item.TextValue) for item in _items(ds.ContentSequence) if item.ValueType == "TEXT"
    )
    for label in REPORT_ONLY:
        assert f"Not assessable, left out: {label}" in comment


def test_fhir_without_report(no_report_run):
    from fhir.resources.R4B.bundle import Bundle

    folder, _ = no_report_run
    doc = json.loads((folder / "fhir.json").read_text())
    Bundle.model_validate(doc)
    assert doc["meta"]["profile"] == ["http://hl7.org/fhir/StructureDefinition/Bundle|4.0.1"]
    resources = [e["resource"] for e in doc["entry"]]
    report = next(r for r in resources if r["resourceType"] == "DiagnosticReport")
    labels = {
        c["code"]: r
        for r in resources
        if r["resourceType"] == "Observation"
        for c in r["code"]["coding"]
        if c["system"] == "urn:medfuse:label"
    }
    for label in REPORT_ONLY:
        obs = labels[label]
        assert "valueQuantity" not in obs and "interpretation" not in obs
        assert obs["dataAbsentReason"]["coding"][0]["code"] == "not-performed"
        assert label not in report["conclusion"]
        assert all(c["text"] != label for c in report.get("conclusionCode", []))


# -- no image --------------------------------------------------------------------------------------------
def test_no_image_prediction_and_json(no_image):
    pred, out = no_image
    for label in IMAGE_ONLY:
        f = pred.finding(label)
        assert f.status == NOT_ASSESSABLE and f.positive is None and "needs the image" in f.reason
    assert not set(IMAGE_ONLY) & {f.label for f in pred.positive}
    card = medfuse.load_model("chest_ct_demo").card
    for label in BOTH:  # the card's AUROC measured without the image
        f = pred.finding(label)
        expected = card.metrics["test"]["auroc_image_missing"][label]["value"]
        assert f.reduced_evidence and f.reduced_auroc == pytest.approx(expected)
    doc = json.loads((out / "prediction.json").read_text())
    jsonschema.validate(doc, SCHEMA, cls=jsonschema.Draft202012Validator)
    for f in doc["findings"]:
        if f["label"] in IMAGE_ONLY:
            assert f["positive"] is None and f["status"] == "not_assessable"


def test_no_image_html_pdf_fhir(no_image):
    _, out = no_image
    rows = _html_rows(out / "report.html")
    text = _pdf_text(out / "report.pdf")
    for label in IMAGE_ONLY:
        assert rows[label][3] == "n/a: needs image"
        assert _pdf_row(text, label).endswith("| n/a: needs image | image")
    doc = json.loads((out / "fhir.json").read_text())
    resources = [e["resource"] for e in doc["entry"]]
    report = next(r for r in resources if r["resourceType"] == "DiagnosticReport")
    for r in resources:
        if r["resourceType"] != "Observation" or r["code"]["coding"][-1]["code"] not in IMAGE_ONLY:
            continue
        assert "dataAbsentReason" in r and "valueQuantity" not in r
        assert r["code"]["coding"][-1]["code"] not in report["conclusion"]
