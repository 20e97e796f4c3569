"""Confinement: no output lands outside ``--out``, whatever the DICOM headers, the report, the
model's labels or the study's folder say; HTML and PDF show hostile strings as text.

A study whose SeriesDescription, PatientName, PatientID, AccessionNumber, StudyID, ProtocolName,
InstitutionName and StudyDescription hold ``../`` paths, absolute paths and markup, with a hostile
report and a model whose labels are paths and markup, goes through every exporter (with
``include_phi``, so that the header values are printed, and with ``deidentify``)."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest

import medfuse
from medfuse.errors import ExportError
from medfuse.export import ExportOptions, output_path

HOSTILE_TAGS = {
    "SeriesDescription": "../../../../tmp/medfuse_evil_series<script>alert(1)</script>",
    "PatientName": "/etc/passwd^../../medfuse_evil_name",
    "PatientID": "../../../root/.ssh/medfuse_evil_id",
    "AccessionNumber": "../../medfuse_evil",
    "StudyID": "/abs/medfuse_evil",
    "ProtocolName": "..\\..\\medfuse_evil_protocol",
    "InstitutionName": "<img src=x onerror=alert(1)>",
    "StudyDescription": "</para><para>&amp;<b>unclosed",
}
HOSTILE_REPORT = (
    "<script>alert('report')</script>\n"
    "FINDINGS: <img src=x onerror=alert(2)> right pleural effusion & </para> cardiomegaly.\n"
    "IMPRESSION: ../../etc/passwd \u202eevil\u202c <![CDATA[x]]>\n"
)
LABELS = ["../../medfuse_evil_label", "/tmp/medfuse_abs_label", "<script>x</script>"]
#: the only <img> tags in report.html: medfuse's saliency figures, inline PNG data
OWN_IMG = r'<img class="saliency" alt="[^"<>]*" src="data:image/png;base64,[A-Za-z0-9+/=]+"\s*/?>'


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    import torch

    from medfuse.synth.dicom_write import write_series
    from medfuse.synth.geometry import make_geometry

    root = tmp_path_factory.mktemp("confine")
    g = make_geometry((32, 28, 8), (6.0, 6.0, 8.0))
    vol = np.random.default_rng(1).integers(-1000, 1000, (32, 28, 8)).astype(np.int16)
    study = root / "in" / "case"
    info = write_series(study / "dicom", vol, g, seed=5)
    for name in info["files"]:
        ds = pydicom.dcmread(study / "dicom" / name)
        for keyword, value in HOSTILE_TAGS.items():
            setattr(ds, keyword, value)
        ds.save_as(study / "dicom" / name)
    (study / "report.txt").write_text(HOSTILE_REPORT)
    torch.manual_seed(0)
    model = medfuse.create_model("chest_ct_fusion_tiny", labels=LABELS)
    medfuse.save_model(model, None, root / "model", name="hostile_labels")
    return root, study


def _all_files(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*")} if folder.exists() else set()


@pytest.mark.parametrize("deidentify", [False, True])
def test_every_exporter_stays_inside_out_and_escapes(hostile, tmp_path, deidentify):
    from medfuse.config import load_workflow
    from medfuse.workflows import run_workflow

    root, study = hostile
    out = tmp_path / "work" / "out"
    before = _all_files(root) | _all_files(tmp_path)
    tmp_before = set(os.listdir("/tmp"))
    wf = load_workflow(
        {
            "name": "confine",
            "model": str(root / "model"),
            "explain": {"methods": ["gradcam"], "labels": None},
            "export": {"include_phi": True, "deidentify": deidentify, "saliency_labels": LABELS},
            "run": {"threads": 1},
        }
    )
    summary = run_workflow(wf, [study], out)
    (rec,) = summary.records
    assert rec["status"] == "ok", rec
    created = (_all_files(root) | _all_files(tmp_path)) - before
    outside = [p for p in created if out not in p.parents and p != out and p not in out.parents]
    assert not outside, outside
    assert not [n for n in set(os.listdir("/tmp")) - tmp_before if "medfuse_evil" in n]
    folder = out / rec["key"]
    assert rec["key"] == "case"  # readable key (include_phi): the folder name, sanitised
    names = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
    assert "sr.dcm" in names and "fhir.json" in names
    assert all(".." not in n and not n.startswith("/") for n in names)
    assert len([n for n in names if n.startswith("saliency/") and n.endswith(".dcm")]) == 3

    html = (folder / "report.html").read_text()
    low = html.lower()
    assert "<script" not in low  # the markup never appears as markup
    assert not re.search(r"<[^>]*\bon\w+\s*=", html, re.I)  # no event handler in any tag
    imgs = re.findall(r"<img\b[^>]*>", html, re.I)
    assert imgs and all(re.fullmatch(OWN_IMG, tag) for tag in imgs), imgs  # medfuse's figures
    assert "&lt;img src=x onerror=alert(1)&gt;" in html  # the header value, escaped
    assert "&lt;script&gt;x&lt;/script&gt;" in html  # the label, escaped
    assert "&lt;/para&gt;&lt;para&gt;&amp;amp;&lt;b&gt;unclosed" in html

    from pypdf import PdfReader

    pdf = "\n".join(p.extract_text() or "" for p in PdfReader(folder / "report.pdf").pages)
    assert "onerror=alert(1)" in pdf  # printed as text, not interpreted
    assert "</para><para>&amp;<b>unclosed" in pdf.replace("\n", "")


@pytest.mark.parametrize(
    "name", ["../x.json", "/etc/passwd", "a/../../x", "saliency/../../x.dcm", "..", "./../x"]
)
def test_output_path_refuses_names_outside(tmp_path, name):
    with pytest.raises(ExportError, match="outside the output folder"):
        output_path(tmp_path / "out", name)


@pytest.mark.skipif(os.name != "posix", reason="symlinks")
def test_output_path_refuses_a_symlink_out(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (tmp_path / "elsewhere").mkdir()
    (out / "saliency").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    with pytest.raises(ExportError, match="outside the output folder"):
        output_path(out, "saliency/map.dcm")
    assert output_path(out, "prediction.json") == (out / "prediction.json").resolve()


def test_a_plugin_exporter_cannot_escape_through_output_path(tmp_path):
    from medfuse.registry import exporters

    def sneaky(prediction, out_dir, options, context):
        return [output_path(out_dir, "../../escaped.txt")]

    exporters.register("test_sneaky", sneaky, overwrite=True)
    try:
        from medfuse.prediction import Prediction

        pred = Prediction(key="k", findings=[], risk=None, modalities_used=(), model={})
        with pytest.raises(ExportError, match="outside the output folder"):
            medfuse.export(pred, tmp_path / "out", formats=["test_sneaky"], options=ExportOptions())
    finally:
        exporters._entries.pop("test_sneaky", None)
    assert not (tmp_path.parent / "escaped.txt").exists()


def test_report_pairing_by_accession_stays_in_the_reports_folder(hostile, tmp_path):
    """AccessionNumber '../../medfuse_evil' finds <reports>/medfuse_evil.txt at most, never a
    file outside the reports folder."""
    from medfuse.config import load_workflow
    from medfuse.workflows import discover_studies, find_report

    _root, study = hostile
    case = tmp_path / "case"
    shutil.copytree(study / "dicom", case / "dicom")  # no report.txt in the study folder
    reports = tmp_path / "deep" / "reports"
    reports.mkdir(parents=True)
    (tmp_path / "medfuse_evil.txt").write_text("FINDINGS: outside the reports folder.\n")
    (tmp_path / "deep" / "medfuse_evil.txt").write_text("FINDINGS: outside too.\n")
    wf = load_workflow({"name": "t", "model": "chest_ct_demo", "reports": {"folder": str(reports)}})
    vol = medfuse.read_study(case).volume
    task = discover_studies([case])[0]
    report, where = find_report(task, wf, vol)
    assert report is None and "image-only" in where
    (reports / "medfuse_evil.txt").write_text("FINDINGS: inside.\n")
    report, where = find_report(task, wf, vol)
    assert report is not None and "inside" in report.text and "by accession" in where
