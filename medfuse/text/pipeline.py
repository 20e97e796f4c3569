"""The report parser: a blank English spaCy pipeline that needs no model package.

Components, in order:

1. **tokenizer** - scispacy's ``combined_rule_tokenizer``, which also splits ``word/word``
   ("atelectasis/scarring") so that each word can be matched;
2. ``medfuse_sections`` - section headers (:mod:`medfuse.text.sections`) and rule-based sentence
   boundaries for radiology text: terminal punctuation (not inside "1." list markers or
   abbreviations such as "Dr."), blank lines, line breaks before a capitalised line or a list
   item, and section headers;
3. ``medfuse_abbreviations`` - scispacy's ``AbbreviationDetector`` (Schwartz & Hearst; no UMLS
   linker, nothing downloaded);
4. ``entity_ruler`` - the shipped lexicon (:mod:`medfuse.text.lexicon`), longest match wins;
5. ``medfuse_findings`` - drops ``ignore`` matches, and labels every later use of an
   abbreviation whose long form is a finding ("ground-glass opacities (GGO) ... GGO");
6. ``medfuse_context`` - negation / uncertainty / history (:mod:`medfuse.text.context`).

:func:`parse_report` / :func:`parse_reports` turn text into :class:`~medfuse.types.Report`.
"""

from __future__ import annotations

import bisect
import functools
import os
import re
import threading
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy
import spacy
from spacy.attrs import IDX, IS_SPACE, LIKE_NUM, ORTH, SENT_START, SPACY
from spacy.language import Language
from spacy.tokens import Doc, Span

from ..types import Finding, FindingStatus, Report
from .lexicon import IGNORE_LABEL, Lexicon, load_lexicon
from .sections import BODY, SectionSpan, find_sections

__all__ = [
    "MAX_REPORT_CHARS",
    "build_pipeline",
    "doc_to_report",
    "get_pipeline",
    "get_tokenizer",
    "make_tokenizer",
    "parse_report",
    "parse_reports",
    "target_status",
]

#: Reports longer than this many characters are truncated (at a word boundary) for parsing and
#: for the text encoders; the full text stays in ``Report.text`` and a note records the cut.
MAX_REPORT_CHARS = 100_000

_TERMINAL = {".", "!", "?"}
_BULLETS = {"-", "*", "•", "·", "‣", "–"}
# a line ending in one of these continues on the next line (hard-wrapped text)
_CONTINUATION = {
    ",",
    "and",
    "or",
    "of",
    "the",
    "with",
    "without",
    "to",
    "a",
    "an",
    "in",
    "for",
    "at",
    "by",
    "on",
    "is",
    "are",
    "was",
    "were",
    "no",
    "not",
    "from",
    "as",
    "which",
    "that",
    "than",
}
# "atelectasis/scarring" -> "atelectasis", "/", "scarring"; "r/o", "h/o", "s/p", "w/o" stay whole
_SLASH_INFIX = r"(?<=[A-Za-z]{2})/(?=[A-Za-z]{2})"


#: A whitespace-free chunk this long is one token: it is not prose (a pasted blob, a run of
#: brackets), and splitting its affixes one by one would take quadratic time.
LONG_CHUNK = 256


def make_tokenizer(nlp: Language):
    """scispacy's rule tokenizer, plus a split between two words joined by a slash, and
    whitespace-free chunks of :data:`LONG_CHUNK` characters or more kept whole."""
    from scispacy.custom_tokenizer import combined_rule_tokenizer

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # scispacy's regexes trip a re notice
        tok = combined_rule_tokenizer(nlp)
        infix = tok.infix_finditer.__self__.pattern  # the compiled infix regex
        tok.infix_finditer = re.compile(f"{infix}|{_SLASH_INFIX}").finditer
    original = tok.token_match

    def token_match(string: str):
        if len(string) >= LONG_CHUNK:
            return True
        return original(string) if original is not None else None

    tok.token_match = token_match
    return tok


def _sections_getter(doc: Doc) -> list[SectionSpan] | None:
    raw = doc.user_data.get("medfuse_sections")
    return None if raw is None else [SectionSpan(*r) for r in raw]


def _ensure_extensions() -> None:
    if not Doc.has_extension("medfuse_sections"):
        Doc.set_extension("medfuse_sections", getter=_sections_getter)
    if not Doc.has_extension("abbreviations"):
        Doc.set_extension("abbreviations", default=[])
    for name, default in (("status", "present"), ("historical", False), ("cue", "")):
        if not Span.has_extension(name):
            Span.set_extension(name, default=default)


@Language.component("medfuse_sections")
def sections_and_sentences(doc: Doc) -> Doc:
    """Find section headers and set sentence starts with rules suited to radiology reports.

    Stores, in ``doc.user_data`` (plain values, so docs pickle across processes):
    ``medfuse_sections`` (name, header, start, body_start, end) tuples, ``medfuse_sent_starts``
    (token index of every sentence start), ``medfuse_spaces`` (token index of every whitespace
    token) and ``medfuse_sentences`` ((start, end) character
    offsets of each sentence's words, header-only sentences left out), and ``medfuse_text``
    (the text, which spaCy would otherwise rebuild from the tokens on each ``Doc.text``).
    """
    arr = doc.to_array([IDX, IS_SPACE, ORTH, LIKE_NUM, SPACY]).tolist()
    strings = doc.vocab.strings
    words_text = [strings[row[2]] for row in arr]
    # Doc.text builds a Token object per token; joining the strings is several times faster
    text = "".join(w + " " if row[4] else w for w, row in zip(words_text, arr, strict=True))
    doc.user_data["medfuse_text"] = text
    sections = find_sections(text)
    doc.user_data["medfuse_sections"] = [
        (s.name, s.header, s.start, s.body_start, s.end) for s in sections
    ]
    n = len(doc)
    if n == 0:
        doc.user_data["medfuse_sent_starts"] = []
        doc.user_data["medfuse_spaces"] = []
        doc.user_data["medfuse_sentences"] = []
        return doc
    starts = [False] * n
    idx = [row[0] for row in arr]
    # each header, and the first word after it, start a sentence
    headers = [(s.start, s.body_start) for s in sections if s.name != BODY]
    for s in sections:
        for off in (s.start, s.body_start):
            i = bisect.bisect_left(idx, off)
            while i < n and arr[i][1]:
                i += 1
            if i < n:
                starts[i] = True

    words: list[tuple[int, int, str]] = []  # (token index, start char, text) of non-space tokens
    prev_i, prev_end, prev_text = -1, 0, ""
    first_i, first_num = -1, False  # first word of the current sentence
    spaces: list[int] = []  # whitespace tokens (runs of spaces, line breaks)
    for i, (off, space, _, num, _) in enumerate(arr):
        if space:
            spaces.append(i)
            continue
        tok = words_text[i]
        if prev_i < 0:
            starts[i] = True
        elif not starts[i]:
            if prev_text in _TERMINAL:
                # "1. No effusion": a number alone before "." is a list marker, not a sentence
                list_marker = (
                    prev_text == "." and first_num and len(words) >= 2 and words[-2][0] == first_i
                )
                starts[i] = not list_marker
            else:
                newlines = text.count("\n", prev_end, off)
                if newlines >= 2:
                    starts[i] = True
                elif newlines == 1:
                    head = tok[:1]
                    starts[i] = (head.isupper() or head.isdigit() or tok in _BULLETS) and (
                        prev_text.lower() not in _CONTINUATION
                    )
        if starts[i]:
            first_i, first_num = i, bool(num)
        words.append((i, off, tok))
        prev_i, prev_end, prev_text = i, off + len(tok), tok

    sent_start = [1 if (i == 0 or starts[i]) else -1 for i in range(n)]
    doc.from_array(
        [SENT_START], numpy.asarray(sent_start, dtype="int64").astype("uint64").reshape(-1, 1)
    )
    sent_starts = [i for i in range(n) if sent_start[i] == 1]
    # character spans of each sentence's words (header words left out)
    in_header = [False] * n
    for a, b in headers:
        for i in range(bisect.bisect_left(idx, a), bisect.bisect_left(idx, b)):
            in_header[i] = True
    sentences: list[tuple[int, int]] = []
    cur: list[int] = []  # [start, end] of the current sentence
    si = 0
    for i, off, tok in words:
        while si + 1 < len(sent_starts) and sent_starts[si + 1] <= i:
            si += 1
            if cur:
                sentences.append((cur[0], cur[1]))
                cur = []
        if in_header[i]:
            continue
        if cur:
            cur[1] = off + len(tok)
        else:
            cur = [off, off + len(tok)]
    if cur:
        sentences.append((cur[0], cur[1]))
    doc.user_data["medfuse_sent_starts"] = sent_starts
    doc.user_data["medfuse_spaces"] = spaces
    doc.user_data["medfuse_sentences"] = sentences
    return doc


@Language.factory("medfuse_abbreviations")
def make_abbreviations(nlp: Language, name: str):
    """scispacy's ``AbbreviationDetector``, with its per-doc "empty matcher" notice silenced."""
    from scispacy.abbreviation import AbbreviationDetector

    # serializable: abbreviations are stored as plain dicts, so docs cross process boundaries
    # (nlp.pipe(n_process=...)); the findings component reads them back as spans
    detector = AbbreviationDetector(nlp, name, make_serializable=True)
    # scispacy matches "(" + any tokens + ")", which is quadratic in the number of brackets; it
    # keeps only candidates of at most 8 tokens inside the brackets, so bound the match to that
    from spacy.matcher import Matcher

    detector.matcher = Matcher(nlp.vocab)
    detector.matcher.add("parenthesis", [[{"ORTH": "("}, {"OP": "{1,8}"}, {"ORTH": ")"}]])

    def detect(doc: Doc) -> Doc:
        with warnings.catch_warnings():
            # W036: scispacy runs its (empty) global matcher on docs without abbreviations
            warnings.filterwarnings("ignore", message=r"\[W036\]", category=UserWarning)
            return detector(doc)

    return detect


def _abbreviation_spans(doc: Doc, ab) -> tuple[Span, Span | None]:
    """(short form, long form) spans of one ``doc._.abbreviations`` entry (dict or Span)."""
    if isinstance(ab, dict):
        return doc[ab["short_start"] : ab["short_end"]], doc[ab["long_start"] : ab["long_end"]]
    lf = ab._.long_form
    return ab, lf if isinstance(lf, Span) else None


@Language.component("medfuse_findings")
def findings_component(doc: Doc) -> Doc:
    """Drop ``ignore`` matches; propagate finding codes to abbreviations of findings."""
    ents = [e for e in doc.ents if e.label_ != IGNORE_LABEL]
    abbreviations = doc._.abbreviations if Doc.has_extension("abbreviations") else []
    if abbreviations:
        taken = {i for e in doc.ents for i in range(e.start, e.end)}
        lexicon_ents = sorted(ents, key=lambda e: e.start)
        ent_starts = [e.start for e in lexicon_ents]
        for ab in abbreviations:
            short, long_form = _abbreviation_spans(doc, ab)
            if long_form is None:
                continue
            first = bisect.bisect_left(ent_starts, long_form.start)
            last = bisect.bisect_left(ent_starts, long_form.end)
            codes = {e.label_ for e in lexicon_ents[first:last] if e.end <= long_form.end}
            if len(codes) != 1 or any(i in taken for i in range(short.start, short.end)):
                continue
            ents.append(
                Span(
                    doc,
                    short.start,
                    short.end,
                    label=codes.pop(),
                    span_id=f"abbreviation: {long_form.text}",
                )
            )
            taken.update(range(short.start, short.end))
    doc.ents = sorted(ents, key=lambda e: e.start)
    return doc


def build_pipeline(lexicon: Lexicon | str | os.PathLike | None = None) -> Language:
    """Build a fresh parser pipeline (prefer the cached :func:`get_pipeline`)."""
    from . import context  # noqa: F401  (registers "medfuse_context")

    lex = lexicon if isinstance(lexicon, Lexicon) else load_lexicon(lexicon)
    _ensure_extensions()
    nlp = spacy.blank("en")
    nlp.tokenizer = make_tokenizer(nlp)
    nlp.max_length = max(nlp.max_length, MAX_REPORT_CHARS + 1)
    nlp.add_pipe("medfuse_sections")
    nlp.add_pipe("medfuse_abbreviations")
    ruler = nlp.add_pipe(
        "entity_ruler", config={"phrase_matcher_attr": "LOWER", "overwrite_ents": True}
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # spaCy notes on pattern tokenisation
        ruler.add_patterns(lex.ruler_patterns())
    nlp.add_pipe("medfuse_findings")
    ctx = nlp.add_pipe("medfuse_context")
    # a pattern with a <NOT> slot ("heart is not enlarged") negates its own mention; any other
    # negation word inside a mention is part of the mention
    ctx.set_own_negation(lex.own_negation_patterns(), lex.classes.get("NOT", []))
    nlp.meta["name"] = "medfuse_report_parser"
    nlp.meta["lexicon"] = lex.source
    return nlp


@functools.lru_cache(maxsize=4)
def _cached_pipeline(key: str) -> Language:
    return build_pipeline(key or None)


# one build per process even when threads ask at once (a workflow parses the report in its
# prefetch thread while the model's text encoder tokenizes in the main one)
_BUILD_LOCK = threading.RLock()


def get_pipeline(lexicon: str | os.PathLike | None = None) -> Language:
    """The parser pipeline for a lexicon file (the shipped one by default), built once."""
    key = str(Path(lexicon).resolve()) if lexicon is not None else ""
    with _BUILD_LOCK:
        return _cached_pipeline(key)


def get_tokenizer():
    """The parser's tokenizer (scispacy's rules on a blank English vocab): the one of the default
    pipeline, so that a process that both parses reports and tokenizes them for a text encoder
    builds the tokenizer once (its construction, ~5,000 special cases and a blank English
    tokenizer that scispacy's rules start from, costs about as much again as the rest of the
    pipeline)."""
    return get_pipeline().tokenizer


def _truncate(text: str, max_chars: int | None) -> tuple[str, int | None]:
    if max_chars is None or len(text) <= max_chars:
        return text, None
    cut = text.rfind(" ", max(0, max_chars - 200), max_chars)
    cut = cut if cut > 0 else max_chars
    return text[:cut], cut


def doc_to_report(doc: Doc, text: str | None = None, *, source: str = "") -> Report:
    """Build a :class:`Report` from a parsed ``doc``; ``text`` is the full text when the doc is
    a truncated prefix of it."""
    # spaCy rebuilds Doc.text from the tokens on every access: use the copy the sections
    # component kept
    dtext = doc.user_data.get("medfuse_text") or doc.text
    full = dtext if text is None else text
    sections: list[SectionSpan] = doc._.medfuse_sections or find_sections(dtext)
    sentences = doc.user_data.get("medfuse_sentences")
    if sentences is None:  # a doc from another pipeline: take spaCy's sentences
        sentences = [
            (sent[0].idx, sent[-1].idx + len(sent[-1].text))
            for sent in doc.sents
            if sent.text.strip()
        ]
    sentences = [tuple(s) for s in sentences]
    sent_starts = [s for s, _ in sentences]
    sec_starts = [s.start for s in sections]

    def section_of(off: int) -> str:
        i = bisect.bisect_right(sec_starts, off) - 1
        return sections[i].name if i >= 0 else ""

    findings = []
    for ent in doc.ents:
        si = bisect.bisect_right(sent_starts, ent.start_char) - 1
        if si >= 0 and ent.start_char >= sentences[si][1]:
            si = -1
        findings.append(
            Finding(
                code=ent.label_,
                text=ent.text,
                start=ent.start_char,
                end=ent.end_char,
                status=FindingStatus(ent._.status),
                historical=bool(ent._.historical),
                sentence=si,
                section=section_of(ent.start_char),
                cue=ent._.cue,
                term=ent.id_,
            )
        )
    section_text: dict[str, str] = {}
    for s in sections:
        body = s.body(dtext).strip()
        section_text[s.name] = f"{section_text[s.name]}\n{body}" if s.name in section_text else body
    abbreviations: dict[str, str] = {}
    for ab in doc._.abbreviations:
        short, lf = _abbreviation_spans(doc, ab)
        if lf is not None:
            abbreviations.setdefault(short.text, lf.text)
    end_of_doc = len(dtext)
    return Report(
        text=full,
        source=source,
        sections=section_text,
        sentences=sentences,
        findings=findings,
        section_spans=[
            (s.name, s.start, s.end if s.end < end_of_doc else len(full)) for s in sections
        ],
        abbreviations=abbreviations,
    )


def _note_truncation(report: Report, cut: int | None) -> Report:
    if cut is not None:
        report.truncated_at = cut
        report.notes.append(
            f"report has {len(report.text):,} characters; only the first {cut:,} were parsed and "
            "are given to text encoders"
        )
    return report


def parse_report(
    text: str,
    *,
    source: str = "",
    max_chars: int | None = MAX_REPORT_CHARS,
    nlp: Language | None = None,
) -> Report:
    """Parse one report text into a :class:`Report` with sections, sentences and findings."""
    nlp = nlp or get_pipeline()
    head, cut = _truncate(text, max_chars)
    return _note_truncation(doc_to_report(nlp(head), text, source=source), cut)


def parse_reports(
    texts: Iterable[str],
    *,
    sources: Iterable[str] | None = None,
    batch_size: int = 64,
    max_chars: int | None = MAX_REPORT_CHARS,
    nlp: Language | None = None,
) -> Iterator[Report]:
    """Parse many report texts with ``nlp.pipe`` (batched); yields reports in input order."""
    nlp = nlp or get_pipeline()
    src_iter = iter(sources) if sources is not None else None

    def _items() -> Iterator[tuple[str, tuple[str, int | None, str]]]:
        for text in texts:
            head, cut = _truncate(text, max_chars)
            src = next(src_iter, "") if src_iter is not None else ""
            yield head, (text, cut, src)

    for doc, (full, cut, src) in nlp.pipe(_items(), as_tuples=True, batch_size=batch_size):
        yield _note_truncation(doc_to_report(doc, full, source=src), cut)


def target_status(
    text: str, target: str | tuple[int, int], *, nlp: Language | None = None
) -> tuple[str, bool, str]:
    """(status, historical, cue) of one given phrase of ``text``, decided by the parser's context
    rules with the phrase as the only mention (in place of the lexicon's): how negation is
    scored on annotated sentences whose target is any phrase ("She was not lightheaded").

    ``target`` is the phrase (its first case-insensitive occurrence) or its (start, end)
    character offsets; it is widened to whole tokens.
    """
    from ..errors import ReportError

    nlp = nlp or get_pipeline()
    if isinstance(target, str):
        start = text.lower().find(target.lower())
        if start < 0 or not target.strip():
            raise ReportError(f"target {target!r} is not in the text {text[:80]!r}")
        span = (start, start + len(target))
    else:
        span = (int(target[0]), int(target[1]))
    doc = nlp.make_doc(text)
    for name, proc in nlp.pipeline:
        if name == "entity_ruler":
            ent = doc.char_span(*span, label="TARGET", alignment_mode="expand")
            if ent is None or not len(ent):
                raise ReportError(f"target {span} of {text[:80]!r} covers no token")
            doc.ents = [ent]
        elif name != "medfuse_findings":
            doc = proc(doc)
    ent = doc.ents[0]
    return ent._.status, bool(ent._.historical), ent._.cue
