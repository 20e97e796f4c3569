"""Seeded synthetic *fusion* cohort: chest CT phantoms + reports whose labels need the image, the
report, or both, and a censored time-to-event risk target.

Every case is a pure function of ``(config.seed, case index)``; arrays are generated in memory
(a 64×64×48 phantom takes ~10 ms) and the model inputs are cached per preprocessing
configuration, so 1,000 cases are ready in about a minute on one core. DICOM writing is
optional (:meth:`FusionCohort.write_study`, ``medfuse train-cohort --dicom``).

Generative model (case ``i``, all draws from ``SeedSequence([seed, i, 0xF05E])``)
-------------------------------------------------------------------------------

Patient (report-side) factors::

    age ~ U{40..85};  sex ~ {M, F}
    smoking ~ never 0.5 | former 0.2 | current 0.3      (pack-years ~ U{10..60} when smoker)
    infection  ~ Bernoulli(p_infection = 0.45)          fever / productive cough in the history
    weight_loss ~ Bernoulli(0.2)
    dyspnea ~ Bernoulli(0.35)

Image factors (painted into the :class:`~medfuse.synth.phantom.ChestPhantom`)::

    lesion ~ Bernoulli(p_lesion = 0.4); diameter ~ U(16, 44) mm; "mass" when > 30 mm, placed in
             a random lobe where the sphere (+ 2 mm) lies in aerated lung (never inside an
             effusion, where 30 HU tissue would not show)
    consolidation ~ Bernoulli(p_consolidation = 0.4): an ellipsoid (radii 22-38 mm) of lung
             raised to patchy airspace opacity, N(-100, 60) HU, inside one lung (painted onto
             the phantom's aerated lung voxels, at least half of the ellipsoid, and 6 mm clear of
             a lesion, which stays a homogeneous 30 HU nodule)
    effusion ~ Bernoulli(0.25), side left / right / both
    emphysema ~ Bernoulli(0.45 if smoker else 0.15)      (lung at -925 instead of -850 HU)
    cardiomegaly ~ Bernoulli(0.25): heart_scale U(1.3, 1.5), else U(0.9, 1.1)

Labels (:data:`FUSION_LABELS`; where the evidence lies is :data:`LABEL_SOURCES`)::

    image only   emphysema, cardiomegaly, pleural_effusion, consolidation, lung_lesion
    report only  smoking_history (former or current), dyspnea
    both         pneumonia            = consolidation AND infection
                 suspected_malignancy = lesion AND (smoking_history OR weight_loss)

``consolidation`` and ``lung_lesion`` are the image evidence of the two "both" labels: training
on them makes the image encoder detect the focal findings, and the "both" labels become
conjunctions of an image finding and report facts. Their masks (the painted consolidation and
the lesion sphere) are available per case (:meth:`FusionCohort.finding_masks`) for the pointing
game.

The report is a referral-style CT report from a template grammar (sections, synonyms,
negations, hedges, measurements, comparison sentences, clinical history). The history states
the patient factors (smoking status is omitted with probability 0.1); an image finding is
mentioned in FINDINGS only with probability ``mention_rate`` (default 0.15; present findings
then get a measurement or a hedge, absent ones a negation), so the report alone cannot tell the
image findings and the image alone cannot tell the history. One history in three also carries a
sentence that bears on no label ("Chest pain.", "Staging."). Grammar version 2 (the terse
phrasings "Smoker, screening.", "Weight loss.", "Shortness of breath." and the neutral
sentences) changed only the report text: a saved cohort of another version is drawn again.
Grammar 3 (:func:`write_report_v3`) removed the template tokens that told labels apart, and
grammar 4 (:func:`write_report_v4`, the default) writes grammar 3's facts in the wording of real
and sample reports: technique lines with a slice thickness and measurements of vessels and
nodes in any report (so "mm" says nothing about a lesion), several phrasings per finding, and
impression items for mentioned findings of either polarity.
Image version 2 (:data:`IMAGE_VERSION`, part of the input cache key) placed lesions in aerated
lung and kept consolidations whole and clear of them; in version 1 about one lesion in five lay
in an effusion or inside a consolidation, where no reader could see it (the image-level lesion
AUROC of a model trained on it stalled near 0.8). Version 3 gave consolidation the patchy
density of airspace disease: at 25 HU it looked like a large nodule, and the lesion detector
of a model trained on version 2 scored consolidations as high as lesions (lesion AUROC 0.67 on
cases with a consolidation, 0.95 without).

Risk (Cox-type, exponential times)::

    eta = 1.4*lesion_diameter/30 + 0.9*emphysema + 0.9*cardiomegaly + 0.6*effusion
          + 0.6*consolidation + 1.1*current_smoker + 0.5*former_smoker + 1.3*weight_loss
          + 0.5*dyspnea + 0.03*(age - 65)
    T ~ Exponential(rate = 0.004 * exp(2 * eta)) years;  C ~ U(2, 10) years
    time = min(T, C); event = T <= C

Noise and missingness (parameters of :class:`FusionCohortConfig`): each binary label is flipped
with probability ``label_noise`` (the clean labels are kept as ``labels_clean``); the report is
missing with probability ``report_missing`` and the image with ``image_missing`` (never both).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError
from ..models.labels import CHEST_CT_LABEL_SOURCES, CHEST_CT_LABELS
from ..synth.report import article, report_text
from ..synth.report import pick as _pick

__all__ = [
    "FUSION_LABELS",
    "LABEL_SOURCES",
    "FusionCohort",
    "FusionCohortConfig",
    "draw_case",
    "load_fusion_cohort",
    "make_fusion_cohort",
    "render_case",
    "render_case_with_masks",
    "write_report",
    "write_report_v3",
    "write_report_v4",
]

log = logging.getLogger(__name__)

#: The labels and where each one's evidence lies ("image", "report" or "both"): the chest CT
#: labels of :mod:`medfuse.models.labels`, one list for the presets, this cohort and the demo model.
FUSION_LABELS: tuple[str, ...] = CHEST_CT_LABELS
LABEL_SOURCES: dict[str, str] = CHEST_CT_LABEL_SOURCES
#: Labels added after the first release (their noise is drawn last; see :func:`draw_case`).
_ADDED_LABELS: tuple[str, ...] = ("consolidation", "lung_lesion")
COHORT_FILE = "cohort.json"
#: Version of the report code: a saved cohort written by another version is drawn again
GRAMMAR_VERSION = 3
#: The report grammars :class:`FusionCohortConfig` can write (``grammar``)
GRAMMAR_VERSIONS = (2, 3, 4)
#: Version of the image generator (part of the input cache key): 2 places lesions in aerated
#: lung only, keeps consolidations clear of them and never paints a consolidation sliver; 3
#: paints consolidations as patchy airspace opacity (~-100 HU) instead of 25 HU soft tissue.
IMAGE_VERSION = 3
_LOBES = (
    "right upper lobe",
    "right middle lobe",
    "right lower lobe",
    "left upper lobe",
    "left lower lobe",
)
_GRID_CENTER = (0.0, 0.0, -180.0)


class CohortParams:
    """What the cohort configs share: checks of the common parameters, construction from a
    mapping, fingerprint."""

    _kind = "cohort"
    #: the rates every cohort config has
    _SHARED_RATES = ("label_noise", "report_missing", "image_missing", "mention_rate", "p_lesion")

    def _check(self, grammars: Sequence[int], own: Sequence[str]) -> None:
        """``n`` a positive and ``seed`` a non-negative integer, ``grammar`` one of ``grammars``,
        each shared rate and each of ``own`` a probability in [0, 1] (stored as float); the two
        missing-modality rates together at most 1."""
        n, seed = self.n, self.seed  # type: ignore[attr-defined]
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ConfigError(f"n must be a positive integer, got {n!r}")
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ConfigError(f"seed must be a non-negative integer, got {seed!r}")
        if self.grammar not in grammars:  # type: ignore[attr-defined]
            raise ConfigError(
                f"unknown report grammar {self.grammar!r}",  # type: ignore[attr-defined]
                hint=f"choose from {tuple(grammars)}",
            )
        for name in (*self._SHARED_RATES, *own):
            v = float(getattr(self, name))
            if not 0.0 <= v <= 1.0:
                raise ConfigError(f"{name} must lie in [0, 1], got {v}")
            setattr(self, name, v)
        if self.report_missing + self.image_missing > 1.0:  # type: ignore[attr-defined]
            raise ConfigError("report_missing + image_missing must not exceed 1")

    @classmethod
    def from_dict(cls, data: dict[str, Any]):
        unknown = set(data) - set(cls.__dataclass_fields__)  # type: ignore[attr-defined]
        if unknown:
            raise ConfigError(f"unknown {cls._kind} parameters {sorted(unknown)}")
        return cls(**data)

    def fingerprint(self) -> str:
        return hashlib.sha256(
            json.dumps(self.to_dict(), sort_keys=True).encode()  # type: ignore[attr-defined]
        ).hexdigest()[:12]


@dataclass
class FusionCohortConfig(CohortParams):
    """Parameters of the generative model (see the module docstring)."""

    n: int = 1000
    seed: int = 0
    shape: tuple[int, int, int] = (64, 64, 48)
    label_noise: float = 0.02
    report_missing: float = 0.1
    image_missing: float = 0.05
    mention_rate: float = 0.15
    p_lesion: float = 0.4
    p_consolidation: float = 0.4
    p_infection: float = 0.45
    #: report grammar (:data:`GRAMMAR_VERSIONS`): 4, the default and the grammar the shipped
    #: ``chest_ct_demo`` learned, is grammar 3 in the wording of real and sample reports; 3 has
    #: no label shortcuts (``benchmarks/shortcut_audit.py``) but writes "mm" only beside lesions;
    #: 2 leaks labels through template words (the model trained on it learned them)
    grammar: int = 4
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.shape = tuple(int(s) for s in self.shape)  # type: ignore[assignment]
        if len(self.shape) != 3 or min(self.shape) < 16:
            raise ConfigError(f"shape must be three sizes >= 16, got {self.shape}")
        self._check(GRAMMAR_VERSIONS, ("p_consolidation", "p_infection"))

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["shape"] = list(self.shape)
        return d


# -- drawing ---------------------------------------------------------------------------------------
def draw_presence(rng: np.random.Generator, cfg: CohortParams) -> tuple[bool, bool]:
    """Whether a case has its report and its image (one uniform draw: the report is missing
    with probability ``report_missing``, else the image with ``image_missing``)."""
    u = rng.random()
    rm, im = cfg.report_missing, cfg.image_missing  # type: ignore[attr-defined]
    return bool(not u < rm), bool(not rm <= u < rm + im)


def _case_rng(seed: int, index: int, stream: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(seed), int(index), 0xF05E, stream]))


def draw_case(config: FusionCohortConfig, index: int) -> dict[str, Any]:
    """Factors, labels, risk target, missingness and report text of case ``index`` (0-based)."""
    cfg = config
    rng = _case_rng(cfg.seed, index, 0)
    age = int(rng.integers(40, 86))
    sex = "M" if rng.random() < 0.5 else "F"
    smoking = str(rng.choice(["never", "former", "current"], p=[0.5, 0.2, 0.3]))
    pack_years = int(rng.integers(10, 61)) if smoking != "never" else 0
    infection = bool(rng.random() < cfg.p_infection)
    weight_loss = bool(rng.random() < 0.2)
    dyspnea = bool(rng.random() < 0.35)
    lesion = bool(rng.random() < cfg.p_lesion)
    diameter = float(rng.uniform(16.0, 44.0))
    lesion_lobe = _LOBES[int(rng.integers(len(_LOBES)))]
    consolidation = bool(rng.random() < cfg.p_consolidation)
    cons_side = "right" if rng.random() < 0.5 else "left"
    cons_radii = [float(x) for x in rng.uniform(22.0, 38.0, size=3)]
    effusion = bool(rng.random() < 0.25)
    eff_side = ("left", "right", "both")[int(rng.integers(3))]
    emphysema = bool(rng.random() < (0.45 if smoking != "never" else 0.15))
    cardiomegaly = bool(rng.random() < 0.25)
    heart_scale = float(rng.uniform(1.3, 1.5) if cardiomegaly else rng.uniform(0.9, 1.1))
    smoker = smoking != "never"
    factors = {
        "age": age,
        "sex": sex,
        "smoking": smoking,
        "pack_years": pack_years,
        "infection": infection,
        "weight_loss": weight_loss,
        "dyspnea": dyspnea,
        "lesion": lesion,
        "lesion_diameter_mm": round(diameter, 2) if lesion else 0.0,
        "lesion_lobe": lesion_lobe if lesion else None,
        "consolidation": consolidation,
        "consolidation_side": cons_side if consolidation else None,
        "consolidation_radii_mm": [round(r, 2) for r in cons_radii] if consolidation else None,
        "effusion": eff_side if effusion else None,
        "emphysema": emphysema,
        "cardiomegaly": cardiomegaly,
        "heart_scale": round(heart_scale, 4),
    }
    clean = {
        "emphysema": int(emphysema),
        "cardiomegaly": int(cardiomegaly),
        "pleural_effusion": int(effusion),
        "consolidation": int(consolidation),
        "lung_lesion": int(lesion),
        "smoking_history": int(smoker),
        "dyspnea": int(dyspnea),
        "pneumonia": int(consolidation and infection),
        "suspected_malignancy": int(lesion and (smoker or weight_loss)),
    }
    # noise draws of the first seven labels come here and those of the image-evidence labels
    # added later (consolidation, lung_lesion) after the missingness draw, so that every other
    # draw of a case is the same as in the original seven-label cohort
    flips = {k: bool(rng.random() < cfg.label_noise) for k in clean if k not in _ADDED_LABELS}
    eta = (
        1.4 * (diameter / 30.0 if lesion else 0.0)
        + 0.9 * emphysema
        + 0.9 * cardiomegaly
        + 0.6 * effusion
        + 0.6 * consolidation
        + 1.1 * (smoking == "current")
        + 0.5 * (smoking == "former")
        + 1.3 * weight_loss
        + 0.5 * dyspnea
        + 0.03 * (age - 65)
    )
    t_event = float(rng.exponential(1.0 / (0.004 * math.exp(2.0 * eta))))
    t_censor = float(rng.uniform(2.0, 10.0))
    report_present, image_present = draw_presence(rng, cfg)
    flips.update({k: bool(rng.random() < cfg.label_noise) for k in _ADDED_LABELS})
    noisy = {k: int(v ^ flips[k]) for k, v in clean.items()}
    writer = {2: write_report, 3: write_report_v3, 4: write_report_v4}[cfg.grammar]
    text = writer(factors, _case_rng(cfg.seed, index, 1), cfg.mention_rate, index + 1)
    return {
        "index": index,
        "case": f"case_{index + 1:05d}",
        "seed": int(np.random.SeedSequence([cfg.seed, index, 0xF05E]).generate_state(1)[0]),
        "factors": factors,
        "eta": round(eta, 6),
        "labels": noisy,
        "labels_clean": clean,
        "time": round(min(t_event, t_censor), 6),
        "event": int(t_event <= t_censor),
        "report_present": report_present,
        "image_present": image_present,
        "report": text,
    }


# -- report grammar --------------------------------------------------------------------------------
_FEVER_POS = (
    "Fever and productive cough for {d} days.",
    "Febrile to 38.{t} C with cough productive of purulent sputum.",
    "Pyrexia and productive cough.",
    "Reports fevers, chills and a wet cough for {d} days.",
)
_FEVER_HEDGE = ("Possible low-grade fever at home, with cough.", "Questionable fevers and cough.")
_FEVER_NEG = ("Afebrile.", "Denies fever or chills.", "No fever.", "No cough or fever reported.")
_SMOKE = {
    "current": (
        "Current smoker, {p} pack-years.",
        "Active smoker ({p} pack-years).",
        "Smokes one pack per day; {p} pack-year history.",
        "Smoker, screening.",
        "Smoker, {p} pack-years.",
        "Lung cancer screening; current smoker.",
    ),
    "former": (
        "Former smoker, {p} pack-years, quit {y} years ago.",
        "Ex-smoker ({p} pack-years).",
        "Quit smoking {y} years ago after {p} pack-years.",
        "Former smoker.",
    ),
    "never": ("Never smoker.", "Non-smoker.", "Denies tobacco use.", "Lifelong non-smoker."),
}
_WEIGHT_POS = (
    "Unintentional weight loss of {k} kg over {m} months.",
    "Reports weight loss.",
    "Weight loss.",
    "Loss of appetite and {k} kg weight loss.",
)
_WEIGHT_NEG = ("No weight loss.", "Weight stable.", "Denies weight loss.")
_DYSP_POS = (
    "Shortness of breath on exertion.",
    "Shortness of breath.",
    "Progressive dyspnea.",
    "Dyspnoea at rest.",
    "Breathlessness climbing one flight of stairs.",
)
_DYSP_NEG = ("No shortness of breath.", "Denies dyspnea.", "Breathing comfortably.")
#: history that bears on no label (one in three reports carries one)
_NEUTRAL = (
    "Chest pain.",
    "Cough for three weeks.",
    "Follow-up of abnormal chest radiograph.",
    "Staging.",
    "Pre-operative assessment.",
)
#: the words of an effusion's side (``factors["effusion"]``) in a report
_EFFUSION_SIDE = {"both": "bilateral", "left": "left", "right": "right"}
_COMPARISON = (
    "None.",
    "None available.",
    "Chest radiograph from {y} months ago.",
    "CT chest of {yr}, not available for direct comparison.",
)


def _assemble_report(
    rng: np.random.Generator,
    history: str,
    findings: Sequence[str],
    impression: Sequence[str],
    case_number: int,
    technique: str = "Axial CT images of the chest without intravenous contrast.",
) -> str:
    """The report text the grammars share: sections around the FINDINGS lines and numbered
    IMPRESSION items (the comparison sentence is drawn here, after the findings, in all)."""
    comparison = _pick(rng, _COMPARISON).format(
        y=int(rng.integers(2, 24)), yr=int(rng.integers(2015, 2024))
    )
    return report_text(
        exam="CT CHEST WITHOUT CONTRAST",
        history=history,
        technique=technique,
        comparison=comparison,
        findings=findings,
        impression=impression,
        footer=f"Synthetic report for medfuse fusion cohort case {case_number:05d}; not a real "
        "patient.",
    )


def write_report(
    factors: dict[str, Any], rng: np.random.Generator, mention_rate: float, case_number: int
) -> str:
    """A referral-style chest CT report for ``factors`` (see the module docstring)."""
    f = factors
    who = f"{f['age']}-year-old {'man' if f['sex'] == 'M' else 'woman'}"
    hist: list[str] = []
    if f["infection"]:
        tpl = _pick(rng, _FEVER_HEDGE) if rng.random() < 0.15 else _pick(rng, _FEVER_POS)
    else:
        tpl = _pick(rng, _FEVER_NEG) if rng.random() < 0.7 else ""
    hist.append(tpl.format(d=int(rng.integers(2, 15)), t=int(rng.integers(1, 10))))
    if rng.random() < 0.9:
        hist.append(
            _pick(rng, _SMOKE[f["smoking"]]).format(p=f["pack_years"], y=int(rng.integers(1, 30)))
        )
    if f["weight_loss"]:
        hist.append(
            _pick(rng, _WEIGHT_POS).format(k=int(rng.integers(3, 15)), m=int(rng.integers(2, 9)))
        )
    elif rng.random() < 0.5:
        hist.append(_pick(rng, _WEIGHT_NEG))
    if f["dyspnea"]:
        hist.append(_pick(rng, _DYSP_POS))
    elif rng.random() < 0.6:
        hist.append(_pick(rng, _DYSP_NEG))
    if rng.random() < 1 / 3:
        hist.append(_pick(rng, _NEUTRAL))
    order = [h for h in hist if h]
    rng.shuffle(order)
    history = f"{who}. " + " ".join(order)

    findings: list[str] = []
    impression: list[str] = []

    def mention() -> bool:
        return bool(rng.random() < mention_rate)

    if f["lesion"] and mention():
        d = round(f["lesion_diameter_mm"])
        kind = "mass" if d > 30 else "nodule"
        findings.append(f"There is a {d} mm {kind} in the {f['lesion_lobe']}.")
        impression.append(f"{d} mm {f['lesion_lobe']} {kind}.")
    elif not f["lesion"] and mention():
        findings.append("No pulmonary nodule or mass.")
    if f["consolidation"] and mention():
        if rng.random() < 0.4:
            findings.append(
                f"Possible airspace opacity in the {f['consolidation_side']} lung, "
                "which may represent consolidation."
            )
        else:
            findings.append(f"Consolidation in the {f['consolidation_side']} lung.")
    elif not f["consolidation"] and mention():
        findings.append(_pick(rng, ("No consolidation.", "The lungs are clear of consolidation.")))
    if f["effusion"] and mention():
        side = _EFFUSION_SIDE[f["effusion"]]
        findings.append(f"Small {side} pleural effusion.")
    elif not f["effusion"] and mention():
        findings.append("No pleural effusion.")
    if f["emphysema"] and mention():
        findings.append(_pick(rng, ("Centrilobular emphysema.", "Emphysematous changes.")))
    elif not f["emphysema"] and mention():
        findings.append("No emphysema.")
    if f["cardiomegaly"] and mention():
        findings.append(_pick(rng, ("The heart is enlarged.", "Cardiomegaly.")))
    elif not f["cardiomegaly"] and mention():
        findings.append("Heart size is normal.")
    if rng.random() < 0.3:
        findings.append("Unchanged appearance compared with the prior examination.")
    findings.append(
        _pick(
            rng,
            (
                "The central airways are patent.",
                "No mediastinal lymphadenopathy.",
                "No acute osseous abnormality.",
            ),
        )
    )
    if not impression:
        impression.append(
            _pick(
                rng,
                (
                    "Please correlate with the clinical findings.",
                    "Preliminary read; see final report.",
                    "Findings as above.",
                ),
            )
        )
    return _assemble_report(rng, history, [" ".join(findings)], impression, case_number)


# -- report grammar 3: no shortcuts -----------------------------------------------------------------
# Every token that is not a word of a finding must say nothing about the labels
# (benchmarks/shortcut_audit.py): each history fact is stated for positive and negative cases at
# the same rate, with the same punctuation and numbers on both sides; image references
# "(series s, image n)" follow any FINDINGS sentence, positive, negative or neutral; an absent
# finding that is mentioned gets its impression item as a present one does; the neutral
# sentences and the organ-system headings of the sample reports are shared by all reports; the
# order of the findings varies.
_V3_FEVER_POS = (
    "Fever and productive cough for {d} days.",
    "Febrile, with cough productive of purulent sputum.",
    "Pyrexia and productive cough.",
    "Reports fevers, chills and wet cough for {d} days.",
)
_V3_FEVER_HEDGE = (
    "Possible low-grade fever at home, with cough.",
    "Questionable fevers and cough.",
)
_V3_FEVER_NEG = (
    "Afebrile.",
    "Denies fever or chills.",
    "No fever or cough for {d} days.",
    "Afebrile, without productive cough.",
)
_V3_SMOKE = {
    "current": (
        "Current smoker, {p} pack-years.",
        "Active smoker ({p} pack-years).",
        "Smokes one pack per day, {p} pack-year history.",
        "Smoker, screening.",
        "Lung cancer screening; current smoker.",
    ),
    "former": (
        "Former smoker, {p} pack-years, quit {y} years ago.",
        "Ex-smoker ({p} pack-years).",
        "Former smoker; quit {y} years ago after {p} pack-years.",
        "Former smoker.",
    ),
    "never": (
        "Never smoker; {p} years of passive smoke exposure.",
        "Non-smoker ({p} years of passive exposure).",
        "Denies tobacco use, never smoked.",
        "Lifelong non-smoker, {p} years of passive exposure.",
        "Never smoker, screening.",
    ),
}
_V3_WEIGHT_POS = (
    "Unintentional weight loss of {k} kg over {m} months.",
    "Reports weight loss.",
    "Weight loss.",
    "Loss of appetite, {k} kg weight loss.",
)
_V3_WEIGHT_NEG = (
    "No weight loss over {m} months.",
    "Weight stable.",
    "Denies weight loss.",
    "Appetite normal, no weight loss.",
)
_V3_DYSP_POS = (
    "Shortness of breath on exertion.",
    "Shortness of breath.",
    "Progressive dyspnea.",
    "Dyspnoea at rest.",
    "Breathlessness climbing one flight of stairs.",
)
_V3_DYSP_NEG = (
    "No shortness of breath.",
    "Denies dyspnea.",
    "No shortness of breath on exertion.",
    "Climbs one flight of stairs without breathlessness.",
    "Breathing comfortably.",
)
_V3_FILLER = (
    "The central airways are patent.",
    "No mediastinal lymphadenopathy.",
    "No acute osseous abnormality.",
    "No pneumothorax.",
    "No pericardial effusion.",
)
_V3_IMPRESSION_FILLER = (
    "Please correlate with the clinical findings.",
    "Preliminary read; see final report.",
    "Findings as above.",
)


def _image_ref(rng: np.random.Generator) -> str:
    return f" (series {int(rng.integers(1, 4))}, image {int(rng.integers(5, 61))})"


def _v3_history(f: dict[str, Any], rng: np.random.Generator) -> str:
    """The CLINICAL HISTORY of grammars 3 and 4: each fact stated for both polarities."""
    who = f"{f['age']}-year-old {'man' if f['sex'] == 'M' else 'woman'}"
    nums = {
        "d": int(rng.integers(2, 15)),
        "k": int(rng.integers(3, 15)),
        "m": int(rng.integers(2, 9)),
        "y": int(rng.integers(1, 30)),
        "p": f["pack_years"] or int(rng.integers(10, 61)),
    }
    hist: list[str] = []
    if f["infection"]:
        hist.append(_pick(rng, _V3_FEVER_HEDGE if rng.random() < 0.15 else _V3_FEVER_POS))
    else:
        hist.append(_pick(rng, _V3_FEVER_NEG))
    if rng.random() < 0.9:
        hist.append(_pick(rng, _V3_SMOKE[f["smoking"]]))
    hist.append(_pick(rng, _V3_WEIGHT_POS if f["weight_loss"] else _V3_WEIGHT_NEG))
    hist.append(_pick(rng, _V3_DYSP_POS if f["dyspnea"] else _V3_DYSP_NEG))
    if rng.random() < 1 / 3:
        hist.append(_pick(rng, _NEUTRAL))
    hist = [h.format(**nums) for h in hist]
    rng.shuffle(hist)
    return f"{who}. " + " ".join(hist)


def _with_image_refs(rng: np.random.Generator, sentences: list[str]) -> list[str]:
    """Image references "(series s, image n)" on about a third of ``sentences``, whatever they say."""
    return [s[:-1] + _image_ref(rng) + "." if rng.random() < 0.35 else s for s in sentences]


def _findings_body(
    rng: np.random.Generator,
    lungs: list[str],
    heart: list[str],
    fillers: list[str],
    pleura: list[str] | None = None,
) -> list[str]:
    """The FINDINGS lines of grammars 3 and 4: a comparison sentence in three reports of ten,
    image references on any sentence (positive, negative or neutral alike), then either the
    organ-system layout of the sample reports (with a "Pleura:" heading when ``pleura`` is given)
    or one paragraph in a shuffled order."""
    fillers = list(fillers)
    if rng.random() < 0.3:
        fillers.append("Unchanged appearance compared with the prior examination.")
    lungs = _with_image_refs(rng, lungs)
    fillers = _with_image_refs(rng, fillers)
    rng.shuffle(lungs)
    if rng.random() >= 0.5:
        sentences = lungs + (pleura or []) + heart + fillers
        rng.shuffle(sentences)
        return [" ".join(sentences)]
    groups: list[tuple[str, list[str], str]] = [
        ("Lungs and airways: ", list(lungs), "The lungs are aerated."),
        ("Pleura: ", list(pleura or []), "No pneumothorax."),
        ("Heart and mediastinum: ", list(heart), "No mediastinal mass."),
        ("Bones and soft tissues: ", [], "No acute osseous abnormality."),
    ]
    if pleura is None:
        del groups[1]
    for x in fillers:
        low = x.lower()
        if "osseous" in low:
            where = "Bones"
        elif "pneumothorax" in low and pleura is not None:
            where = "Pleura"
        elif any(w in low for w in ("mediastin", "pericard", "aorta", "artery")):
            where = "Heart"
        else:
            where = "Lungs"
        next(g for g in groups if g[0].startswith(where))[1].append(x)
    return [head + " ".join(parts or [empty]) for head, parts, empty in groups]


def write_report_v3(
    factors: dict[str, Any], rng: np.random.Generator, mention_rate: float, case_number: int
) -> str:
    """A referral-style chest CT report in grammar 3 (the comment above): the same facts as
    :func:`write_report`, without tokens that tell a label apart other than the facts' words."""
    f = factors
    history = _v3_history(f, rng)

    lungs: list[str] = []  # (sentence) per organ system, in a shuffled order below
    heart: list[str] = []
    impression: list[str] = []

    def mention() -> bool:
        return bool(rng.random() < mention_rate)

    if mention():
        if f["lesion"]:
            d = round(f["lesion_diameter_mm"])
            kind = "mass" if d > 30 else "nodule"
            lungs.append(f"There is a {d} mm {kind} in the {f['lesion_lobe']}.")
            impression.append(f"{d} mm {f['lesion_lobe']} {kind}.")
        else:
            lungs.append("No pulmonary nodule or mass.")
            impression.append("No pulmonary nodule or mass.")
    if mention():
        lungs.append(_consolidation_sentence(f, rng))
    if mention():
        if f["effusion"]:
            side = _EFFUSION_SIDE[f["effusion"]]
            lungs.append(f"Small {side} pleural effusion.")
        else:
            lungs.append("No pleural effusion.")
    if mention():
        if f["emphysema"]:
            lungs.append(_pick(rng, ("Centrilobular emphysema.", "Emphysematous changes.")))
        else:
            lungs.append("No emphysema.")
    if mention():
        if f["cardiomegaly"]:
            heart.append(_pick(rng, ("The heart is enlarged.", "Cardiomegaly.")))
        else:
            heart.append("Heart size is normal.")
    k = int(rng.integers(1, 3))
    fillers = [str(x) for x in rng.choice(_V3_FILLER, size=k, replace=False)]
    body = _findings_body(rng, lungs, heart, fillers)
    if not impression or rng.random() < 0.5:
        impression.append(_pick(rng, _V3_IMPRESSION_FILLER))
    return _assemble_report(rng, history, body, impression, case_number)


def _consolidation_sentence(f: dict[str, Any], rng: np.random.Generator) -> str:
    """Grammars 3 and 4: a mentioned consolidation, stated, hedged (two in five) or negated."""
    if not f["consolidation"]:
        return _pick(rng, ("No consolidation.", "The lungs are clear of consolidation."))
    if rng.random() < 0.4:
        return (
            f"Possible airspace opacity in the {f['consolidation_side']} lung, "
            "which may represent consolidation."
        )
    return f"Consolidation in the {f['consolidation_side']} lung."


# -- report grammar 4: grammar 3 in the wording of real and sample reports --------------------------
# Grammar 3 wrote "mm" only in lesion sentences and one technique line without a slice
# thickness, so the demo model trained on it read "reconstructed at 5 mm." in the sample reports
# as lesion evidence. Grammar 4 keeps grammar 3's rules (the comment above) and adds what real
# chest CT reports carry: technique lines with a slice thickness, measurements that are not
# lesions (great vessels, lymph nodes), the phrasings of the sample reports ("solid pulmonary
# nodule", "spiculated mass", "measuring", follow-up recommendations), impression items for
# every mentioned finding, positive or negative, and a "Pleura:" heading.
_V4_TECHNIQUE = (
    "Axial CT images of the chest without intravenous contrast.",
    "Axial CT images of the chest were obtained without intravenous contrast and reconstructed at"
    " {t} mm.",
    "Helical CT of the chest without intravenous contrast, {t} mm axial reconstructions.",
    "Low-dose CT of the chest without contrast, {t} mm slices.",
    "Contiguous {t} mm axial images of the chest without intravenous contrast, with coronal and"
    " sagittal reformats.",
)
_V4_THICKNESS_MM = ("0.625", "1", "1.25", "1.5", "2", "2.5", "3", "5")
#: measurements that are not lesions, written in any report (the numbers are in mm)
_V4_MEASURED = (
    ("The main pulmonary artery measures {n} mm.", 22, 31),
    ("The ascending aorta measures {n} mm.", 28, 39),
    ("Mediastinal lymph nodes measure up to {n} mm in short axis.", 4, 10),
    ("The trachea measures {n} mm in transverse diameter.", 14, 23),
)
_V4_LESION = (
    "There is {a} {d} mm {adj}{kind} in the {lobe}.",
    "{Lobe} {adj}{kind} measuring {d} mm.",
    "A {d} mm {adj}{kind} is seen in the {lobe}.",
    "{d} mm {adj}{kind} in the {lobe}.",
)
_V4_ADJECTIVES = {
    "nodule": ("", "solid ", "solid pulmonary ", "pulmonary ", "part-solid ", "lobulated "),
    "mass": ("", "spiculated ", "lobulated ", "pulmonary "),
}
_V4_FOLLOW_UP = {
    "nodule": "Follow-up CT in 3 months is recommended.",
    "mass": "Tissue sampling is recommended.",
}
_V4_NO_LESION = (
    "No pulmonary nodule or mass.",
    "No focal lesion. No pulmonary nodule or mass.",
    "No suspicious pulmonary nodule.",
)


def write_report_v4(
    factors: dict[str, Any], rng: np.random.Generator, mention_rate: float, case_number: int
) -> str:
    """A chest CT report in grammar 4 (the comment above): grammar 3's facts and history in the
    wording of real and sample reports."""
    f = factors
    history = _v3_history(f, rng)
    lungs: list[str] = []
    pleura: list[str] = []
    heart: list[str] = []
    impression: list[str] = []

    def mention() -> bool:
        return bool(rng.random() < mention_rate)

    def impress(positive: str, negative: str, present: bool) -> None:
        if rng.random() < 0.5:  # the same rate for both polarities
            impression.append(positive if present else negative)

    if mention():
        if f["lesion"]:
            d = round(f["lesion_diameter_mm"])
            kind = "mass" if d > 30 else "nodule"
            lobe = f["lesion_lobe"]
            adj = _pick(rng, _V4_ADJECTIVES[kind])
            sentence = _pick(rng, _V4_LESION).format(
                a=article(d), d=d, adj=adj, kind=kind, lobe=lobe, Lobe=lobe.capitalize()
            )
            lungs.append(sentence)
            item = f"{d} mm {lobe} {adj}{kind}."
            if rng.random() < 0.5:
                item += " " + _V4_FOLLOW_UP[kind]
            impression.append(item)
        else:
            lungs.append(_pick(rng, _V4_NO_LESION))
            impression.append(_pick(rng, ("No pulmonary nodule or mass.", "No focal lesion.")))
    if mention():
        lungs.append(_consolidation_sentence(f, rng))
    if mention():
        positive = ""
        if f["effusion"]:
            plural = "s" if f["effusion"] == "both" else ""
            positive = f"Small {_EFFUSION_SIDE[f['effusion']]} pleural effusion{plural}."
        negatives = ("No pleural effusion.", "No pleural effusion or pneumothorax.")
        pleura.append(positive or _pick(rng, negatives))
        impress(positive, "No pleural effusion.", bool(f["effusion"]))
    if mention():
        if f["emphysema"]:
            lungs.append(
                _pick(
                    rng,
                    (
                        "Centrilobular emphysema.",
                        "Emphysematous changes.",
                        "There is diffuse centrilobular emphysema.",
                    ),
                )
            )
        else:
            lungs.append("No emphysema.")
        impress("Emphysema.", "No emphysema.", f["emphysema"])
    if mention():
        if f["cardiomegaly"]:
            heart.append(_pick(rng, ("The heart is enlarged.", "Cardiomegaly.")))
        else:
            heart.append(_pick(rng, ("Heart size is normal.", "The heart is normal in size.")))
        impress("Cardiomegaly.", "Normal heart size.", f["cardiomegaly"])
    measured = [
        m.format(n=int(rng.integers(lo, hi)))
        for m, lo, hi in (_V4_MEASURED[i] for i in rng.permutation(len(_V4_MEASURED)))
        if rng.random() < 0.3
    ]
    k = int(rng.integers(1, 3))
    fillers = [str(x) for x in rng.choice(_V3_FILLER, size=k, replace=False)] + measured
    if any("pneumothorax" in x for x in pleura):  # said once
        fillers = [x for x in fillers if "pneumothorax" not in x]
    body = _findings_body(rng, lungs, heart, fillers, pleura)
    if not impression or rng.random() < 0.5:
        impression.append(_pick(rng, _V3_IMPRESSION_FILLER))
    technique = _pick(rng, _V4_TECHNIQUE).format(t=_pick(rng, _V4_THICKNESS_MM))
    return _assemble_report(rng, history, body, impression, case_number, technique=technique)


# -- images ----------------------------------------------------------------------------------------
def render_case(case: dict[str, Any], shape: Sequence[int] = (64, 64, 48)):
    """The case's chest CT: ``(array int16 HU [X, Y, Z], geometry)`` (axial HFS)."""
    arr, geometry, _ = render_case_with_masks(case, shape)
    return arr, geometry


def render_case_with_masks(case: dict[str, Any], shape: Sequence[int] = (64, 64, 48)):
    """The case's chest CT and its focal findings: ``(array, geometry, masks)``; ``masks`` maps
    ``"lung_lesion"`` and ``"consolidation"`` to boolean arrays on the same grid (the voxels
    whose centre lies in the lesion sphere / the painted consolidation; all False when the case
    has no such finding) and ``"lesion_sphere_ras"`` to ``(centre RAS mm, radius mm)`` or None."""
    from ..synth.cohort import default_spacing
    from ..synth.geometry import make_geometry
    from ..synth.phantom import ChestPhantom, Lesion

    f = case["factors"]
    shape_t = tuple(int(s) for s in shape)
    geometry = make_geometry(
        shape_t, default_spacing("chest_ct", shape_t), orientation="axial",
        patient_position="HFS", center_lps=_GRID_CENTER,
    )  # fmt: skip
    rng = np.random.default_rng(np.random.SeedSequence([case["seed"], 0x1A6E]))
    anatomy = np.asarray(_GRID_CENTER) + rng.uniform(-8.0, 8.0, size=3)
    kw = {
        "seed": int(case["seed"]) % (2**31),
        "heart_scale": float(f["heart_scale"]),
        "effusion": f["effusion"],
        "emphysema": bool(f["emphysema"]),
        "anatomy_center_lps": anatomy,
    }
    base = ChestPhantom(geometry, **kw)
    lps = _grid_lps(geometry, shape_t)
    lesions = []
    if f["lesion"]:
        r = f["lesion_diameter_mm"] / 2.0
        ijk = _place_in_aerated_lung(base, geometry, lps, rng, r, f["lesion_lobe"])
        kind = "mass" if f["lesion_diameter_mm"] > 30 else "nodule"
        lesions.append(Lesion(radius_mm=r, center_ijk=tuple(float(v) for v in ijk), kind=kind))
    phantom = ChestPhantom(geometry, lesions=lesions, **kw) if lesions else base
    arr = np.ascontiguousarray(phantom.volume(workers=1))
    masks: dict[str, Any] = {
        "lung_lesion": np.zeros(arr.shape, dtype=bool),
        "consolidation": np.zeros(arr.shape, dtype=bool),
        "lesion_sphere_ras": None,
    }
    if lesions:
        c = phantom.lesion_centres_lps()[0]
        r = lesions[0].radius_mm
        masks["lung_lesion"] = (((lps - c) ** 2).sum(1) <= r * r).reshape(arr.shape)
        masks["lesion_sphere_ras"] = ((-float(c[0]), -float(c[1]), float(c[2])), float(r))
    if f["consolidation"]:
        keep_clear = (phantom.lesion_centres_lps()[0], lesions[0].radius_mm) if lesions else None
        masks["consolidation"] = _paint_consolidation(arr, phantom, lps, f, rng, keep_clear)
    return arr, geometry, masks


#: Tries at placing a lesion in aerated lung / a consolidation covering enough of its ellipsoid.
_PLACEMENT_TRIES = 20
#: Aerated lung is below this HU (lung -850 / -925; fluid, soft tissue and bone are above).
_AERATED_HU = -500
#: A consolidation keeps this many mm of aerated lung around a lesion (the lesion stays a nodule).
_LESION_CLEARANCE_MM = 6.0
#: Mean HU of a consolidation (patchy, sd 60 HU): airspace opacity with the air bronchograms
#: of 5-6 mm voxels' partial volume, below the homogeneous 30 HU of a solid lesion.
_CONSOLIDATION_HU = -100.0


def _place_in_aerated_lung(base, geometry, lps, rng, radius: float, lobe: str | None):
    """A lesion centre (voxel index) in ``lobe`` whose sphere, plus 2 mm, lies in aerated lung of
    the lesion-free phantom ``base`` — not in a pleural effusion, where a soft-tissue lesion
    would be invisible. After :data:`_PLACEMENT_TRIES` tries the most aerated candidate wins;
    a lobe without room falls back to any lobe."""
    from ..synth.cohort import _place

    arr = base.volume(workers=1).ravel()
    best, best_frac = None, -1.0
    for attempt in range(_PLACEMENT_TRIES):
        try:
            ijk = _place(base, geometry, rng, radius, lobe if attempt < 10 else None, [])
        except ConfigError:
            ijk = _place(base, geometry, rng, radius, None, [])
        centre = geometry.ijk_to_lps(np.asarray(ijk, dtype=float)[None])[0]
        inside = ((lps - centre) ** 2).sum(1) <= (radius + 2.0) ** 2
        frac = float((arr[inside] < _AERATED_HU).mean()) if inside.any() else 0.0
        if frac > best_frac:
            best, best_frac = ijk, frac
        if frac == 1.0:
            break
    return best


def _to_model_grid(mask: np.ndarray, record: Any) -> np.ndarray:
    """A boolean mask on the original grid -> uint8 on the model grid of ``record``
    (nearest neighbour; voxels outside the original field of view are 0)."""
    shape = tuple(int(v) for v in record.output_shape[-3:])
    ii, jj, kk = np.meshgrid(*(np.arange(n) for n in shape), indexing="ij")
    ijk = np.stack([ii.ravel(), jj.ravel(), kk.ravel(), np.ones(ii.size)], 0)
    src = np.rint(np.asarray(record.model_to_original)[:3] @ ijk).astype(np.int64)
    ok = np.all((src >= 0) & (src < np.asarray(mask.shape)[:, None]), 0)
    out = np.zeros(ii.size, dtype=np.uint8)
    out[ok] = mask[src[0, ok], src[1, ok], src[2, ok]]
    return out.reshape(shape)


def _grid_lps(geometry, shape: Sequence[int]) -> np.ndarray:
    nx, ny, nz = (int(s) for s in shape)
    ii, jj, kk = np.meshgrid(np.arange(nx), np.arange(ny), np.arange(nz), indexing="ij")
    return geometry.ijk_to_lps(np.stack([ii.ravel(), jj.ravel(), kk.ravel()], 1))


def _paint_consolidation(
    arr, phantom, lps, f: dict[str, Any], rng, keep_clear: tuple[np.ndarray, float] | None = None
) -> np.ndarray:
    """Raise an ellipsoid of aerated lung in one lung to ~-100 HU (patchy), in place; returns the
    painted mask. The centre is redrawn (up to :data:`_PLACEMENT_TRIES` times, keeping the
    largest) until at least half of the ellipsoid is painted, so that a consolidation is never
    a sliver at the lung's edge; ``keep_clear`` = (lesion centre LPS, radius) keeps
    :data:`_LESION_CLEARANCE_MM` of aerated lung around a lesion."""
    lab = phantom.lung_label(lps).reshape(arr.shape)
    want = -1 if f["consolidation_side"] == "right" else 1
    lung = (lab == want) & (arr < _AERATED_HU)
    if keep_clear is not None:
        c, r = keep_clear
        near = ((lps - c) ** 2).sum(1) <= (r + _LESION_CLEARANCE_MM) ** 2
        lung &= ~near.reshape(arr.shape)
    cand = np.flatnonzero(lung.ravel())
    if cand.size == 0:
        return np.zeros(arr.shape, dtype=bool)
    radii = np.asarray(f["consolidation_radii_mm"], dtype=float)
    full = 4.0 / 3.0 * np.pi * np.prod(radii) / float(np.prod(phantom.geometry.spacing))
    region = np.zeros(arr.shape, dtype=bool)
    for _ in range(_PLACEMENT_TRIES):
        centre = lps[cand[int(rng.integers(cand.size))]]
        q = (((lps - centre) / radii) ** 2).sum(1).reshape(arr.shape)
        trial = lung & (q <= 1.0)
        if trial.sum() > region.sum():
            region = trial
        if region.sum() >= 0.5 * full:
            break
    vals = rng.normal(_CONSOLIDATION_HU, 60.0, size=int(region.sum()))
    arr[region] = np.clip(np.rint(vals), -400, 100).astype(np.int16)
    return region


# -- the cohort ------------------------------------------------------------------------------------
class CohortCases:
    """What every cohort derives from its list of drawn cases (``self.cases``: dicts with
    ``image_present``, ``report_present``, ``report``, ``labels`` and ``labels_clean``)."""

    cases: list[dict[str, Any]]

    def __len__(self) -> int:
        return len(self.cases)

    @property
    def labels(self) -> list[str]:
        raise NotImplementedError

    def label_matrix(self, clean: bool = False, names: Sequence[str] | None = None) -> np.ndarray:
        """[cases, labels] 0/1, columns in the order of ``names`` (default :attr:`labels`):
        pass a model's labels so that columns match its outputs."""
        key = "labels_clean" if clean else "labels"
        cols = tuple(names) if names is not None else tuple(self.labels)
        return np.asarray([[c[key][k] for k in cols] for c in self.cases], np.float32)

    def image_present(self) -> np.ndarray:
        return np.asarray([c["image_present"] for c in self.cases], dtype=bool)

    def report_present(self) -> np.ndarray:
        return np.asarray([c["report_present"] for c in self.cases], dtype=bool)

    def reports(self, *, drop_missing: bool = True) -> list[str | None]:
        """Report texts (``None`` where the report is missing, unless ``drop_missing`` is False)."""
        return [
            c["report"] if (c["report_present"] or not drop_missing) else None for c in self.cases
        ]


class FusionCohort(CohortCases):
    """Drawn cases (metadata + report text) with lazily generated, cached model inputs."""

    def __init__(
        self, config: FusionCohortConfig, cases: list[dict[str, Any]], folder: Path | None = None
    ):
        self.config = config
        self.cases = cases
        self.folder = folder
        #: whether the reports were written by this version of the grammar
        self.current = True
        self._inputs: dict[str, np.ndarray] = {}

    @property
    def labels(self) -> list[str]:
        return list(FUSION_LABELS)

    @property
    def times(self) -> np.ndarray:
        return np.asarray([c["time"] for c in self.cases], dtype=np.float32)

    @property
    def events(self) -> np.ndarray:
        return np.asarray([c["event"] for c in self.cases], dtype=np.float32)

    @property
    def eta(self) -> np.ndarray:
        return np.asarray([c["eta"] for c in self.cases], dtype=np.float64)

    def volume(self, i: int):
        """Case ``i`` as a :class:`~medfuse.types.Volume` (CT, HU, RAS affine)."""
        from ..types import Volume

        arr, geometry = render_case(self.cases[i], self.config.shape)
        return Volume(array=arr, affine=geometry.affine_ras, modality="CT", units="HU")

    def finding_masks(self, i: int) -> dict[str, Any]:
        """Ground truth of case ``i``'s focal findings on the grid of :meth:`volume`: boolean
        ``"lung_lesion"`` and ``"consolidation"`` arrays and ``"lesion_sphere_ras"`` (see
        :func:`render_case_with_masks`)."""
        return render_case_with_masks(self.cases[i], self.config.shape)[2]

    def _cache_key(self, cfg: Any) -> str:
        from ..transforms import PREPROCESS_VERSION

        return hashlib.sha256(
            json.dumps(
                {
                    "pre": cfg.to_dict(),
                    "pre_version": PREPROCESS_VERSION,
                    "cohort": self.config.fingerprint(),
                    "n": len(self),
                    "image_version": IMAGE_VERSION,
                },
                sort_keys=True,
                default=str,
            ).encode()
        ).hexdigest()[:16]

    def inputs(
        self,
        preprocessing: Any,
        *,
        progress: Callable[[int, int], None] | None = None,
        cache: bool = True,
    ) -> np.ndarray:
        """Model inputs ``[N, C, X, Y, Z]`` (float16) for a preprocessing config (a
        :class:`~medfuse.transforms.PreprocessingConfig` or its dict), generated once and cached
        in memory and, when the cohort has a folder, on disk."""
        return self._generate(preprocessing, (), progress, cache)[0]

    def finding_maps(
        self,
        preprocessing: Any,
        findings: Sequence[str] = ("lung_lesion", "consolidation"),
        *,
        progress: Callable[[int, int], None] | None = None,
        cache: bool = True,
    ) -> np.ndarray:
        """The finding masks (:meth:`finding_masks`) on each case's *model* grid (the grid of
        :meth:`inputs` for the same preprocessing; nearest-neighbour), ``[N, K, X, Y, Z]``
        uint8 for ``findings`` in order; generated together with the inputs and cached the same
        way. Used for auxiliary finding-map training."""
        return self._generate(preprocessing, tuple(findings), progress, cache)[1]

    def _generate(
        self,
        preprocessing: Any,
        findings: tuple[str, ...],
        progress: Callable[[int, int], None] | None,
        cache: bool,
    ) -> tuple[np.ndarray, np.ndarray | None]:
        from ..transforms import PreprocessingConfig, preprocess

        bad = [f for f in findings if f not in ("lung_lesion", "consolidation")]
        if bad:
            raise ConfigError(f"no finding masks for {bad}; known: lung_lesion, consolidation")
        cfg = (
            preprocessing
            if isinstance(preprocessing, PreprocessingConfig)
            else PreprocessingConfig.from_dict(dict(preprocessing))
        )
        key = self._cache_key(cfg)
        mkey = f"{key}_{'-'.join(findings)}" if findings else None
        folder = self.folder if cache else None
        x_path = folder / f"inputs_{key}.npy" if folder else None
        m_path = folder / f"maps_{mkey}.npy" if (folder and mkey) else None
        for k, path in ((key, x_path), (mkey, m_path)):
            if k and k not in self._inputs and path is not None and path.is_file():
                self._inputs[k] = np.load(path)
        if key in self._inputs and (mkey is None or mkey in self._inputs):
            return self._inputs[key], self._inputs.get(mkey) if mkey else None
        xs: np.ndarray | None = None
        ms: np.ndarray | None = None
        for i in range(len(self)):
            arr, geometry, masks = render_case_with_masks(self.cases[i], self.config.shape)
            from ..types import Volume

            vol = Volume(array=arr, affine=geometry.affine_ras, modality="CT", units="HU")
            x, rec = preprocess(vol, cfg)
            if xs is None:
                xs = np.zeros((len(self), *x.shape), dtype=np.float16)
                if findings:
                    ms = np.zeros((len(self), len(findings), *x.shape[1:]), dtype=np.uint8)
            xs[i] = x.numpy().astype(np.float16)
            if ms is not None:
                for j, name in enumerate(findings):
                    ms[i, j] = _to_model_grid(masks[name], rec)
            if progress is not None:
                progress(i + 1, len(self))
        assert xs is not None
        from .._atomic import atomic_open

        for k, path, arr in ((key, x_path, xs), (mkey, m_path, ms)):
            if k is None or arr is None:
                continue
            if path is not None and not path.is_file():
                with atomic_open(path) as fh:
                    np.save(fh, arr)
            self._inputs.setdefault(k, arr)
        return self._inputs[key], self._inputs.get(mkey) if mkey else None

    def subset(self, indices: Sequence[int]) -> FusionCohort:
        """A cohort of the given cases (in-memory; inputs are not shared)."""
        return FusionCohort(self.config, [self.cases[int(i)] for i in indices], None)

    def write_study(self, i: int, out_dir: str | os.PathLike) -> Path:
        """Write case ``i`` as a DICOM series + ``report.txt`` + ``case.json`` into ``out_dir``."""
        from .._atomic import atomic_write_text
        from ..synth.dicom_write import PatientInfo, make_uids, write_series

        case = self.cases[i]
        arr, geometry = render_case(case, self.config.shape)
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        seed = int(case["seed"]) % (2**31)
        write_series(
            out / "dicom",
            arr,
            geometry,
            modality="CT",
            seed=seed,
            uids=make_uids(seed, f"fusion-{case['case']}", study_key=case["case"]),
            patient=PatientInfo.for_case(i + 1, seed),
        )
        if case["report_present"]:
            atomic_write_text(out / "report.txt", case["report"])
        atomic_write_text(out / "case.json", json.dumps(case, indent=2) + "\n")
        return out

    def save(self, folder: str | os.PathLike) -> Path:
        """Write ``cohort.json`` (config + cases) into ``folder``; later input caches go there."""
        from .._atomic import atomic_write_text

        p = Path(folder)
        p.mkdir(parents=True, exist_ok=True)
        data = {
            "generator": "medfuse.train.cohort",
            "grammar_version": GRAMMAR_VERSION,
            "synthetic": True,
            "config": self.config.to_dict(),
            "labels": list(FUSION_LABELS),
            "label_sources": LABEL_SOURCES,
            "cases": self.cases,
        }
        atomic_write_text(p / COHORT_FILE, json.dumps(data) + "\n")
        self.folder = p
        return p


def make_fusion_cohort(
    config: FusionCohortConfig | None = None,
    out_dir: str | os.PathLike | None = None,
    *,
    write_dicom: bool = False,
    progress: Callable[[int, int], None] | None = None,
    **params: Any,
) -> FusionCohort:
    """Draw a cohort (``config`` or keyword parameters of :class:`FusionCohortConfig`). With
    ``out_dir`` an existing identical cohort is reused, else ``cohort.json`` is written there (and
    with ``write_dicom`` one DICOM study per case under ``out_dir/studies``)."""
    if config is None:
        config = FusionCohortConfig(**params)
    elif params:
        config = FusionCohortConfig.from_dict({**config.to_dict(), **params})
    if out_dir is not None and (Path(out_dir) / COHORT_FILE).is_file():
        try:
            old = load_fusion_cohort(out_dir)
        except ConfigError:
            old = None
        if old is not None and old.config.to_dict() == config.to_dict() and old.current:
            log.info("reusing cohort in %s", out_dir)
            cohort = old
            if not write_dicom:
                return cohort
    cases = [draw_case(config, i) for i in range(config.n)]
    cohort = FusionCohort(config, cases)
    if out_dir is not None:
        cohort.save(out_dir)
        if write_dicom:
            for i in range(len(cohort)):
                cohort.write_study(i, Path(out_dir) / "studies" / cohort.cases[i]["case"])
                if progress is not None:
                    progress(i + 1, len(cohort))
    return cohort


def load_fusion_cohort(folder: str | os.PathLike) -> FusionCohort:
    """Read a cohort written by :meth:`FusionCohort.save`."""
    p = Path(folder)
    try:
        data = json.loads((p / COHORT_FILE).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"cannot read fusion cohort: {exc}", path=p) from None
    cohort = FusionCohort(FusionCohortConfig.from_dict(data["config"]), data["cases"], p)
    cohort.current = data.get("grammar_version") == GRAMMAR_VERSION
    return cohort
