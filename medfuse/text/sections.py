"""Section detection for radiology reports.

Reports are split at headers such as ``INDICATION:``, ``COMPARISON:``, ``TECHNIQUE:``,
``FINDINGS:`` and ``IMPRESSION:`` (with their usual synonyms, e.g. ``Reason for exam:`` or
``CONCLUSION:``). A header counts when it starts a line (any case, followed by a colon, or alone
on its line in capitals) or, in capitals and followed by a colon, anywhere in a flattened
one-line report. Text before the first header, or a whole report without headers, is the
``BODY`` section.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = [
    "BODY",
    "CANONICAL_SECTIONS",
    "CONTEXT_SECTIONS",
    "SECTION_ALIASES",
    "SectionSpan",
    "canonical_section",
    "find_sections",
]

BODY = "BODY"

#: Header synonyms (lower case, single spaces) -> canonical section name.
SECTION_ALIASES: dict[str, str] = {
    # clinical question
    "indication": "INDICATION",
    "indications": "INDICATION",
    "clinical indication": "INDICATION",
    "clinical indications": "INDICATION",
    "indication for exam": "INDICATION",
    "indication for study": "INDICATION",
    "reason for exam": "INDICATION",
    "reason for examination": "INDICATION",
    "reason for study": "INDICATION",
    "reason for referral": "INDICATION",
    "clinical question": "INDICATION",
    # history
    "history": "HISTORY",
    "clinical history": "HISTORY",
    "patient history": "HISTORY",
    "medical history": "HISTORY",
    "hx": "HISTORY",
    "clinical information": "HISTORY",
    "clinical info": "HISTORY",
    "clinical data": "HISTORY",
    "clinical details": "HISTORY",
    # comparison
    "comparison": "COMPARISON",
    "comparisons": "COMPARISON",
    "comparison study": "COMPARISON",
    "comparison studies": "COMPARISON",
    "comparison exam": "COMPARISON",
    "prior studies": "COMPARISON",
    "prior study": "COMPARISON",
    # technique
    "technique": "TECHNIQUE",
    "techniques": "TECHNIQUE",
    "procedure": "TECHNIQUE",
    "protocol": "TECHNIQUE",
    "exam": "TECHNIQUE",
    "examination": "TECHNIQUE",
    "type of exam": "TECHNIQUE",
    "type of examination": "TECHNIQUE",
    # findings
    "findings": "FINDINGS",
    "finding": "FINDINGS",
    "report findings": "FINDINGS",
    "description": "FINDINGS",
    # impression
    "impression": "IMPRESSION",
    "impressions": "IMPRESSION",
    "final impression": "IMPRESSION",
    "conclusion": "IMPRESSION",
    "conclusions": "IMPRESSION",
    "summary": "IMPRESSION",
    "interpretation": "IMPRESSION",
    "assessment": "IMPRESSION",
    "opinion": "IMPRESSION",
    "diagnosis": "IMPRESSION",
    # after the impression
    "recommendation": "RECOMMENDATION",
    "recommendations": "RECOMMENDATION",
    "follow-up": "RECOMMENDATION",
    "followup": "RECOMMENDATION",
    "addendum": "ADDENDUM",
}

CANONICAL_SECTIONS: tuple[str, ...] = (
    "INDICATION",
    "HISTORY",
    "COMPARISON",
    "TECHNIQUE",
    "FINDINGS",
    "IMPRESSION",
    "RECOMMENDATION",
    "ADDENDUM",
    BODY,
)

#: Sections that give context (the clinical question, prior studies); mentions there are kept
#: in the parsed report but do not make a label.
CONTEXT_SECTIONS: frozenset[str] = frozenset({"INDICATION", "HISTORY", "COMPARISON", "TECHNIQUE"})

# "Findings:" / "REASON FOR EXAM :" at the start of a line (any case).
_LINE_HEADER = re.compile(r"(?m)^[ \t]*(?P<h>[A-Za-z][A-Za-z &/-]{0,40}?)[ \t]*:")
# "FINDINGS" alone on its line (capitals, optional colon).
_BARE_HEADER = re.compile(r"(?m)^[ \t]*(?P<h>[A-Z][A-Z &/-]{1,40}?)[ \t]*:?[ \t]*$")
# "... IMPRESSION: ..." inside a flattened line (capitals, known names only).
_INLINE_HEADER = re.compile(
    r"(?<![A-Za-z0-9])(?P<h>"
    + "|".join(
        sorted((re.escape(a.upper()) for a in SECTION_ALIASES if len(a) > 3), key=len, reverse=True)
    )
    + r")[ \t]*:"
)
_UNKNOWN_CAPS = re.compile(r"[A-Z][A-Z ]{2,30}")


@dataclass(frozen=True)
class SectionSpan:
    """One section of a report: its canonical ``name``, the header as written, and offsets.

    ``start`` is where the header begins (equal to ``body_start`` for ``BODY``), ``body_start``
    the first character after the header and its colon, ``end`` the end of the section.
    """

    name: str
    header: str
    start: int
    body_start: int
    end: int

    def body(self, text: str) -> str:
        return text[self.body_start : self.end]


def canonical_section(header: str, *, allow_unknown_caps: bool = False) -> str | None:
    """The canonical section name of a header text, or None when it is not a header."""
    key = " ".join(header.replace("_", " ").split()).lower()
    if key in SECTION_ALIASES:
        return SECTION_ALIASES[key]
    if allow_unknown_caps and _UNKNOWN_CAPS.fullmatch(header.strip()) and len(key.split()) <= 4:
        return " ".join(header.split()).upper()
    return None


def find_sections(text: str) -> list[SectionSpan]:
    """Split ``text`` into sections; always returns at least one (``BODY``) when text is non-blank."""
    found: dict[int, tuple[str, str, int]] = {}  # header start -> (name, header, body_start)
    for m in _LINE_HEADER.finditer(text):
        name = canonical_section(m.group("h"), allow_unknown_caps=m.group("h").isupper())
        if name:
            found.setdefault(m.start("h"), (name, m.group("h"), m.end()))
    for m in _BARE_HEADER.finditer(text):
        name = canonical_section(m.group("h"))
        if name:
            found.setdefault(m.start("h"), (name, m.group("h"), m.end()))
    for m in _INLINE_HEADER.finditer(text):
        name = canonical_section(m.group("h"))
        if name and not any(s <= m.start("h") < b for s, (_, _, b) in found.items()):
            found.setdefault(m.start("h"), (name, m.group("h"), m.end()))

    spans: list[SectionSpan] = []
    starts = sorted(found)
    first = starts[0] if starts else len(text)
    if text[:first].strip():
        spans.append(SectionSpan(BODY, "", 0, 0, first))
    for i, s in enumerate(starts):
        name, header, body_start = found[s]
        end = starts[i + 1] if i + 1 < len(starts) else len(text)
        spans.append(SectionSpan(name, header, s, min(body_start, end), end))
    return spans
