"""Report-level labels from finding mentions (the labeler's aggregation rule).

For each finding code, mentions in context sections (INDICATION, HISTORY, COMPARISON,
TECHNIQUE) and mentions marked historical are skipped; of the rest, any present mention makes
the label ``1``, else any uncertain one ``-1``, else any absent one ``0``; no mention leaves it
``None`` (written as an empty cell). ``no_finding`` is ``1`` when no other finding is present or
uncertain, else ``0``.

Uncertainty policy (:data:`UNCERTAIN_POLICIES`, ``medfuse label-reports --uncertain``): ``keep``
leaves ``-1`` as its own value; ``positive`` maps it to ``1`` (CheXpert's U-Ones), ``negative``
to ``0`` (U-Zeros). ``no_finding`` is computed from the kept values first, then mapped.

:func:`label_texts` labels a list of texts in one call (the weak-label entry point).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from ..errors import ConfigError
from .lexicon import FINDING_CODES
from .sections import CONTEXT_SECTIONS

if TYPE_CHECKING:
    from spacy.language import Language

    from ..types import Finding, Report

__all__ = [
    "UNCERTAIN_POLICIES",
    "apply_uncertain_policy",
    "counts_for_label",
    "label_texts",
    "label_value",
    "report_labels",
]

#: ``--uncertain`` choices: what an uncertain (-1) label becomes
UNCERTAIN_POLICIES: dict[str, int] = {"keep": -1, "positive": 1, "negative": 0}

_RANK = {1: 3, -1: 2, 0: 1}


def counts_for_label(finding: Finding) -> bool:
    """Whether a mention takes part in the report-level label."""
    return not finding.historical and finding.section not in CONTEXT_SECTIONS


def label_value(findings: list[Finding]) -> int | None:
    """Aggregate the mentions of one code: present > uncertain > absent > not mentioned."""
    best: int | None = None
    for f in findings:
        v = f.status.label
        if best is None or _RANK[v] > _RANK[best]:
            best = v
    return best


def report_labels(report: Report, codes: tuple[str, ...] | None = None) -> dict[str, int | None]:
    """Labels of one report for ``codes`` (all :data:`FINDING_CODES` by default)."""
    codes = tuple(codes) if codes is not None else FINDING_CODES
    by_code: dict[str, list[Finding]] = {}
    for f in report.findings:
        if counts_for_label(f):
            by_code.setdefault(f.code, []).append(f)
    out: dict[str, int | None] = {}
    for code in codes:
        if code != "no_finding":
            out[code] = label_value(by_code.get(code, []))
    if "no_finding" in codes:
        others = [label_value(v) for k, v in by_code.items() if k != "no_finding"]
        out["no_finding"] = 0 if any(v in (1, -1) for v in others) else 1
    return {c: out[c] for c in codes}


def apply_uncertain_policy(
    labels: dict[str, int | None], uncertain: str = "keep"
) -> dict[str, int | None]:
    """``labels`` with every ``-1`` mapped by the policy ``keep`` / ``positive`` / ``negative``."""
    if uncertain not in UNCERTAIN_POLICIES:
        raise ConfigError(
            f"uncertain must be one of {', '.join(UNCERTAIN_POLICIES)}, got {uncertain!r}"
        )
    to = UNCERTAIN_POLICIES[uncertain]
    return {k: (to if v == -1 else v) for k, v in labels.items()}


def label_texts(
    texts: Iterable[str | None],
    *,
    codes: tuple[str, ...] | None = None,
    uncertain: str = "keep",
    batch_size: int = 64,
    nlp: Language | None = None,
) -> list[dict[str, int | None]]:
    """Label many report texts: one dict per text, code -> ``1`` (present), ``0`` (absent),
    ``-1`` (uncertain; see ``uncertain``) or ``None`` (not mentioned). ``None`` or blank texts
    get ``None`` for every code. ``codes``: all :data:`FINDING_CODES` by default."""
    from .pipeline import parse_reports

    if uncertain not in UNCERTAIN_POLICIES:
        raise ConfigError(
            f"uncertain must be one of {', '.join(UNCERTAIN_POLICIES)}, got {uncertain!r}"
        )
    codes = tuple(codes) if codes is not None else FINDING_CODES
    unknown = [c for c in codes if c not in FINDING_CODES]
    if unknown:
        raise ConfigError(
            f"unknown finding code(s) {unknown}", hint=f"codes: {', '.join(FINDING_CODES)}"
        )
    items = ["" if t is None else str(t) for t in texts]
    filled = [i for i, t in enumerate(items) if t.strip()]
    out: list[dict[str, int | None]] = [dict.fromkeys(codes) for _ in items]
    reports = parse_reports([items[i] for i in filled], batch_size=batch_size, nlp=nlp)
    for i, rep in zip(filled, reports, strict=True):
        out[i] = apply_uncertain_policy(report_labels(rep, codes), uncertain)
    return out
