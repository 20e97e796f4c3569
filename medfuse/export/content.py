"""What the human-readable documents say, shared by ``report.html`` (:mod:`.html`), ``report.pdf``
(:mod:`.pdf`) and the de-identified DICOM outputs' pseudonym (:mod:`.deid`), so that every
document says the same things: the disclaimer, the study's pseudonymous label, the header rows
(de-identified unless ``ExportOptions.include_phi``), the explained labels, the report text the
attributions refer to, one label's saliency view (drawn once per output set), the notes under
the findings table, the model and preprocessing rows.

Plain text only (no markup): each document escapes and lays it out its own way.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..disclaimer import MODEL_CARD_STATEMENT, REPORT_GENERIC, REPORT_SYNTHETIC

if TYPE_CHECKING:
    from ..explain.explanation import Explanation
    from ..prediction import Prediction
    from .base import ExportOptions
    from .context import ExportContext

__all__ = [
    "DISCLAIMER",
    "DISCLAIMER_GENERIC",
    "PHI_ELEMENTS",
    "SaliencyView",
    "disclaimer",
    "explained_labels",
    "finding_notes",
    "header_fields",
    "imputed_note",
    "modalities_line",
    "model_fields",
    "no_phrase_note",
    "not_for_clinical_use",
    "peak_lines",
    "phi_fields",
    "probability_text",
    "report_text",
    "saliency_view",
    "step_rows",
    "study_label",
]

#: Shown prominently at the top of the HTML page and on every PDF page.
DISCLAIMER = REPORT_SYNTHETIC  # the wordings live in medfuse.disclaimer
#: The same for a model whose card does not say it was trained on synthetic data.
DISCLAIMER_GENERIC = REPORT_GENERIC

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
    """``image + report``, ``image only (no report)``, ..., and which missing modality the
    model imputed (its embedding guessed from the other one: nothing was read)."""
    used = prediction.modalities_used
    if used == ("image",):
        line = "image only (no report): image-only prediction"
    elif used == ("report",):
        line = "report only (no image): report-only prediction"
    else:
        line = " + ".join(used) or "none"
    return line + imputed_note(prediction)


def imputed_note(prediction: Prediction) -> str:
    """``"; the report was imputed from the image (not read)"`` when the model imputed a
    missing modality's embedding, else ``""``."""
    notes = [
        f"the {m} was imputed from the {'image' if m == 'report' else 'report'} (not read)"
        for m in prediction.modalities_imputed
    ]
    return "".join(f"; {n}" for n in notes)


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


def saliency_view(
    prediction: Prediction,
    label: str,
    options: ExportOptions,
    context: ExportContext | None = None,
) -> SaliencyView:
    """The saliency figure of ``label`` (:func:`medfuse.explain.render.saliency_figure_png`:
    the source slices through up to 3 hotspots, MIPs over the anatomy, orientation letters,
    colour bar and window), drawn once per output set (``context``) for both documents. No
    figure for a report-only label, a finding that is not assessable, or a flat map."""
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
    if context is None:
        return _draw_view(prediction, label, sal)
    return context.shared(
        ("saliency_view", id(expl), label, sal.method),
        lambda: _draw_view(prediction, label, sal),
    )


def _draw_view(prediction: Prediction, label: str, sal: Any) -> SaliencyView:
    from ..explain.explanation import _FIGURE_LOCK
    from ..explain.render import saliency_figure_png, saliency_peaks

    expl = prediction.explanation
    assert expl is not None
    vol = prediction.case.volume if prediction.case is not None else None
    peaks = saliency_peaks(sal, vol)
    if not peaks:
        return SaliencyView(
            sal.method, None, [], "No localised evidence: the map is flat (no region stands out)."
        )
    with _FIGURE_LOCK:  # matplotlib is not thread-safe (the exporters run in threads)
        png = saliency_figure_png(sal, vol, expl.image, peaks=peaks)
    if png is None:  # no source grid: the model-grid figure
        png = expl.figure_png(label, sal.method)
    return SaliencyView(sal.method, png, peaks, "")


def peak_lines(view: SaliencyView) -> list[str]:
    """One line per hotspot: ``1: LPS (…) mm [RAS (…)], image 17, 100 % of the maximum``."""
    return [
        f"{n}: {p.text()}, {100 * p.fraction:.0f} % of the maximum"
        for n, p in enumerate(view.peaks, start=1)
    ]


def no_phrase_note(expl: Explanation, text: str, label: str) -> str:
    """Why no report phrase is listed for ``label`` ("" when phrases are listed or there is no
    report)."""
    if not text:
        return ""
    from ..explain.explanation import MIN_REPORT_SHARE

    share = expl.report_share(label)
    if share is not None and share < MIN_REPORT_SHARE:
        return (
            f"The report carries {100 * share:.0f} % of this output (below "
            f"{100 * MIN_REPORT_SHARE:.0f} %): its words are not the evidence for this label, "
            "so none is listed."
        )
    said = "" if share is None else f" (the report's share of this output: {100 * share:.0f} %)"
    if expl.get_tokens(label) is None:
        return (
            "Word attributions were not computed for this label: the explanation methods were "
            f"{', '.join(expl.methods)} (add integrated_gradients_text){said}."
        )
    return (
        "Integrated gradients give no report word a positive attribution for this label"
        f"{said}: the report's contribution is not carried by single words."
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
    """The model card's statement (:data:`medfuse.disclaimer.MODEL_CARD_STATEMENT`)."""
    return MODEL_CARD_STATEMENT


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
