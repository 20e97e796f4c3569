"""Negation, uncertainty and history of finding mentions (negspacy's NegEx, extended for radiology).

:class:`RadiologyContext` is a spaCy component built on ``negspacy.negation.Negex``: it reuses its
trigger matching (a ``PhraseMatcher`` over lower-cased tokens), pseudo-trigger filtering and
termination boundaries, and extends it in four ways:

* **termsets** - negspacy's ``en_clinical`` lists, plus the radiology triggers it misses ("is not
  seen", "no longer seen", "has resolved", "removal of", ...), with the ambiguous ones moved to
  uncertainty ("rule out", "evaluate for", "versus");
* **uncertainty** ("cannot be excluded", "may represent", "suspicious for", ...) and **history**
  ("history of", "previously") trigger families, matched by the same matcher;
* **nearest cue wins**: when both a negation and an uncertainty cue reach a mention, the one
  closer to it decides ("no pneumonia; possible atelectasis", "opacity which may represent
  atelectasis"); overlapping cues resolve to the longest ("cannot be excluded" beats "cannot");
* **windows** for cues that follow a mention and for history cues, so that "pneumothorax or
  free air ... not seen" does not reach back across a whole sentence;
* **scope rules** that hold for any sentence: a cue inside a mention's own span is part of the
  mention, not a cue ("no appetite" as a target is not negated by its own "no"; the lexicon's
  patterns with a negation slot, "heart is not enlarged", say so explicitly); a preceding cue
  that an overlapping following-only cue ends on survives ("was not lightheaded": the "not" of
  "was not"); triggers match across runs of whitespace ("negative   for"); a negation whose
  scope holds an uncertainty cue, with no list separator between them, wins over it ("no
  findings suggesting osteomyelitis", but "no pneumothorax, possible effusion"); "removed" / "resolved" reach only mentions of their own
  clause ("a polyp was found and removed"); negspacy's clinical termination terms ("etiology
  of", "secondary to", ...) end negation scope but not uncertainty ("possibly secondary to
  pneumonia" stays uncertain).

Each entity gets ``ent._.status`` ("present" / "absent" / "uncertain"), ``ent._.historical``,
``ent._.cue`` (the deciding trigger text) and, for compatibility with negspacy,
``ent._.negex`` (True when absent).
"""

from __future__ import annotations

import bisect
import itertools
from dataclasses import dataclass

import numpy
from negspacy.negation import Negex
from negspacy.termsets import termset
from spacy.attrs import IS_SPACE, LOWER
from spacy.language import Language
from spacy.tokens import Doc, Span

__all__ = [
    "BOUND_PRECEDING_WINDOW",
    "CLAUSE_BOUND_WORDS",
    "CLAUSE_BREAKS",
    "HISTORICAL_FOLLOWING",
    "HISTORICAL_PRECEDING",
    "NEGATION_FOLLOWING",
    "NEGATION_FOLLOWING_NEAR",
    "NEGATION_PRECEDING",
    "NEGATION_TERMINATION",
    "PSEUDO",
    "TERMINATION",
    "UNCERTAINTY_FOLLOWING",
    "UNCERTAINTY_FOLLOWING_NEAR",
    "UNCERTAINTY_PRECEDING",
    "Cue",
    "RadiologyContext",
    "radiology_termset",
]

_BASE = termset("en_clinical").get_patterns()

# negspacy triggers that mean "uncertain" in radiology, not "absent": an indication's "rule out
# pneumonia" / "r/o PTX" / "evaluate for effusion" asks a question; "A versus B" is a
# differential diagnosis. They move to UNCERTAINTY_PRECEDING.
_MOVED_TO_UNCERTAIN = {
    "rule out",
    "rules out",
    "rule him out",
    "rule her out",
    "rule patient out",
    "rule the patient out",
    "r/o",
    "ro",
    "evaluate for",
    "versus",
}

NEGATION_PRECEDING: list[str] = [
    t for t in _BASE["preceding_negations"] if t not in _MOVED_TO_UNCERTAIN
] + [
    "no radiographic evidence of",  # "no radiographic evidence of pneumonia"
    "no definite",  # "no definite pneumothorax"
    "no definitive",  # "no definitive consolidation"
    "no convincing",  # "no convincing evidence of effusion"
    "no findings of",  # "no findings of pulmonary edema"
    "no new",  # "no new consolidation"
    "no longer",  # "no longer any effusion"
    "without evidence of",  # "lungs clear without evidence of infiltrate"
    "w/o",  # "w/o effusion"
    "clear of",  # "lungs are clear of consolidation"
    "nor",  # "neither effusion nor pneumothorax"
    "neither",  # "neither effusion nor pneumothorax"
    "resolved",  # "resolved right lower lobe pneumonia"
    "resolution of",  # "resolution of the left effusion"
    "interval resolution of",  # "interval resolution of previously described opacity"
    "removal of",  # "interval removal of the right chest tube"
    "interval removal of",  # "interval removal of nasogastric tube"
    "removed",  # "removed ET tube" (clause-bound, see CLAUSE_BOUND_WORDS)
    # "X was / were not" is a following trigger of negspacy; these are the preceding readings
    # that reach past a "with" ("was not associated with dyspnea")
    "not associated with",
    "not accompanied by",
    # recurrence after an episode: "no further episodes of chest pain" (negspacy's pseudo "no
    # further" would otherwise cancel the "no"), "no recurrence of the effusion"
    "no further episodes of",
    "no further episode of",
    "no further episodes",
    "no further evidence of",
    "no further signs of",
    "no more episodes of",
    "no other episodes of",
    "no additional episodes of",
    "no subsequent episodes of",
    "no recurrent episodes of",
    "no recurrence of",
    "without recurrence of",
    "without further episodes of",
]

NEGATION_FOLLOWING: list[str] = [t for t in _BASE["following_negations"] if t != "free"] + [
    # negspacy's following "free" is dropped: "pneumothorax or free air" is not a negation.
    "is not seen",
    "are not seen",
    "not seen",  # "pneumothorax is not seen"
    "is not identified",
    "are not identified",
    "not identified",  # "effusion is not identified"
    "is not visualized",
    "are not visualized",
    "not visualized",  # "pneumothorax is not visualized"
    "not demonstrated",
    "is not demonstrated",  # "effusion is not demonstrated"
    "not appreciated",
    "is not appreciated",  # "nodule is not appreciated"
    "is not present",
    "are not present",
    "not present",  # "consolidation is not present"
    "is absent",
    "are absent",
    "absent",  # "pneumothorax is absent"
    "has resolved",
    "have resolved",
    "resolved",  # "the effusion has resolved"
    "has cleared",
    "have cleared",
    "cleared",  # "pneumonia has cleared"
    "is no longer seen",
    "no longer seen",
    "no longer visualized",  # "PTX no longer seen"
    "is no longer present",
    "no longer present",  # "effusion is no longer present"
    "has been removed",
    "have been removed",
    "removed",  # "NG tube has been removed"
    "was removed",
    "were removed",  # "chest tube was removed"
    "is excluded",
    "has been excluded",  # "pneumothorax is excluded"
    # a test or finding reported negative: "workup for pulmonary embolism was negative"
    "was negative",
    "were negative",
    "is negative",
    "are negative",
    "was found to be negative",
    "came back negative",
    "returned negative",
    "has been negative",
    "have been negative",
]

#: following negation cues that reach only the words right before them
NEGATION_FOLLOWING_NEAR: list[str] = [
    "within normal limits",  # "pulmonary vascular congestion ... within normal limits"
    "within limits of normal",  # "vascular engorgement appear within limits of normal"
    "within the limits of normal",
    "within normal range",
]

PSEUDO: list[str] = [
    # negspacy's "not rule(d) out" pseudo-triggers are uncertainty cues here (see below)
    *(t for t in _BASE["pseudo_negations"] if "rule" not in t),
    # "no change", "no significant change", "no interval change", "not only" come from negspacy
    "no decrease",  # "no decrease in the effusion" (effusion present)
    "not changed",  # "effusion is not changed"
    "not significantly changed",  # "cardiomegaly not significantly changed"
    "without change",  # "nodule without change"
    "without interval change",  # "effusion without interval change"
    "without significant change",  # "opacity without significant change"
    "without significant interval change",  # "without significant interval change of atelectasis"
    "not well seen",  # "nodule not well seen on the lateral view" (still present)
    "not well-seen",
    "not well visualized",
    "not well-visualized",
    "not as well seen",
    "to suggest",  # "no opacity to suggest pneumonia": keeps the "no", not uncertainty
    "to indicate",  # "no findings to indicate edema"
    "to explain",  # "no opacity to explain the symptoms"
]

#: negspacy's clinical terminations ("secondary to", "etiology of", "cause of", "source of",
#: ...): they end a negation's scope ("no fever; etiology of the pain unclear") but not an
#: uncertainty cue's, so that "possibly secondary to pneumonia" keeps its "possibly". All of
#: negspacy's are kept: none was measured to hurt on radiology text (docs/benchmarks.md).
NEGATION_TERMINATION: list[str] = [
    t for t in _BASE["termination"] if t not in set(termset("en").get_patterns()["termination"])
]

TERMINATION: list[str] = [t for t in _BASE["termination"] if t not in set(NEGATION_TERMINATION)] + [
    "there is",
    "there are",  # "no pneumothorax; there is a small effusion"
    "there has been",
    "there have been",
    "with",  # "cardiomegaly with mild bibasilar infiltrates versus atelectasis"
    "other than",  # "no acute disease other than mild cardiomegaly"
    ";",  # "no pneumothorax; small left effusion"
]

UNCERTAINTY_PRECEDING: list[str] = [
    "possible",
    "possibly",  # "possible right lower lobe pneumonia"
    "probable",
    "probably",  # "probable small effusion"
    "likely",
    "most likely",
    "more likely",  # "likely atelectasis"
    "presumably",
    "presumed",  # "presumed scarring"
    "questionable",
    "question of",
    "question",  # "question of left lower lobe pneumonia"
    "suspicious for",
    "suspicion of",
    "suspicion for",
    "suspected",  # "suspicious for pneumonia"
    "concern for",
    "concerning for",
    "worrisome for",  # "worrisome for pneumonitis"
    "may represent",
    "may reflect",
    "may indicate",
    "may be",
    "may also represent",
    "may also be",  # "there may also be small bilateral effusions"
    "could obscure",
    "may obscure",
    "can obscure",  # "bony overlap could obscure a small nodule"
    "might represent",
    "might be",  # "opacity might represent atelectasis"
    "could represent",
    "could reflect",
    "could indicate",
    "could be",  # "could indicate pneumonia"
    "can represent",
    "suggestive of",
    "suggesting",
    "suggests",
    "suggest",  # "suggestive of pneumonia"
    "cannot exclude",
    "can not exclude",
    "can't exclude",
    "could not exclude",
    "cannot rule out",
    "can not rule out",
    "can't rule out",  # "cannot rule out pneumonia"
    "difficult to exclude",  # "difficult to exclude small effusion"
    "differential diagnosis includes",
    "differential includes",
    "differential diagnosis",
    "versus",
    "vs",
    "vs.",  # "infiltrate versus atelectasis" (both uncertain)
    "equivocal",
    "indeterminate",  # "equivocal nodule"
    "to exclude",
    "exclude",  # "recommend CT to exclude mass"
    *sorted(_MOVED_TO_UNCERTAIN - {"versus"}),  # "rule out pneumonia", "r/o PTX", "evaluate for"
    "eval for",
    "assess for",  # "eval for pneumonia"
]

#: following uncertainty cues that reach only the word(s) right before them
UNCERTAINTY_FOLLOWING_NEAR: list[str] = [
    "versus",
    "vs",
    "vs.",  # "atelectasis versus pneumonia"
    "?",  # "pneumonia?"
]

UNCERTAINTY_FOLLOWING: list[str] = [
    "cannot be excluded",
    "can not be excluded",
    "could not be excluded",  # "PTX cannot be excluded"
    "cannot be ruled out",
    "can not be ruled out",
    "not ruled out",  # "pneumonia not ruled out"
    "not excluded",
    "is not excluded",
    "not entirely excluded",
    "not completely excluded",
    "is possible",
    "is suspected",
    "is questioned",
    "is a possibility",  # "effusion is possible"
    "may not be",  # "fractures may not be demonstrated" (hypothetical)
    "or not",  # "effusion or not"
]

HISTORICAL_PRECEDING: list[str] = [
    "history of",
    "h/o",
    "hx of",
    "known history of",
    "past history of",
    "prior history of",
    "previous",
    "previously",  # "previous pneumonia", "previously seen nodule"
    "prior",  # "prior right rib fractures" (not across punctuation)
]

HISTORICAL_FOLLOWING: list[str] = [
    "in the past",  # "pneumonia in the past"
]

#: A negation cue holding one of these words reaches only mentions of its own clause: "the
#: polyp was found and removed" is no negation of the polyp, "resolved pneumonia" is.
CLAUSE_BOUND_WORDS: frozenset[str] = frozenset({"removed", "resolved"})

#: Words that start a new clause between a clause-bound cue and a mention. "and" / "or" start one
#: only where they join clauses, not mentions: before a "resolved" / "removed" they do when
#: only auxiliaries and adverbs stand between them and the cue ("a polyp was found and
#: (subsequently) removed", but "infiltrates and venous engorgement have resolved"); after it
#: when they follow it directly ("her pain resolved and nausea developed") or no mention
#: follows them directly ("resolved pneumonia and she developed a cough", but "resolved
#: effusion and pneumothorax").
CLAUSE_BREAKS: frozenset[str] = frozenset({"and", "or", "but", "so", ";", ":"})
_CLAUSE_GLUE = frozenset(
    {
        "has",
        "have",
        "had",
        "was",
        "were",
        "is",
        "are",
        "been",
        "be",
        "since",
        "then",
        "also",
        "later",
        "subsequently",
        "afterwards",
        "thereafter",
        "eventually",
        "now",
    }
)
_COORDINATORS = frozenset({"and", "or"})
#: a clause-bound cue before a mention reaches this many tokens at most (a noun phrase:
#: "resolved right lower lobe pneumonia", "removed left chest tube")
BOUND_PRECEDING_WINDOW = 5
#: between a negation and an uncertainty cue: the negation's object ends there
_LIST_SEPARATORS = frozenset({",", ";", ":", "and", "or", "but", "."})


def radiology_termset() -> dict[str, list[str]]:
    """The negation termset (negspacy's four keys) medfuse uses."""
    return {
        "pseudo_negations": list(PSEUDO),
        "preceding_negations": list(NEGATION_PRECEDING),
        "following_negations": list(NEGATION_FOLLOWING),
        "termination": list(TERMINATION) + list(NEGATION_TERMINATION),
    }


@dataclass(frozen=True)
class Cue:
    """A matched trigger: kind in {"neg", "unc", "hist", "pseudo", "term"}, direction "pre"/"fol"
    (for "term": "" ends every scope, "neg" only negation scope). ``bound``: the cue reaches only
    its own clause (:data:`CLAUSE_BOUND_WORDS`)."""

    kind: str
    direction: str
    start: int
    end: int
    text: str
    bound: bool = False


# Maximum number of tokens between a mention and a cue of each (kind, direction); None = the
# whole chunk (sentence part between terminations), as in negspacy.
DEFAULT_WINDOWS: dict[tuple[str, str], int | None] = {
    ("neg", "pre"): None,
    ("neg", "fol"): 5,
    ("neg", "near"): 2,
    ("unc", "pre"): 6,
    ("unc", "fol"): 4,
    ("unc", "near"): 1,
    ("hist", "pre"): 4,
    ("hist", "fol"): 2,
}

_LABELS = {
    "pseudo": ("pseudo", ""),
    "Preceding": ("neg", "pre"),
    "Following": ("neg", "fol"),
    "NegNear": ("neg", "near"),
    "Termination": ("term", ""),
    "NegTerm": ("term", "neg"),
    "PrecedingBound": ("neg", "pre"),
    "FollowingBound": ("neg", "fol"),
    "UncPre": ("unc", "pre"),
    "UncFol": ("unc", "fol"),
    "UncNear": ("unc", "near"),
    "HistPre": ("hist", "pre"),
    "HistFol": ("hist", "fol"),
}

_PUNCT_BLOCKS_HISTORY = {",", ";", ":", "(", ")", "."}
#: matcher labels read as cues before a mention
_PRE_LABELS = frozenset({"Preceding", "PrecedingBound", "UncPre", "HistPre"})
#: matcher labels read only as cues after a mention
_FOL_LABELS = frozenset({"Following", "FollowingBound", "NegNear", "UncFol", "UncNear", "HistFol"})
#: matcher labels of clause-bound negations
_BOUND_LABELS = frozenset({"PrecedingBound", "FollowingBound"})


def _ensure_extensions() -> None:
    for name, default in (("status", "present"), ("historical", False), ("cue", "")):
        if not Span.has_extension(name):
            Span.set_extension(name, default=default)


@dataclass
class _ChunkIndex:
    """Sorted positions of a chunk's cues, for :meth:`RadiologyContext._candidates`."""

    starts: list[int]
    ends: list[int]
    pre_reach: int
    fol_reach: int
    unlimited: list[tuple[list[int], list[Cue]]]
    unlimited_fol: list[tuple[list[int], list[Cue]]]

    @classmethod
    def build(cls, local: list[Cue], windows: dict[tuple[str, str], int | None]) -> _ChunkIndex:
        finite_pre = [w for (_, d), w in windows.items() if d == "pre" and w is not None]
        finite_fol = [w for (_, d), w in windows.items() if d != "pre" and w is not None]
        unlimited: list[tuple[list[int], list[Cue]]] = []
        unlimited_fol: list[tuple[list[int], list[Cue]]] = []
        for (kind, direction), w in windows.items():
            if w is not None:
                continue
            family = [c for c in local if c.kind == kind and c.direction == direction]
            if not family:
                continue
            if direction == "pre":
                unlimited.append(([c.end for c in family], family))
            else:
                unlimited_fol.append(([c.start for c in family], family))
        return cls(
            starts=[c.start for c in local],
            ends=[c.end for c in local],
            pre_reach=max(finite_pre, default=0),
            fol_reach=max(finite_fol, default=0),
            unlimited=unlimited,
            unlimited_fol=unlimited_fol,
        )


@Language.factory(
    "medfuse_context",
    default_config={"extension_name": "negex", "windows": None},
)
def make_radiology_context(nlp: Language, name: str, extension_name: str, windows: dict | None):
    return RadiologyContext(nlp, name, extension_name=extension_name, windows=windows)


class RadiologyContext(Negex):
    """negspacy's Negex, extended with uncertainty / history cues and nearest-cue resolution."""

    def __init__(
        self,
        nlp: Language,
        name: str = "medfuse_context",
        *,
        neg_termset: dict[str, list[str]] | None = None,
        uncertainty_preceding: list[str] | None = None,
        uncertainty_following: list[str] | None = None,
        historical_preceding: list[str] | None = None,
        historical_following: list[str] | None = None,
        extension_name: str = "negex",
        windows: dict | None = None,
    ):
        ts = dict(neg_termset or radiology_termset())
        # negspacy's clinical terminations end negation scope only (label "NegTerm")
        neg_only = [t for t in ts["termination"] if t in set(NEGATION_TERMINATION)]
        ts["termination"] = [t for t in ts["termination"] if t not in set(neg_only)]
        # clause-bound negations ("removed", "has resolved") get labels of their own
        bound = {
            key: [t for t in ts[key] if CLAUSE_BOUND_WORDS & set(t.lower().split())]
            for key in ("preceding_negations", "following_negations")
        }
        for key, phrases in bound.items():
            ts[key] = [t for t in ts[key] if t not in set(phrases)]
        super().__init__(nlp, name, ts, extension_name=extension_name)
        _ensure_extensions()
        extra = {
            "NegNear": NEGATION_FOLLOWING_NEAR,
            "UncPre": uncertainty_preceding or UNCERTAINTY_PRECEDING,
            "UncFol": uncertainty_following or UNCERTAINTY_FOLLOWING,
            "UncNear": UNCERTAINTY_FOLLOWING_NEAR,
            "HistPre": historical_preceding or HISTORICAL_PRECEDING,
            "HistFol": historical_following or HISTORICAL_FOLLOWING,
            "NegTerm": neg_only,
            "PrecedingBound": bound["preceding_negations"],
            "FollowingBound": bound["following_negations"],
        }
        for label, phrases in extra.items():
            if phrases:
                self.matcher.add(label, list(nlp.tokenizer.pipe(phrases)))
        self.windows = dict(DEFAULT_WINDOWS)
        for key, value in (windows or {}).items():
            kind, _, direction = str(key).partition(":")
            self.windows[(kind, direction)] = value
        self._separator_ids = numpy.asarray(
            [nlp.vocab.strings.add(w) for w in sorted(_LIST_SEPARATORS)], dtype="uint64"
        )
        self._separators: tuple[Doc, list[int]] | None = None  # the last doc's, see below
        #: entity ids (lexicon patterns) whose own negation word makes them absent, and the words
        self.own_negation_ids: frozenset[str] = frozenset()
        self.own_negation_words: frozenset[str] = frozenset()

    def set_own_negation(self, ids: list[str] | set[str], words: list[str] | set[str]) -> None:
        """Mentions whose ``ent_id`` is in ``ids`` and that hold one of ``words`` are absent by
        their own wording (the lexicon's ``<NOT>`` slot: "heart is not enlarged"). Any other
        cue inside a mention is part of the mention and decides nothing."""
        self.own_negation_ids = frozenset(ids)
        self.own_negation_words = frozenset(w.lower() for w in words)

    # -- cues -------------------------------------------------------------------------------
    def cues(self, doc: Doc) -> list[Cue]:
        """All triggers in ``doc``, matched across runs of whitespace. Overlapping ones resolve
        to the longest (pseudo ones kept); a preceding-only cue that an overlapping
        following-only cue ends on survives ("was not" + "not", "was negative" + "negative
        for"; not "was removed" + "removed", which reads both ways)."""
        labels: dict[tuple[int, int], set[str]] = {}
        strings = self.nlp.vocab.strings
        for m, start, end in self.matcher(doc):
            labels.setdefault((start, end), set()).add(strings[m])
        self._match_across_whitespace(doc, labels)
        # longest first, then earliest: spaCy's filter_spans on (start, end) pairs
        chosen: list[tuple[int, int]] = []
        taken: set[int] = set()
        for key in sorted(labels, key=lambda k: (k[0] - k[1], k[0])):
            if not any(i in taken for i in range(*key)):
                chosen.append(key)
                taken.update(range(*key))
        survivors: set[tuple[int, int]] = set()
        following_only = [key for key in chosen if labels[key] <= _FOL_LABELS]
        if following_only:
            keys = sorted(labels)
            starts = [k[0] for k in keys]
            longest = max(k[1] - k[0] for k in keys)

            def overlapping(a: int, b: int) -> list[tuple[int, int]]:
                lo = bisect.bisect_left(starts, a - longest + 1)
                return [k for k in keys[lo : bisect.bisect_left(starts, b)] if k[1] > a]

            chosen_set = set(chosen)
            for key in following_only:
                survivors.update(self._surviving_preceding(key, labels, chosen_set, overlapping))
        out = []
        for key in sorted(chosen + list(survivors)):
            found = labels[key]
            if "pseudo" in found:  # a pseudo-trigger cancels every other reading of the phrase
                found = {"pseudo"}
            elif key in survivors:
                found = found & _PRE_LABELS
            text = doc[key[0] : key[1]].text
            # one phrase can be a cue in both directions ("resolved pneumonia" / "pneumonia
            # resolved", "A versus B"): keep every reading
            for label in sorted(found):
                kind, direction = _LABELS.get(label, ("", ""))
                if kind:
                    out.append(Cue(kind, direction, key[0], key[1], text, label in _BOUND_LABELS))
        return out

    @staticmethod
    def _surviving_preceding(
        key: tuple[int, int],
        labels: dict[tuple[int, int], set[str]],
        chosen: set[tuple[int, int]],
        overlapping,
    ) -> list[tuple[int, int]]:
        """The longest preceding cue overlapping the following-only cue ``key`` that ends where
        it ends or later, when no other kept cue overlaps it. ``overlapping(a, b)``: the matched
        spans that overlap tokens a..b."""
        best: tuple[int, int] | None = None
        for other in overlapping(*key):
            found = labels[other]
            if other == key or not (found & _PRE_LABELS) or "pseudo" in found:
                continue
            if found & _FOL_LABELS:
                continue  # read both ways ("removed"): "was removed" already says it
            if other[1] < key[1]:
                continue
            # it must not be part of a third cue either ("was not seen": "not" is "not seen"'s)
            lo, hi = min(key[0], other[0]), max(key[1], other[1])
            if any(
                k not in (key, other) and (k[0] < lo or k[1] > hi or k in chosen)
                for k in overlapping(*other)
            ):
                continue
            if best is None or other[1] - other[0] > best[1] - best[0]:
                best = other
        return [best] if best is not None else []

    def _match_across_whitespace(self, doc: Doc, labels: dict[tuple[int, int], set[str]]) -> None:
        """Add the triggers that a run of whitespace inside a sentence split ("negative   for",
        "no\\nevidence of"): the matcher runs again on the words alone."""
        n = len(doc)
        if n < 3:
            return
        spaces = doc.user_data.get("medfuse_spaces")
        if spaces is None:  # a doc from another pipeline
            spaces = numpy.flatnonzero(doc.to_array([IS_SPACE]).reshape(-1)).tolist()
        inner = [i for i in spaces if 0 < i < n - 1]
        if not inner:
            return
        sent_starts = self._sent_starts(doc)
        starts_set = set(sent_starts)
        space_set = set(spaces)
        if all(i + 1 in starts_set or i + 1 in space_set for i in inner):
            return
        keep = [i for i in range(n) if i not in space_set]
        words = Doc(doc.vocab, words=[doc[i].text for i in keep])
        strings = self.nlp.vocab.strings
        for m, a, b in self.matcher(words):
            start, end = keep[a], keep[b - 1] + 1
            if end - start == b - a:
                continue  # no whitespace inside: already found
            k = bisect.bisect_right(sent_starts, start)
            if k < len(sent_starts) and sent_starts[k] < end:
                continue  # crosses a sentence start
            labels.setdefault((start, end), set()).add(strings[m])

    @staticmethod
    def _sent_starts(doc: Doc) -> list[int]:
        sents = doc.user_data.get("medfuse_sent_starts")
        if sents is None:
            sents = [s.start for s in doc.sents]
        return list(sents)

    def _chunks(self, doc: Doc, cues: list[Cue]) -> list[tuple[int, int]]:
        sents = self._sent_starts(doc)
        bounds = {c.start for c in cues if c.kind == "term" and c.direction == ""}
        starts = sorted({0, *sents} | bounds | {len(doc)})
        return [(a, b) for a, b in itertools.pairwise(starts) if b > a]

    def _in_window(self, cue: Cue, dist: int) -> bool:
        limit = self.windows.get((cue.kind, cue.direction))
        return limit is None or dist <= limit

    def _separator_between(self, doc: Doc, a: int, b: int) -> bool:
        """Whether a list separator (:data:`_LIST_SEPARATORS`) stands in ``doc[a:b]``; the
        separators' positions are found once per doc."""
        cached = self._separators
        if cached is None or cached[0] is not doc:
            lower = doc.to_array([LOWER]).reshape(-1)
            positions = numpy.flatnonzero(numpy.isin(lower, self._separator_ids)).tolist()
            cached = self._separators = (doc, positions)
        k = bisect.bisect_left(cached[1], a)
        return k < len(cached[1]) and cached[1][k] < b

    def _new_clause(self, doc: Doc, cue: Cue, a: int, b: int, ent_starts: list[int]) -> bool:
        """Whether ``doc[a:b]``, between a clause-bound cue and a mention, starts a new clause."""
        for i in range(a, b):
            w = doc[i].lower_
            if w not in CLAUSE_BREAKS:
                continue
            if w not in _COORDINATORS:
                return True
            if cue.direction == "pre":
                if i == cue.end:
                    return True  # "her pain resolved and nausea developed"
                k = bisect.bisect_left(ent_starts, i + 1)
                if k >= len(ent_starts) or ent_starts[k] != i + 1:
                    return True  # "resolved pneumonia and she developed a cough"
            elif all(t.lower_ in _CLAUSE_GLUE or t.lower_.endswith("ly") for t in doc[i + 1 : b]):
                return True  # "was found and (subsequently) removed"
        return False

    def resolve(
        self,
        doc: Doc,
        ent: Span,
        cues: list[Cue],
        *,
        ent_starts: list[int] | None = None,
        neg_terms: list[int] | None = None,
    ) -> tuple[str, bool, str]:
        """(status, historical, cue text) of one mention, given the cues of its chunk.

        ``ent_starts`` (sorted token starts of the doc's mentions) and ``neg_terms`` (sorted
        starts of negation-only terminations) default to those of ``doc``."""
        if ent_starts is None:
            ent_starts = [e.start for e in doc.ents]
        if neg_terms is None:
            neg_terms = [c.start for c in self.cues(doc) if c.kind == "term" and c.direction]
        best: tuple[tuple[int, int, int, int], Cue] | None = None  # (rank, cue)
        historical = False
        negations: list[Cue] = []  # preceding negations that reach the mention
        for cue in cues:
            if cue.kind in ("pseudo", "term"):
                continue
            if cue.direction == "pre":
                if cue.end > ent.start:
                    continue  # inside or overlapping the mention: part of it, not a cue
                dist = ent.start - cue.end
                gap = (cue.end, ent.start)
            else:  # "fol" and "near" cues come after the mention
                if cue.start < ent.end:
                    continue
                dist = cue.start - ent.end
                gap = (ent.end, cue.start)
            if not self._in_window(cue, dist):
                continue
            if cue.kind == "hist":
                between = doc[min(cue.end, ent.start) : max(cue.start, ent.start)]
                if not any(t.text in _PUNCT_BLOCKS_HISTORY for t in between):
                    historical = True
                continue
            if cue.kind == "neg":
                t = bisect.bisect_left(neg_terms, gap[0])
                if t < len(neg_terms) and neg_terms[t] < gap[1]:
                    continue  # "etiology of", "secondary to", ... end the negation's scope
                if cue.bound and (
                    (cue.direction == "pre" and dist > BOUND_PRECEDING_WINDOW)
                    or self._new_clause(doc, cue, *gap, ent_starts)
                ):
                    continue
                if cue.direction == "pre":
                    negations.append(cue)
            # nearest first; on a tie uncertainty, then a preceding cue, then the earlier one
            rank = (
                dist,
                0 if cue.kind == "unc" else 1,
                0 if cue.direction == "pre" else 1,
                cue.start,
            )
            if best is None or rank < best[0]:
                best = (rank, cue)
        if best is None:
            return "present", historical, ""
        cue = best[1]
        if cue.kind == "unc" and cue.direction == "pre":
            # a negation whose scope holds the uncertainty cue wins ("no findings suggesting
            # osteomyelitis", "not suspicious for malignancy"), unless a list separator stands
            # between them ("no pneumothorax, possible effusion": the negation's object ended)
            for neg in sorted(negations, key=lambda c: -c.end):
                if neg.end <= cue.start:
                    if not self._separator_between(doc, neg.end, cue.start):
                        return "absent", historical, neg.text
                    break
        return ("absent" if cue.kind == "neg" else "uncertain"), historical, cue.text

    def _candidates(self, ent: Span, local: list[Cue], index: _ChunkIndex) -> list[Cue]:
        """The cues of a chunk that can matter for ``ent`` (same answer as all of them, found in
        logarithmic time, so that a sentence with thousands of mentions stays linear)."""
        out: list[Cue] = []
        # cues inside the mention
        i = bisect.bisect_left(index.starts, ent.start)
        while i < len(local) and local[i].start < ent.end:
            out.append(local[i])
            i += 1
        # cues after it, up to the widest finite following window
        j = i
        while j < len(local) and local[j].start - ent.end <= index.fol_reach:
            out.append(local[j])
            j += 1
        # cues before it, up to the widest finite preceding window ...
        k = bisect.bisect_right(index.ends, ent.start) - 1
        while k >= 0 and ent.start - local[k].end <= index.pre_reach:
            out.append(local[k])
            k -= 1
        # ... and the nearest cue of each family whose window is unlimited
        for family_ends, family in index.unlimited:
            m = bisect.bisect_right(family_ends, ent.start) - 1
            if m >= 0:
                out.append(family[m])
        for family_starts, family in index.unlimited_fol:
            m = bisect.bisect_left(family_starts, ent.end)
            if m < len(family):
                out.append(family[m])
        return out

    def _own_negation(self, ent: Span) -> str:
        """The negation word of a mention that is absent by its own wording, else ""."""
        if self.own_negation_ids and ent.ent_id_ in self.own_negation_ids:
            for t in ent:
                if t.lower_ in self.own_negation_words:
                    return t.text
        return ""

    def __call__(self, doc: Doc) -> Doc:
        all_ents = list(doc.ents)
        if not all_ents:
            return doc
        ent_starts = [e.start for e in all_ents]  # doc.ents are in order
        ent_ends = [e.end for e in all_ents]
        cues = []
        for c in sorted(self.cues(doc), key=lambda c: (c.start, c.end)):
            k = bisect.bisect_right(ent_starts, c.start) - 1
            if k >= 0 and c.end <= ent_ends[k]:
                continue  # inside a mention: part of the mention, not a cue
            cues.append(c)
        neg_terms = [c.start for c in cues if c.kind == "term" and c.direction]
        cue_starts = [c.start for c in cues]
        for a, b in self._chunks(doc, cues):
            ents = all_ents[bisect.bisect_left(ent_starts, a) : bisect.bisect_left(ent_starts, b)]
            if not ents:
                continue
            local = cues[bisect.bisect_left(cue_starts, a) : bisect.bisect_left(cue_starts, b)]
            index = _ChunkIndex.build(local, self.windows)
            for ent in ents:
                status, historical, cue = self.resolve(
                    doc,
                    ent,
                    self._candidates(ent, local, index),
                    ent_starts=ent_starts,
                    neg_terms=neg_terms,
                )
                own = self._own_negation(ent)
                if own:
                    status, cue = "absent", own
                ent._.status = status
                ent._.historical = historical
                ent._.cue = cue
                ent._.set(self.extension_name, status == "absent")
        self._separators = None
        return doc
