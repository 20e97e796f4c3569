"""Text encoders for radiology reports (registry ``text_encoders``).

Every encoder maps a batch of reports (``Report``, plain text, or ``None`` for a missing report)
to a :class:`TextEncoding`: token embeddings ``[B, T, D]``, a padding mask ``[B, T]`` (True on
real tokens), a pooled vector ``[B, D]``, the character span of every token in its report
(what explanations need to map token attributions back onto the text), and which reports are
present (missing-modality mask).

==============  ===============================================================================
``transformer``  small Transformer trained from scratch over scispacy tokens, with finding-status
                 marker tokens (``[POS]`` / ``[NEG]`` / ``[UNC]`` / ``[HIST]``) inserted before
                 each finding mention
``bilstm``       bidirectional LSTM over the same tokens
``findings``     the parser's finding vector (one-hot status per finding code): transparent,
                 strong baseline, no training needed
``hf_local``     a HuggingFace checkpoint folder already on disk (``pip install 'medfuse[hf]'``),
                 loaded with ``local_files_only=True``
==============  ===============================================================================

Vocabulary and tokenizer state are part of the encoder's :meth:`TextEncoder.config`; a saved
model keeps them in its card and ``tokenizer.json`` (:func:`medfuse.models.model.save_model`).
Each entry's registry metadata ``tiny`` holds the arguments that make it test-sized.

    enc = text_encoders.create("transformer", tokenizer=ReportTokenizer.from_reports(train), dim=128)
    out = enc.encode([report_a, "No pneumothorax.", None])
    out.tokens.shape, out.mask.shape, out.pooled.shape, out.spans[0][:3]
"""

from __future__ import annotations

import json
import os
import zlib
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from ...errors import ConfigError, ModelError
from ...registry import text_encoders
from ...types import FindingStatus, Report
from ..masks import padding_attn_mask

__all__ = [
    "MARKERS",
    "SPECIAL_TOKENS",
    "BiLSTMTextEncoder",
    "FindingsTextEncoder",
    "HFLocalTextEncoder",
    "ReportTokenizer",
    "TextEncoder",
    "TextEncoding",
    "TokenBatch",
    "TransformerTextEncoder",
    "Vocabulary",
    "as_reports",
    "text_encoder_from_config",
]

ReportLike = Report | str | None
Span = tuple[int, int]
NO_SPAN: Span = (-1, -1)

PAD, UNK, CLS, SEP = "[PAD]", "[UNK]", "[CLS]", "[SEP]"
MARKERS: dict[FindingStatus, str] = {
    FindingStatus.PRESENT: "[POS]",
    FindingStatus.ABSENT: "[NEG]",
    FindingStatus.UNCERTAIN: "[UNC]",
}
HIST = "[HIST]"
SPECIAL_TOKENS: tuple[str, ...] = (PAD, UNK, CLS, SEP, *MARKERS.values(), HIST)


def code_marker(status: FindingStatus, code: str, counted: bool = True) -> str:
    """The code-specific marker token, e.g. ``[POS:cardiomegaly]``; ``[POS:cardiomegaly:CTX]``
    for a mention the report labeler does not count (historical, or in the indication,
    history, comparison or technique: :func:`medfuse.text.labels.counts_for_label`)."""
    return f"{MARKERS[status][:-1]}:{code}{'' if counted else ':CTX'}]"


# -- outputs -------------------------------------------------------------------------------------
@dataclass
class TextEncoding:
    """What every text encoder returns."""

    #: token embeddings [B, T, D] (zero at padded positions)
    tokens: Tensor
    #: [B, T] bool, True on real tokens
    mask: Tensor
    #: [B, D] pooled report embedding (zero for missing reports)
    pooled: Tensor
    #: per report, per token position: (start, end) character offsets into ``Report.text``;
    #: (-1, -1) for special tokens and padding. Marker tokens carry their finding's span.
    spans: list[list[Span]]
    #: [B] bool, False where the report is missing or empty
    present: Tensor

    @property
    def dim(self) -> int:
        return int(self.pooled.shape[-1])

    def to(self, device: torch.device | str) -> TextEncoding:
        return TextEncoding(
            self.tokens.to(device),
            self.mask.to(device),
            self.pooled.to(device),
            self.spans,
            self.present.to(device),
        )


@dataclass
class TokenBatch:
    """A tokenized batch: ids [B, T] (long), mask [B, T] (bool), spans, present [B] (bool), and the
    token strings (for inspection)."""

    input_ids: Tensor
    mask: Tensor
    spans: list[list[Span]]
    present: Tensor
    tokens: list[list[str]]
    #: the parser's finding status per code [B, C, 4] (:func:`finding_status`), when the
    #: tokenizer was built with ``finding_features``
    findings: Tensor | None = None

    def to(self, device: torch.device | str) -> TokenBatch:
        return TokenBatch(
            self.input_ids.to(device),
            self.mask.to(device),
            self.spans,
            self.present.to(device),
            self.tokens,
            None if self.findings is None else self.findings.to(device),
        )


# -- vocabulary and tokenizer --------------------------------------------------------------------
class Vocabulary:
    """Token <-> id map. Ids: the special tokens first, then words; optional hash buckets give
    out-of-vocabulary words a stable shared id instead of ``[UNK]``."""

    def __init__(self, words: Iterable[str] = (), *, hash_buckets: int = 0):
        self.itos: list[str] = list(SPECIAL_TOKENS)
        seen = set(self.itos)
        for w in words:
            if w not in seen:
                self.itos.append(w)
                seen.add(w)
        self.stoi = {w: i for i, w in enumerate(self.itos)}
        if hash_buckets < 0:
            raise ConfigError("hash_buckets must be >= 0")
        self.hash_buckets = int(hash_buckets)

    def __len__(self) -> int:
        return len(self.itos) + self.hash_buckets

    def __contains__(self, token: object) -> bool:
        return token in self.stoi

    def index(self, token: str) -> int:
        i = self.stoi.get(token)
        if i is not None:
            return i
        if self.hash_buckets:
            return len(self.itos) + zlib.crc32(token.encode("utf-8")) % self.hash_buckets
        return self.stoi[UNK]

    def token(self, index: int) -> str:
        return self.itos[index] if index < len(self.itos) else f"[HASH:{index - len(self.itos)}]"

    @property
    def pad_id(self) -> int:
        return self.stoi[PAD]

    @classmethod
    def build(
        cls,
        token_lists: Iterable[Iterable[str]],
        *,
        min_freq: int = 1,
        max_size: int | None = None,
        hash_buckets: int = 0,
    ) -> Vocabulary:
        """Vocabulary of the words seen at least ``min_freq`` times (most frequent first)."""
        counts: Counter[str] = Counter()
        for toks in token_lists:
            counts.update(t for t in toks if t not in SPECIAL_TOKENS)
        words = [
            w for w, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])) if n >= min_freq
        ]
        if max_size is not None:
            words = words[: max(0, max_size - len(SPECIAL_TOKENS))]
        return cls(words, hash_buckets=hash_buckets)

    def to_dict(self) -> dict[str, Any]:
        return {
            "tokens": self.itos[len(SPECIAL_TOKENS) :],
            "specials": list(SPECIAL_TOKENS),
            "hash_buckets": self.hash_buckets,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Vocabulary:
        if list(data.get("specials", SPECIAL_TOKENS)) != list(SPECIAL_TOKENS):
            raise ModelError("vocabulary was saved with different special tokens")
        return cls(data.get("tokens", []), hash_buckets=int(data.get("hash_buckets", 0)))

    def save(self, path: str | os.PathLike) -> Path:
        from ..._atomic import atomic_write_text

        return atomic_write_text(path, json.dumps(self.to_dict(), ensure_ascii=False))

    @classmethod
    def load(cls, path: str | os.PathLike) -> Vocabulary:
        try:
            return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))
        except (OSError, json.JSONDecodeError) as exc:
            raise ModelError(f"cannot read vocabulary: {exc}", path=path) from None


def _seed_words() -> list[str]:
    """Words that matter for findings and their status: lexicon phrases and context cues."""
    from ...text import context
    from ...text.lexicon import load_lexicon
    from ...text.pipeline import get_tokenizer

    tok = get_tokenizer()
    lex = load_lexicon()
    phrases = [p for ps in lex.phrases.values() for p in ps]
    cues = [
        *context.NEGATION_PRECEDING,
        *context.NEGATION_FOLLOWING,
        *context.UNCERTAINTY_PRECEDING,
        *context.UNCERTAINTY_FOLLOWING,
        *context.HISTORICAL_PRECEDING,
        *context.PSEUDO,
    ]
    words: list[str] = []
    for text in phrases + cues:
        words.extend(t.text.lower() for t in tok(text) if not t.is_space)
    return words


def as_reports(reports: Sequence[ReportLike], *, parse: bool = True) -> list[Report | None]:
    """Reports for a batch: strings are parsed (when ``parse``), blank ones and ``None`` are
    missing (``None``)."""
    out: list[Report | None] = [None] * len(reports)
    to_parse: list[int] = []
    for i, r in enumerate(reports):
        if isinstance(r, Report):
            out[i] = r if r.text.strip() else None
        elif isinstance(r, str):
            if r.strip():
                if parse:
                    to_parse.append(i)
                else:
                    out[i] = Report(text=r)
        elif r is not None:
            raise ConfigError(f"text encoders take Report, str or None, not {type(r).__name__}")
    if to_parse:
        from ...text.pipeline import parse_reports

        for i, rep in zip(to_parse, parse_reports([reports[i] for i in to_parse]), strict=True):
            out[i] = rep
    return out


class ReportTokenizer:
    """scispacy-rule tokens of a report, lower-cased, digits folded to ``0``, with a ``[CLS]``
    token first and finding-status markers before each finding mention.

    Inputs may be :class:`Report` objects (their findings give the markers), plain strings
    (parsed first when ``markers`` is on) or ``None`` (a missing report: ``[CLS]`` only, and
    ``present`` False).
    """

    def __init__(
        self,
        vocab: Vocabulary | None = None,
        *,
        max_length: int = 256,
        lowercase: bool = True,
        fold_digits: bool = True,
        markers: bool = True,
        code_markers: bool = False,
        finding_features: bool | Sequence[str] = False,
    ):
        if max_length < 2:
            raise ConfigError("max_length must be at least 2")
        self.vocab = vocab if vocab is not None else Vocabulary(_seed_words(), hash_buckets=2048)
        self.max_length = int(max_length)
        self.lowercase = lowercase
        self.fold_digits = fold_digits
        self.markers = markers
        #: also a marker naming the finding code and its status, e.g. ``[POS:cardiomegaly]``
        #: (the parser's reading of each mention, as one token)
        self.code_markers = code_markers
        #: also the parser's status of these finding codes as one-hots (``TokenBatch.findings``;
        #: the n-gram encoder's ``findings`` option reads them); ``True``: the lexicon's codes as
        #: they are now, kept in the tokenizer's state so that a saved model reads the same ones
        self.finding_codes: tuple[str, ...] = ()
        self.finding_features = finding_features

    @property
    def finding_features(self) -> bool:
        return bool(self.finding_codes)

    @finding_features.setter
    def finding_features(self, value: bool | Sequence[str]) -> None:
        if value is True:
            from ...text.lexicon import FINDING_CODES

            value = FINDING_CODES
        self.finding_codes = tuple(value or ())

    # words ------------------------------------------------------------------------------------
    def normalize(self, word: str) -> str:
        if self.lowercase:
            word = word.lower()
        if self.fold_digits:
            word = "".join("0" if c.isdigit() else c for c in word)
        return word

    def words(self, text: str) -> list[tuple[str, Span]]:
        """(normalised word, character span) for every non-space token of ``text``."""
        from ...text.pipeline import get_tokenizer

        return [
            (self.normalize(t.text), (t.idx, t.idx + len(t.text)))
            for t in get_tokenizer()(text)
            if not t.is_space
        ]

    def tokenize(self, report: Report | None) -> list[tuple[str, Span]]:
        """Tokens (with spans) of one report, ``[CLS]`` first, truncated to ``max_length``."""
        toks: list[tuple[str, Span]] = [(CLS, NO_SPAN)]
        if report is None:
            return toks
        words = self.words(report.encoder_text)
        marks: dict[int, list[tuple[str, Span]]] = {}
        if self.markers:
            starts = [s for _, (s, _) in words]
            import bisect

            from ...text.labels import counts_for_label

            for f in report.findings:
                i = bisect.bisect_left(starts, f.start)
                if i < len(words):
                    tags = [MARKERS[f.status]] + ([HIST] if f.historical else [])
                    if self.code_markers:
                        tags.append(code_marker(f.status, f.code, counts_for_label(f)))
                    marks.setdefault(i, []).extend((m, (f.start, f.end)) for m in tags)
        for i, w in enumerate(words):
            toks.extend(marks.get(i, ()))
            toks.append(w)
        return toks[: self.max_length]

    def __call__(self, reports: Sequence[ReportLike]) -> TokenBatch:
        reps = as_reports(list(reports), parse=self.markers)
        seqs = [self.tokenize(r) for r in reps]
        width = max(len(s) for s in seqs) if seqs else 1
        ids = torch.full((len(seqs), width), self.vocab.pad_id, dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.bool)
        spans: list[list[Span]] = []
        for b, seq in enumerate(seqs):
            ids[b, : len(seq)] = torch.tensor(
                [self.vocab.index(t) for t, _ in seq], dtype=torch.long
            )
            mask[b, : len(seq)] = True
            spans.append([sp for _, sp in seq] + [NO_SPAN] * (width - len(seq)))
        present = torch.tensor([r is not None for r in reps], dtype=torch.bool)
        findings = finding_status(reps, self.finding_codes)[0] if self.finding_codes else None
        return TokenBatch(ids, mask, spans, present, [[t for t, _ in s] for s in seqs], findings)

    # vocabulary ---------------------------------------------------------------------------------
    @classmethod
    def from_reports(
        cls,
        reports: Iterable[ReportLike],
        *,
        min_freq: int = 2,
        max_size: int | None = 30_000,
        hash_buckets: int = 1024,
        **kwargs: Any,
    ) -> ReportTokenizer:
        """A tokenizer whose vocabulary is built from a training corpus (plus the seed words)."""
        probe = cls(Vocabulary(), **kwargs)
        token_lists: list[list[str]] = [_seed_words() * min_freq]
        for rep in as_reports(list(reports), parse=False):
            if rep is not None:
                token_lists.append([w for w, _ in probe.words(rep.encoder_text)])
        if probe.code_markers:
            from ...text.lexicon import FINDING_CODES

            token_lists.append(
                [
                    code_marker(s, c, k)
                    for s in MARKERS
                    for c in FINDING_CODES
                    for k in (False, True)
                ]
                * min_freq
            )
        vocab = Vocabulary.build(
            token_lists, min_freq=min_freq, max_size=max_size, hash_buckets=hash_buckets
        )
        return cls(vocab, **kwargs)

    # state ------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "type": "ReportTokenizer",
            "max_length": self.max_length,
            "lowercase": self.lowercase,
            "fold_digits": self.fold_digits,
            "markers": self.markers,
            "code_markers": self.code_markers,
            "finding_features": list(self.finding_codes),
            "vocab": self.vocab.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ReportTokenizer:
        if data.get("type", "ReportTokenizer") != "ReportTokenizer":
            raise ModelError(f"not a ReportTokenizer state: {data.get('type')!r}")
        return cls(
            Vocabulary.from_dict(data["vocab"]),
            max_length=int(data.get("max_length", 256)),
            lowercase=bool(data.get("lowercase", True)),
            fold_digits=bool(data.get("fold_digits", True)),
            markers=bool(data.get("markers", True)),
            code_markers=bool(data.get("code_markers", False)),
            finding_features=data.get("finding_features") or False,
        )

    def save(self, path: str | os.PathLike) -> Path:
        from ..._atomic import atomic_write_text

        return atomic_write_text(path, json.dumps(self.to_dict(), ensure_ascii=False))

    @classmethod
    def load(cls, path: str | os.PathLike) -> ReportTokenizer:
        try:
            return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))
        except (OSError, json.JSONDecodeError, KeyError) as exc:
            raise ModelError(f"cannot read tokenizer state: {exc}", path=path) from None


# -- encoders ------------------------------------------------------------------------------------
def _masked_mean(x: Tensor, mask: Tensor) -> Tensor:
    m = mask.unsqueeze(-1).to(x.dtype)
    return (x * m).sum(1) / m.sum(1).clamp_min(1.0)


class TextEncoder(nn.Module):
    """Base class: ``tokenize(reports) -> batch``, ``forward(batch) -> TextEncoding``."""

    #: registry name
    name: ClassVar[str] = ""
    #: output dimension D
    dim: int

    def __init__(self) -> None:
        super().__init__()
        self._init_kwargs: dict[str, Any] = {}

    def tokenize(self, reports: Sequence[ReportLike]) -> Any:
        raise NotImplementedError

    def encode(self, reports: Sequence[ReportLike]) -> TextEncoding:
        """Tokenize and encode ``reports`` on the module's device."""
        batch = self.tokenize(reports)
        device = next((p.device for p in self.parameters()), torch.device("cpu"))
        return self(batch.to(device) if hasattr(batch, "to") else batch)

    def tokenizer_state(self) -> dict[str, Any] | None:
        return None

    def config(self) -> dict[str, Any]:
        """JSON-able description: registry name, constructor arguments and tokenizer state."""
        return {
            "name": self.name,
            "kwargs": dict(self._init_kwargs),
            "tokenizer": self.tokenizer_state(),
        }

    def _finish(
        self, tokens: Tensor, mask: Tensor, pooled: Tensor, spans, present: Tensor
    ) -> TextEncoding:
        tokens = tokens * mask.unsqueeze(-1).to(tokens.dtype)
        pooled = pooled * present.unsqueeze(-1).to(pooled.dtype)
        return TextEncoding(tokens, mask, pooled, spans, present)


class _TokenEncoder(TextEncoder):
    """Shared parts of the encoders over :class:`ReportTokenizer` tokens."""

    def __init__(self, tokenizer: ReportTokenizer | None) -> None:
        super().__init__()
        self.tokenizer = tokenizer if tokenizer is not None else ReportTokenizer()

    def tokenize(self, reports: Sequence[ReportLike]) -> TokenBatch:
        return self.tokenizer(reports)

    def tokenizer_state(self) -> dict[str, Any]:
        return self.tokenizer.to_dict()


class TransformerTextEncoder(_TokenEncoder):
    """A small pre-norm Transformer encoder trained from scratch (learned positions)."""

    name = "transformer"

    def __init__(
        self,
        tokenizer: ReportTokenizer | None = None,
        *,
        dim: int = 256,
        depth: int = 4,
        heads: int = 4,
        ff_mult: int = 4,
        dropout: float = 0.1,
        pooling: str = "mean",
    ):
        super().__init__(tokenizer)
        if dim % heads:
            raise ConfigError(f"dim ({dim}) must be divisible by heads ({heads})")
        if pooling not in ("mean", "cls"):
            raise ConfigError(f"pooling must be 'mean' or 'cls', not {pooling!r}")
        self._init_kwargs = {
            "dim": dim,
            "depth": depth,
            "heads": heads,
            "ff_mult": ff_mult,
            "dropout": dropout,
            "pooling": pooling,
        }
        self.dim = dim
        self.pooling = pooling
        self.embed = nn.Embedding(
            len(self.tokenizer.vocab), dim, padding_idx=self.tokenizer.vocab.pad_id
        )
        self.position = nn.Embedding(self.tokenizer.max_length, dim)
        layer = nn.TransformerEncoderLayer(
            dim, heads, dim * ff_mult, dropout, batch_first=True, norm_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)

    def forward(self, batch: TokenBatch) -> TextEncoding:
        ids, mask = batch.input_ids, batch.mask
        pos = torch.arange(ids.shape[1], device=ids.device)
        x = self.embed(ids) + self.position(pos)[None]
        heads = self._init_kwargs["heads"]
        x = self.norm(self.encoder(x, mask=padding_attn_mask(~mask, heads, ids.shape[1])))
        pooled = x[:, 0] if self.pooling == "cls" else _masked_mean(x, mask)
        return self._finish(x, mask, pooled, batch.spans, batch.present)


class BiLSTMTextEncoder(_TokenEncoder):
    """A bidirectional LSTM; token vectors are the two directions' states (projected to ``dim``)."""

    name = "bilstm"

    def __init__(
        self,
        tokenizer: ReportTokenizer | None = None,
        *,
        dim: int = 256,
        embed_dim: int | None = None,
        layers: int = 1,
        dropout: float = 0.1,
        pooling: str = "mean",
    ):
        super().__init__(tokenizer)
        if dim % 2:
            raise ConfigError(f"dim ({dim}) must be even (two directions)")
        if pooling not in ("mean", "max"):
            raise ConfigError(f"pooling must be 'mean' or 'max', not {pooling!r}")
        embed_dim = embed_dim or dim
        self._init_kwargs = {
            "dim": dim,
            "embed_dim": embed_dim,
            "layers": layers,
            "dropout": dropout,
            "pooling": pooling,
        }
        self.dim = dim
        self.pooling = pooling
        self.embed = nn.Embedding(
            len(self.tokenizer.vocab), embed_dim, padding_idx=self.tokenizer.vocab.pad_id
        )
        self.dropout = nn.Dropout(dropout)
        self.lstm = nn.LSTM(
            embed_dim,
            dim // 2,
            num_layers=layers,
            batch_first=True,
            bidirectional=True,
            dropout=dropout if layers > 1 else 0.0,
        )

    def forward(self, batch: TokenBatch) -> TextEncoding:
        ids, mask = batch.input_ids, batch.mask
        lengths = mask.sum(1).clamp_min(1).cpu()
        x = self.dropout(self.embed(ids))
        packed = nn.utils.rnn.pack_padded_sequence(
            x, lengths, batch_first=True, enforce_sorted=False
        )
        out, _ = self.lstm(packed)
        out, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=ids.shape[1])
        if self.pooling == "max":
            pooled = out.masked_fill(~mask.unsqueeze(-1), float("-inf")).amax(1)
        else:
            pooled = _masked_mean(out, mask)
        return self._finish(out, mask, pooled, batch.spans, batch.present)


class NgramTextEncoder(_TokenEncoder):
    """A bag of n-grams (fastText-style): each token's vector is its embedding plus the hashed
    embedding of the bigram it ends, and of the trigram with ``trigrams``; the report vector
    is the projection of their masked mean and max. The tokenizer's finding-status markers
    make negation part of the n-grams (``[ABSENT] effusion``). Fast on a CPU and a strong
    learned baseline for report classification; token vectors feed attention fusion and token
    attributions like the other encoders'.

    ``findings=True`` adds the parser's status of every finding code (present / uncertain /
    absent / not mentioned, :func:`finding_status`) to the report vector through a linear layer,
    and turns on the tokenizer's ``finding_features``: a label the lexicon knows is then one
    linear step from the parser's reading of the whole report, while the n-grams carry what the
    lexicon does not name. Token attributions cover the n-gram part only.
    """

    name = "ngram"

    def __init__(
        self,
        tokenizer: ReportTokenizer | None = None,
        *,
        dim: int = 128,
        buckets: int = 1 << 14,
        trigrams: bool = True,
        dropout: float = 0.1,
        findings: bool = False,
    ):
        super().__init__(tokenizer)
        if buckets < 1:
            raise ConfigError("buckets must be positive")
        self._init_kwargs = {
            "dim": dim,
            "buckets": buckets,
            "trigrams": trigrams,
            "dropout": dropout,
            "findings": findings,
        }
        self.find_proj = self.ngram_norm = None
        if findings:
            if not self.tokenizer.finding_features:
                self.tokenizer.finding_features = True
            self.find_proj = nn.Linear(4 * len(self.tokenizer.finding_codes), dim)
            # the n-gram vector is a sum over the report: normalised, so that it does not drown
            # the finding status in long reports
            self.ngram_norm = nn.LayerNorm(dim)
        self.dim = dim
        self.buckets = buckets
        self.trigrams = trigrams
        self.embed = nn.Embedding(
            len(self.tokenizer.vocab), dim, padding_idx=self.tokenizer.vocab.pad_id
        )
        self.ngrams = nn.Embedding(buckets, dim)
        for table in (self.embed, self.ngrams):  # small vectors: a report is their sum
            nn.init.normal_(table.weight, std=0.05)
        self.dropout = nn.Dropout(dropout)
        self.proj = nn.Linear(2 * dim, dim)

    def _hash(self, *ids: Tensor) -> Tensor:
        h = ids[0].long()
        for t in ids[1:]:
            h = h * 1_000_003 + t.long()
        return h.remainder(self.buckets)

    def forward(self, batch: TokenBatch) -> TextEncoding:
        ids, mask = batch.input_ids, batch.mask
        prev = torch.nn.functional.pad(ids, (1, 0), value=self.tokenizer.vocab.pad_id)[:, :-1]
        x = self.embed(ids) + self.ngrams(self._hash(prev, ids))
        if self.trigrams:
            prev2 = torch.nn.functional.pad(prev, (1, 0), value=self.tokenizer.vocab.pad_id)[:, :-1]
            x = x + self.ngrams(self._hash(prev2, prev, ids, torch.ones_like(ids)))
        x = self.dropout(x) * mask.unsqueeze(-1).to(x.dtype)
        total = x.sum(1)  # the n-grams' evidence adds up (a mean would dilute it in long reports)
        top = x.masked_fill(~mask.unsqueeze(-1), float("-inf")).amax(1)
        top = torch.where(torch.isfinite(top), top, torch.zeros_like(top))
        pooled = self.proj(torch.cat([total, top], dim=-1))
        if self.find_proj is not None:
            if batch.findings is None:
                raise ConfigError(
                    "this n-gram encoder reads the parser's finding status: tokenize with "
                    "its own tokenizer (finding_features on)"
                )
            pooled = self.ngram_norm(pooled) + self.find_proj(
                batch.findings.flatten(1).to(pooled.dtype)
            )
        return self._finish(x, mask, pooled, batch.spans, batch.present)


@dataclass
class FindingsBatch:
    """Finding-status one-hots [B, C, 4] (present, uncertain, absent, not mentioned), spans of the
    deciding mention per code, and present [B]."""

    features: Tensor
    spans: list[list[Span]]
    present: Tensor

    def to(self, device: torch.device | str) -> FindingsBatch:
        return FindingsBatch(self.features.to(device), self.spans, self.present.to(device))


_STATUS_CHANNEL = {1: 0, -1: 1, 0: 2, None: 3}


def finding_status(
    reports: Sequence[Report | None], codes: Sequence[str]
) -> tuple[Tensor, list[list[Span]]]:
    """The parser's label of each code in each (parsed) report as a one-hot [B, C, 4] (present,
    uncertain, absent, not mentioned; a missing report: all not mentioned), and the span of the
    mention that decided it (``NO_SPAN`` where none did)."""
    from ...text.labels import counts_for_label, label_value

    feats = torch.zeros(len(reports), len(codes), 4)
    spans: list[list[Span]] = []
    for b, rep in enumerate(reports):
        row: list[Span] = []
        labels = rep.labels(codes) if rep is not None else dict.fromkeys(codes)
        for c, code in enumerate(codes):
            value = labels[code]
            feats[b, c, _STATUS_CHANNEL[value]] = 1.0
            span = NO_SPAN
            if rep is not None and value is not None and code != "no_finding":
                counted = [f for f in rep.findings if f.code == code and counts_for_label(f)]
                deciding = next((f for f in counted if label_value([f]) == value), None)
                span = (deciding.start, deciding.end) if deciding else NO_SPAN
            row.append(span)
        spans.append(row)
    return feats, spans


class FindingsTextEncoder(TextEncoder):
    """The parser's finding vector as an encoding: one token per finding code.

    Without ``dim``, each code's token is its 4-way status one-hot (present / uncertain / absent
    / not mentioned) placed in that code's block of a ``4 * C`` vector, so that ``pooled``
    (their sum) is exactly the concatenated one-hots: transparent, and a strong baseline. With
    ``dim``, a linear layer maps both to ``dim``.
    """

    name = "findings"

    def __init__(self, codes: Sequence[str] | None = None, *, dim: int | None = None):
        super().__init__()
        from ...text.lexicon import FINDING_CODES

        self.codes = tuple(codes) if codes is not None else FINDING_CODES
        if not self.codes:
            raise ConfigError("findings encoder needs at least one finding code")
        self._init_kwargs = {"codes": list(self.codes), "dim": dim}
        self.raw_dim = 4 * len(self.codes)
        self.dim = dim or self.raw_dim
        self.proj = nn.Linear(self.raw_dim, dim) if dim else None

    def tokenize(self, reports: Sequence[ReportLike]) -> FindingsBatch:
        reps = as_reports(list(reports))
        feats, spans = finding_status(reps, self.codes)
        present = torch.tensor([r is not None for r in reps], dtype=torch.bool)
        return FindingsBatch(feats, spans, present)

    def forward(self, batch: FindingsBatch) -> TextEncoding:
        feats = batch.features
        B, C, _ = feats.shape
        eye = torch.eye(C, device=feats.device, dtype=feats.dtype)
        tokens = (eye[None, :, :, None] * feats[:, :, None, :]).reshape(
            B, C, C * 4
        )  # block placement
        if self.proj is not None:
            tokens = self.proj(tokens)
        pooled = tokens.sum(1) if self.proj is None else self.proj(feats.reshape(B, C * 4))
        mask = torch.ones(B, C, dtype=torch.bool, device=feats.device)
        return self._finish(tokens, mask, pooled, batch.spans, batch.present)


class HFLocalTextEncoder(TextEncoder):
    """A HuggingFace encoder checkpoint from a local folder (no download, ``local_files_only``)."""

    name = "hf_local"

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        max_length: int = 512,
        pooling: str = "cls",
        dim: int | None = None,
    ):
        super().__init__()
        folder = Path(path)
        if not (folder / "config.json").is_file():
            raise ModelError(
                "no HuggingFace checkpoint here (config.json missing)",
                path=folder,
                hint="give the folder of a checkpoint saved with save_pretrained(); nothing is downloaded",
            )
        try:
            import transformers
        except ImportError:
            raise ModelError(
                "the hf_local text encoder needs the optional 'transformers' package",
                path=folder,
                hint="pip install 'medfuse[hf]'",
            ) from None
        if pooling not in ("cls", "mean"):
            raise ConfigError(f"pooling must be 'cls' or 'mean', not {pooling!r}")
        try:
            self.hf_tokenizer = transformers.AutoTokenizer.from_pretrained(
                folder, local_files_only=True, use_fast=True
            )
            # use_safetensors: never a pickle checkpoint (pytorch_model.bin can run code)
            self.model = transformers.AutoModel.from_pretrained(
                folder, local_files_only=True, use_safetensors=True
            )
        except (OSError, ValueError) as exc:
            raise ModelError(
                f"cannot load the HuggingFace checkpoint: {exc}", path=folder
            ) from None
        self._init_kwargs = {
            "path": str(folder),
            "max_length": max_length,
            "pooling": pooling,
            "dim": dim,
        }
        self.max_length = max_length
        self.pooling = pooling
        hidden = int(self.model.config.hidden_size)
        self.proj = nn.Linear(hidden, dim) if dim else None
        self.dim = dim or hidden

    def tokenize(self, reports: Sequence[ReportLike]) -> dict[str, Any]:
        texts: list[str] = []
        present: list[bool] = []
        for r in reports:
            text = r.encoder_text if isinstance(r, Report) else (r or "")
            present.append(bool(text.strip()))
            texts.append(text)
        enc = self.hf_tokenizer(
            texts,
            padding=True,
            truncation=True,
            max_length=self.max_length,
            return_offsets_mapping=True,
            return_tensors="pt",
        )
        offsets = enc.pop("offset_mapping").tolist()
        spans = [
            [
                (int(a), int(b)) if (b > a and m) else NO_SPAN
                for (a, b), m in zip(row, mrow, strict=True)
            ]
            for row, mrow in zip(offsets, enc["attention_mask"].tolist(), strict=True)
        ]
        return {"inputs": dict(enc), "spans": spans, "present": torch.tensor(present)}

    def encode(self, reports: Sequence[ReportLike]) -> TextEncoding:
        batch = self.tokenize(reports)
        device = next(self.model.parameters()).device
        batch["inputs"] = {k: v.to(device) for k, v in batch["inputs"].items()}
        batch["present"] = batch["present"].to(device)
        return self(batch)

    def forward(self, batch: dict[str, Any]) -> TextEncoding:
        inputs = batch["inputs"]
        mask = inputs["attention_mask"].bool()
        x = self.model(**inputs).last_hidden_state
        pooled = x[:, 0] if self.pooling == "cls" else _masked_mean(x, mask)
        if self.proj is not None:
            x, pooled = self.proj(x), self.proj(pooled)
        return self._finish(x, mask, pooled, batch["spans"], batch["present"])


# -- registry ------------------------------------------------------------------------------------
#: Registered encoders that read :class:`ReportTokenizer` tokens (a tokenizer is built on the
#: training reports for them).
TOKEN_ENCODERS = ("transformer", "bilstm", "ngram")


def _tokenizer_arg(tokenizer: ReportTokenizer | dict | None) -> ReportTokenizer | None:
    if isinstance(tokenizer, dict):
        return ReportTokenizer.from_dict(tokenizer)
    return tokenizer


@text_encoders.register("transformer", tiny={"dim": 16, "depth": 1, "heads": 2, "dropout": 0.0})
def transformer(
    tokenizer: ReportTokenizer | dict | None = None, **kwargs: Any
) -> TransformerTextEncoder:
    """Small Transformer over report tokens (see :class:`TransformerTextEncoder`)."""
    return TransformerTextEncoder(_tokenizer_arg(tokenizer), **kwargs)


@text_encoders.register("bilstm", tiny={"dim": 16, "dropout": 0.0})
def bilstm(tokenizer: ReportTokenizer | dict | None = None, **kwargs: Any) -> BiLSTMTextEncoder:
    """Bidirectional LSTM over report tokens (see :class:`BiLSTMTextEncoder`)."""
    return BiLSTMTextEncoder(_tokenizer_arg(tokenizer), **kwargs)


@text_encoders.register("ngram", tiny={"dim": 16, "buckets": 256, "dropout": 0.0})
def ngram(tokenizer: ReportTokenizer | dict | None = None, **kwargs: Any) -> NgramTextEncoder:
    """Bag of hashed uni-, bi- and trigrams over report tokens (see :class:`NgramTextEncoder`)."""
    return NgramTextEncoder(_tokenizer_arg(tokenizer), **kwargs)


@text_encoders.register("findings", tiny={"dim": 16})
def findings(tokenizer: Any = None, **kwargs: Any) -> FindingsTextEncoder:
    """The parser's finding-status vector (see :class:`FindingsTextEncoder`)."""
    return FindingsTextEncoder(**kwargs)


@text_encoders.register("hf_local")
def hf_local(
    path: str | os.PathLike | None = None, tokenizer: Any = None, **kwargs: Any
) -> HFLocalTextEncoder:
    """A local HuggingFace checkpoint folder (optional extra ``hf``)."""
    if path is None:
        raise ModelError("hf_local needs path=<folder of a HuggingFace checkpoint>")
    return HFLocalTextEncoder(path, **kwargs)


#: Rebuild an encoder (untrained weights) from :meth:`TextEncoder.config` (its ``tokenizer``
#: too; :meth:`~medfuse.registry.Registry.from_config`).
text_encoder_from_config = text_encoders.from_config
