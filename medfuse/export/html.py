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

The helpers without a leading underscore (:func:`study_label`, :func:`header_fields`,
:func:`explained_labels`, ...) are shared with the PDF exporter (:mod:`medfuse.export.pdf`), so
that both documents say the same things.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import threading
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._atomic import atomic_write_text
from ..registry import exporters
from .base import ExportOptions, output_path

if TYPE_CHECKING:
    from ..explain.explanation import Explanation
    from ..prediction import Prediction

__all__ = [
    "DISCLAIMER",
    "FILENAME",
    "explained_labels",
    "export_html",
    "header_fields",
    "phi_fields",
    "prediction_html",
    "prediction_html_fragment",
    "report_text",
    "study_label",
]

FILENAME = "report.html"

#: Shown prominently at the top of the HTML page and on every PDF page.
DISCLAIMER = "Research output from a model trained on synthetic data; not for clinical use."
#: The same for a model whose card does not say it was trained on synthetic data.
DISCLAIMER_GENERIC = "Research output; not for clinical use."

#: Patient / study header elements shown only with ``include_phi`` (keyword, caption).
PHI_ELEMENTS: tuple[tuple[str, str], ...] = (
    ("PatientName", "Patient name"),
    ("PatientID", "Patient ID"),
    ("PatientBirthDate", "Birth date"),
    ("PatientSex", "Sex"),
    ("PatientAge", "Age"),
    ("AccessionNumber", "Accession number"),
    ("StudyDate", "Study date"),
    ("StudyTime", "Study time"),
    ("StudyDescription", "Study description"),
    ("SeriesDescription", "Series description"),
    ("InstitutionName", "Institution"),
    ("ReferringPhysicianName", "Referring physician"),
)

esc = html.escape


# -- content shared with the PDF ------------------------------------------------------------------
def disclaimer(prediction: Prediction) -> str:
    """:data:`DISCLAIMER`, or :data:`DISCLAIMER_GENERIC` when the model is not known to be
    trained on synthetic data."""
    return DISCLAIMER if prediction.model.get("synthetic_training_data") else DISCLAIMER_GENERIC


def study_label(prediction: Prediction) -> str:
    """The pseudonymous name of the study: ``prediction.key`` (set by workflows), else
    ``study-<12 hex digits of the SHA-256 of the study path>`` (the workflows' rule), else the
    same of the StudyInstanceUID."""
    if prediction.key:
        return prediction.key
    case = prediction.case
    if case is not None and case.study is not None and case.study.path:
        p = Path(case.study.path).resolve()
        return "study-" + hashlib.sha256(str(p).encode("utf-8", "surrogatepass")).hexdigest()[:12]
    if prediction.study_instance_uid:
        return "study-" + hashlib.sha256(prediction.study_instance_uid.encode()).hexdigest()[:12]
    return "unnamed case"


def phi_fields(prediction: Prediction) -> list[tuple[str, str]]:
    """Patient / study header values of the source DICOM (first source file), non-empty only.
    Only for ``include_phi``; empty when the image is not DICOM or cannot be read."""
    case = prediction.case
    vol = case.volume if case is not None else None
    files = getattr(vol, "source_files", ()) or ()
    if not files:
        return []
    try:
        import pydicom

        ds = pydicom.dcmread(
            files[0], stop_before_pixels=True, specific_tags=[k for k, _ in PHI_ELEMENTS]
        )
    except Exception:  # a header that cannot be read must not fail the export
        return []
    out = []
    for keyword, caption in PHI_ELEMENTS:
        value = ds.get(keyword)
        text = "" if value is None else str(value).strip()
        if text:
            out.append((caption, text))
    return out


def header_fields(prediction: Prediction, options: ExportOptions) -> list[tuple[str, str]]:
    """``(caption, value)`` rows of the study header: de-identified unless ``include_phi``."""
    rows: list[tuple[str, str]] = [("Study", study_label(prediction))]
    if prediction.created:
        rows.append(("Predicted", prediction.created))
    case = prediction.case
    vol = case.volume if case is not None else None
    if vol is not None:
        shape = "×".join(str(n) for n in vol.shape)
        spacing = "×".join(f"{v:.3g}" for v in vol.spacing)
        rows.append(("Image", f"{vol.modality}, {shape} voxels, {spacing} mm"))
    if options.include_phi:
        rows.extend(phi_fields(prediction))
        if prediction.study_instance_uid:
            rows.append(("StudyInstanceUID", prediction.study_instance_uid))
        if prediction.series_instance_uid:
            rows.append(("SeriesInstanceUID", prediction.series_instance_uid))
        if case is not None and case.study is not None and case.study.path:
            rows.append(("Source", str(case.study.path)))
    else:
        rows.append(
            (
                "De-identified",
                "patient name, IDs, dates, accession number, institution, UIDs and source path "
                "are left out (export option include_phi)",
            )
        )
    return rows


def modalities_line(prediction: Prediction) -> str:
    """``image + report``, ``image only (no report)``, ..."""
    used = prediction.modalities_used
    if used == ("image",):
        return "image only (no report): image-only prediction"
    if used == ("report",):
        return "report only (no image): report-only prediction"
    return " + ".join(used) or "none"


def explained_labels(prediction: Prediction, options: ExportOptions) -> list[str]:
    """The labels whose explanation is shown: ``options.saliency_labels`` if given, else the
    positive findings, else the most probable one (as :func:`~medfuse.export.saliency_maps`),
    restricted to the labels the explanation covers."""
    expl = prediction.explanation
    if expl is None:
        return []
    # a finding that is not assessable is not explained
    covered = set(expl.labels) - {f.label for f in prediction.not_assessable}
    if options.saliency_labels is not None:
        return [lab for lab in options.saliency_labels if lab in covered]
    labels = [f.label for f in prediction.positive if f.label in covered]
    if not labels:
        ranked = sorted(
            (f for f in prediction.findings if f.label in covered),
            key=lambda f: f.probability,
            reverse=True,
        )
        labels = [ranked[0].label] if ranked else []
    return labels


def report_text(prediction: Prediction) -> str:
    """The report text the attributions refer to ("" without a report)."""
    expl = prediction.explanation
    if expl is not None and expl.report_text:
        return expl.report_text
    case = prediction.case
    if case is not None and case.report is not None and "report" in prediction.modalities_used:
        return case.report.text
    return ""


@dataclass
class SaliencyView:
    """What the HTML and PDF show of one label's image map: the figure (None when there is
    nothing to draw), its hotspots (LPS mm, RAS beside, DICOM InstanceNumber) and a note (why
    there is no figure: a flat map, a report-only label)."""

    method: str | None
    png: bytes | None
    peaks: list[Any]
    note: str


_views_lock = threading.Lock()
_views: weakref.WeakKeyDictionary[Any, dict[tuple[str, str | None], SaliencyView]] = (
    weakref.WeakKeyDictionary()
)


def saliency_view(prediction: Prediction, label: str, options: ExportOptions) -> SaliencyView:
    """The saliency figure of ``label`` (:func:`medfuse.explain.render.saliency_figure_png`:
    the source slices through up to 3 hotspots, MIPs over the anatomy, orientation letters,
    colour bar and window), drawn once per explanation for both documents. No figure for a
    report-only label, a finding that is not assessable, or a flat map."""
    from ..explain.explanation import _FIGURE_LOCK
    from ..explain.render import saliency_figure_png, saliency_peaks

    expl = prediction.explanation
    try:
        finding = prediction.finding(label)
    except KeyError:
        finding = None
    if expl is None:
        return SaliencyView(None, None, [], "")
    if finding is not None and finding.evidence == "report":
        return SaliencyView(
            None,
            None,
            [],
            "Report-only label (model card): no image map; its evidence is the report's words.",
        )
    sal = expl.get_saliency(label, options.saliency_method)
    if sal is None or (finding is not None and not finding.assessable):
        return SaliencyView(None, None, [], "")
    key = (label, sal.method)
    with _views_lock:
        cached = _views.setdefault(expl, {}).get(key)
    if cached is not None:
        return cached
    vol = prediction.case.volume if prediction.case is not None else None
    peaks = saliency_peaks(sal, vol)
    if not peaks:
        view = SaliencyView(
            sal.method, None, [], "No localised evidence: the map is flat (no region stands out)."
        )
    else:
        with _FIGURE_LOCK:  # matplotlib is not thread-safe (the exporters run in threads)
            png = saliency_figure_png(sal, vol, expl.image, peaks=peaks)
        if png is None:  # no source grid: the model-grid figure
            png = expl.figure_png(label, sal.method)
        view = SaliencyView(sal.method, png, peaks, "")
    with _views_lock:
        _views.setdefault(expl, {})[key] = view
    return view


def peak_lines(view: SaliencyView) -> list[str]:
    """One line per hotspot: ``1: LPS (…) mm [RAS (…)], image 17, 100 % of the maximum``."""
    return [
        f"{n}: {p.text()}, {100 * p.fraction:.0f} % of the maximum"
        for n, p in enumerate(view.peaks, start=1)
    ]


def top_phrases(expl: Explanation, text: str, label: str, k: int = 5) -> list[Any]:
    """The ``k`` report phrases (words summed over their tokens, adjacent words merged) with
    the largest positive attribution for ``label``, each with its sentence."""
    from ..explain.render import top_report_phrases

    tokens = expl.get_tokens(label)
    if tokens is None or not text:
        return []
    return top_report_phrases(tokens, text, k)


def no_phrase_note(expl: Explanation, text: str, label: str) -> str:
    """Why no report phrase is listed for ``label`` ("" when phrases are listed or there is no
    report)."""
    if not text:
        return ""
    c = expl.modality.get(label)
    share = (
        f" (the report's share of this output: {100 * c.fractions()['report']:.0f} %)" if c else ""
    )
    if expl.get_tokens(label) is None:
        return (
            "Word attributions were not computed for this label: the explanation methods were "
            f"{', '.join(expl.methods)} (add integrated_gradients_text){share}."
        )
    return (
        "Integrated gradients give no report word a positive attribution for this label"
        f"{share}: the report's contribution is not carried by single words."
    )


def model_fields(prediction: Prediction) -> list[tuple[str, str]]:
    m = prediction.model
    rows = [
        ("Name", str(m.get("name") or "")),
        ("Version", str(m.get("version") or "")),
        ("Weights SHA-256", str(m.get("sha256") or "not recorded")),
        ("medfuse", str(m.get("medfuse_version") or "")),
    ]
    if m.get("synthetic_training_data"):
        rows.append(
            (
                "Training data",
                "synthetic only (seeded phantoms and template reports); no clinical validity",
            )
        )
    else:
        rows.append(("Training data", "not described as synthetic by the model card"))
    return rows


def not_for_clinical_use() -> str:
    from ..models.card import NOT_FOR_CLINICAL_USE

    return NOT_FOR_CLINICAL_USE


def step_rows(prediction: Prediction) -> list[tuple[str, str, str, str]]:
    """``(step, parameters as JSON, shape, spacing)`` per preprocessing step."""
    rec = prediction.preprocessing
    if rec is None:
        return []
    rows = []
    for step in rec.steps:
        params = json.dumps(step.get("params", {}), sort_keys=True, default=str)
        shape = "×".join(str(v) for v in step.get("shape") or [])
        spacing = "×".join(f"{v:.3g}" for v in step.get("spacing") or [])
        rows.append((str(step.get("name", "")), params, shape, spacing))
    return rows


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


def finding_notes(prediction: Prediction) -> list[str]:
    """The sentences under the findings table: what the columns mean, and each finding that is
    not assessable or has reduced evidence, with the reason."""
    notes = [
        "Calibrated probabilities; a finding is positive when its probability reaches the "
        "model card's decision threshold. “needs”: the input the model card says the label's "
        "evidence is in (image, report, or both); without it the finding is not assessable "
        "(n/a) and no probability is shown."
    ]
    for f in prediction.findings:
        if not f.assessable:
            notes.append(f"{f.label}: not assessable: {f.reason}.")
        elif f.reduced_evidence:
            notes.append(f"{f.label}: reduced evidence: {f.reason}.")
    return notes


def probability_text(f: Any) -> str:
    return f"{f.probability:.3f}" if f.assessable else "n/a"


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


def _explanations_html(prediction: Prediction, options: ExportOptions) -> str:
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
        view = saliency_view(prediction, label, options)
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
        phrases = top_phrases(expl, text, label)
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


def _content(prediction: Prediction, options: ExportOptions, style: str = "") -> str:
    """Everything shown, as one ``<div class="medfuse-prediction">`` (``style``: CSS to put in
    a ``<style>`` inside it, for the Jupyter fragment)."""
    return "".join(
        [
            '<div class="medfuse-prediction">',
            f"<style>{style}</style>" if style else "",
            _header_html(prediction, options),
            _findings_html(prediction),
            _risk_html(prediction),
            _explanations_html(prediction, options),
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


def prediction_html(prediction: Prediction, options: ExportOptions | None = None) -> str:
    """The full, self-contained ``report.html`` page."""
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
        + _content(prediction, opts)
        + "\n</body></html>\n"
    )


@exporters.register("html")
def export_html(prediction: Prediction, out_dir: Path, options: ExportOptions) -> list[Path]:
    """Write ``report.html``."""
    path = output_path(out_dir, FILENAME)
    atomic_write_text(path, prediction_html(prediction, options))
    return [path]
