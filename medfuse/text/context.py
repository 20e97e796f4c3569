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
  free air ... not seen" does not reach back across a whole sentence.

Each entity gets ``ent._.status`` ("present" / "absent" / "uncertain"), ``ent._.historical``,
``ent._.cue`` (the deciding trigger text) and, for compatibility with negspacy,
``ent._.negex`` (True when absent).
"""

from __future__ import annotations

import bisect
import itertools
from dataclasses import dataclass

from negspacy.negation import Negex
from negspacy.termsets import termset
from spacy.language import Language
from spacy.tokens import Doc, Span

__all__ = [
    "HISTORICAL_FOLLOWING",
    "HISTORICAL_PRECEDING",
    "NEGATION_FOLLOWING",
    "NEGATION_FOLLOWING_NEAR",
    "NEGATION_PRECEDING",
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
    "removed",  # "removed ET tube" (rare, but unambiguous)
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

TERMINATION: list[str] = [
    t
    for t in _BASE["termination"]
    # negspacy's clinical terminations ("secondary to", "cause of", "source of", ...) would cut
    # "possibly secondary to pneumonia" away from its "possibly"; the plain English ones stay.
    if t in set(termset("en").get_patterns()["termination"])
] + [
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


def radiology_termset() -> dict[str, list[str]]:
    """The negation termset (negspacy's four keys) medfuse uses."""
    return {
        "pseudo_negations": list(PSEUDO),
        "preceding_negations": list(NEGATION_PRECEDING),
        "following_negations": list(NEGATION_FOLLOWING),
        "termination": list(TERMINATION),
    }


@dataclass(frozen=True)
class Cue:
    """A matched trigger: kind in {"neg", "unc", "hist", "pseudo", "term"}, direction "pre"/"fol"."""

    kind: str
    direction: str
    start: int
    end: int
    text: str


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
    "UncPre": ("unc", "pre"),
    "UncFol": ("unc", "fol"),
    "UncNear": ("unc", "near"),
    "HistPre": ("hist", "pre"),
    "HistFol": ("hist", "fol"),
}

_PUNCT_BLOCKS_HISTORY = {",", ";", ":", "(", ")", "."}


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
        super().__init__(
            nlp, name, neg_termset or radiology_termset(), extension_name=extension_name
        )
        _ensure_extensions()
        extra = {
            "NegNear": NEGATION_FOLLOWING_NEAR,
            "UncPre": uncertainty_preceding or UNCERTAINTY_PRECEDING,
            "UncFol": uncertainty_following or UNCERTAINTY_FOLLOWING,
            "UncNear": UNCERTAINTY_FOLLOWING_NEAR,
            "HistPre": historical_preceding or HISTORICAL_PRECEDING,
            "HistFol": historical_following or HISTORICAL_FOLLOWING,
        }
        for label, phrases in extra.items():
            self.matcher.add(label, list(nlp.tokenizer.pipe(phrases)))
        self.windows = dict(DEFAULT_WINDOWS)
        for key, value in (windows or {}).items():
            kind, _, direction = str(key).partition(":")
            self.windows[(kind, direction)] = value

    # -- cues -------------------------------------------------------------------------------
    def cues(self, doc: Doc) -> list[Cue]:
        """All triggers in ``doc``; overlapping ones resolve to the longest, pseudo ones kept."""
        from spacy.util import filter_spans

        labels: dict[tuple[int, int], set[str]] = {}
        for m, start, end in self.matcher(doc):
            labels.setdefault((start, end), set()).add(self.nlp.vocab.strings[m])
        out = []
        for sp in filter_spans([Span(doc, a, b) for a, b in labels]):
            found = labels[(sp.start, sp.end)]
            if "pseudo" in found:  # a pseudo-trigger cancels every other reading of the phrase
                found = {"pseudo"}
            # one phrase can be a cue in both directions ("resolved pneumonia" / "pneumonia
            # resolved", "A versus B"): keep every reading
            for label in sorted(found):
                kind, direction = _LABELS.get(label, ("", ""))
                if kind:
                    out.append(Cue(kind, direction, sp.start, sp.end, sp.text))
        return out

    def _chunks(self, doc: Doc, cues: list[Cue]) -> list[tuple[int, int]]:
        sents = doc.user_data.get("medfuse_sent_starts")
        if sents is None:
            sents = [s.start for s in doc.sents]
        starts = sorted({0, *sents} | {c.start for c in cues if c.kind == "term"} | {len(doc)})
        return [(a, b) for a, b in itertools.pairwise(starts) if b > a]

    def _in_window(self, cue: Cue, dist: int) -> bool:
        limit = self.windows.get((cue.kind, cue.direction))
        return limit is None or dist <= limit

    def resolve(self, doc: Doc, ent: Span, cues: list[Cue]) -> tuple[str, bool, str]:
        """(status, historical, cue text) of one mention, given the cues of its chunk."""
        best: tuple[tuple[int, int, int, int], Cue] | None = None  # (rank, cue)
        historical = False
        for cue in cues:
            if cue.kind in ("pseudo", "term"):
                continue
            if cue.direction == "pre":
                if cue.end <= ent.start:
                    dist = ent.start - cue.end
                elif cue.kind == "neg" and ent.start <= cue.start and cue.end <= ent.end:
                    dist = -1  # negation inside a pattern mention: "heart is not enlarged"
                else:
                    continue
            else:  # "fol" and "near" cues come after the mention
                if cue.start < ent.end:
                    continue
                dist = cue.start - ent.end
            if not self._in_window(cue, dist):
                continue
            if cue.kind == "hist":
                between = doc[min(cue.end, ent.start) : max(cue.start, ent.start)]
                if not any(t.text in _PUNCT_BLOCKS_HISTORY for t in between):
                    historical = True
                continue
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

    def __call__(self, doc: Doc) -> Doc:
        all_ents = list(doc.ents)
        if not all_ents:
            return doc
        cues = sorted(self.cues(doc), key=lambda c: (c.start, c.end))
        ent_starts = [e.start for e in all_ents]  # doc.ents are in order
        cue_starts = [c.start for c in cues]
        for a, b in self._chunks(doc, cues):
            ents = all_ents[bisect.bisect_left(ent_starts, a) : bisect.bisect_left(ent_starts, b)]
            if not ents:
                continue
            local = cues[bisect.bisect_left(cue_starts, a) : bisect.bisect_left(cue_starts, b)]
            index = _ChunkIndex.build(local, self.windows)
            for ent in ents:
                status, historical, cue = self.resolve(
                    doc, ent, self._candidates(ent, local, index)
                )
                ent._.status = status
                ent._.historical = historical
                ent._.cue = cue
                ent._.set(self.extension_name, status == "absent")
        return doc
