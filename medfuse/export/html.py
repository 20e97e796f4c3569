"""``report.html``: the prediction as one self-contained web page, and the same content as a
fragment for Jupyter (:func:`prediction_html_fragment`, ``Prediction._repr_html_``).

The page has no external resource: CSS is inline, every picture is a base64 ``data:`` URI, there
is no script, and a Content-Security-Policy forbids loading anything else. Every string that
comes from the report, the DICOM headers or the warnings is escaped with :func:`html.escape`.

Sections: disclaimer, study header (pseudonymous key; patient/study header fields only with
``ExportOptions.include_phi``), modalities used and warnings, findings table, risk score with its
meaning, one explanation per exported label (saliency slices through the peak, modality
contributions, top report phrases), the report with attribution highlighting, model summary,
preprocessing record.

What the page says (the disclaimer, the header rows, the explained labels, the saliency views,
...) comes from :mod:`medfuse.export.content`, shared with the PDF (:mod:`medfuse.export.pdf`),
so that both documents say the same things; this module lays it out as HTML.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import TYPE_CHECKING

from .._atomic import atomic_write_text
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
    from ..explain.explanation import Explanation
    from ..prediction import Prediction
    from .context import ExportContext

__all__ = [
    "FILENAME",
    "export_html",
    "prediction_html",
    "prediction_html_fragment",
]

FILENAME = "report.html"

esc = html.escape


# -- HTML -----------------------------------------------------------------------------------------
_CSS = """
.medfuse-prediction { font-family: system-ui, -apple-system, "Segoe UI", Helvetica, Arial,
  sans-serif; font-size: 14px; line-height: 1.4; color: #1a1a1a; max-width: 980px; }
.medfuse-prediction h2 { font-size: 20px; margin: 8px 0; }
.medfuse-prediction h3 { font-size: 16px; margin: 18px 0 6px; border-bottom: 1px solid #ccc; }
.medfuse-prediction h4 { font-size: 14px; margin: 12px 0 4px; }
.medfuse-prediction table { border-collapse: collapse; margin: 4px 0; }
.medfuse-prediction th, .medfuse-prediction td { border: 1px solid #ccc; padding: 3px 8px;
  text-align: left; vertical-align: top; }
.medfuse-prediction th { background: #f2f2f2; }
.medfuse-prediction td.num { text-align: right; font-variant-numeric: tabular-nums; }
.medfuse-prediction tr.positive td { background: #fff2cc; font-weight: bold; }
.medfuse-prediction tr.na td { color: #777; font-style: italic; }
.medfuse-prediction .disclaimer { border: 2px solid #b00020; background: #fde8ea;
  color: #7a0016; padding: 8px 12px; font-weight: bold; margin: 6px 0; }
.medfuse-prediction .warnings { background: #fff8e1; border-left: 4px solid #f0a500;
  padding: 4px 10px; }
.medfuse-prediction .bar { display: flex; width: 320px; height: 14px; border: 1px solid #999; }
.medfuse-prediction .bar .image { background: #3b6fb6; }
.medfuse-prediction .bar .report { background: #e08a1e; }
.medfuse-prediction .medfuse-report { border: 1px solid #ddd; padding: 8px;
  background: #fafafa; unicode-bidi: plaintext; }
.medfuse-prediction img.saliency { max-width: 100%; height: auto; border: 1px solid #ddd; }
.medfuse-prediction .small { color: #555; font-size: 12px; }
.medfuse-prediction code { font-size: 12px; word-break: break-all; }
"""


def _table(headers: list[str], rows: list[list[str]], row_classes: list[str] | None = None) -> str:
    """A table whose cells are already HTML (escape before)."""
    head = "".join(f"<th>{h}</th>" for h in headers)
    body = []
    for i, row in enumerate(rows):
        cls = f' class="{row_classes[i]}"' if row_classes and row_classes[i] else ""
        body.append(f"<tr{cls}>" + "".join(row) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _kv_table(rows: list[tuple[str, str]]) -> str:
    return (
        "<table><tbody>"
        + "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in rows)
        + "</tbody></table>"
    )


def _header_html(prediction: Prediction, options: ExportOptions) -> str:
    out = [
        f"<h2>medfuse prediction: {esc(study_label(prediction))}</h2>",
        f'<div class="disclaimer" role="note">{esc(disclaimer(prediction))}</div>',
        "<h3>Study</h3>",
        _kv_table(header_fields(prediction, options)),
        f"<p><b>Modalities used:</b> {esc(modalities_line(prediction))}</p>",
    ]
    if prediction.warnings:
        items = "".join(f"<li>{esc(w)}</li>" for w in prediction.warnings)
        out.append(f'<div class="warnings"><b>Warnings</b><ul>{items}</ul></div>')
    return "".join(out)


def _findings_html(prediction: Prediction) -> str:
    rows, classes = [], []
    for f in prediction.findings:
        rows.append(
            [
                f"<td>{esc(f.label)}</td>",
                f'<td class="num">{esc(probability_text(f))}</td>',
                f'<td class="num">{f.threshold:.3f}</td>',
                f"<td>{esc(f.decision_text())}</td>",
                f"<td>{esc(f.evidence or '')}</td>",
            ]
        )
        classes.append(
            "positive" if f.assessable and f.positive else ("na" if not f.assessable else "")
        )
    notes = "".join(f'<p class="small">{esc(n)}</p>' for n in finding_notes(prediction))
    return (
        "<h3>Findings</h3>"
        + _table(["label", "probability", "threshold", "positive", "needs"], rows, classes)
        + notes
    )


def _risk_html(prediction: Prediction) -> str:
    risk = prediction.risk
    if risk is None:
        return "<h3>Risk</h3><p>The model has no risk head.</p>"
    pct = (
        f"; {risk.percentile:.0f}th percentile of the validation cases"
        if risk.percentile is not None
        else ""
    )
    return (
        "<h3>Risk</h3>"
        f"<p><b>Risk score: {risk.score:+.3f}</b> ({esc(risk.kind)}{esc(pct)})</p>"
        f"<p class='small'>{esc(risk.meaning)}</p>"
    )


def _modality_html(expl: Explanation, label: str) -> str:
    c = expl.modality.get(label)
    if c is None:
        return ""
    fr = c.fractions()
    bar = (
        '<div class="bar" title="share of |image| + |report|">'
        f'<div class="image" style="width: {100 * fr["image"]:.1f}%"></div>'
        f'<div class="report" style="width: {100 * fr["report"]:.1f}%"></div></div>'
    )
    return (
        "<h4>Modality contribution (exact Shapley, "
        f"{esc(c.output)})</h4>{bar}"
        f"<p class='small'>image {c.image:+.3f} ({100 * fr['image']:.0f} %), report "
        f"{c.report:+.3f} ({100 * fr['report']:.0f} %), interaction {c.interaction:+.3f}; "
        f"output {c.value:+.3f} = baseline {c.baseline:+.3f} + image + report</p>"
    )


def _explanations_html(
    prediction: Prediction, options: ExportOptions, context: ExportContext | None
) -> str:
    expl = prediction.explanation
    if expl is None:
        return (
            "<h3>Explanation</h3><p>No explanation was computed "
            "(<code>predict(..., explain=True)</code>).</p>"
        )
    labels = explained_labels(prediction, options)
    text = report_text(prediction)
    out = [
        "<h3>Explanation</h3>",
        f"<p class='small'>methods: {esc(', '.join(expl.methods))}; {expl.runtime_s:.2f} s</p>",
    ]
    for label in labels:
        p = expl.probabilities.get(label)
        out.append(f"<h4>{esc(label)}" + (f" (p = {p:.3f})" if p is not None else "") + "</h4>")
        view = saliency_view(prediction, label, options, context)
        if view.png is not None:
            data = base64.b64encode(view.png).decode("ascii")
            items = "".join(f"<li>{esc(line)}</li>" for line in peak_lines(view))
            out.append(
                f'<img class="saliency" alt="{esc(label)} saliency ({esc(view.method or "")})" '
                f'src="data:image/png;base64,{data}"/>'
                f"<p class='small'>{esc(view.method or '')} hotspots (local maxima above half "
                "the maximum; LPS as in DICOM, RAS beside; DICOM InstanceNumber of the slice):"
                f"</p><ul class='small'>{items}</ul>"
            )
        if view.note:
            out.append(f"<p class='small'>{esc(view.note)}</p>")
        out.append(_modality_html(expl, label))
        phrases = expl.report_phrases(label)
        if phrases:
            items = "".join(
                f"<li>“{esc(p.text)}” <span class='small'>{p.score:+.3f}</span>"
                f"<br/><span class='small'>in: {esc(p.sentence)}</span></li>"
                for p in phrases
            )
            out.append(f"<h4>Top report words and phrases</h4><ol>{items}</ol>")
        elif text:
            out.append(f"<p class='small'>{esc(no_phrase_note(expl, text, label))}</p>")
    if not labels:
        out.append("<p>No label to explain.</p>")
    return "".join(out)


def _report_html(prediction: Prediction, options: ExportOptions) -> str:
    from ..explain.render import report_html

    text = report_text(prediction)
    if not text:
        return "<h3>Report</h3><p><em>No report: image-only prediction.</em></p>"
    expl = prediction.explanation
    labels = explained_labels(prediction, options)
    if expl is None or not labels or expl.get_tokens(labels[0]) is None:
        return "<h3>Report</h3>" + report_html(text, None)
    out = [
        "<h3>Report</h3>",
        f"<p class='small'>Highlighted: attribution to <b>{esc(labels[0])}</b> "
        "(green supports the label, red speaks against it).</p>",
        report_html(text, expl.get_tokens(labels[0])),
    ]
    for label in labels[1:]:
        attr = expl.get_tokens(label)
        if attr is not None:
            out.append(
                f"<details><summary>Attribution to {esc(label)}</summary>"
                f"{report_html(text, attr)}</details>"
            )
    return "".join(out)


def _model_html(prediction: Prediction) -> str:
    return (
        "<h3>Model</h3>"
        + _kv_table(model_fields(prediction))
        + f"<p class='small'>{esc(not_for_clinical_use())}</p>"
    )


def _preprocessing_html(prediction: Prediction) -> str:
    rec = prediction.preprocessing
    if rec is None:
        return "<h3>Preprocessing</h3><p>No image preprocessing (no image).</p>"
    rows = [
        [
            f"<td>{esc(name)}</td>",
            f"<td><code>{esc(params)}</code></td>",
            f'<td class="num">{esc(shape)}</td>',
            f'<td class="num">{esc(spacing)}</td>',
        ]
        for name, params, shape, spacing in step_rows(prediction)
    ]
    orig = "×".join(str(v) for v in rec.original_shape)
    model_shape = "×".join(str(v) for v in rec.output_shape)
    return (
        "<h3>Preprocessing</h3>"
        f"<p class='small'>original grid {esc(orig)} → model input {esc(model_shape)}; shape "
        "is channel-first after each step, spacing in mm.</p>"
        + _table(["step", "parameters", "shape", "spacing"], rows)
    )


def _content(
    prediction: Prediction,
    options: ExportOptions,
    context: ExportContext | None = None,
    style: str = "",
) -> str:
    """Everything shown, as one ``<div class="medfuse-prediction">`` (``style``: CSS to put in
    a ``<style>`` inside it, for the Jupyter fragment)."""
    return "".join(
        [
            '<div class="medfuse-prediction">',
            f"<style>{style}</style>" if style else "",
            _header_html(prediction, options),
            _findings_html(prediction),
            _risk_html(prediction),
            _explanations_html(prediction, options, context),
            _report_html(prediction, options),
            _model_html(prediction),
            _preprocessing_html(prediction),
            f'<div class="disclaimer">{esc(disclaimer(prediction))}</div>',
            "</div>",
        ]
    )


def prediction_html_fragment(prediction: Prediction, options: ExportOptions | None = None) -> str:
    """The page's content without the ``<html>`` wrapper (for Jupyter's ``_repr_html_``): a
    ``<div>`` with its own scoped ``<style>``. De-identified unless ``options.include_phi``."""
    return _content(prediction, options or ExportOptions(), style=_CSS)


def prediction_html(
    prediction: Prediction,
    options: ExportOptions | None = None,
    context: ExportContext | None = None,
) -> str:
    """The full, self-contained ``report.html`` page (``context``: the output set's, whose
    saliency figures the PDF shares)."""
    opts = options or ExportOptions()
    title = f"medfuse prediction: {study_label(prediction)}"
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
        "img-src data:; style-src 'unsafe-inline'\">"
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta name="robots" content="noindex">'
        f"<title>{esc(title)}</title><style>{_CSS}</style></head>\n<body>\n"
        + _content(prediction, opts, context)
        + "\n</body></html>\n"
    )


@exporters.register("html")
def export_html(
    prediction: Prediction,
    out_dir: Path,
    options: ExportOptions,
    context: ExportContext | None = None,
) -> list[Path]:
    """Write ``report.html``."""
    path = output_path(out_dir, FILENAME)
    atomic_write_text(path, prediction_html(prediction, options, context))
    return [path]
