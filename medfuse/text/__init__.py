"""Radiology report understanding: sections, sentences, abbreviations, findings and their status.

    from medfuse.text import parse_report
    report = parse_report("FINDINGS: No pneumothorax. Small left pleural effusion.")
    report.labels()["pleural_effusion"]   # 1

Names are imported lazily so that ``import medfuse.text`` does not load spaCy.

This room owns report understanding: the spaCy pipeline, sections, the finding lexicon,
negation / uncertainty / history and report-level labels, returned as :class:`Report` and
:class:`Finding` (:mod:`medfuse.types`). It must not touch image reading, models, exporters or
workflows (it imports only types and errors).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._lazy import lazy_exports

_LAZY = {
    "FINDING_CODES": "medfuse.text.lexicon",
    "Lexicon": "medfuse.text.lexicon",
    "load_lexicon": "medfuse.text.lexicon",
    "MAX_REPORT_CHARS": "medfuse.text.pipeline",
    "build_pipeline": "medfuse.text.pipeline",
    "get_pipeline": "medfuse.text.pipeline",
    "parse_report": "medfuse.text.pipeline",
    "parse_reports": "medfuse.text.pipeline",
    "report_labels": "medfuse.text.labels",
    "label_texts": "medfuse.text.labels",
    "UNCERTAIN_POLICIES": "medfuse.text.labels",
    "target_status": "medfuse.text.pipeline",
    "find_sections": "medfuse.text.sections",
    "CONTEXT_SECTIONS": "medfuse.text.sections",
}

__all__ = [
    "CONTEXT_SECTIONS",
    "FINDING_CODES",
    "MAX_REPORT_CHARS",
    "UNCERTAIN_POLICIES",
    "Lexicon",
    "build_pipeline",
    "find_sections",
    "get_pipeline",
    "label_texts",
    "load_lexicon",
    "parse_report",
    "parse_reports",
    "report_labels",
    "target_status",
]

if TYPE_CHECKING:
    from .labels import UNCERTAIN_POLICIES, label_texts, report_labels
    from .lexicon import FINDING_CODES, Lexicon, load_lexicon
    from .pipeline import (
        MAX_REPORT_CHARS,
        build_pipeline,
        get_pipeline,
        parse_report,
        parse_reports,
        target_status,
    )
    from .sections import CONTEXT_SECTIONS, find_sections


__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
