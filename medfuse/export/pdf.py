"""``report.pdf``: the prediction as a printable report (reportlab platypus).

Same content as ``report.html`` (both take it from :mod:`medfuse.export.content`): study
header (de-identified unless ``ExportOptions.include_phi``), modalities and warnings, findings
table with probabilities and thresholds, risk score with its meaning, per exported label the
saliency slices through the peak, modality contributions and top report phrases, the report with
highlighted phrases, model card summary, preprocessing record. The disclaimer is in the footer of
every page.

Text: the report and header strings are escaped for reportlab's paragraph markup before the
highlight tags (built only from the attribution spans) are added. The text font is DejaVu Sans
(shipped with matplotlib: Latin, Greek, Cyrillic, Hebrew, Arabic, ...); characters it has no
glyph for (CJK, for instance) are replaced by ``?``, and right-to-left scripts are drawn in
logical order without shaping — the PDF says so under the report, and ``report.html`` shows the
exact text. The file is written with reportlab's invariant mode (no timestamp or random ID), so
the same prediction gives the same bytes.
"""

from __future__ import annotations

import io
import threading
import unicodedata
from pathlib import Path
from typing import TYPE_CHECKING, Any
from xml.sax.saxutils import escape as _xml_escape

from .._atomic import atomic_write_bytes
from ..registry import exporters
from .base import ExportOptions, output_path
from .content import (
    disclaimer,
    explained_labels,
    finding_notes,
    header_fields,
    modalities_line,
    model_fields,
    no_phrase_note,
    not_for_clinical_use,
    peak_lines,
    probability_text,
    report_text,
    saliency_view,
    step_rows,
    study_label,
)

if TYPE_CHECKING:
    from ..prediction import Prediction
    from .context import ExportContext

__all__ = ["FILENAME", "export_pdf", "prediction_pdf"]

FILENAME = "report.pdf"

_FONT, _FONT_BOLD = "MedfuseDejaVuSans", "MedfuseDejaVuSans-Bold"
_font_lock = threading.Lock()
_font_state: dict[str, Any] = {}


def _fonts() -> tuple[str, str, frozenset[int] | None]:
    """(regular, bold, code points with a glyph): DejaVu Sans from matplotlib's fonts,
    registered once; Helvetica (Latin-1, ``None``) when it cannot be found."""
    with _font_lock:
        if not _font_state:
            try:
                import matplotlib
                from reportlab.pdfbase import pdfmetrics
                from reportlab.pdfbase.ttfonts import TTFont

                folder = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
                regular = TTFont(_FONT, str(folder / "DejaVuSans.ttf"))
                bold = TTFont(_FONT_BOLD, str(folder / "DejaVuSans-Bold.ttf"))
                pdfmetrics.registerFont(regular)
                pdfmetrics.registerFont(bold)
                glyphs = frozenset(regular.face.charToGlyph) & frozenset(bold.face.charToGlyph)
                _font_state.update(names=(_FONT, _FONT_BOLD), glyphs=glyphs)
            except Exception:  # no TrueType font: the standard Latin-1 fonts
                _font_state.update(names=("Helvetica", "Helvetica-Bold"), glyphs=None)
        regular_name, bold_name = _font_state["names"]
        return regular_name, bold_name, _font_state["glyphs"]


class _Text:
    """Makes strings printable with the font and escapes them for paragraph markup; remembers
    what it had to replace and whether right-to-left text was seen."""

    def __init__(self, glyphs: frozenset[int] | None):
        self.glyphs = glyphs
        self.replaced: set[str] = set()
        self.rtl = False

    def clean(self, s: str) -> str:
        out = []
        for ch in s:
            if ch == "\n":
                out.append(ch)
                continue
            if ch == "\t" or unicodedata.category(ch) in ("Cc", "Zl", "Zp"):
                out.append(" ")
                continue
            if unicodedata.bidirectional(ch) in ("R", "AL"):
                self.rtl = True
            cp = ord(ch)
            ok = cp < 256 if self.glyphs is None else cp in self.glyphs
            if ok:
                out.append(ch)
            else:
                self.replaced.add(ch)
                out.append("?")
        return "".join(out)

    def __call__(self, s: Any) -> str:
        """``s`` cleaned and escaped for a reportlab Paragraph (line breaks become ``<br/>``)."""
        return _xml_escape(self.clean(str(s))).replace("\n", "<br/>")

    def note(self) -> str | None:
        parts = []
        if self.replaced:
            parts.append(
                f"{len(self.replaced)} distinct character(s) that the PDF font cannot show "
                "(e.g. CJK) are replaced by '?'"
            )
        if self.rtl:
            parts.append("right-to-left text is drawn in logical order without shaping")
        if not parts:
            return None
        return "Note: " + "; ".join(parts) + ". report.html shows the exact text."


def _blend(rgb: tuple[int, int, int], alpha: float) -> str:
    """``rgb`` at ``alpha`` over white, as ``#rrggbb``."""
    return "#" + "".join(f"{round(255 - alpha * (255 - c)):02x}" for c in rgb)


def _report_markup(text: str, attribution: Any, t: _Text) -> str:
    """The report as paragraph markup: escaped text, highlight tags only around attribution
    spans (green supports the label, red speaks against it)."""
    from ..explain.render import report_segments

    parts = []
    for piece, score, strength in report_segments(text, attribution):
        body = t(piece)
        if score is None or not body:
            parts.append(body)
            continue
        rgb = (0, 160, 60) if score >= 0 else (220, 40, 40)
        parts.append(f'<font backColor="{_blend(rgb, strength * 0.8)}">{body}</font>')
    return "".join(parts)


def prediction_pdf(
    prediction: Prediction,
    options: ExportOptions | None = None,
    context: ExportContext | None = None,
) -> bytes:
    """The ``report.pdf`` bytes (``context``: the output set's, whose saliency figures the
    HTML shares)."""
    from reportlab.lib import colors
    from reportlab.lib.enums import TA_CENTER
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.styles import ParagraphStyle, getSampleStyleSheet
    from reportlab.lib.units import mm
    from reportlab.platypus import (
        CondPageBreak,
        Image,
        KeepTogether,
        Paragraph,
        SimpleDocTemplate,
        Spacer,
        Table,
        TableStyle,
    )

    from .._version import __version__

    opts = options or ExportOptions()
    regular, bold, glyphs = _fonts()
    t = _Text(glyphs)
    base = getSampleStyleSheet()
    body = ParagraphStyle(
        "mf-body", parent=base["Normal"], fontName=regular, fontSize=9.5, leading=12.5
    )
    small = ParagraphStyle(
        "mf-small", parent=body, fontSize=8, leading=10, textColor=colors.HexColor("#444444")
    )
    caption = ParagraphStyle("mf-caption", parent=small, keepWithNext=1)
    cell = ParagraphStyle("mf-cell", parent=body, fontSize=8.5, leading=10.5)
    cell_bold = ParagraphStyle("mf-cell-bold", parent=cell, fontName=bold)
    code = ParagraphStyle("mf-code", parent=cell, fontSize=7, leading=8.5)
    h1 = ParagraphStyle(  # room below for the descenders above the banner's border padding
        "mf-h1", parent=base["Heading1"], fontName=bold, fontSize=16, leading=20, spaceAfter=6
    )
    h2 = ParagraphStyle(
        "mf-h2",
        parent=base["Heading2"],
        fontName=bold,
        fontSize=12.5,
        leading=16,
        spaceBefore=10,
        spaceAfter=4,
        keepWithNext=1,
    )
    h3 = ParagraphStyle(
        "mf-h3",
        parent=base["Heading3"],
        fontName=bold,
        fontSize=10.5,
        leading=13,
        spaceBefore=6,
        spaceAfter=2,
        keepWithNext=1,
    )
    warn_style = ParagraphStyle(
        "mf-disclaimer",
        parent=body,
        fontName=bold,
        fontSize=10.5,
        leading=14,
        textColor=colors.HexColor("#7a0016"),
        alignment=TA_CENTER,
        borderColor=colors.HexColor("#b00020"),
        borderWidth=1.2,
        borderPadding=6,
        backColor=colors.HexColor("#fde8ea"),
        spaceBefore=10,  # more than borderPadding: the box must not cover the title above
        spaceAfter=12,
    )
    report_style = ParagraphStyle(
        "mf-report",
        parent=body,
        fontSize=9,
        leading=12.5,
        backColor=colors.HexColor("#fafafa"),
        borderColor=colors.HexColor("#dddddd"),
        borderWidth=0.5,
        borderPadding=5,
        spaceBefore=4,
        spaceAfter=6,
    )

    page_w = A4[0]
    margin = 18 * mm
    frame_w = page_w - 2 * margin
    grid = [
        ("GRID", (0, 0), (-1, -1), 0.4, colors.HexColor("#bbbbbb")),
        ("VALIGN", (0, 0), (-1, -1), "TOP"),
        ("TOPPADDING", (0, 0), (-1, -1), 2),
        ("BOTTOMPADDING", (0, 0), (-1, -1), 2),
    ]

    def kv_table(rows: list[tuple[str, str]], key_w: float = 38 * mm) -> Table:
        data = [[Paragraph(t(k), cell_bold), Paragraph(t(v), cell)] for k, v in rows]
        tab = Table(data, colWidths=[key_w, frame_w - key_w], hAlign="LEFT")
        tab.setStyle(
            TableStyle([*grid, ("BACKGROUND", (0, 0), (0, -1), colors.HexColor("#f2f2f2"))])
        )
        return tab

    def header_row(cols: list[str]) -> list[Paragraph]:
        return [Paragraph(t(c), cell_bold) for c in cols]

    story: list[Any] = []
    key = study_label(prediction)
    story.append(Paragraph(t(f"medfuse prediction: {key}"), h1))
    story.append(Paragraph(t(disclaimer(prediction)), warn_style))

    # study
    story.append(Paragraph("Study", h2))
    story.append(kv_table(header_fields(prediction, opts)))
    story.append(Spacer(1, 3 * mm))
    story.append(Paragraph(f"<b>Modalities used:</b> {t(modalities_line(prediction))}", body))
    if prediction.warnings:
        story.append(Paragraph("Warnings", h3))
        for w in prediction.warnings:
            story.append(Paragraph(t(w), body, bulletText="•"))

    # findings
    story.append(Paragraph("Findings", h2))
    rows = [header_row(["label", "probability", "threshold", "positive", "needs"])]
    styles = [*grid, ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#f2f2f2"))]
    for i, f in enumerate(prediction.findings, start=1):
        positive = f.assessable and bool(f.positive)
        st = cell_bold if positive else cell
        rows.append(
            [
                Paragraph(t(f.label), st),
                Paragraph(t(probability_text(f)), st),
                Paragraph(f"{f.threshold:.3f}", st),
                Paragraph(t(f.decision_text()), st),
                Paragraph(t(f.evidence or ""), st),
            ]
        )
        if positive:
            styles.append(("BACKGROUND", (0, i), (-1, i), colors.HexColor("#fff2cc")))
        elif not f.assessable:
            styles.append(("TEXTCOLOR", (0, i), (-1, i), colors.HexColor("#777777")))
    widths = [44 * mm, 27 * mm, 24 * mm, 50 * mm, frame_w - 145 * mm]
    tab = Table(rows, colWidths=widths, hAlign="LEFT", repeatRows=1)
    tab.setStyle(TableStyle(styles))
    story.append(tab)
    for note in finding_notes(prediction):
        story.append(Paragraph(t(note), small))

    # risk
    story.append(Paragraph("Risk", h2))
    risk = prediction.risk
    if risk is None:
        story.append(Paragraph("The model has no risk head.", body))
    else:
        pct = (
            f"; {risk.percentile:.0f}th percentile of the validation cases"
            if risk.percentile is not None
            else ""
        )
        story.append(
            Paragraph(f"<b>Risk score: {risk.score:+.3f}</b> ({t(risk.kind)}{t(pct)})", body)
        )
        story.append(Paragraph(t(risk.meaning), small))

    # explanation
    expl = prediction.explanation
    text = report_text(prediction)
    labels = explained_labels(prediction, opts)
    intro: list[Any] = [Paragraph("Explanation", h2)]
    if expl is None:
        intro.append(Paragraph("No explanation was computed (predict(..., explain=True)).", body))
    else:
        intro.append(
            Paragraph(t(f"methods: {', '.join(expl.methods)}; {expl.runtime_s:.2f} s"), caption)
        )
        if not labels:
            intro.append(Paragraph("No label to explain.", body))
    if expl is None or not labels:
        story.extend(intro)
    for label in labels if expl is not None else []:
        block, intro = intro, []  # the section heading stays with the first label
        p = expl.probabilities.get(label)
        block.append(Paragraph(t(label) + (f" (p = {p:.3f})" if p is not None else ""), h3))
        view = saliency_view(prediction, label, opts, context)
        after: list[Any] = []  # the figure's caption may flow on to the next page
        if view.png is not None:
            from PIL import Image as PILImage

            w_px, h_px = PILImage.open(io.BytesIO(view.png)).size
            img_w = min(frame_w, 92 * mm)
            block.append(Image(io.BytesIO(view.png), width=img_w, height=img_w * h_px / w_px))
            after.append(
                Paragraph(
                    t(
                        f"{view.method} hotspots (local maxima above half the maximum; LPS as in "
                        "DICOM, RAS beside; DICOM InstanceNumber of the slice):"
                    ),
                    small,
                )
            )
            after.extend(Paragraph(t(line), small) for line in peak_lines(view))
        if view.note:
            block.append(Paragraph(t(view.note), small))
        story.append(KeepTogether(block))
        story.extend(after)
        c = expl.modality.get(label)
        if c is not None:
            fr = c.fractions()
            story.append(Paragraph(t(f"Modality contribution (exact Shapley, {c.output})"), h3))
            data = [
                header_row(["image", "report", "interaction", "baseline", "output"]),
                [
                    Paragraph(f"{c.image:+.3f} ({100 * fr['image']:.0f} %)", cell),
                    Paragraph(f"{c.report:+.3f} ({100 * fr['report']:.0f} %)", cell),
                    Paragraph(f"{c.interaction:+.3f}", cell),
                    Paragraph(f"{c.baseline:+.3f}", cell),
                    Paragraph(f"{c.value:+.3f}", cell),
                ],
            ]
            mt = Table(data, colWidths=[frame_w / 5] * 5, hAlign="LEFT")
            mt.setStyle(
                TableStyle([*grid, ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#f2f2f2"))])
            )
            story.append(mt)
        phrases = expl.report_phrases(label)
        if phrases:
            story.append(Paragraph("Top report words and phrases", h3))
            for i, p in enumerate(phrases, start=1):
                story.append(
                    Paragraph(
                        f"“{t(p.text)}” ({p.score:+.3f})<br/>"
                        f'<font size="7.5" color="#555555">in: {t(p.sentence)}</font>',
                        body,
                        bulletText=f"{i}.",
                    )
                )
        elif text:
            story.append(Paragraph(t(no_phrase_note(expl, text, label)), small))

    # report
    story.append(CondPageBreak(40 * mm))
    story.append(Paragraph("Report", h2))
    note_at = len(story)
    if not text:
        story.append(Paragraph("<i>No report: image-only prediction.</i>", body))
    else:
        attr = expl.get_tokens(labels[0]) if expl is not None and labels else None
        if attr is not None:
            story.append(
                Paragraph(
                    f"Highlighted: attribution to <b>{t(labels[0])}</b> (green supports the "
                    "label, red speaks against it).",
                    small,
                )
            )
        story.append(Paragraph(_report_markup(text, attr, t), report_style))

    # model
    story.append(CondPageBreak(40 * mm))
    story.append(Paragraph("Model", h2))
    story.append(kv_table(model_fields(prediction)))
    story.append(Paragraph(t(not_for_clinical_use()), small))

    # preprocessing
    story.append(Paragraph("Preprocessing", h2))
    rec = prediction.preprocessing
    if rec is None:
        story.append(Paragraph("No image preprocessing (no image).", body))
    else:
        orig = "×".join(str(v) for v in rec.original_shape)
        model_shape = "×".join(str(v) for v in rec.output_shape)
        story.append(
            Paragraph(
                t(
                    f"original grid {orig} → model input {model_shape}; shape is channel-first "
                    "after each step, spacing in mm."
                ),
                caption,
            )
        )
        data = [header_row(["step", "parameters", "shape", "spacing"])]
        for name, params, shape, spacing in step_rows(prediction):
            data.append(
                [
                    Paragraph(t(name), cell),
                    Paragraph(t(params), code),
                    Paragraph(t(shape), cell),
                    Paragraph(t(spacing), cell),
                ]
            )
        widths = [24 * mm, frame_w - 80 * mm, 32 * mm, 24 * mm]
        pt = Table(data, colWidths=widths, hAlign="LEFT", repeatRows=1)
        pt.setStyle(
            TableStyle([*grid, ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#f2f2f2"))])
        )
        story.append(pt)

    note = t.note()
    if note:
        story.insert(note_at, Paragraph(_xml_escape(note), small))

    footer_text = t.clean(disclaimer(prediction))
    footer_key = t.clean(key)

    def footer(canvas: Any, doc: Any) -> None:
        canvas.saveState()
        canvas.setStrokeColor(colors.HexColor("#b00020"))
        canvas.line(margin, 14 * mm, page_w - margin, 14 * mm)
        canvas.setFont(bold, 8.5)
        canvas.setFillColor(colors.HexColor("#7a0016"))
        canvas.drawString(margin, 10 * mm, footer_text)
        canvas.setFont(regular, 7.5)
        canvas.setFillColor(colors.HexColor("#444444"))
        canvas.drawRightString(page_w - margin, 10 * mm, f"{footer_key} · page {doc.page}")
        canvas.restoreState()

    buf = io.BytesIO()
    doc = SimpleDocTemplate(
        buf,
        pagesize=A4,
        leftMargin=margin,
        rightMargin=margin,
        topMargin=16 * mm,
        bottomMargin=20 * mm,
        title=t.clean(f"medfuse prediction: {key}"),
        author="medfuse",
        subject=t.clean(disclaimer(prediction)),
        creator=f"medfuse {__version__}",
        invariant=1,
    )
    doc.build(story, onFirstPage=footer, onLaterPages=footer)
    return buf.getvalue()


@exporters.register("pdf")
def export_pdf(
    prediction: Prediction,
    out_dir: Path,
    options: ExportOptions,
    context: ExportContext | None = None,
) -> list[Path]:
    """Write ``report.pdf``."""
    path = output_path(out_dir, FILENAME)
    atomic_write_bytes(path, prediction_pdf(prediction, options, context))
    return [path]
