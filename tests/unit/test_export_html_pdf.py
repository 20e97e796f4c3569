"""The ``html`` and ``pdf`` exporters on real sample cases: contents, self-containment, escaping
of hostile report text, image-only cases, de-identification, determinism."""

from __future__ import annotations

import base64
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

import medfuse
from medfuse.export.content import DISCLAIMER
from medfuse.export.html import prediction_html_fragment
from medfuse.export.pdf import prediction_pdf
from medfuse.registry import exporters

CASE = Path(__file__).resolve().parents[2] / "sample_cases" / "chest_ct_0001"
# integrated gradients with fewer steps: the tests check the documents, not the attributions
FAST = {"integrated_gradients_text": {"n_steps": 8}}
HOSTILE = (
    'FINDINGS: <script>alert(1)</script> 18 mm nodule <b onload="alert(2)">right upper '
    "lobe</b>. Smoker & 'quoted'. 日本語の所見 שלום مرحبا\nIMPRESSION: nodule."
)


# -- fixtures (one prediction per case for the whole module) --------------------------------------
@pytest.fixture(scope="module")
def model():
    return medfuse.load_model("chest_ct_demo")


@pytest.fixture(scope="module")
def study():
    return medfuse.read_study(CASE)


def _exported_labels(model, case) -> list[str]:
    """The labels the exporters show by default (the positive ones, else the most probable):
    only those are explained, to keep the module fast."""
    quick = medfuse.predict(model, case)
    return [f.label for f in quick.positive] or [
        max(quick.findings, key=lambda f: f.probability).label
    ]


@pytest.fixture(scope="module")
def pred(model, study):
    case = (study, medfuse.read_report(CASE / "report.txt"))
    labels = _exported_labels(model, case)
    return medfuse.predict(model, case, explain=True, labels=labels, explain_params=FAST)


@pytest.fixture(scope="module")
def hostile(model, study):
    return medfuse.predict(
        model,
        (study, HOSTILE),
        explain=True,
        labels=["suspected_malignancy", "smoking_history"],
        explain_params=FAST,
    )


@pytest.fixture(scope="module")
def image_only(model, study):
    return medfuse.predict(
        model,
        study,
        explain=["gradcam", "modality_shapley"],
        labels=_exported_labels(model, study),
    )


def _export(pred, folder: Path, **options) -> dict[str, Path]:
    written = medfuse.export(pred, folder, formats=["html", "pdf"], options=options)
    return {fmt: paths[0] for fmt, paths in written.items()}


@pytest.fixture(scope="module")
def out(pred, tmp_path_factory):
    return _export(pred, tmp_path_factory.mktemp("sample"))


@pytest.fixture(scope="module")
def hostile_out(hostile, tmp_path_factory):
    return _export(hostile, tmp_path_factory.mktemp("hostile"))


@pytest.fixture(scope="module")
def image_only_out(image_only, tmp_path_factory):
    return _export(image_only, tmp_path_factory.mktemp("image_only"))


@pytest.fixture(scope="module")
def source_phi() -> dict[str, str]:
    import pydicom

    first = sorted((CASE / "dicom").iterdir())[0]
    ds = pydicom.dcmread(first, stop_before_pixels=True)
    phi = {"PatientName": str(ds.PatientName), "PatientID": str(ds.PatientID)}
    assert all(phi.values())
    return phi


# -- helpers --------------------------------------------------------------------------------------
class _Page(HTMLParser):
    """Collects tags, attributes and text (character references resolved)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_startendtag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)


def _parse(markup: str) -> _Page:
    page = _Page()
    page.feed(markup)
    page.close()
    return page


def _assert_no_active_content(page: _Page) -> None:
    names = {tag for tag, _ in page.tags}
    assert not names & {"script", "link", "iframe", "object", "embed", "base", "form", "svg"}
    for tag, attrs in page.tags:
        assert not [a for a in attrs if a.startswith("on")], (tag, attrs)
        assert "href" not in attrs, (tag, attrs)
        if "src" in attrs:
            assert tag == "img" and attrs["src"].startswith("data:image/png;base64,"), tag


def _pdf_pages(path: Path) -> list[str]:
    from pypdf import PdfReader

    return [p.extract_text() for p in PdfReader(str(path)).pages]


# -- tests ----------------------------------------------------------------------------------------
def test_registered_and_written_atomically(out):
    assert "html" in exporters and "pdf" in exporters
    assert out["html"].name == "report.html" and out["pdf"].name == "report.pdf"
    assert sorted(p.name for p in out["html"].parent.iterdir()) == ["report.html", "report.pdf"]


def test_pdf_text_has_findings_risk_and_disclaimer_on_every_page(pred, out):
    pages = _pdf_pages(out["pdf"])
    text = "\n".join(pages)
    for f in pred.findings:
        assert f.label in text
        assert f"{f.probability:.3f}" in text and f"{f.threshold:.3f}" in text
    assert pred.risk is not None and f"{pred.risk.score:+.3f}" in text
    assert pred.model["sha256"] in text
    assert all(DISCLAIMER in page for page in pages)
    assert "Preprocessing" in text and "foreground" in text
    assert "nodule" in text  # the report


def test_pdf_renders_and_is_deterministic(pred, out):
    import pypdfium2 as pdfium

    pdf = pdfium.PdfDocument(str(out["pdf"]))
    try:
        assert len(pdf) >= 2
        img = np.asarray(pdf[0].render(scale=0.5).to_pil().convert("L"))
    finally:
        pdf.close()
    assert img.shape[0] > 300 and img.shape[1] > 200
    assert (img < 200).mean() > 0.01  # text and tables, not a blank page
    assert out["pdf"].read_bytes()[:5] == b"%PDF-"
    assert prediction_pdf(pred) == prediction_pdf(pred)


def test_html_is_self_contained_with_all_sections(pred, out):
    html = out["html"].read_text(encoding="utf-8")
    assert html.startswith("<!DOCTYPE html>")
    assert "://" not in html  # no external link of any kind
    page = _parse(html)
    _assert_no_active_content(page)
    images = [a["src"] for t, a in page.tags if t == "img"]
    assert images
    for src in images:
        assert base64.b64decode(src.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    text = "".join(page.text)
    for f in pred.findings:
        assert f.label in text and f"{f.probability:.3f}" in text
    assert f"{pred.risk.score:+.3f}" in text and pred.risk.meaning in text
    assert DISCLAIMER in text and pred.model["sha256"] in text
    assert "image + report" in text
    assert "Modality contribution" in text and "Preprocessing" in text
    assert "18 mm solid pulmonary nodule" in text  # the report


def test_jupyter_fragment_is_the_page_without_wrapper(pred, out):
    frag = pred._repr_html_()
    assert frag == prediction_html_fragment(pred)
    assert frag.startswith('<div class="medfuse-prediction">')
    assert "<html" not in frag and "<body" not in frag
    page = _parse(frag)
    _assert_no_active_content(page)
    body = out["html"].read_text(encoding="utf-8")
    # the same findings table in both
    table = body[body.index("<h3>Findings</h3>") : body.index("<h3>Risk</h3>")]
    assert table in frag


@pytest.mark.parametrize("which", ["page", "fragment"])
def test_hostile_report_is_only_escaped_in_html(hostile, hostile_out, which):
    markup = (
        hostile_out["html"].read_text(encoding="utf-8")
        if which == "page"
        else prediction_html_fragment(hostile)
    )
    assert "<script" not in markup.lower() and "<b onload" not in markup.lower()
    page = _parse(markup)
    _assert_no_active_content(page)
    assert not [t for t, a in page.tags if t == "b" and "onload" in a]
    text = "".join(page.text)
    assert "<script>alert(1)</script>" in text  # shown as text, highlighted spans and all
    assert '<b onload="alert(2)">right upper lobe</b>' in text
    assert "日本語の所見 שלום مرحبا" in text


def test_hostile_report_in_pdf(hostile_out):
    text = "\n".join(_pdf_pages(hostile_out["pdf"]))
    assert "<script>alert(1)</script>" in text
    assert "& 'quoted'" in text
    # CJK has no glyph in the PDF font: replaced, and the PDF says so
    assert "replaced by '?'" in text and "right-to-left" in text


def test_image_only_prediction(image_only, image_only_out):
    assert image_only.modalities_used == ("image",)
    html = image_only_out["html"].read_text(encoding="utf-8")
    text = "".join(_parse(html).text)
    assert "image-only" in text and "No report" in text
    pdf = "\n".join(_pdf_pages(image_only_out["pdf"]))
    assert "image-only" in pdf and "No report" in pdf
    for f in image_only.findings:
        assert f"{f.probability:.3f}" in pdf


def test_no_phi_by_default(pred, out, source_phi, tmp_path):
    html = out["html"].read_text(encoding="utf-8")
    frag = prediction_html_fragment(pred)
    pdf = "\n".join(_pdf_pages(out["pdf"]))
    for value in source_phi.values():
        assert value not in html and value not in frag and value not in pdf
    assert str(CASE.name) not in html and str(CASE.name) not in pdf  # the source path
    # with include_phi the header fields are shown (so the check above can fail)
    phi = _export(pred, tmp_path, include_phi=True)
    shown_html = "".join(_parse(phi["html"].read_text(encoding="utf-8")).text)
    shown_pdf = "\n".join(_pdf_pages(phi["pdf"]))
    for value in source_phi.values():
        assert value in shown_html and value in shown_pdf


def test_pdf_document_metadata(out):
    from pypdf import PdfReader

    meta = PdfReader(str(out["pdf"])).metadata
    assert meta.title.startswith("medfuse prediction: study-")
    assert meta.subject == DISCLAIMER
