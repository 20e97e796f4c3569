"""``medfuse.predict(model, case)`` → :class:`Prediction`: calibrated findings, risk, explanation.

    import medfuse
    model = medfuse.load_model("chest_ct_demo")
    study = medfuse.read_study("sample_cases/chest_ct_0001")
    report = medfuse.read_report("sample_cases/chest_ct_0001/report.txt")
    pred = medfuse.predict(model, (study, report), explain=True)
    pred.findings[0]        # FindingPrediction(label='emphysema', probability=0.93, ...)
    pred.to_dict()          # the prediction.json document (docs/prediction.schema.json)

A missing modality is explicit: a case without a report runs image-only (the model's learned
missing-report token), the prediction lists ``modalities_used`` and says so in ``warnings``.
A model whose fusion imputes the missing modality's embedding from the present one
(``missing: regression | generative``, :mod:`medfuse.models.impute`) lists it in
``modalities_imputed`` (never in ``modalities_used``), with a warning; the rule below still
holds, so an imputed report never makes a report-only label assessable.

A finding whose evidence the model card puts in a modality the case lacks (a smoking history
without a report, an effusion without an image) is **not assessable**: ``status
"not_assessable"``, ``positive`` None and the reason; the model's output for it is kept only as
``raw_probability``, which nobody should read as a finding. A label that needs both modalities
and has one is assessed with ``reduced_evidence`` and the card's measured AUROC for that
condition (:func:`assess`).
"""

from __future__ import annotations

import datetime as _dt
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ._pages import small_pages
from .errors import ConfigError, InputError, ModelError
from .types import MODALITIES, Case, PreprocessingRecord, modality_names

if TYPE_CHECKING:
    from .explain.explanation import Explanation

__all__ = [
    "ASSESSED",
    "NOT_ASSESSABLE",
    "PREDICTION_SCHEMA_VERSION",
    "FindingPrediction",
    "Prediction",
    "RiskPrediction",
    "assess",
    "predict",
]

log = logging.getLogger(__name__)

#: Version of the ``prediction.json`` document (``docs/prediction.schema.json``).
PREDICTION_SCHEMA_VERSION = "2.0"

#: ``FindingPrediction.status`` values
ASSESSED, NOT_ASSESSABLE = "assessed", "not_assessable"

_RISK_MEANING = {
    "cox": (
        "Cox log relative hazard of {event}: higher means that event is expected earlier; "
        "differences are log hazard ratios. Relative to the training cohort, not an absolute "
        "probability."
    ),
    "discrete_time": (
        "Expected number of discrete time bins without {event}, negated: higher means that "
        "event is expected earlier. Relative to the training cohort, not an absolute "
        "probability."
    ),
}
_RISK_MEANING_OTHER = (
    "Risk score of {event} from a {kind!r} head: see that head's documentation for its scale."
)


@dataclass(frozen=True)
class FindingPrediction:
    """One diagnosis label: calibrated probability, the card's decision threshold, the decision.

    ``status`` is :data:`ASSESSED`, or :data:`NOT_ASSESSABLE` when the modality the card says
    the label needs is missing: then ``positive`` is None, ``reason`` says why and
    ``probability`` is only the model's raw output (``raw_probability`` in prediction.json).
    ``reduced_evidence``: the label needs image and report and the case had one of them;
    ``reduced_auroc`` is the card's AUROC measured in that condition (None: not measured).
    """

    label: str
    probability: float
    threshold: float
    positive: bool | None
    #: the modality the label's evidence needs in the training cohort ("image", "report",
    #: "both"), when the model card says so
    evidence: str | None = None
    status: str = ASSESSED
    reason: str | None = None
    reduced_evidence: bool = False
    reduced_auroc: float | None = None

    @property
    def assessable(self) -> bool:
        return self.status == ASSESSED

    @property
    def needs(self) -> str | None:
        """The modality the label needs (the model card's label source)."""
        return self.evidence

    def decision_text(self) -> str:
        """``yes`` / ``no`` / ``n/a: needs report`` (or image) / ``yes (reduced evidence)``."""
        if not self.assessable:
            return f"n/a: needs {self.evidence or 'another input'}"
        text = "yes" if self.positive else "no"
        return f"{text} (reduced evidence)" if self.reduced_evidence else text

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "label": self.label,
            "status": self.status,
            "probability": round(self.probability, 6) if self.assessable else None,
            "threshold": round(self.threshold, 6),
            "positive": self.positive if self.assessable else None,
        }
        if not self.assessable:
            out["raw_probability"] = round(self.probability, 6)
        if self.evidence:
            out["needs"] = self.evidence
        if self.reason:
            out["reason"] = self.reason
        if self.reduced_evidence:
            out["reduced_evidence"] = True
            out["reduced_evidence_auroc"] = (
                None if self.reduced_auroc is None else round(self.reduced_auroc, 4)
            )
        return out


@dataclass(frozen=True)
class RiskPrediction:
    """The survival-style risk score and what it means."""

    score: float
    kind: str
    meaning: str
    #: percentile of ``score`` among the model's validation cases (None when the card lacks them)
    percentile: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "score": round(self.score, 6),
            "kind": self.kind,
            "meaning": self.meaning,
            "percentile": None if self.percentile is None else round(self.percentile, 2),
        }


@dataclass(eq=False)
class Prediction:
    """What medfuse predicts for one case, with everything the exporters need.

    ``case`` keeps the inputs (volume with its source files and UIDs, report) so that exporters
    can reference the source DICOM instances and highlight the report; it is not serialised.
    """

    key: str
    findings: list[FindingPrediction]
    risk: RiskPrediction | None
    modalities_used: tuple[str, ...]
    model: dict[str, Any]
    study_instance_uid: str | None = None
    series_instance_uid: str | None = None
    preprocessing: PreprocessingRecord | None = None
    explanation: Explanation | None = None
    warnings: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    created: str = ""
    case: Case | None = field(default=None, repr=False)
    #: modalities whose embedding the model imputed from the other one (not read: a missing
    #: modality of a ``missing: regression | generative`` model)
    modalities_imputed: tuple[str, ...] = ()

    # -- access -----------------------------------------------------------------------------------
    @property
    def labels(self) -> list[str]:
        return [f.label for f in self.findings]

    @property
    def positive(self) -> list[FindingPrediction]:
        """The assessable findings at or above their threshold."""
        return [f for f in self.findings if f.assessable and f.positive]

    @property
    def not_assessable(self) -> list[FindingPrediction]:
        """The findings whose needed modality is missing."""
        return [f for f in self.findings if not f.assessable]

    def finding(self, label: str) -> FindingPrediction:
        for f in self.findings:
            if f.label == label:
                return f
        raise KeyError(f"no finding {label!r}; labels: {', '.join(self.labels)}")

    def shows_image_map(self, label: str) -> bool:
        """Whether ``label`` gets an image saliency map: assessable, and its evidence is not the
        report alone (a smoking history has nothing to point at in the image)."""
        try:
            f = self.finding(label)
        except KeyError:
            return True
        return f.assessable and f.evidence != "report"

    def explanation_summary(self, top_phrases: int = 5) -> dict[str, Any] | None:
        """The explanation's JSON view (:meth:`Explanation.to_dict
        <medfuse.explain.explanation.Explanation.to_dict>`) for this prediction: labels that
        are not assessable, and image maps of report-only labels, are left out."""
        expl = self.explanation
        if expl is None:
            return None
        not_assessable = {f.label for f in self.not_assessable}
        labels = [label for label in expl.labels if label not in not_assessable]
        return expl.to_dict(
            labels=labels,
            image_maps={label for label in labels if self.shows_image_map(label)},
            volume=self.case.volume if self.case is not None else None,
            top_phrases=top_phrases,
        )

    def to_dict(self) -> dict[str, Any]:
        """The ``prediction.json`` document (schema ``docs/prediction.schema.json``)."""
        return {
            "schema_version": PREDICTION_SCHEMA_VERSION,
            "key": self.key,
            "created": self.created,
            "study_instance_uid": self.study_instance_uid,
            "series_instance_uid": self.series_instance_uid,
            "modalities_used": list(self.modalities_used),
            "modalities_imputed": list(self.modalities_imputed),
            "findings": [f.to_dict() for f in self.findings],
            "risk": self.risk.to_dict() if self.risk is not None else None,
            "explanation": self.explanation_summary(),
            "preprocessing": self.preprocessing.to_dict() if self.preprocessing else None,
            "model": dict(self.model),
            "warnings": list(self.warnings),
            "timings_s": {k: round(v, 4) for k, v in self.timings.items()},
            "not_for_clinical_use": True,
        }

    # -- display ----------------------------------------------------------------------------------
    def _repr_html_(self) -> str:
        from .export.html import prediction_html_fragment

        return prediction_html_fragment(self)

    def __repr__(self) -> str:
        pos = ", ".join(f"{f.label} {f.probability:.2f}" for f in self.positive) or "none"
        risk = f", risk {self.risk.score:+.2f}" if self.risk is not None else ""
        return (
            f"Prediction({self.key or '<case>'}, model={self.model.get('name')!r}, "
            f"uses {'+'.join(self.modalities_used) or 'nothing'}, positive: {pos}{risk})"
        )


def model_info(model: Any) -> dict[str, Any]:
    """``Prediction.model``: the model's name, version, weights SHA-256 and medfuse version."""
    from ._version import __version__

    card = getattr(model, "card", None)
    return {
        "name": getattr(card, "name", None) or getattr(model, "name", "custom"),
        "version": getattr(card, "created", "") or "untrained",
        "sha256": getattr(card, "weights_sha256", None),
        "medfuse_version": __version__,
        "synthetic_training_data": bool(getattr(card, "training_data", {}).get("synthetic", False)),
    }


def _risk(model: Any, output: Any) -> RiskPrediction | None:
    score = model.risk_score(output)
    if score is None:
        return None
    value = float(score.reshape(-1)[0])
    head = model.heads["risk"]
    kind = getattr(head, "name", "") or "cox"  # the head's kind: its registry name
    card = getattr(model, "card", None)
    reference = (getattr(card, "extra", None) or {}).get("risk_reference") or []
    percentile = None
    if reference:
        below = sum(1 for r in reference if r < value) + 0.5 * sum(
            1 for r in reference if r == value
        )
        percentile = 100.0 * below / len(reference)
    meaning = _RISK_MEANING.get(kind, _RISK_MEANING_OTHER).format(
        event=_risk_event(card), kind=kind
    )
    return RiskPrediction(value, kind, meaning, percentile)


def _risk_event(card: Any) -> str:
    """The event the risk head was trained on: the card's ``extra["risk_event"]``, else what
    the training data says about it."""
    extra = getattr(card, "extra", None) or {}
    if extra.get("risk_event"):
        return str(extra["risk_event"])
    if bool((getattr(card, "training_data", None) or {}).get("synthetic", False)):
        return (
            "the simulated adverse event of the synthetic training cohort (a generated "
            "time to event, no real outcome)"
        )
    return "the event of the model's training data (its card does not name it)"


def _condition_auroc(card: Any, label: str, missing: str) -> float | None:
    """The card's test AUROC of ``label`` with ``missing`` ("image" / "report") absent: the
    chest card's ``metrics.test.auroc_<missing>_missing``, the MR card's
    ``metrics.test_no_<missing>``; None when the card did not measure it."""
    metrics = getattr(card, "metrics", None) or {}
    test = metrics.get("test") or {}
    entry = (test.get(f"auroc_{missing}_missing") or {}).get(label)
    if entry is None:
        labels = (metrics.get(f"test_no_{missing}") or {}).get("labels") or {}
        entry = (labels.get(label) or {}).get("auroc")
    if isinstance(entry, dict):
        entry = entry.get("value")
    return None if entry is None else float(entry)


def assess(
    card: Any, labels: Sequence[str], probabilities: Sequence[float], used: Sequence[str]
) -> list[FindingPrediction]:
    """The findings of one case from the calibrated ``probabilities`` and the modalities it
    ``used``, with the card's thresholds and label sources (``training_data.label_sources``:
    "image", "report" or "both").

    * the needed modality missing ("image" / "report" label): ``not_assessable``,
      ``positive`` None, the reason;
    * a "both" label with one modality: assessed, ``reduced_evidence`` and the card's AUROC
      measured without the missing one (:func:`_condition_auroc`);
    * a label the card gives no source for: assessed as it stands.
    """
    thresholds = list(getattr(card, "thresholds", None) or [0.5] * len(probabilities))
    sources = (getattr(card, "training_data", None) or {}).get("label_sources", {}) or {}
    missing = [m for m in MODALITIES if m not in used]
    out = []
    for lab, p, t in zip(labels, probabilities, thresholds, strict=True):
        src = sources.get(lab)
        src = src if src in ("image", "report", "both") else None
        p, t = float(p), float(t)
        if src in missing:
            reason = (
                f"the model card says {lab} needs the {src}, and this study has no {src}; "
                f"the model's output without it ({p:.3f}) is not a finding"
            )
            out.append(FindingPrediction(lab, p, t, None, src, NOT_ASSESSABLE, reason=reason))
            continue
        if src == "both" and len(missing) == 1:
            gone = missing[0]
            auroc = _condition_auroc(card, lab, gone)
            measured = (
                f"the card's test AUROC without the {gone}: {auroc:.3f}"
                if auroc is not None
                else f"the card has no AUROC measured without the {gone}"
            )
            reason = f"{lab} needs image and report; this study has no {gone}; {measured}"
            out.append(FindingPrediction(lab, p, t, p >= t, src, ASSESSED, reason, True, auroc))
            continue
        out.append(FindingPrediction(lab, p, t, p >= t, src))
    return out


@small_pages()
def predict(
    model: Any,
    case: Any,
    *,
    explain: bool | Sequence[str] = False,
    labels: Sequence[str] | str | None = None,
    explain_params: dict[str, dict[str, Any]] | None = None,
) -> Prediction:
    """Predict one case with ``model`` (from :func:`medfuse.load_model`).

    ``case``: a :class:`~medfuse.types.Case`, a :class:`~medfuse.types.Study`, a
    :class:`~medfuse.types.Volume`, a :class:`~medfuse.types.Report` / report text, or a
    ``(image, report)`` tuple (either may be None). ``explain``: True runs
    :data:`~medfuse.explain.methods.DEFAULT_METHODS`, a list names the methods (registry
    ``explainers``).
    ``labels``: the labels to explain — a list, None (all), or ``"positive"`` (the findings at
    or above their threshold, else the most probable one: what a triage report shows, at a
    fraction of the cost). Probabilities are calibrated with the
    card's temperatures; ``positive`` uses the card's thresholds.
    """
    import torch

    from .explain.api import prepare_context
    from .explain.context import eval_mode

    c = Case.coerce(case)
    head = getattr(model, "diagnosis_head", None)
    if head is None:
        raise ModelError(f"model {getattr(model, 'name', '?')!r} has no diagnosis head")
    timings: dict[str, float] = {}
    warnings: list[str] = []
    vol = c.volume if model.image_encoder is not None else None
    rep = c.report if model.text_encoder is not None else None
    if vol is None and rep is None:
        raise ConfigError(
            f"nothing to predict: the case has none of the modalities model {model.name!r} reads "
            f"({', '.join(model.modalities)})",
            hint="give an image volume, a report, or both",
        )
    expected = str(getattr(model.preprocessing, "modality", "auto")).upper()
    got = vol.modality.upper() if vol is not None else ""
    if expected in ("CT", "MR") and got in ("CT", "MR") and got != expected:
        raise InputError(
            f"model {model.name!r} reads {expected} images; this volume is {got}",
            path=vol.source_files[0] if vol.source_files else None,
            hint=f"use a model trained on {got}, or select a {expected} series",
        )
    if c.volume is not None and vol is None:
        warnings.append(f"the image was not used: model {model.name!r} reads reports only")
    if c.report is not None and rep is None:
        warnings.append(f"the report was not used: model {model.name!r} reads images only")
    missing = str(getattr(getattr(model, "fusion", None), "missing", "token"))
    if c.report is None and model.text_encoder is not None:
        warnings.append(
            "no report: image-only prediction (learned missing-report token)"
            if missing == "token" or vol is None
            else f"no report: its embedding was imputed from the image ({missing} imputer), "
            "not read; labels that need the report stay not assessable"
        )
    if c.volume is None and model.image_encoder is not None:
        warnings.append(
            "no image: report-only prediction (learned missing-image token)"
            if missing == "token" or rep is None
            else f"no image: its embedding was imputed from the report ({missing} imputer), "
            "not read; labels that need the image stay not assessable"
        )
    if vol is not None:
        warnings.extend(f"image: {w}" for w in vol.warnings)
    if rep is not None:
        warnings.extend(f"report: {n}" for n in getattr(rep, "notes", []))

    t0 = time.perf_counter()
    ctx = prepare_context(model, Case(volume=vol, report=rep))  # preprocessed once, reused below
    timings["preprocess"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    with eval_mode(model), torch.no_grad():
        out = model(
            image=ctx.image if ctx.has_image else None, text=ctx.text if ctx.has_text else None
        )
        probs = head.probabilities(out.logits)[0].float().cpu().tolist()
        risk = _risk(model, out)
        used = modality_names(out.mask[0])
        imp = out.fusion.imputed
        imputed = modality_names(imp[0]) if imp is not None else ()
    timings["forward"] = time.perf_counter() - t0

    card = getattr(model, "card", None)
    findings = assess(card, list(model.labels), probs, used)
    for f in findings:
        if not f.assessable:
            warnings.append(f"{f.label}: not assessable ({f.reason})")
        elif f.reduced_evidence:
            warnings.append(f"{f.label}: reduced evidence ({f.reason})")

    explanation = None
    if explain:
        from .explain.api import explain as run_explain
        from .explain.methods import DEFAULT_METHODS

        methods = DEFAULT_METHODS if explain is True else tuple(explain)
        assessable = [f for f in findings if f.assessable]
        if labels == "positive":
            chosen = [f.label for f in assessable if f.positive]
            ranked = assessable or findings
            labels = chosen or [max(ranked, key=lambda f: f.probability).label]
        elif isinstance(labels, str):
            labels = [labels]
        elif labels is None:  # a label that cannot be assessed is not explained
            labels = [f.label for f in assessable] or None
        t0 = time.perf_counter()
        explanation = run_explain(
            model, c, labels=labels, methods=list(methods), params=explain_params, context=ctx
        )
        timings["explain"] = time.perf_counter() - t0

    return Prediction(
        key=c.key,
        findings=findings,
        risk=risk,
        modalities_used=used,
        modalities_imputed=imputed,
        model=model_info(model),
        study_instance_uid=(vol.study_instance_uid if vol is not None else None)
        or (c.study.study_instance_uid if c.study is not None else None),
        series_instance_uid=vol.series_instance_uid if vol is not None else None,
        preprocessing=ctx.record,
        explanation=explanation,
        warnings=warnings,
        timings=timings,
        created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        case=c,
    )
