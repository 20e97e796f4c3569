"""Shortcut audit of the synthetic report grammars (issue 23).

A model trained on template reports can learn the template instead of the words that state a
finding: punctuation that only one phrasing has, numbers that only positive sentences carry,
a filler sentence that is written only when a finding is absent. This audit looks for such
tokens in the chest fusion cohort (:mod:`medfuse.train.cohort`) and the brain MR cohort
(:mod:`medfuse.train.mr_cohort`) in two ways, both without the shipped model:

* **mutual information** between the presence of each token in a report and each label, over
  the cohort's reports. Every label has a *cue lexicon* (:data:`CUES`): the words of the facts
  that decide it (for ``suspected_malignancy`` the lesion, smoking and weight-loss words; for
  ``emphysema``, which the generator makes more likely in smokers, the smoking words too) and
  the words of negation and hedging. A token outside the label's lexicon with mutual information
  of at least :data:`MI_FLAG` bits is a shortcut: punctuation, a number, an image reference or a
  template word.
* a **report-only probe**: a logistic regression trained on the presence of the tokens *outside*
  the lexicon only (70 % of the cohort) and scored on the rest. Its AUROC is near 0.5 when the
  non-cue text says nothing about the label; above :data:`PROBE_FLAG` the grammar leaks.

    python benchmarks/shortcut_audit.py                 # both cohorts (chest grammar 4, MR 3)
    python benchmarks/shortcut_audit.py --grammar 2     # the grammar before the fix
    python benchmarks/shortcut_audit.py --cohort chest --n 4000 --top 15
    python benchmarks/shortcut_audit.py --cohort chest --sample-cases chest_ct_demo

With ``--sample-cases`` it also lists the model's top report phrases on its sample cases and
flags those made only of punctuation, numbers or stopwords, or taken from the technique,
examination or comparison line, where no finding is stated.

It prints Markdown tables (``docs/model_card.md`` holds the before / after tables) and exits
non-zero when a token is flagged or a probe exceeds its bound.
``tests/unit/test_shortcut_audit.py`` runs it on a small cohort and on a planted shortcut.
"""

from __future__ import annotations

import argparse
import math
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

#: a token outside the lexicon with at least this mutual information (bits) is flagged
MI_FLAG = 0.01
#: a probe AUROC above this on the non-cue tokens is flagged
PROBE_FLAG = 0.6
#: tokens seen in fewer reports are not scored (their estimates are noise)
MIN_COUNT = 20

_NEG = {"no", "not", "denies", "without", "clear", "normal", "stable", "negative", "never"}
_HEDGE = {"possible", "questionable", "may", "represent", "which", "likely", "probable"}

_FACTOR_CUES: dict[str, set[str]] = {
    "smoking": {
        "smoker",
        "smokes",
        "smoking",
        "smoke",
        "pack",
        "packs",
        "years",
        "year",
        "quit",
        "ago",
        "after",
        "ex",
        "non",
        "never",
        "tobacco",
        "lifelong",
        "active",
        "current",
        "former",
        "per",
        "day",
        "one",
        "screening",
        "cancer",
        "lung",
        "history",
        "use",
        "smoked",
        "passive",
        "exposure",
    },
    "infection": {
        "fever",
        "fevers",
        "febrile",
        "afebrile",
        "pyrexia",
        "cough",
        "productive",
        "purulent",
        "sputum",
        "chills",
        "wet",
        "days",
        "for",
        "to",
        "c",
        "at",
        "home",
        "low",
        "grade",
        "reports",
        "reported",
        "with",
        "and",
        "or",
    },
    "weight_loss": {
        "weight",
        "loss",
        "unintentional",
        "kg",
        "over",
        "months",
        "appetite",
        "of",
        "reports",
        "stable",
    },
    "dyspnea": {
        "shortness",
        "breath",
        "dyspnea",
        "dyspnoea",
        "breathlessness",
        "exertion",
        "rest",
        "progressive",
        "climbing",
        "climbs",
        "flight",
        "stairs",
        "breathing",
        "comfortably",
        "of",
        "on",
        "one",
        "at",
        "exercise",
        "tolerance",
    },
    "lesion": {
        "nodule",
        "mass",
        "mm",
        "pulmonary",
        "lobe",
        "right",
        "left",
        "upper",
        "middle",
        "lower",
        "solid",
        "spiculated",
        "lesion",
        "in",
        "the",
        "there",
        "is",
        "a",
        "or",
        "follow",
        "up",
        # grammar 4: the wording of the sample reports and its recommendations
        "focal",
        "suspicious",
        "measuring",
        "seen",
        "lobulated",
        "part",
        "recommended",
        "tissue",
        "sampling",
        "ct",
        "months",
        "3",
    },
    "consolidation": {
        "consolidation",
        "airspace",
        "opacity",
        "lung",
        "lungs",
        "right",
        "left",
        "in",
        "the",
        "are",
        "of",
    },
    "effusion": {"pleural", "effusion", "effusions", "small", "bilateral", "right", "left"},
    "emphysema": {"emphysema", "emphysematous", "centrilobular", "changes", "diffuse", "there"},
    "cardiomegaly": {"heart", "enlarged", "cardiomegaly", "size", "is", "the", "cardiac"},
    "headache": {
        "headache",
        "headaches",
        "severe",
        "new",
        "onset",
        "chronic",
        "worse",
        "morning",
        "worsening",
        "over",
        "weeks",
        "days",
        "for",
        "in",
        "the",
    },
    "focal_lesion": {
        "focal",
        "lesion",
        "mm",
        "t1",
        "hyperintense",
        "lobe",
        "frontal",
        "parietal",
        "temporal",
        "occipital",
        "left",
        "right",
        "in",
        "the",
        "there",
        "is",
        "a",
    },
    "hydrocephalus": {
        "hydrocephalus",
        "ventricles",
        "ventricle",
        "lateral",
        "enlarged",
        "ventriculomegaly",
        "consistent",
        "with",
        "normal",
        "size",
        "are",
        "in",
        "the",
        "there",
        "is",
    },
}
#: label -> the generative factors that decide it (or, for emphysema, change its prior)
LABEL_FACTORS: dict[str, tuple[str, ...]] = {
    "emphysema": ("emphysema", "smoking"),
    "cardiomegaly": ("cardiomegaly",),
    "pleural_effusion": ("effusion",),
    "consolidation": ("consolidation",),
    "lung_lesion": ("lesion",),
    "smoking_history": ("smoking",),
    "dyspnea": ("dyspnea",),
    "pneumonia": ("consolidation", "infection"),
    "suspected_malignancy": ("lesion", "smoking", "weight_loss"),
    "focal_lesion": ("focal_lesion",),
    "hydrocephalus": ("hydrocephalus",),
    "headache": ("headache",),
}
#: label -> its cue lexicon
CUES: dict[str, frozenset[str]] = {
    label: frozenset(set().union(*(_FACTOR_CUES[f] for f in factors)) | _NEG | _HEDGE)
    for label, factors in LABEL_FACTORS.items()
}

_TOKEN = re.compile(r"[a-z0-9]+|[^\sa-z0-9]")
#: the last line of every cohort report names the synthetic case (its number is an identifier)
_TRAILER = re.compile(r"^Synthetic report for medfuse .*$", re.M)


def tokens(text: str) -> set[str]:
    """The distinct tokens of a report: lower-case words, numbers, single punctuation marks
    (the trailer line that names the synthetic case is left out)."""
    return set(_TOKEN.findall(_TRAILER.sub("", text).lower()))


def kind(token: str) -> str:
    if token.isdigit():
        return "number"
    if not token.isalnum():
        return "punctuation"
    if token in ("series", "image", "images"):
        return "image reference"
    return "word"


def mutual_information(x: np.ndarray, y: np.ndarray) -> float:
    """I(X; Y) in bits of two binary arrays."""
    n = len(x)
    mi = 0.0
    for a in (0, 1):
        for b in (0, 1):
            pab = float(np.sum((x == a) & (y == b))) / n
            pa, pb = float(np.mean(x == a)), float(np.mean(y == b))
            if pab > 0:
                mi += pab * math.log2(pab / (pa * pb))
    return mi


@dataclass(frozen=True)
class Flag:
    label: str
    token: str
    kind: str
    mi_bits: float
    p_label_with: float
    p_label_without: float
    reports: int


def _matrix(texts: Sequence[str], min_count: int) -> tuple[list[str], np.ndarray]:
    sets = [tokens(t) for t in texts]
    counts: dict[str, int] = {}
    for s in sets:
        for tok in s:
            counts[tok] = counts.get(tok, 0) + 1
    vocab = sorted(t for t, c in counts.items() if min_count <= c <= len(texts) - min_count)
    index = {t: i for i, t in enumerate(vocab)}
    x = np.zeros((len(texts), len(vocab)), dtype=np.int8)
    for r, s in enumerate(sets):
        for tok in s:
            if tok in index:
                x[r, index[tok]] = 1
    return vocab, x


def audit(
    texts: Sequence[str],
    y: np.ndarray,
    labels: Sequence[str],
    *,
    min_count: int = MIN_COUNT,
    seed: int = 0,
) -> tuple[list[Flag], list[Flag], dict[str, float]]:
    """``(flags, top, probe)``: the tokens outside each label's lexicon with mutual information
    of at least :data:`MI_FLAG` bits (``flags``), the five most informative such tokens per
    label whatever their value (``top``), and the held-out AUROC of a logistic regression on the
    presence of the non-cue tokens per label (``probe``)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score

    vocab, x = _matrix(texts, min_count)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(texts))
    cut = int(0.7 * len(texts))
    train, test = order[:cut], order[cut:]
    flags: list[Flag] = []
    top: list[Flag] = []
    probe: dict[str, float] = {}
    for j, label in enumerate(labels):
        yl = np.asarray(y[:, j], dtype=np.int8)
        cues = CUES.get(label, frozenset())
        scored = []
        keep = []
        for i, tok in enumerate(vocab):
            if tok in cues:
                continue
            keep.append(i)
            xi = x[:, i]
            mi = mutual_information(xi, yl)
            with_t = float(yl[xi == 1].mean()) if xi.any() else float("nan")
            without = float(yl[xi == 0].mean()) if (xi == 0).any() else float("nan")
            scored.append(Flag(label, tok, kind(tok), mi, with_t, without, int(xi.sum())))
        scored.sort(key=lambda f: -f.mi_bits)
        top.extend(scored[:5])
        flags.extend(f for f in scored if f.mi_bits >= MI_FLAG)
        if keep and len(set(yl[train].tolist())) == 2 and len(set(yl[test].tolist())) == 2:
            clf = LogisticRegression(max_iter=2000, C=1.0)
            clf.fit(x[train][:, keep], yl[train])
            probe[label] = float(roc_auc_score(yl[test], clf.predict_proba(x[test][:, keep])[:, 1]))
    return flags, top, probe


def chest_reports(
    n: int, seed: int = 0, grammar: int = 4
) -> tuple[list[str], np.ndarray, list[str]]:
    """Reports and clean labels of ``n`` chest fusion cohort cases (no report missing)."""
    from medfuse.train.cohort import FUSION_LABELS, FusionCohortConfig, draw_case

    cfg = FusionCohortConfig(
        n=n, seed=seed, report_missing=0.0, image_missing=0.0, label_noise=0.0, grammar=grammar
    )
    cases = [draw_case(cfg, i) for i in range(n)]
    y = np.array([[c["labels"][k] for k in FUSION_LABELS] for c in cases], dtype=np.int8)
    return [c["report"] for c in cases], y, list(FUSION_LABELS)


def mr_reports(n: int, seed: int = 0, grammar: int = 3) -> tuple[list[str], np.ndarray, list[str]]:
    """Reports and clean labels of ``n`` brain MR cohort cases (no report missing)."""
    from medfuse.train.mr_cohort import MR_LABELS, MRCohortConfig, draw_mr_case

    cfg = MRCohortConfig(
        n=n, seed=seed, report_missing=0.0, image_missing=0.0, label_noise=0.0, grammar=grammar
    )
    cases = [draw_mr_case(cfg, i) for i in range(n)]
    y = np.array([[c["labels_clean"][k] for k in MR_LABELS] for c in cases], dtype=np.int8)
    return [c["report"] for c in cases], y, list(MR_LABELS)


#: words that carry no finding on their own
STOPWORDS = frozenset(
    [
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "by",
        "for",
        "from",
        "has",
        "have",
        "in",
        "is",
        "it",
        "of",
        "on",
        "or",
        "the",
        "there",
        "this",
        "to",
        "was",
        "were",
        "with",
    ]
)
SAMPLE_CASES = {
    "chest_ct_demo": ("chest_ct_0001", "chest_ct_0002"),
    "brain_mr_demo": ("mr_sag_0001",),
}


#: the words of an image reference, "(series 1, image 34)"
IMAGE_REFERENCE = frozenset({"series", "image", "images"})


#: report sections that never state a finding (a phrase there is template, not evidence)
NO_FINDING_SECTIONS = ("EXAMINATION:", "TECHNIQUE:", "COMPARISON:")


def is_shortcut_phrase(text: str, sentence: str = "") -> bool:
    """A phrase made only of punctuation, numbers, stopwords and image-reference words, or one
    in a sentence of a section that states no finding (:data:`NO_FINDING_SECTIONS`)."""
    words = re.findall(r"[a-z]+", text.lower())
    if sentence.lstrip().startswith(NO_FINDING_SECTIONS):
        return True
    return not words or all(w in STOPWORDS or w in IMAGE_REFERENCE for w in words)


def sample_case_phrases(model_name: str, k: int = 3) -> list[tuple[str, str, list[str], bool]]:
    """``(case, label, top-k phrases, ok)`` for every positive label of every sample case of
    ``model_name`` whose report contributes (integrated gradients on the report tokens, words
    summed and merged as in the exports): ``ok`` when none of the phrases is punctuation, a
    number, a stopword or in the technique, examination or comparison line."""
    from pathlib import Path

    import medfuse

    root = Path(__file__).resolve().parents[1] / "sample_cases"
    model = medfuse.load_model(model_name)
    out = []
    for case in SAMPLE_CASES[model_name]:
        folder = root / case
        study = medfuse.read_study(folder / "dicom" if (folder / "dicom").is_dir() else folder)
        report = medfuse.read_report(folder / "report.txt")
        pred = medfuse.predict(
            model,
            (study, report),
            explain=["integrated_gradients_text", "modality_shapley"],
            labels="positive",
        )
        expl = pred.explanation
        for f in pred.positive:
            if expl is None or expl.get_tokens(f.label) is None:
                continue
            top = expl.report_phrases(f.label, k)  # as the exports list them
            ok = not any(is_shortcut_phrase(p.text, p.sentence) for p in top)
            out.append((case, f.label, [p.text for p in top], ok))
    return out


def _table(rows: list[Flag]) -> str:
    out = [
        "| label | token | kind | MI (bits) | P(label \\| token) | P(label \\| no token) | reports |",
        "|---|---|---|---|---|---|---|",
    ]
    for f in rows:
        tok = f.token.replace("|", "\\|")
        out.append(
            f"| {f.label} | `{tok}` | {f.kind} | {f.mi_bits:.4f} | {f.p_label_with:.2f} | "
            f"{f.p_label_without:.2f} | {f.reports} |"
        )
    return "\n".join(out)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cohort", choices=["chest", "mr", "both"], default="both")
    ap.add_argument(
        "--n", type=int, default=None, help="reports per cohort (2,000 chest, 1,000 MR)"
    )
    ap.add_argument("--top", type=int, default=10, help="rows of the most informative tokens")
    ap.add_argument(
        "--grammar",
        type=int,
        default=None,
        help="report grammar version (default: chest 4, MR 3; 2: before the audit)",
    )
    ap.add_argument(
        "--sample-cases",
        metavar="MODEL",
        action="append",
        default=[],
        help="also list the top-3 report phrases of each positive label of MODEL's sample cases",
    )
    args = ap.parse_args(argv)
    bad = 0
    for name in args.sample_cases:
        print(f"\n## top report phrases of {name} on its sample cases\n")
        print("| case | label | top 3 phrases | no punctuation / number / stopword / technique |")
        print("|---|---|---|---|")
        for case, label, phrases, ok in sample_case_phrases(name):
            shown = "; ".join(f"“{p}”" for p in phrases)
            print(f"| {case} | {label} | {shown} | {'yes' if ok else '**no**'} |")
            bad += not ok
    for name in ("chest", "mr") if args.cohort == "both" else (args.cohort,):
        n = args.n or (2000 if name == "chest" else 1000)
        reports = chest_reports if name == "chest" else mr_reports
        grammar = args.grammar or (4 if name == "chest" else 3)
        texts, y, labels = reports(n, grammar=grammar)
        flags, top, probe = audit(texts, y, labels)
        print(
            f"\n## {name} cohort, grammar {grammar}: {n} reports, tokens in at least "
            f"{MIN_COUNT} of them\n"
        )
        print(f"Flagged (outside the label's cue lexicon, MI ≥ {MI_FLAG} bits): {len(flags)}\n")
        if flags:
            print(_table(sorted(flags, key=lambda f: -f.mi_bits)[: args.top]) + "\n")
        print("Most informative tokens outside the lexicon, per label:\n")
        best = sorted(top, key=lambda f: -f.mi_bits)[: args.top]
        print(_table(best) + "\n")
        print("| label | probe AUROC on non-cue tokens |\n|---|---|")
        for label, auc in probe.items():
            mark = " **leaks**" if auc > PROBE_FLAG else ""
            print(f"| {label} | {auc:.3f}{mark} |")
        bad += len(flags) + sum(auc > PROBE_FLAG for auc in probe.values())
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
