"""Seeded synthetic *brain MR* cohort: T1-like head phantoms + reports, generated in memory.

The training data of the ``brain_mr_demo`` model (``configs/train/brain_mr_demo.yaml``:
``data.cohort.kind: brain_mr`` of the trainer, :mod:`medfuse.train.trainer`). Every case is a
pure function of ``(config.seed, case index)``; images come from
:class:`~medfuse.synth.phantom.HeadPhantom` (the phantom of the committed sample case
``sample_cases/mr_sag_0001``), placed with the same helper as :func:`medfuse.synth.cohort.make_study`,
and reports reuse the sentences of :func:`medfuse.synth.report.mr_brain_report`. Nothing is
written to disk: a 80×80×40 phantom takes ~20 ms and its model input is cached in memory per
preprocessing configuration.

Generative model (case ``i``; draws from ``SeedSequence([seed, i, 0xB2A1, stream])``)
-------------------------------------------------------------------------------------

Patient (report-side) factors::

    age ~ U{18..85};  sex ~ {M, F}
    headache   ~ Bernoulli(p_headache = 0.4)   history: "Headache.", "Headaches for 3 weeks.", ...;
                 without it the history says "No headache." / "Denies headache." with prob. 0.3
    dizziness ~ Bernoulli(0.25); seizure ~ Bernoulli(0.15); visual disturbance ~ Bernoulli(0.1);
    follow-up ~ Bernoulli(0.2)  (other history items; "Follow-up." when nothing else is said)

Image factors (painted into the :class:`~medfuse.synth.phantom.HeadPhantom`)::

    focal lesion ~ Bernoulli(p_lesion = 0.5): a T1-hyperintense sphere, diameter U{10..20} mm,
                 intensity U(1150, 1350) (white matter 860, scalp fat 950), placed anywhere in
                 the cerebrum clear of the ventricles (``medfuse.synth.cohort._place``)
    hydrocephalus ~ Bernoulli(p_hydrocephalus = 0.25): ventricle_scale U(1.8, 2.4),
                 else U(0.85, 1.15) (lateral ventricles; CSF 250)

Acquisition (the same anatomy seen through different scans)::

    orientation  sagittal 0.5 | axial 0.35 | coronal 0.15; axial patient position HFS 0.8,
                 FFS 0.1, HFP 0.1; an oblique tilt U(-12°, 12°) with probability 0.3
    pixel spacing U(2.5, 4.0) mm over a 240 mm field of view; slices U(3.5, 5.5) mm covering
                 160 mm (sagittal, left-right), 200 mm (coronal) or 170 mm (axial)
    anatomy offset U(-8, 8) mm per axis from the field-of-view centre (0, -10, 20) LPS mm
    noise sigma U(4, 12) (magnitude, folded); a linear bias field of strength U(0, 0.15)
                 along a random direction; a global gain U(0.6, 1.6)

Labels (:data:`MR_LABELS`; where the evidence lies is :data:`MR_LABEL_SOURCES`)::

    image only   focal_lesion, hydrocephalus
    report only  headache            (the clinical history)

The report (EXAMINATION, CLINICAL HISTORY, TECHNIQUE, COMPARISON, FINDINGS, IMPRESSION) mentions
an image finding only with probability ``mention_rate`` (default 0.2): a present lesion then gets
the sentence of the sample reports ("There is a 12 mm T1-hyperintense focal lesion in the left
parietal lobe (series 1, image 16).") and an impression item, an absent one "No focal lesion.";
hydrocephalus "The lateral ventricles are enlarged, consistent with hydrocephalus." or "The
ventricles are normal in size. No hydrocephalus.". Otherwise FINDINGS holds neutral sentences
(no midline shift, flow voids), so the report alone cannot tell the image findings and the image
alone cannot tell the history.

That is grammar 2. Grammar 3 (``MRCohortConfig.grammar``, the default; :func:`write_mr_report_v3`)
states the same facts without label shortcuts: the history always states the headache or its
absence ("Headache." / "No headache.", "Denies headaches."), image references also follow
neutral sentences, a mentioned absent finding gets an impression item as a present one does, and
the filler sentences do not depend on the labels (``benchmarks/shortcut_audit.py``).

Noise and missingness (parameters of :class:`MRCohortConfig`): each label is flipped with
probability ``label_noise`` (clean labels kept as ``labels_clean``); the report is missing with
probability ``report_missing`` and the image with ``image_missing`` (never both).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from ..errors import ConfigError
from ..synth.report import pick as _pick
from ..synth.report import report_text
from .cohort import CohortCases, CohortParams, draw_presence

__all__ = [
    "MR_LABELS",
    "MR_LABEL_SOURCES",
    "MR_TEST_SEED",
    "MRCohort",
    "MRCohortConfig",
    "draw_mr_case",
    "make_mr_cohort",
    "mr_test_cohort",
    "render_mr_case",
    "write_mr_report",
]

log = logging.getLogger(__name__)

MR_LABELS: tuple[str, ...] = ("focal_lesion", "hydrocephalus", "headache")
#: Where the evidence for each label lies: "image" or "report".
MR_LABEL_SOURCES: dict[str, str] = {
    "focal_lesion": "image",
    "hydrocephalus": "image",
    "headache": "report",
}
#: Field-of-view centre (LPS mm), the same as the sample case's (``medfuse.synth.cohort``).
GRID_CENTER: tuple[float, float, float] = (0.0, -10.0, 20.0)
_ORIENTATIONS = ("sagittal", "axial", "coronal")
_COVERAGE_MM = {"sagittal": 160.0, "axial": 170.0, "coronal": 200.0}


#: The report grammars :class:`MRCohortConfig` can write (``grammar``)
MR_GRAMMAR_VERSIONS = (2, 3)


@dataclass
class MRCohortConfig(CohortParams):
    """Parameters of the generative model (see the module docstring)."""

    _kind = "MR cohort"

    n: int = 800
    seed: int = 0
    label_noise: float = 0.02
    report_missing: float = 0.1
    image_missing: float = 0.05
    mention_rate: float = 0.2
    p_lesion: float = 0.5
    p_hydrocephalus: float = 0.25
    p_headache: float = 0.4
    #: probabilities of sagittal, axial, coronal acquisitions
    orientation_probs: tuple[float, float, float] = (0.5, 0.35, 0.15)
    p_oblique: float = 0.3
    lesion_diameter_mm: tuple[int, int] = (10, 20)
    #: range of the lesion intensity (arbitrary units; white matter 860, scalp fat 950)
    lesion_value: tuple[float, float] = (1150.0, 1350.0)
    #: largest strength of the linear bias field (relative intensity change per 90 mm)
    bias_max: float = 0.15
    #: report grammar (:data:`MR_GRAMMAR_VERSIONS`): 3, the default and the grammar the shipped
    #: ``brain_mr_demo`` learned, has no label shortcuts (``benchmarks/shortcut_audit.py``); 2
    #: is the grammar before that fix (``docs/model_card_brain_mr.md``)
    grammar: int = 3
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._check(MR_GRAMMAR_VERSIONS, ("p_hydrocephalus", "p_headache", "p_oblique", "bias_max"))
        probs = tuple(float(p) for p in self.orientation_probs)
        if len(probs) != 3 or min(probs) < 0 or abs(sum(probs) - 1.0) > 1e-6:
            raise ConfigError(
                f"orientation_probs must be three probabilities summing to 1, got {probs}"
            )
        self.orientation_probs = probs  # type: ignore[assignment]
        lo, hi = (int(v) for v in self.lesion_diameter_mm)
        if not 4 <= lo <= hi <= 40:
            raise ConfigError(
                f"lesion_diameter_mm must satisfy 4 <= low <= high <= 40, got {(lo, hi)}"
            )
        self.lesion_diameter_mm = (lo, hi)
        vlo, vhi = (float(v) for v in self.lesion_value)
        if not 0 < vlo <= vhi <= 4000:
            raise ConfigError(
                f"lesion_value must satisfy 0 < low <= high <= 4000, got {(vlo, vhi)}"
            )
        self.lesion_value = (vlo, vhi)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["orientation_probs"] = list(self.orientation_probs)
        d["lesion_diameter_mm"] = list(self.lesion_diameter_mm)
        d["lesion_value"] = list(self.lesion_value)
        return d


# -- drawing ---------------------------------------------------------------------------------------
def _rng(seed: int, index: int, stream: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(seed), int(index), 0xB2A1, stream]))


def _geometry(acq: dict[str, Any]):
    from ..synth.geometry import make_geometry

    return make_geometry(
        acq["shape"],
        acq["spacing"],
        orientation=acq["orientation"],
        patient_position=acq["patient_position"],
        center_lps=GRID_CENTER,
        oblique_deg=acq["oblique_deg"],
    )


def _phantom(case: dict[str, Any], *, with_lesion: bool):
    from ..synth.phantom import HeadPhantom, Lesion

    f, acq = case["factors"], case["acquisition"]
    lesions = []
    if with_lesion and f["lesion"] is not None:
        les = f["lesion"]
        lesions.append(
            Lesion(
                radius_mm=les["diameter_mm"] / 2.0,
                center_ijk=tuple(les["center_ijk"]),
                value=les["value"],
                kind="lesion",
            )
        )
    return HeadPhantom(
        _geometry(acq),
        seed=int(case["seed"]) % (2**31),
        lesions=lesions,
        ventricle_scale=f["ventricle_scale"],
        anatomy_center_lps=acq["anatomy_center_lps"],
        noise=acq["noise_sigma"],
    )


def draw_mr_case(config: MRCohortConfig, index: int) -> dict[str, Any]:
    """Factors, acquisition, labels, missingness and report text of case ``index`` (0-based)."""
    cfg = config
    rng = _rng(cfg.seed, index, 0)
    age = int(rng.integers(18, 86))
    sex = "M" if rng.random() < 0.5 else "F"
    headache = bool(rng.random() < cfg.p_headache)
    symptoms = {
        "dizziness": bool(rng.random() < 0.25),
        "seizure": bool(rng.random() < 0.15),
        "visual": bool(rng.random() < 0.1),
        "follow_up": bool(rng.random() < 0.2),
    }
    lesion = bool(rng.random() < cfg.p_lesion)
    lo, hi = cfg.lesion_diameter_mm
    diameter = int(rng.integers(lo, hi + 1))
    lesion_value = float(round(rng.uniform(*cfg.lesion_value)))
    hydro = bool(rng.random() < cfg.p_hydrocephalus)
    vscale = float(rng.uniform(1.8, 2.4) if hydro else rng.uniform(0.85, 1.15))

    # acquisition
    arng = _rng(cfg.seed, index, 1)
    orientation = _ORIENTATIONS[int(arng.choice(3, p=cfg.orientation_probs))]
    position = "HFS"
    if orientation == "axial":
        position = str(arng.choice(["HFS", "FFS", "HFP"], p=[0.8, 0.1, 0.1]))
    oblique = float(arng.uniform(-12.0, 12.0)) if arng.random() < cfg.p_oblique else 0.0
    px = round(float(arng.uniform(2.5, 4.0)), 2)
    thick = round(float(arng.uniform(3.5, 5.5)), 1)
    n_in = round(240.0 / px)
    n_sl = round(_COVERAGE_MM[orientation] / thick)
    acq = {
        "orientation": orientation,
        "patient_position": position,
        "oblique_deg": round(oblique, 2),
        "shape": [n_in, n_in, n_sl],
        "spacing": [px, px, thick],
        "anatomy_center_lps": [
            round(float(c + j), 3)
            for c, j in zip(GRID_CENTER, arng.uniform(-8.0, 8.0, 3), strict=True)
        ],
        "noise_sigma": round(float(arng.uniform(4.0, 12.0)), 2),
        "bias_strength": round(float(arng.uniform(0.0, cfg.bias_max)), 4),
        "bias_direction": [round(float(v), 4) for v in _unit(arng.standard_normal(3))],
        "gain": round(float(arng.uniform(0.6, 1.6)), 4),
    }

    labels_clean = {
        "focal_lesion": int(lesion),
        "hydrocephalus": int(hydro),
        "headache": int(headache),
    }
    case: dict[str, Any] = {
        "index": index,
        "case": f"mr_{index + 1:05d}",
        "seed": int(np.random.SeedSequence([cfg.seed, index, 0xB2A1]).generate_state(1)[0]),
        "factors": {
            "age": age,
            "sex": sex,
            "headache": headache,
            **symptoms,
            "lesion": None,
            "ventricle_scale": round(vscale, 4),
            "hydrocephalus": hydro,
        },
        "acquisition": acq,
    }
    if lesion:
        case["factors"]["lesion"] = _place_lesion(
            case, diameter, lesion_value, _rng(cfg.seed, index, 2)
        )
        if case["factors"]["lesion"] is None:  # no room in this field of view (rare)
            labels_clean["focal_lesion"] = 0
    flips = {k: bool(rng.random() < cfg.label_noise) for k in MR_LABELS}
    report_present, image_present = draw_presence(rng, cfg)
    case.update(
        labels={k: int(v ^ flips[k]) for k, v in labels_clean.items()},
        labels_clean=labels_clean,
        report_present=report_present,
        image_present=image_present,
        report=(write_mr_report_v3 if cfg.grammar == 3 else write_mr_report)(
            case, _rng(cfg.seed, index, 3), cfg.mention_rate, index + 1
        ),
    )
    return case


def _unit(v: np.ndarray) -> np.ndarray:
    n = float(np.linalg.norm(v))
    return v / n if n > 0 else np.array([0.0, 0.0, 1.0])


def _place_lesion(
    case: dict[str, Any], diameter: int, value: float, rng: np.random.Generator
) -> dict[str, Any] | None:
    from ..synth.cohort import _place

    base = _phantom(case, with_lesion=False)
    geometry = base.geometry
    try:
        ijk = _place(base, geometry, rng, diameter / 2.0, None, [])
    except ConfigError:
        log.warning("case %s: no room for a %d mm lesion; left out", case["case"], diameter)
        return None
    lps = geometry.ijk_to_lps(np.asarray(ijk, dtype=float))
    return {
        "diameter_mm": int(diameter),
        "value": value,
        "center_ijk": [float(v) for v in ijk],
        "center_lps_mm": [round(float(v), 4) for v in lps],
        "center_ras_mm": [
            round(float(-lps[0]), 4),
            round(float(-lps[1]), 4),
            round(float(lps[2]), 4),
        ],
        "location": base.region(lps),
        "series_number": 1,
        "instance_number": int(ijk[2]) + 1,
    }


# -- report grammar --------------------------------------------------------------------------------
_V3_HEADACHE_POS = (
    "Headache.",
    "Headaches for {w} weeks.",
    "Severe headache.",
    "New-onset headache.",
    "Chronic headaches, worse in the morning.",
    "Worsening headache over {w} days.",
)
#: grammar 2 says the plain "Headache." twice as often
_HEADACHE_POS = ("Headache.", *_V3_HEADACHE_POS)
_HEADACHE_NEG = ("No headache.", "Denies headache.")
_OTHER = {
    "dizziness": ("Dizziness.", "Vertigo.", "Episodes of dizziness."),
    "seizure": ("Seizure.", "First seizure.", "New-onset seizures."),
    "visual": ("Visual disturbance.", "Blurred vision."),
    "follow_up": ("Follow-up.", "Follow-up of prior imaging."),
}
_EXAM = ("MRI BRAIN WITHOUT CONTRAST", "MRI HEAD WITHOUT CONTRAST", "MR BRAIN WITHOUT CONTRAST")
_SEQUENCE = ("spin echo", "gradient echo", "spin echo", "3D gradient echo")
_NEUTRAL = (
    "No midline shift.",
    "No extra-axial collection.",
    "The major intracranial flow voids are preserved.",
    "The paranasal sinuses are clear.",
    "The craniocervical junction is unremarkable.",
)
_IMPRESSION_NEUTRAL = (
    "Please correlate clinically.",
    "Findings as above.",
    "See findings.",
)
_COMPARISON = ("None.", "None.", "None available.", "MRI from {m} months ago, not available.")
_HYDROCEPHALUS = (
    "The lateral ventricles are enlarged, consistent with hydrocephalus.",
    "There is ventriculomegaly, consistent with hydrocephalus.",
)


def _who(factors: dict[str, Any]) -> str:
    return f"{factors['age']}-year-old {'man' if factors['sex'] == 'M' else 'woman'}."


def _assemble_report(
    rng: np.random.Generator,
    acq: dict[str, Any],
    history: str,
    findings: Sequence[str],
    impression: Sequence[str],
    case_number: int,
) -> str:
    """The report text both grammars share: the technique, exam and comparison (drawn here, in
    that order, after the findings) around the FINDINGS paragraph and numbered IMPRESSION."""
    plane = acq["orientation"].capitalize()
    technique = (
        f"{plane} T1-weighted {_pick(rng, _SEQUENCE)} images, {acq['spacing'][2]:g} mm slices."
    )
    exam = _pick(rng, _EXAM)
    comparison = _pick(rng, _COMPARISON).format(m=int(rng.integers(3, 25)))
    return report_text(
        exam=exam,
        history=history,
        technique=technique,
        comparison=comparison,
        findings=[" ".join(findings)],
        impression=impression,
        footer=f"Synthetic report for medfuse brain MR cohort case {case_number:05d}; not a real "
        "patient.",
    )


def _history(rng: np.random.Generator, f: dict[str, Any], hist: list[str], *, grammar: int) -> str:
    """CLINICAL HISTORY: ``hist`` (the headache sentence, if any) with the other symptoms, a
    follow-up reason (grammar 2: only when nothing else is said; 3: 30 % of the time),
    shuffled, half the time after the patient's age and sex."""
    for key, options in _OTHER.items():
        if f[key]:
            hist.append(_pick(rng, options))
    if (not hist) if grammar == 2 else rng.random() < 0.3:
        hist.append(_pick(rng, ("Follow-up.", "Routine examination.")))
    rng.shuffle(hist)
    if rng.random() < 0.5:
        hist.insert(0, _who(f))
    return " ".join(hist)


def _mentions(
    rng: np.random.Generator, f: dict[str, Any], mention_rate: float, *, grammar: int
) -> tuple[list[str], list[str]]:
    """FINDINGS sentences and IMPRESSION items of the lesion and the ventricles, each mentioned
    with probability ``mention_rate``. Grammar 3 also gives a mentioned absent finding an
    impression item, and keeps the lesion item's recommendation 30 % of the time only."""
    from ..synth.report import mr_lesion_impression, mr_lesion_sentence

    findings: list[str] = []
    impression: list[str] = []
    les = f["lesion"]
    if rng.random() < mention_rate:
        if les is not None:
            findings.append(mr_lesion_sentence(les, image_ref=bool(rng.random() < 0.6)))
            item = mr_lesion_impression(les)
            if grammar == 3 and not rng.random() < 0.3:
                item = item.split(". ")[0] + "."
            impression.append(item)
        else:
            findings.append("No focal lesion.")
            if grammar == 3:
                impression.append("No focal lesion.")
    if rng.random() < mention_rate:
        if f["hydrocephalus"]:
            findings.append(_pick(rng, _HYDROCEPHALUS))
            impression.append("Hydrocephalus.")
        else:
            findings.append("The ventricles are normal in size. No hydrocephalus.")
            if grammar == 3:
                impression.append("No hydrocephalus.")
    return findings, impression


def write_mr_report(
    case: dict[str, Any], rng: np.random.Generator, mention_rate: float, case_number: int
) -> str:
    """A brain MR report for ``case`` (see the module docstring)."""
    f, acq = case["factors"], case["acquisition"]
    hist: list[str] = []
    if f["headache"]:
        hist.append(_pick(rng, _HEADACHE_POS).format(w=int(rng.integers(2, 9))))
    elif rng.random() < 0.3:
        hist.append(_pick(rng, _HEADACHE_NEG))
    history = _history(rng, f, hist, grammar=2)

    findings, impression = _mentions(rng, f, mention_rate, grammar=2)
    k = int(rng.integers(1, 4))
    findings.extend(str(s) for s in rng.choice(_NEUTRAL, size=k, replace=False))
    if not impression:
        impression.append(_pick(rng, _IMPRESSION_NEUTRAL))
    return _assemble_report(rng, acq, history, findings, impression, case_number)


_V3_HEADACHE_NEG = (
    "No headache.",
    "Denies headache.",
    "No headache for {w} weeks.",
    "No new headache.",
    "Denies headaches.",
    "No headache over {w} days.",
)
_V3_IMPRESSION = (
    "Please correlate clinically.",
    "Findings as above.",
    "See findings.",
    "Contrast-enhanced MRI is recommended if symptoms persist.",
    "Contrast-enhanced MRI is recommended.",
)


def write_mr_report_v3(
    case: dict[str, Any], rng: np.random.Generator, mention_rate: float, case_number: int
) -> str:
    """A brain MR report in grammar 3: the facts of :func:`write_mr_report` without tokens that
    tell a label apart other than the facts' words — the headache is stated for positive and
    negative cases alike, image references follow neutral sentences as often as lesion ones, an
    absent finding that is mentioned gets an impression item as a present one does, and the
    filler sentences do not depend on the labels."""
    f, acq = case["factors"], case["acquisition"]
    w = int(rng.integers(2, 9))
    hist = [_pick(rng, _V3_HEADACHE_POS if f["headache"] else _V3_HEADACHE_NEG).format(w=w)]
    history = _history(rng, f, hist, grammar=3)

    findings, impression = _mentions(rng, f, mention_rate, grammar=3)
    k = int(rng.integers(1, 4))
    neutral = [str(x) for x in rng.choice(_NEUTRAL, size=k, replace=False)]
    neutral = [
        s[:-1] + f" (series 1, image {int(rng.integers(8, 25))})." if rng.random() < 0.4 else s
        for s in neutral
    ]
    findings.extend(neutral)
    rng.shuffle(findings)
    if not impression or rng.random() < 0.5:
        impression.append(_pick(rng, _V3_IMPRESSION))
    return _assemble_report(rng, acq, history, findings, impression, case_number)


# -- images ----------------------------------------------------------------------------------------
def render_mr_case(case: dict[str, Any]):
    """The case's MR volume: ``(array float32 [X, Y, Z], geometry)`` on its acquisition grid."""
    ph = _phantom(case, with_lesion=True)
    arr = ph.volume(workers=1).astype(np.float32)
    acq = case["acquisition"]
    if acq["bias_strength"]:
        g = ph.geometry
        nx, ny, nz = g.shape
        a = g.affine_lps
        d = np.asarray(acq["bias_direction"], dtype=float)
        # projection of each voxel centre (relative to the anatomy) on the bias direction, mm
        c = a[:3, 3] - np.asarray(acq["anatomy_center_lps"], dtype=float)
        proj = (
            float(d @ c)
            + (d @ a[:3, 0]) * np.arange(nx, dtype=np.float32)[:, None, None]
            + (d @ a[:3, 1]) * np.arange(ny, dtype=np.float32)[None, :, None]
            + (d @ a[:3, 2]) * np.arange(nz, dtype=np.float32)[None, None, :]
        )
        arr *= (1.0 + acq["bias_strength"] * np.clip(proj / 90.0, -1.5, 1.5)).astype(np.float32)
    arr *= np.float32(acq["gain"])
    return arr, ph.geometry


# -- the cohort ------------------------------------------------------------------------------------
class MRCohort(CohortCases):
    """Drawn cases (metadata + report text) with lazily generated, in-memory model inputs.

    It has the interface of :class:`medfuse.train.cohort.FusionCohort` that prediction and
    evaluation use (``label_matrix``, ``reports``, ``inputs``, ``image_present``, ...); there is
    no risk target (``times`` / ``events`` are zeros).
    """

    def __init__(self, config: MRCohortConfig, cases: list[dict[str, Any]]):
        self.config = config
        self.cases = cases
        self._inputs: dict[str, np.ndarray] = {}
        self._affines: dict[str, np.ndarray] = {}

    @property
    def labels(self) -> list[str]:
        return list(MR_LABELS)

    #: no survival target: a model trained on it gets no risk head
    has_survival = False

    @property
    def times(self) -> np.ndarray:
        return np.zeros(len(self), dtype=np.float32)

    @property
    def events(self) -> np.ndarray:
        return np.zeros(len(self), dtype=np.float32)

    def volume(self, i: int):
        """Case ``i`` as a :class:`~medfuse.types.Volume` (MR, RAS affine of its own grid)."""
        from ..types import Volume

        arr, geometry = render_mr_case(self.cases[i])
        return Volume(array=arr, affine=geometry.affine_ras, modality="MR", units="arbitrary")

    def lesion_sphere_ras(self, i: int) -> tuple[tuple[float, float, float], float] | None:
        """``(centre RAS mm, radius mm)`` of case ``i``'s lesion, or None."""
        les = self.cases[i]["factors"]["lesion"]
        if les is None:
            return None
        return tuple(les["center_ras_mm"]), les["diameter_mm"] / 2.0  # type: ignore[return-value]

    def inputs(
        self,
        preprocessing: Any,
        *,
        progress: Callable[[int, int], None] | None = None,
        cache: bool = True,
    ) -> np.ndarray:
        """Model inputs ``[N, C, X, Y, Z]`` (float16) for a preprocessing config, generated once
        and cached in memory (``cache``)."""
        from ..transforms import preprocess

        cfg = _pre_config(preprocessing)
        key = self._key(cfg)
        if key in self._inputs:
            return self._inputs[key]
        out: np.ndarray | None = None
        affines = np.zeros((len(self), 4, 4), dtype=np.float64)
        for i in range(len(self)):
            x, rec = preprocess(self.volume(i), cfg)
            if out is None:
                out = np.zeros((len(self), *x.shape), dtype=np.float16)
            out[i] = x.numpy().astype(np.float16)
            affines[i] = np.asarray(rec.model_affine, dtype=np.float64)
            if progress is not None:
                progress(i + 1, len(self))
        assert out is not None
        if cache:
            self._inputs[key] = out
            self._affines[key] = affines
        return out

    def model_affines(self, preprocessing: Any) -> np.ndarray:
        """RAS affines ``[N, 4, 4]`` of the model grids of :meth:`inputs` (same config)."""
        self.inputs(preprocessing)
        return self._affines[self._key(preprocessing)]

    def lesion_voxels(self, preprocessing: Any) -> np.ndarray:
        """Lesion centres as continuous voxel indices of the model grid ``[N, 3]`` and radii in
        model voxels ``[N]`` (NaN rows / 0 for cases without a lesion), as ``[N, 4]``."""
        aff = self.model_affines(preprocessing)
        out = np.full((len(self), 4), np.nan)
        for i in range(len(self)):
            les = self.lesion_sphere_ras(i)
            if les is None:
                out[i, 3] = 0.0
                continue
            inv = np.linalg.inv(aff[i])
            out[i, :3] = inv[:3, :3] @ np.asarray(les[0], dtype=float) + inv[:3, 3]
            out[i, 3] = les[1] / float(np.mean(np.linalg.norm(aff[i][:3, :3], axis=0)))
        return out

    def _key(self, preprocessing: Any) -> str:
        cfg = _pre_config(preprocessing)
        return hashlib.sha256(
            json.dumps(
                {"pre": cfg.to_dict(), "cohort": self.config.fingerprint(), "n": len(self)},
                sort_keys=True,
                default=str,
            ).encode()
        ).hexdigest()[:16]

    def subset(self, indices: Sequence[int]) -> MRCohort:
        """A cohort of the given cases (inputs are not shared)."""
        return MRCohort(self.config, [self.cases[int(i)] for i in indices])


def _pre_config(preprocessing: Any):
    from ..transforms import PreprocessingConfig

    if isinstance(preprocessing, PreprocessingConfig):
        return preprocessing
    return PreprocessingConfig.from_dict(dict(preprocessing))


def make_mr_cohort(config: MRCohortConfig | None = None, **params: Any) -> MRCohort:
    """Draw a cohort (``config`` and/or keyword parameters of :class:`MRCohortConfig`)."""
    if config is None:
        config = MRCohortConfig(**params)
    elif params:
        config = MRCohortConfig.from_dict({**config.to_dict(), **params})
    return MRCohort(config, [draw_mr_case(config, i) for i in range(config.n)])


#: Seed of the held-back MR test cohort (never used for training).
MR_TEST_SEED = 20_241_123


def mr_test_cohort(n: int = 200, seed: int = MR_TEST_SEED, **params: Any) -> MRCohort:
    """A held-back MR cohort with clean labels and both modalities present (``params``
    override :class:`MRCohortConfig` fields, e.g. ``grammar``)."""
    kw = {"label_noise": 0.0, "report_missing": 0.0, "image_missing": 0.0, **params}
    return make_mr_cohort(n=n, seed=seed, **kw)
