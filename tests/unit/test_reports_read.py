"""read_report: .txt / .json / CSV rows / DICOM SR, bad bytes, empty, binary, huge and HTML reports."""

from __future__ import annotations

import base64
import json

import pytest

import medfuse
from medfuse.errors import ReportError
from medfuse.io.reports import (
    clean_report_text,
    decode_report_bytes,
    iter_csv_reports,
    read_report,
    read_reports,
    report_text_from_mapping,
)
from medfuse.types import FindingStatus, Report

TEXT = "FINDINGS: No pneumothorax. Small left pleural effusion.\nIMPRESSION: Mild cardiomegaly."


def codes(report: Report) -> dict[str, str]:
    return {f.code: f.status.value for f in report.findings}


def test_lazy_public_api():
    assert medfuse.read_report is read_report
    assert medfuse.parse_report.__module__ == "medfuse.text.pipeline"


def test_txt(tmp_path):
    p = tmp_path / "r.txt"
    p.write_text(TEXT.replace("\n", "\r\n"), encoding="utf-8")
    r = read_report(p)
    assert r.text == TEXT  # CRLF normalised
    assert r.source == str(p) and r.warnings == [] and r.meta["encoding"] == "utf-8"
    assert codes(r) == {
        "pneumothorax": "absent",
        "pleural_effusion": "present",
        "cardiomegaly": "present",
    }
    assert list(r.sections) == ["FINDINGS", "IMPRESSION"]


def test_non_utf8_bytes_replaced_with_warning(tmp_path):
    p = tmp_path / "latin1.txt"
    p.write_bytes("FINDINGS: Lésion. No pneumothorax.".encode("latin-1"))
    r = read_report(p)
    assert "\ufffd" in r.text
    assert r.warnings and "not valid UTF-8" in r.warnings[0] and "offset 11" in r.warnings[0]
    assert r.meta["encoding"] == "utf-8 (with replacement)"
    assert codes(r) == {"pneumothorax": "absent"}
    for f in r.findings:
        assert r.text[f.start : f.end] == f.text


@pytest.mark.parametrize("encoding", ["utf-8-sig", "utf-16", "utf-32"])
def test_bom_marked_encodings_decode_silently(tmp_path, encoding):
    p = tmp_path / "r.txt"
    p.write_bytes(TEXT.encode(encoding))
    r = read_report(p)
    assert r.text == TEXT and r.warnings == []


@pytest.mark.parametrize("content", [b"", b"   \n\t \r\n"])
def test_empty_report_names_the_file(tmp_path, content):
    p = tmp_path / "empty.txt"
    p.write_bytes(content)
    with pytest.raises(ReportError, match="empty") as err:
        read_report(p)
    assert err.value.path == str(p) and str(p) in str(err.value)


def test_binary_file_is_an_error(tmp_path):
    p = tmp_path / "scan.txt"
    p.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)) * 8)
    with pytest.raises(ReportError, match="binary") as err:
        read_report(p)
    assert err.value.path == str(p)
    with pytest.raises(ReportError, match="binary"):
        decode_report_bytes(bytes(range(128, 256)) * 40, "x")


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(ReportError, match="no such file"):
        read_report(tmp_path / "nope.txt")
    with pytest.raises(ReportError, match="folder"):
        read_report(tmp_path)


def test_one_megabyte_report_truncated_for_the_encoder(tmp_path):
    unit = "Mild cardiomegaly. No pneumothorax. Small left pleural effusion is unchanged.\n"
    text = unit * (1_048_576 // len(unit) + 1)
    p = tmp_path / "huge.txt"
    p.write_text(text)
    r = read_report(p)  # its time against a 100 KiB report: benchmarks/complexity.py
    assert r.text == text and len(r.text) > 1_000_000
    assert r.truncated_at is not None and r.truncated_at <= 100_000
    assert len(r.encoder_text) == r.truncated_at
    assert r.notes and "only the first" in r.notes[0]
    assert r.labels()["cardiomegaly"] == 1
    r2 = read_report(p, max_chars=2_000)
    assert r2.truncated_at <= 2_000 and all(f.end <= 2_000 for f in r2.findings)


def test_html_laden_report(tmp_path):
    html = (
        "<html><head><style>p {color: red}</style></head><body>"
        "<p><b>FINDINGS:</b> No <i>pneumothorax</i>.<br>Small&nbsp;left pleural effusion &amp; "
        "atelectasis.</p><ul><li>Mild cardiomegaly</li></ul>"
        "<!-- comment: pneumonia --><script>alert('edema')</script>"
        "<p>IMPRESSION: Stable.</p></body></html>"
    )
    p = tmp_path / "r.html"
    p.write_text(html)
    r = read_report(p)
    assert "<" not in r.text and "&amp;" not in r.text and "color" not in r.text
    assert "Small left pleural effusion & atelectasis." in r.text
    assert "HTML markup removed" in r.warnings[0]
    assert codes(r) == {
        "pneumothorax": "absent",
        "pleural_effusion": "present",
        "atelectasis": "present",
        "cardiomegaly": "present",
    }
    assert list(r.sections) == ["FINDINGS", "IMPRESSION"]


def test_plain_text_with_angle_brackets_is_not_html():
    text, warnings = clean_report_text("Nodule < 5 mm and > 2 mm.")
    assert text == "Nodule < 5 mm and > 2 mm." and warnings == []


def test_control_characters_replaced_with_warning():
    text, warnings = clean_report_text("No\x0bpneumothorax.\x07")
    assert text == "No pneumothorax. " and "control" in warnings[0]


# -- JSON ----------------------------------------------------------------------------------------
def test_json_object_with_text(tmp_path):
    p = tmp_path / "r.json"
    p.write_text(json.dumps({"id": "A1", "text": TEXT, "other": 3}))
    r = read_report(p)
    assert r.text == TEXT and r.meta["id"] == "A1"


def test_json_object_with_section_fields(tmp_path):
    p = tmp_path / "r.json"
    p.write_text(
        json.dumps({"indication": "cough", "findings": "No effusion.", "impression": "Normal."})
    )
    r = read_report(p)
    assert r.text == "INDICATION: cough\nFINDINGS: No effusion.\nIMPRESSION: Normal."
    assert list(r.sections) == ["INDICATION", "FINDINGS", "IMPRESSION"]


def test_json_list_needs_row(tmp_path):
    p = tmp_path / "r.json"
    p.write_text(json.dumps([{"text": "No effusion."}, {"text": "Possible pneumonia."}]))
    with pytest.raises(ReportError, match="holds 2 reports"):
        read_report(p)
    r = read_report(p, row=1)
    assert r.source.endswith("r.json#1") and codes(r) == {"pneumonia": "uncertain"}


def test_json_fhir_diagnostic_report(tmp_path):
    p = tmp_path / "fhir.json"
    p.write_text(
        json.dumps(
            {
                "resourceType": "DiagnosticReport",
                "presentedForm": [
                    {
                        "contentType": "text/plain",
                        "data": base64.b64encode(b"FINDINGS: No effusion.").decode(),
                    }
                ],
                "conclusion": "Mild cardiomegaly.",
            }
        )
    )
    r = read_report(p)
    assert r.text == "FINDINGS: No effusion.\nIMPRESSION: Mild cardiomegaly."


def test_json_errors(tmp_path):
    p = tmp_path / "bad.json"
    p.write_text("{not json")
    with pytest.raises(ReportError, match="not valid JSON"):
        read_report(p)
    p.write_text(json.dumps({"a": 1}))
    with pytest.raises(ReportError, match="which field"):
        read_report(p)
    p.write_text(json.dumps({"text": "  "}))
    with pytest.raises(ReportError, match="empty"):
        read_report(p)


# -- CSV -----------------------------------------------------------------------------------------
@pytest.fixture
def csv_file(tmp_path):
    p = tmp_path / "reports.csv"
    p.write_text(
        "uid,findings,impression\n"
        'a,"No pneumothorax, no effusion.",Normal.\n'
        'b,"Heart is enlarged.","Mild cardiomegaly."\n'
        "c,,\n"
    )
    return p


def test_csv_row_by_index_and_id(csv_file):
    with pytest.raises(ReportError, match="holds 3 reports"):
        read_report(csv_file)
    r = read_report(csv_file, row=1)
    assert r.text == "FINDINGS: Heart is enlarged.\nIMPRESSION: Mild cardiomegaly."
    assert r.source.endswith("#1") and r.meta["row"] == 1
    r = read_report(csv_file, row="a", id_column="uid", text_column="findings")
    assert r.text == "No pneumothorax, no effusion." and r.meta["id"] == "a"
    with pytest.raises(ReportError, match="no row"):
        read_report(csv_file, row=9)
    with pytest.raises(ReportError, match="empty"):
        read_report(csv_file, row=2)


def test_csv_missing_column_lists_columns(csv_file):
    with pytest.raises(ReportError, match="columns are: uid, findings, impression"):
        read_report(csv_file, row=0, text_column="report")
    with pytest.raises(ReportError, match="no column named 'id'"):
        list(iter_csv_reports(csv_file, "findings", id_column="id"))


def test_read_reports_streams_and_skips_empty(csv_file):
    reports = list(read_reports(csv_file, id_column="uid", batch_size=1))
    assert [r.meta["id"] for r in reports] == ["a", "b"]
    assert reports[1].labels()["cardiomegaly"] == 1
    with pytest.raises(ReportError, match="empty"):
        list(read_reports(csv_file, skip_empty=False))


def test_tsv_and_semicolon_csv(tmp_path):
    p = tmp_path / "r.tsv"
    p.write_text("id\ttext\n1\tNo effusion.\n")
    assert read_report(p).text == "No effusion."
    p = tmp_path / "r.csv"
    p.write_text("id;report\n1;Possible pneumonia.\n")
    assert read_report(p).text == "Possible pneumonia."


def test_mapping_and_bytes_sources():
    r = read_report({"id": 5, "findings": "No effusion.", "impression": "Normal."}, id_column="id")
    assert r.meta["id"] == 5 and r.sections["FINDINGS"] == "No effusion."
    assert report_text_from_mapping({"Report": "x"}) == "x"
    r = read_report(TEXT.encode())
    assert r.text == TEXT
    assert read_report(r) is r
    with pytest.raises(ReportError):
        read_report(3.5)  # type: ignore[arg-type]


def test_parse_false_skips_the_parser(tmp_path):
    p = tmp_path / "r.txt"
    p.write_text(TEXT)
    r = read_report(p, parse=False)
    assert r.text == TEXT and r.findings == [] and r.sections == {}


# -- DICOM SR ------------------------------------------------------------------------------------
def _code(meaning: str, value: str = "121071", scheme: str = "DCM"):
    from pydicom.dataset import Dataset

    c = Dataset()
    c.CodeValue, c.CodingSchemeDesignator, c.CodeMeaning = value, scheme, meaning
    return c


def _text_item(meaning: str, text: str):
    from pydicom.dataset import Dataset

    item = Dataset()
    item.RelationshipType = "CONTAINS"
    item.ValueType = "TEXT"
    item.ConceptNameCodeSequence = [_code(meaning)]
    item.TextValue = text
    return item


def _write_sr(path, content, modality="SR"):
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.88.11"  # Basic Text SR
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.Modality = modality
    ds.PatientName = "Secret^Patient"
    if content is not None:
        ds.ValueType = "CONTAINER"
        ds.ConceptNameCodeSequence = [_code("Imaging Report", "18748-4", "LN")]
        ds.ContinuityOfContent = "SEPARATE"
        ds.ContentSequence = content
    ds.save_as(path, enforce_file_format=True)
    return ds


def test_dicom_sr_text_items(tmp_path):
    from pydicom.dataset import Dataset

    findings = Dataset()
    findings.RelationshipType = "CONTAINS"
    findings.ValueType = "CONTAINER"
    findings.ConceptNameCodeSequence = [_code("Findings")]
    findings.ContentSequence = [
        _text_item("Finding", "No pneumothorax."),
        _text_item("Finding", "Small left pleural effusion."),
    ]
    p = tmp_path / "report.dcm"
    ds = _write_sr(
        p,
        [
            _text_item("Indication", "Cough."),
            findings,
            _text_item("Impression", "Mild cardiomegaly."),
        ],
    )
    r = read_report(p)
    assert r.text == (
        "INDICATION: Cough.\nFINDINGS: No pneumothorax.\nSmall left pleural effusion.\n"
        "IMPRESSION: Mild cardiomegaly."
    )
    assert list(r.sections) == ["INDICATION", "FINDINGS", "IMPRESSION"]
    assert r.meta["StudyInstanceUID"] == ds.StudyInstanceUID
    assert "Secret" not in json.dumps(r.to_dict())  # no patient identity carried over
    assert r.findings[0].status is FindingStatus.ABSENT
    # no .dcm suffix: recognised by the DICM preamble
    q = tmp_path / "IM0001"
    q.write_bytes(p.read_bytes())
    assert read_report(q).text == r.text


def test_dicom_sr_without_text_and_dicom_image(tmp_path):
    p = tmp_path / "empty_sr.dcm"
    _write_sr(p, [])
    with pytest.raises(ReportError, match="no text content items"):
        read_report(p)
    q = tmp_path / "ct.dcm"
    _write_sr(q, None, modality="CT")
    with pytest.raises(ReportError, match="not a structured report"):
        read_report(q)
    bad = tmp_path / "bad.dcm"
    bad.write_bytes(b"not dicom at all")
    with pytest.raises(ReportError, match="DICOM"):
        read_report(bad)


def test_csv_with_bad_bytes_warns(tmp_path):
    p = tmp_path / "latin1.csv"
    p.write_bytes("id,text\n1,Lésion. No effusion.\n".encode("latin-1"))
    r = read_report(p)
    assert "\ufffd" in r.text and "not valid UTF-8" in r.warnings[0]
    assert "not valid UTF-8" in next(read_reports(p)).warnings[0]
