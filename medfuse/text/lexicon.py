"""The shipped finding lexicon: surface forms in radiology reports -> finding codes.

The lexicon lives in ``medfuse/assets/lexicon/findings.yaml`` (see the comment at its top for the
pattern notation). :func:`load_lexicon` reads and validates it; :meth:`Lexicon.ruler_patterns`
turns it into spaCy ``EntityRuler`` patterns, used both by medfuse's parser and by the plain
negspacy baseline of ``benchmarks/report_labels.py``.
"""

from __future__ import annotations

import functools
import itertools
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError

__all__ = [
    "DEFAULT_LEXICON_PATH",
    "FINDING_CODES",
    "IGNORE_LABEL",
    "Lexicon",
    "compile_pattern",
    "load_lexicon",
    "pattern_phrases",
]

#: Finding codes in label order (CheXpert-compatible plus CT findings).
FINDING_CODES: tuple[str, ...] = (
    "no_finding",
    "cardiomegaly",
    "lung_opacity",
    "nodule",
    "mass",
    "edema",
    "consolidation",
    "pneumonia",
    "atelectasis",
    "pneumothorax",
    "pleural_effusion",
    "emphysema",
    "fracture",
    "support_devices",
)

#: Entity label of ``ignore`` phrases (matched to block shorter matches, then dropped).
IGNORE_LABEL = "_IGNORE"

DEFAULT_LEXICON_PATH = (
    Path(__file__).resolve().parent.parent / "assets" / "lexicon" / "findings.yaml"
)

_TOKEN_RE = re.compile(r"^(?P<body>.+?)(?P<op>[?*+])?$")


@dataclass
class Lexicon:
    """Synonyms and token patterns for each finding code."""

    #: code -> list of phrases (matched lower-cased, token by token)
    phrases: dict[str, list[str]]
    #: code -> list of pattern strings in the lexicon notation
    patterns: dict[str, list[str]] = field(default_factory=dict)
    #: word classes usable in patterns as ``<NAME>``
    classes: dict[str, list[str]] = field(default_factory=dict)
    #: phrases that block shorter findings and are then dropped
    ignore: list[str] = field(default_factory=list)
    #: code -> human-readable label
    labels: dict[str, str] = field(default_factory=dict)
    #: code -> description
    descriptions: dict[str, str] = field(default_factory=dict)
    source: str = ""

    @property
    def codes(self) -> list[str]:
        """Codes with surface forms, in :data:`FINDING_CODES` order (``no_finding`` excluded)."""
        have = set(self.phrases) | set(self.patterns)
        ordered = [c for c in FINDING_CODES if c in have]
        return ordered + sorted(have - set(ordered))

    def ruler_patterns(self) -> list[dict[str, Any]]:
        """Patterns for spaCy's ``EntityRuler`` (label = code, id = the lexicon entry)."""
        out: list[dict[str, Any]] = []
        for code in self.codes:
            for phrase in self.phrases.get(code, []):
                out.append({"label": code, "pattern": phrase, "id": phrase})
            for pat in self.patterns.get(code, []):
                tokens = compile_pattern(pat, self.classes)
                phrases = pattern_phrases(tokens)
                if phrases is None:
                    out.append({"label": code, "pattern": tokens, "id": pat})
                else:
                    out.extend({"label": code, "pattern": p, "id": pat} for p in phrases)
        for phrase in self.ignore:
            out.append({"label": IGNORE_LABEL, "pattern": phrase, "id": phrase})
        return out

    def own_negation_patterns(self) -> list[str]:
        """Patterns with a ``<NOT>`` slot: a mention they match is absent when the slot holds a
        word ("the heart is not enlarged")."""
        return [
            pat
            for pats in self.patterns.values()
            for pat in pats
            if any(_TOKEN_RE.match(tok).group("body") == "<NOT>" for tok in pat.split())
        ]

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": 1,
            "classes": self.classes,
            "findings": {
                code: {
                    "label": self.labels.get(code, code),
                    "description": self.descriptions.get(code, ""),
                    "phrases": self.phrases.get(code, []),
                    "patterns": self.patterns.get(code, []),
                }
                for code in self.codes
            },
            "ignore": self.ignore,
        }


def compile_pattern(pattern: str, classes: dict[str, list[str]]) -> list[dict[str, Any]]:
    """Compile the lexicon's pattern notation into a spaCy ``Matcher`` token pattern.

    ``"<HEART> size? is|appears enlarged"`` ->
    ``[{"LOWER": {"IN": [...]}}, {"LOWER": "size", "OP": "?"}, {"LOWER": {"IN": ["is", "appears"]}},
    {"LOWER": "enlarged"}]``
    """
    tokens: list[dict[str, Any]] = []
    for raw in pattern.split():
        m = _TOKEN_RE.match(raw)
        if m is None:  # pragma: no cover - split() never yields empty strings
            raise ConfigError(f"bad token {raw!r} in lexicon pattern {pattern!r}")
        body, op = m.group("body"), m.group("op")
        spec: dict[str, Any]
        if body == "_":
            spec = {}
        elif body.startswith("<") and body.endswith(">"):
            name = body[1:-1]
            if name not in classes:
                raise ConfigError(
                    f"lexicon pattern {pattern!r} uses undefined class <{name}>",
                    hint=f"define it under `classes`; known: {', '.join(sorted(classes)) or '(none)'}",
                )
            spec = {"LOWER": {"IN": [w.lower() for w in classes[name]]}}
        elif "|" in body:
            spec = {"LOWER": {"IN": [w.lower() for w in body.split("|") if w]}}
        else:
            spec = {"LOWER": body.lower()}
        if op:
            spec["OP"] = op
        tokens.append(spec)
    if not tokens or all(t.get("OP") in ("?", "*") for t in tokens):
        raise ConfigError(f"lexicon pattern {pattern!r} can match nothing or the empty string")
    return tokens


#: A finite pattern that stands for at most this many phrases is matched as phrases.
MAX_PATTERN_PHRASES = 1000


def pattern_phrases(
    tokens: list[dict[str, Any]], limit: int = MAX_PATTERN_PHRASES
) -> list[str] | None:
    """The phrases a compiled pattern stands for, when it has no ``*`` / ``+`` / ``_`` and there
    are at most ``limit`` of them; else None. spaCy's Matcher evaluates a pattern whose first
    token is a set (``a|b``, ``<CLASS>``) with a Python call on every token of every text, while
    its PhraseMatcher matches any number of phrases in C, so finite patterns become phrases."""
    choices: list[list[str]] = []
    total = 1
    for spec in tokens:
        op = spec.get("OP")
        lower = spec.get("LOWER")
        if op in ("*", "+") or lower is None or set(spec) - {"LOWER", "OP"}:
            return None
        words = list(lower["IN"]) if isinstance(lower, dict) else [lower]
        if op == "?":
            words = [*words, ""]
        choices.append(words)
        total *= len(words)
        if total > limit:
            return None
    out = {" ".join(w for w in combo if w) for combo in itertools.product(*choices)}
    out.discard("")
    return sorted(out)


def _as_str_list(value: Any, where: str, path: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise ConfigError(f"{where} must be a list of non-empty strings", path=path)
    return [v.strip() for v in value]


def load_lexicon(path: str | os.PathLike | None = None) -> Lexicon:
    """Read and validate a lexicon YAML file (the shipped one by default)."""
    if path is None:
        return _default_lexicon()
    return _load(Path(path))


@functools.lru_cache(maxsize=1)
def _default_lexicon() -> Lexicon:
    return _load(DEFAULT_LEXICON_PATH)


def _load(path: Path) -> Lexicon:
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError("lexicon file not found", path=path) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"lexicon is not valid YAML: {exc}", path=path) from None
    spath = str(path)
    if not isinstance(data, dict) or not isinstance(data.get("findings"), dict):
        raise ConfigError("lexicon must be a mapping with a `findings` mapping", path=path)
    classes_raw = data.get("classes") or {}
    if not isinstance(classes_raw, dict):
        raise ConfigError("`classes` must be a mapping of name -> list of words", path=path)
    classes = {str(k): _as_str_list(v, f"classes.{k}", spath) for k, v in classes_raw.items()}
    lex = Lexicon(phrases={}, classes=classes, source=spath)
    for code, entry in data["findings"].items():
        if not isinstance(entry, dict):
            raise ConfigError(f"findings.{code} must be a mapping", path=path)
        if not re.fullmatch(r"[a-z][a-z0-9_]*", str(code)):
            raise ConfigError(f"finding code {code!r} must be snake_case", path=path)
        lex.phrases[code] = _as_str_list(entry.get("phrases"), f"findings.{code}.phrases", spath)
        lex.patterns[code] = _as_str_list(entry.get("patterns"), f"findings.{code}.patterns", spath)
        lex.labels[code] = str(entry.get("label", code))
        lex.descriptions[code] = " ".join(str(entry.get("description", "")).split())
        for pat in lex.patterns[code]:
            try:
                compile_pattern(pat, classes)  # validate early, with the file named
            except ConfigError as exc:
                raise ConfigError(exc.reason, path=path, hint=exc.hint) from None
    lex.ignore = _as_str_list(data.get("ignore"), "ignore", spath)
    return lex
