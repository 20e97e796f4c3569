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
"""

from __future__ import annotations

import datetime as _dt
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .errors import ConfigError, InputError, ModelError
from .types import Case, PreprocessingRecord

if TYPE_CHECKING:
    from .explain.explanation import Explanation

__all__ = [
    "PREDICTION_SCHEMA_VERSION",
    "FindingPrediction",
    "Prediction",
    "RiskPrediction",
    "predict",
]

log = logging.getLogger(__name__)

#: Version of the ``prediction.json`` document (``docs/prediction.schema.json``).
PREDICTION_SCHEMA_VERSION = "1.0"

#: Explanation methods run by ``predict(..., explain=True)``.
DEFAULT_EXPLAIN_METHODS: tuple[str, ...] = (
    "gradcam",
    "integrated_gradients_text",
    "modality_shapley",
)

_RISK_MEANING = {
    "cox": (
        "Cox log relative hazard: higher means an earlier expected event; differences are "
        "log hazard ratios. Relative to the training cohort, not an absolute probability."
    ),
    "discrete_time": (
        "Expected number of discrete time bins survived, negated: higher means an earlier "
        "expected event. Relative to the training cohort, not an absolute probability."
    ),
}


@dataclass(frozen=True)
class FindingPrediction:
    """One diagnosis label: calibrated probability, the card's decision threshold, the decision."""

    label: str
    probability: float
    threshold: float
    positive: bool
    #: where the evidence for this label lies in the training cohort ("image", "report",
    #: "both"), when the model card says so
    evidence: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out = {
            "label": self.label,
            "probability": round(self.probability, 6),
            "threshold": round(self.threshold, 6),
            "positive": self.positive,
        }
        if self.evidence:
            out["evidence"] = self.evidence
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

    # -- access -----------------------------------------------------------------------------------
    @property
    def labels(self) -> list[str]:
        return [f.label for f in self.findings]

    @property
    def positive(self) -> list[FindingPrediction]:
        """The findings at or above their threshold."""
        return [f for f in self.findings if f.positive]

    def finding(self, label: str) -> FindingPrediction:
        for f in self.findings:
            if f.label == label:
                return f
        raise KeyError(f"no finding {label!r}; labels: {', '.join(self.labels)}")

    def explanation_summary(self, top_phrases: int = 5) -> dict[str, Any] | None:
        """Peak location (RAS and LPS mm), modality contributions and top report phrases per label."""
        expl = self.explanation
        if expl is None:
            return None
        per_label: dict[str, Any] = {}
        for label in expl.labels:
            entry: dict[str, Any] = {}
            sal = expl.get_saliency(label)
            if sal is not None:
                # the peak inside the source volume when the map is on its grid (the model grid
                # may extend beyond the scanned field of view)
                ijk = sal.peak_original
                world = sal.original.voxel_to_world(ijk) if ijk is not None else sal.peak_world
                ras = [round(float(v), 2) for v in world]
                entry["saliency"] = {
                    "method": sal.method,
                    "peak_ras_mm": ras,
                    "peak_lps_mm": [-ras[0], -ras[1], ras[2]],
                    "peak_voxel_original": list(ijk) if ijk is not None else None,
                }
            contrib = expl.modality.get(label)
            if contrib is not None:
                entry["modality_contribution"] = {
                    "output": contrib.output,
                    "image": round(contrib.image, 6),
                    "report": round(contrib.report, 6),
                    "interaction": round(contrib.interaction, 6),
                    "baseline": round(contrib.baseline, 6),
                    "fractions": {k: round(v, 4) for k, v in contrib.fractions().items()},
                }
            tokens = expl.get_tokens(label)
            if tokens is not None and expl.report_text:
                entry["top_report_phrases"] = [
                    {"text": expl.report_text[a:b], "start": a, "end": b, "score": round(s, 6)}
                    for a, b, s in tokens.top(top_phrases)
                    if s > 0
                ]
                entry["token_method"] = tokens.method
            per_label[label] = entry
        return {
            "methods": list(expl.methods),
            "runtime_s": round(expl.runtime_s, 4),
            "labels": per_label,
        }

    def to_dict(self) -> dict[str, Any]:
        """The ``prediction.json`` document (schema ``docs/prediction.schema.json``)."""
        return {
            "schema_version": PREDICTION_SCHEMA_VERSION,
            "key": self.key,
            "created": self.created,
            "study_instance_uid": self.study_instance_uid,
            "series_instance_uid": self.series_instance_uid,
            "modalities_used": list(self.modalities_used),
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
    card = getattr(model, "card", None)
    import medfuse

    return {
        "name": getattr(card, "name", None) or getattr(model, "name", "custom"),
        "version": getattr(card, "created", "") or "untrained",
        "sha256": getattr(card, "weights_sha256", None),
        "medfuse_version": medfuse.__version__,
        "synthetic_training_data": bool(getattr(card, "training_data", {}).get("synthetic", False)),
    }


def _risk(model: Any, output: Any) -> RiskPrediction | None:
    score = model.risk_score(output)
    if score is None:
        return None
    value = float(score.reshape(-1)[0])
    head = model.heads["risk"]
    kind = "discrete_time" if type(head).__name__ == "DiscreteTimeHead" else "cox"
    card = getattr(model, "card", None)
    reference = (getattr(card, "extra", None) or {}).get("risk_reference") or []
    percentile = None
    if reference:
        below = sum(1 for r in reference if r < value) + 0.5 * sum(
            1 for r in reference if r == value
        )
        percentile = 100.0 * below / len(reference)
    return RiskPrediction(value, kind, _RISK_MEANING[kind], percentile)


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
    :data:`DEFAULT_EXPLAIN_METHODS`, a list names the methods (registry ``explainers``).
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
    if c.report is None and model.text_encoder is not None:
        warnings.append("no report: image-only prediction (learned missing-report token)")
    if c.volume is None and model.image_encoder is not None:
        warnings.append("no image: report-only prediction (learned missing-image token)")
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
        used = tuple(m for m, u in zip(("image", "report"), out.mask[0].tolist(), strict=True) if u)
    timings["forward"] = time.perf_counter() - t0

    card = getattr(model, "card", None)
    thresholds = list(getattr(card, "thresholds", None) or [0.5] * len(probs))
    sources = (getattr(card, "training_data", None) or {}).get("label_sources", {})
    findings = [
        FindingPrediction(lab, float(p), float(t), bool(p >= t), sources.get(lab))
        for lab, p, t in zip(model.labels, probs, thresholds, strict=True)
    ]

    explanation = None
    if explain:
        from .explain import explain as run_explain

        methods = DEFAULT_EXPLAIN_METHODS if explain is True else tuple(explain)
        if labels == "positive":
            chosen = [f.label for f in findings if f.positive]
            labels = chosen or [max(findings, key=lambda f: f.probability).label]
        elif isinstance(labels, str):
            labels = [labels]
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
