"""Fusion of image and text encodings (registry ``fusion``).

Every fusion module is built as ``factory(image_dim=..., text_dim=..., dim=..., **kwargs)`` and
called as ``fusion(image, text, mask)``:

* ``image`` — an :class:`~medfuse.models.encoders.image.ImageEncoding`, or ``None`` when the model
  has no image for the whole batch (or no image encoder);
* ``text`` — a :class:`~medfuse.models.encoders.text.TextEncoding`, or ``None``;
* ``mask`` — ``[B, 2]`` bool, which modalities are present per sample (column 0 image, column 1
  text); ``None`` takes it from the encodings' ``present`` flags.

A missing modality is replaced by a *learned* missing-modality token (vector, or token sequence
for attention), never by zeros, or, with ``missing="regression"`` / ``"generative"`` (every
fusion takes ``missing``, ``missing_kwargs``, ``align`` and ``align_weight``), by an embedding
imputed from the modality that is present (:mod:`medfuse.models.impute`). The result is a
:class:`FusionOutput` with the fused embedding ``[B, dim]`` and, where the fusion has them,
attention weights, gate weights and per-modality embeddings.

=================  ==============================================================================
``concat``         concatenate pooled vectors, MLP
``gated``          project each modality, learned per-sample modality gates (softmax)
``cross_attention``  text tokens ↔ image patch tokens, multi-head, both directions; returns weights
``late``           per-modality branches to ``dim``, learned (softmax) combination: with linear
                   heads this is a learned mixture of per-modality predictions
=================  ==============================================================================

Add one with ``@fusion.register("mine")`` on a factory that returns a :class:`Fusion` subclass.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from ..errors import ConfigError
from ..registry import fusion as fusion_registry
from ..registry import imputers as imputer_registry
from .masks import padding_attn_mask

__all__ = [
    "ConcatFusion",
    "CrossAttentionFusion",
    "Fusion",
    "FusionOutput",
    "GatedFusion",
    "LateFusion",
    "fusion_from_config",
    "modality_mask",
]


@dataclass
class FusionOutput:
    """What every fusion returns."""

    #: fused embedding [B, dim]
    embedding: Tensor
    #: [B, 2] bool: (image present, text present) per sample
    mask: Tensor
    #: attention weights by name, e.g. "text_to_image" [B, heads, T, N]
    attention: dict[str, Tensor] = field(default_factory=dict)
    #: modality weights [B, 2] (image, text) where the fusion learns them
    gates: Tensor | None = None
    #: per-modality embeddings [B, dim] ("image", "text") where the fusion has them
    modality_embeddings: dict[str, Tensor] = field(default_factory=dict)
    #: [B, 2] bool: (image imputed, report imputed) per sample (None: token imputer)
    imputed: Tensor | None = None
    #: training only: the imputer's and the alignment's losses (added by the trainer)
    aux_loss: Tensor | None = None
    #: training only: discriminator accuracies and reconstruction losses
    diagnostics: dict[str, float] = field(default_factory=dict)


def _batch_size(image: Any, text: Any, mask: Tensor | None) -> tuple[int, torch.device]:
    for enc in (image, text):
        if enc is not None:
            return int(enc.present.shape[0]), enc.present.device
    if mask is not None:
        return int(mask.shape[0]), mask.device
    raise ConfigError("fusion needs at least one encoding or a modality mask")


def modality_mask(image: Any, text: Any, mask: Tensor | None = None) -> Tensor:
    """``[B, 2]`` bool modality mask: the given one (ANDed with the encodings' flags) or the
    encodings' ``present`` flags; a ``None`` encoding is absent for every sample."""
    B, device = _batch_size(image, text, mask)
    cols = []
    for enc in (image, text):
        cols.append(
            enc.present.to(torch.bool)
            if enc is not None
            else torch.zeros(B, dtype=torch.bool, device=device)
        )
    out = torch.stack(cols, 1)
    if mask is not None:
        mask = mask.to(device=device, dtype=torch.bool)
        if tuple(mask.shape) != (B, 2):
            raise ConfigError(f"modality mask must be [B, 2] = [{B}, 2], got {tuple(mask.shape)}")
        out = out & mask
    return out


def _missing_token(*shape: int) -> nn.Parameter:
    return nn.Parameter(torch.randn(*shape) * 0.02)


class Fusion(nn.Module):
    """Base class: holds the learned missing-modality vectors and the dims."""

    name: ClassVar[str] = ""

    def __init__(self, image_dim: int, text_dim: int, dim: int = 256) -> None:
        super().__init__()
        if min(image_dim, text_dim, dim) < 1:
            raise ConfigError(
                f"fusion dims must be positive, got image={image_dim} text={text_dim} dim={dim}"
            )
        self.image_dim, self.text_dim, self.dim = int(image_dim), int(text_dim), int(dim)
        self._init_kwargs: dict[str, Any] = {}
        self.missing_image = _missing_token(self.image_dim)
        self.missing_text = _missing_token(self.text_dim)
        # token imputer: no parameters (state_dict keys of token models stay as they were)
        self.imputer: Any = imputer_registry.create("token")
        self.align_disc: Any = None
        #: False: the learned tokens stand in even with a learned imputer (the trainer's first
        #: stage when the imputer is trained in a second one); not part of the config
        self.impute_enabled = True

    def configure_missing(
        self,
        missing: str = "token",
        missing_kwargs: dict[str, Any] | None = None,
        align: str | None = None,
        align_weight: float = 0.1,
    ) -> Fusion:
        """Choose the imputer (registry ``imputers``) and the alignment; recorded in
        :meth:`config` only where they differ from the default (token, no alignment)."""
        if missing not in imputer_registry:
            raise ConfigError(
                f"unknown missing-modality imputer {missing!r}",
                hint=f"use one of {', '.join(imputer_registry.names())}",
            )
        from .impute import ALIGN_CHOICES, ModalityDiscriminator

        if align not in ALIGN_CHOICES:
            raise ConfigError(f"align must be one of {ALIGN_CHOICES}, got {align!r}")
        kw = dict(missing_kwargs or {})
        self.imputer = imputer_registry.create(
            missing, image_dim=self.image_dim, text_dim=self.text_dim, **kw
        )
        if missing != "token":
            self._init_kwargs["missing"] = missing
            if self.imputer._kwargs:
                self._init_kwargs["missing_kwargs"] = dict(self.imputer._kwargs)
        if align == "adversarial":
            if self.name == "concat":
                raise ConfigError(
                    "align='adversarial' needs a fusion with a shared per-modality space "
                    "(gated, late, cross_attention); concat has none"
                )
            self.align_disc = ModalityDiscriminator(self.dim, weight=align_weight)
            self._init_kwargs["align"] = align
            self._init_kwargs["align_weight"] = float(align_weight)
        return self

    @property
    def missing(self) -> str:
        """The imputer's registry name (``token``, ``regression``, ``generative``)."""
        return str(self.imputer.name)

    def _impute(self, image: Any, text: Any, mask: Tensor, sample: bool | None = None) -> Any:
        """The imputer's stand-ins for this batch (None: the learned tokens)."""
        if not self.impute_enabled:
            return None
        return self.imputer.impute(image, text, mask, sample=sample)

    def _finish(self, out: FusionOutput, image: Any, text: Any, imp: Any) -> FusionOutput:
        """Record what was imputed; in training, add the imputer's and alignment's losses."""
        if imp is not None:
            out.imputed = imp.imputed
        if not self.training:
            return out
        parts = []
        if self.imputer.learned and self.impute_enabled:
            il = self.imputer.training_loss(image, text)
            if il is not None:
                parts.append(il)
        if self.align_disc is not None and out.modality_embeddings:
            al = self.align_disc.loss(
                out.modality_embeddings["image"], out.modality_embeddings["text"], out.mask
            )
            if al is not None:
                parts.append(al)
        if parts:
            out.aux_loss = sum((p.loss for p in parts[1:]), parts[0].loss)
            for p in parts:
                out.diagnostics.update(p.diagnostics)
        return out

    def config(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kwargs": {
                "image_dim": self.image_dim,
                "text_dim": self.text_dim,
                "dim": self.dim,
                **self._init_kwargs,
            },
        }

    def _vectors(
        self, image: Any, text: Any, mask: Tensor, imp: Any = None
    ) -> tuple[Tensor, Tensor]:
        """Pooled vectors [B, Di], [B, Dt] with missing samples replaced by the learned tokens,
        or by the imputed embeddings where ``imp`` has them."""
        B = mask.shape[0]
        img = self.missing_image.expand(B, -1)
        if image is not None:
            img = torch.where(mask[:, :1], image.pooled.to(img.dtype), img)
        txt = self.missing_text.expand(B, -1)
        if text is not None:
            txt = torch.where(mask[:, 1:], text.pooled.to(txt.dtype), txt)
        if imp is not None:
            if imp.image is not None:
                img = torch.where(imp.imputed[:, :1], imp.image.to(img.dtype), img)
            if imp.text is not None:
                txt = torch.where(imp.imputed[:, 1:], imp.text.to(txt.dtype), txt)
        return img, txt

    def forward(self, image: Any, text: Any, mask: Tensor | None = None) -> FusionOutput:
        raise NotImplementedError


def _mlp(d_in: int, d_out: int, hidden: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(
        nn.LayerNorm(d_in),
        nn.Linear(d_in, hidden),
        nn.GELU(),
        nn.Dropout(dropout),
        nn.Linear(hidden, d_out),
    )


def _modality_norms(
    module: Fusion, enabled: bool, image_dim: int, text_dim: int
) -> nn.ModuleList | None:
    """Per-modality LayerNorms (recorded in ``module``'s config) or ``None``."""
    if not enabled:
        return None
    module._init_kwargs["modality_norm"] = True
    return nn.ModuleList([nn.LayerNorm(image_dim), nn.LayerNorm(text_dim)])


def _concat(norms: nn.ModuleList | None, image: Tensor, text: Tensor) -> Tensor:
    if norms is not None:
        image, text = norms[0](image), norms[1](text)
    return torch.cat([image, text], -1)


class ConcatFusion(Fusion):
    """Concatenate the (possibly learned-token) pooled vectors and apply an MLP.

    ``modality_norm=True`` layer-normalises each modality's vector on its own before the
    concatenation; one LayerNorm over the concatenation (the default) lets the modality with the
    larger activations set the scale, and the other one's features shrink towards zero.
    """

    name = "concat"

    def __init__(
        self,
        image_dim: int,
        text_dim: int,
        dim: int = 256,
        *,
        dropout: float = 0.1,
        modality_norm: bool = False,
    ):
        super().__init__(image_dim, text_dim, dim)
        self._init_kwargs = {"dropout": dropout}
        self.norms = _modality_norms(self, modality_norm, self.image_dim, self.text_dim)
        self.mlp = _mlp(self.image_dim + self.text_dim, self.dim, self.dim, dropout)

    def forward(self, image: Any, text: Any, mask: Tensor | None = None) -> FusionOutput:
        mask = modality_mask(image, text, mask)
        imp = self._impute(image, text, mask)
        img, txt = self._vectors(image, text, mask, imp)
        out = FusionOutput(self.mlp(_concat(self.norms, img, txt)), mask)
        return self._finish(out, image, text, imp)


class GatedFusion(Fusion):
    """Project each modality to ``dim``; a gate network gives per-sample modality weights."""

    name = "gated"

    def __init__(self, image_dim: int, text_dim: int, dim: int = 256, *, dropout: float = 0.1):
        super().__init__(image_dim, text_dim, dim)
        self._init_kwargs = {"dropout": dropout}
        self.proj_image = nn.Sequential(
            nn.LayerNorm(self.image_dim), nn.Linear(self.image_dim, self.dim)
        )
        self.proj_text = nn.Sequential(
            nn.LayerNorm(self.text_dim), nn.Linear(self.text_dim, self.dim)
        )
        self.gate = nn.Sequential(
            nn.Linear(2 * self.dim + 2, self.dim), nn.GELU(), nn.Linear(self.dim, 2)
        )
        self.out = nn.Sequential(nn.Dropout(dropout), nn.Linear(self.dim, self.dim), nn.GELU())

    def forward(self, image: Any, text: Any, mask: Tensor | None = None) -> FusionOutput:
        mask = modality_mask(image, text, mask)
        imp = self._impute(image, text, mask)
        img, txt = self._vectors(image, text, mask, imp)
        hi, ht = self.proj_image(img), self.proj_text(txt)
        gates = torch.softmax(self.gate(torch.cat([hi, ht, mask.to(hi.dtype)], -1)), -1)
        fused = gates[:, :1] * hi + gates[:, 1:] * ht
        out = FusionOutput(
            self.out(fused), mask, gates=gates, modality_embeddings={"image": hi, "text": ht}
        )
        return self._finish(out, image, text, imp)


class LateFusion(Fusion):
    """Per-modality branches (each a full MLP to ``dim``), combined with learned softmax weights.

    With the (linear) heads on top, the result is a learned mixture of per-modality predictions;
    :attr:`FusionOutput.modality_embeddings` lets a caller score each modality alone.
    """

    name = "late"

    def __init__(self, image_dim: int, text_dim: int, dim: int = 256, *, dropout: float = 0.1):
        super().__init__(image_dim, text_dim, dim)
        self._init_kwargs = {"dropout": dropout}
        self.branch_image = _mlp(self.image_dim, self.dim, self.dim, dropout)
        self.branch_text = _mlp(self.text_dim, self.dim, self.dim, dropout)
        self.weight_logits = nn.Parameter(torch.zeros(2))

    def forward(self, image: Any, text: Any, mask: Tensor | None = None) -> FusionOutput:
        mask = modality_mask(image, text, mask)
        imp = self._impute(image, text, mask)
        img, txt = self._vectors(image, text, mask, imp)
        hi, ht = self.branch_image(img), self.branch_text(txt)
        w = torch.softmax(self.weight_logits, 0)
        gates = w.unsqueeze(0).expand(mask.shape[0], -1)
        fused = w[0] * hi + w[1] * ht
        out = FusionOutput(fused, mask, gates=gates, modality_embeddings={"image": hi, "text": ht})
        return self._finish(out, image, text, imp)


class CrossAttentionFusion(Fusion):
    """Text tokens attend to image patch tokens and image patches attend to text tokens
    (multi-head, pre-norm, residual + feed-forward), each side is mean-pooled over its valid
    tokens, and the two are projected to ``dim``.

    Image patches get a learned embedding of their normalised grid position; ``token_pool`` > 1
    average-pools the feature map in blocks of that size first (fewer, coarser patch tokens:
    cheaper attention over a fine feature map, whose resolution Grad-CAM keeps). The image side
    is pooled over its tokens by ``image_pool``: ``"mean"`` (default), ``"max"`` or ``"meanmax"``
    (their sum; the maximum keeps a focal finding in one patch). ``modality_norm=True``
    layer-normalises the two pooled sides separately before the output projection (see
    :class:`ConcatFusion`). ``out_hidden`` > 0 makes the output projection an MLP with that
    hidden width. ``pooled_skip=True`` adds a path beside the attention: an MLP of each
    encoder's pooled vector (as :class:`LateFusion`'s branches) added to the output. A missing image
    (or report) becomes a single learned token, so attention always has a valid key.
    Attention weights are returned per head: ``text_to_image`` [B, H, T, N] and
    ``image_to_text`` [B, H, N, T]. With a learned imputer (``missing="regression"`` /
    ``"generative"``) and a sample of the batch missing one modality while it has the other, the
    imputed ``tokens`` follow that modality's missing token (positions 1..K, valid only for the
    imputed samples); batches without such a sample keep the token layout above.
    """

    name = "cross_attention"

    def __init__(
        self,
        image_dim: int,
        text_dim: int,
        dim: int = 256,
        *,
        heads: int = 4,
        dropout: float = 0.1,
        ff_mult: int = 2,
        token_pool: int = 1,
        image_pool: str = "mean",
        modality_norm: bool = False,
        out_hidden: int = 0,
        pooled_skip: bool = False,
    ):
        super().__init__(image_dim, text_dim, dim)
        if self.dim % heads:
            raise ConfigError(f"cross_attention dim ({dim}) must be divisible by heads ({heads})")
        if int(token_pool) < 1:
            raise ConfigError(f"token_pool must be >= 1, got {token_pool}")
        self._init_kwargs = {"heads": heads, "dropout": dropout, "ff_mult": ff_mult}
        if int(token_pool) != 1:
            self._init_kwargs["token_pool"] = int(token_pool)
        if image_pool not in ("mean", "max", "meanmax"):
            raise ConfigError(f"image_pool must be 'mean', 'max' or 'meanmax', got {image_pool!r}")
        if image_pool != "mean":
            self._init_kwargs["image_pool"] = image_pool
        self.image_pool = image_pool
        self.heads = heads
        self.token_pool = int(token_pool)
        self.in_image = nn.Linear(self.image_dim, self.dim)
        self.in_text = nn.Linear(self.text_dim, self.dim)
        self.position = nn.Linear(3, self.dim)
        self.norm_q_t, self.norm_kv_i = nn.LayerNorm(self.dim), nn.LayerNorm(self.dim)
        self.norm_q_i, self.norm_kv_t = nn.LayerNorm(self.dim), nn.LayerNorm(self.dim)
        self.t2i = nn.MultiheadAttention(self.dim, heads, dropout=dropout, batch_first=True)
        self.i2t = nn.MultiheadAttention(self.dim, heads, dropout=dropout, batch_first=True)
        self.ff_t = _mlp(self.dim, self.dim, ff_mult * self.dim, dropout)
        self.ff_i = _mlp(self.dim, self.dim, ff_mult * self.dim, dropout)
        self.norms = _modality_norms(self, modality_norm, self.dim, self.dim)
        if int(out_hidden) < 0:
            raise ConfigError(f"out_hidden must be >= 0, got {out_hidden}")
        if out_hidden:
            self._init_kwargs["out_hidden"] = int(out_hidden)
            self.out: nn.Module = _mlp(2 * self.dim, self.dim, int(out_hidden), dropout)
        else:
            self.out = nn.Sequential(nn.LayerNorm(2 * self.dim), nn.Linear(2 * self.dim, self.dim))
        self.skip: nn.ModuleList | None = None
        if pooled_skip:
            self._init_kwargs["pooled_skip"] = True
            self.skip = nn.ModuleList(
                [
                    _mlp(self.image_dim, self.dim, self.dim, dropout),
                    _mlp(self.text_dim, self.dim, self.dim, dropout),
                ]
            )

    def _grid_positions(
        self, grid: tuple[int, ...], device: torch.device, dtype: torch.dtype
    ) -> Tensor:
        axes = [
            torch.linspace(-1.0, 1.0, n, device=device, dtype=dtype)
            if n > 1
            else torch.zeros(1, device=device, dtype=dtype)
            for n in grid
        ]
        return torch.stack(torch.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3)

    @staticmethod
    def _with_imputed(
        missing: Tensor, gen: Tensor | None, imputed: Tensor | None
    ) -> tuple[Tensor, Tensor]:
        """The missing token, followed by the imputed tokens where there are any: (tokens,
        validity) — the missing token is valid where nothing was imputed."""
        B = missing.shape[0]
        if gen is None or imputed is None:
            return missing, torch.ones(B, 1, dtype=torch.bool, device=missing.device)
        tok = torch.cat([missing, gen], 1)
        valid = torch.cat([~imputed[:, None], imputed[:, None].expand(B, gen.shape[1])], 1)
        return tok, valid

    def _image_tokens(self, image: Any, mask: Tensor, imp: Any = None) -> tuple[Tensor, Tensor]:
        B = mask.shape[0]
        dtype = self.missing_image.dtype
        missing = self.in_image(self.missing_image).view(1, 1, -1).expand(B, 1, -1)
        gen = ii = None
        if imp is not None and imp.image_tokens is not None:
            gen, ii = self.in_image(imp.image_tokens.to(dtype)), imp.imputed[:, 0]
        if image is None:
            return self._with_imputed(missing, gen, ii)
        feats = image.features
        if self.token_pool > 1:
            k = self.token_pool
            feats = nn.functional.avg_pool3d(feats, k, stride=k, ceil_mode=True)
        grid = tuple(int(v) for v in feats.shape[2:])
        tok = self.in_image(feats.flatten(2).transpose(1, 2).to(dtype))
        tok = tok + self.position(self._grid_positions(grid, tok.device, tok.dtype))[None]
        present = mask[:, 0]
        n = tok.shape[1]
        head, head_valid = self._with_imputed(missing, gen, ii)
        tok = torch.cat([head, tok], 1)
        valid = torch.cat([head_valid & ~present[:, None], present[:, None].expand(B, n)], 1)
        return tok, valid

    def _text_tokens(self, text: Any, mask: Tensor, imp: Any = None) -> tuple[Tensor, Tensor]:
        B = mask.shape[0]
        missing = self.in_text(self.missing_text).view(1, 1, -1).expand(B, 1, -1)
        gen = ti = None
        if imp is not None and imp.text_tokens is not None:
            gen = self.in_text(imp.text_tokens.to(self.missing_text.dtype))
            ti = imp.imputed[:, 1]
        if text is None:
            return self._with_imputed(missing, gen, ti)
        tok = self.in_text(text.tokens.to(self.missing_text.dtype))
        present = mask[:, 1]
        head, head_valid = self._with_imputed(missing, gen, ti)
        tok = torch.cat([head, tok], 1)
        valid = torch.cat(
            [head_valid & ~present[:, None], text.mask.to(torch.bool) & present[:, None]], 1
        )
        # a present report with no valid token falls back to the missing token
        empty = ~valid.any(1)
        valid[:, 0] = valid[:, 0] | empty
        return tok, valid

    @staticmethod
    def _pool(x: Tensor, valid: Tensor, how: str = "mean") -> Tensor:
        m = valid.unsqueeze(-1).to(x.dtype)
        mean = (x * m).sum(1) / m.sum(1).clamp_min(1.0)
        if how == "mean":
            return mean
        mx = x.masked_fill(~valid.unsqueeze(-1), torch.finfo(x.dtype).min).amax(1)
        return mx if how == "max" else mx + mean

    def forward(self, image: Any, text: Any, mask: Tensor | None = None) -> FusionOutput:
        mask = modality_mask(image, text, mask)
        imp = self._impute(image, text, mask)
        ti, vi = self._image_tokens(image, mask, imp)
        tt, vt = self._text_tokens(text, mask, imp)
        q_t, kv_i = self.norm_q_t(tt), self.norm_kv_i(ti)
        a_t, w_t2i = self.t2i(
            q_t, kv_i, kv_i, attn_mask=padding_attn_mask(~vi, self.t2i.num_heads, q_t.shape[1]),
            need_weights=True, average_attn_weights=False,
        )  # fmt: skip
        ht = tt + a_t
        ht = ht + self.ff_t(ht)
        q_i, kv_t = self.norm_q_i(ti), self.norm_kv_t(tt)
        a_i, w_i2t = self.i2t(
            q_i, kv_t, kv_t, attn_mask=padding_attn_mask(~vt, self.i2t.num_heads, q_i.shape[1]),
            need_weights=True, average_attn_weights=False,
        )  # fmt: skip
        hi = ti + a_i
        hi = hi + self.ff_i(hi)
        pt, pi = self._pool(ht, vt), self._pool(hi, vi, self.image_pool)
        emb = self.out(_concat(self.norms, pi, pt))
        if self.skip is not None:
            img, txt = self._vectors(image, text, mask, imp)
            emb = emb + self.skip[0](img) + self.skip[1](txt)
        out = FusionOutput(
            emb,
            mask,
            attention={"text_to_image": w_t2i, "image_to_text": w_i2t},
            modality_embeddings={"image": pi, "text": pt},
        )
        return self._finish(out, image, text, imp)


def _build(cls: type[Fusion], kwargs: dict[str, Any]) -> Any:
    """``cls(**kwargs)`` with the imputer / alignment options taken out and applied."""
    kwargs = dict(kwargs)
    opts = {
        k: kwargs.pop(k)
        for k in ("missing", "missing_kwargs", "align", "align_weight")
        if k in kwargs
    }
    module = cls(**kwargs)
    if opts:
        module.configure_missing(**opts)
    return module


@fusion_registry.register("concat")
def concat(**kwargs: Any) -> ConcatFusion:
    """Concatenation + MLP (see :class:`ConcatFusion`)."""
    return _build(ConcatFusion, kwargs)


@fusion_registry.register("gated")
def gated(**kwargs: Any) -> GatedFusion:
    """Learned per-sample modality gates (see :class:`GatedFusion`)."""
    return _build(GatedFusion, kwargs)


@fusion_registry.register("cross_attention")
def cross_attention(**kwargs: Any) -> CrossAttentionFusion:
    """Bidirectional text↔image cross-attention (see :class:`CrossAttentionFusion`)."""
    return _build(CrossAttentionFusion, kwargs)


@fusion_registry.register("late")
def late(**kwargs: Any) -> LateFusion:
    """Per-modality branches with a learned combination (see :class:`LateFusion`)."""
    return _build(LateFusion, kwargs)


#: Rebuild a fusion module (untrained) from its ``config()``
#: (:meth:`~medfuse.registry.Registry.from_config`).
fusion_from_config = fusion_registry.from_config
