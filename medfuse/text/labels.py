"""Report-level labels from finding mentions (the labeler's aggregation rule).

For each finding code, mentions in context sections (INDICATION, HISTORY, COMPARISON,
TECHNIQUE) and mentions marked historical are skipped; of the rest, any present mention makes
the label ``1``, else any uncertain one ``-1``, else any absent one ``0``; no mention leaves it
``None`` (written as an empty cell). ``no_finding`` is ``1`` when no other finding is present or
uncertain, else ``0``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .lexicon import FINDING_CODES
from .sections import CONTEXT_SECTIONS

if TYPE_CHECKING:
    from ..types import Finding, Report

__all__ = ["counts_for_label", "label_value", "report_labels"]

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
