"""Missing-modality imputers of a fusion module (registry ``imputers``) and adversarial alignment.

A fusion module (:mod:`medfuse.models.fusion`) is built with ``missing=<imputer name>`` (a fusion
keyword argument, so the choice is saved in the model's config and its card's ``components``):

================  ================================================================================
``token``         a learned missing-modality token (vector, or one token for cross-attention)
                  stands in for the missing modality whatever the other one shows. The default;
                  it has no parameters of its own (the tokens are the fusion's ``missing_image``
                  / ``missing_text``), so models trained before imputers existed load unchanged.
``regression``    a conditional network G(present pooled embedding, noise) → the missing
                  modality's pooled embedding and ``tokens`` token embeddings (the cross-attention
                  fusion attends to them), one per direction (image→report, report→image),
                  trained with a reconstruction loss only: the ablation of ``generative``.
``generative``    the same network plus a conditional discriminator on (condition, embedding) per
                  direction; G is trained with reconstruction (of its noise-free output) +
                  ``adv_weight`` × the adversarial loss (of its sampled outputs; ``loss``:
                  ``"nonsaturating"`` or ``"wgan_gp"``).
================  ================================================================================

Both learned imputers are trained from pairs the trainer's modality dropout provides: a dropped
report is still encoded (its embedding is the target, the image the condition), and every case
with both modalities gives the report→image pair. Targets and conditions are detached: the
imputer learns the encoders' spaces, it does not move them. In training the noise is sampled;
in evaluation it is zero (a prediction is deterministic) unless ``sample=True`` is asked for
(the diversity diagnostic). An imputed embedding is flagged per sample
(:attr:`Imputation.imputed`); predictions list ``modalities_imputed`` and a label whose evidence
lies only in the missing modality stays not assessable (:mod:`medfuse.prediction`).

Adversarial alignment (``align="adversarial"`` on the fusion): a modality discriminator on the
fusion's shared space (its per-modality embeddings) is trained through gradient reversal, so
that the image and report embeddings become hard to tell apart; ``align=None`` (default) is off.

Add an imputer with ``@imputers.register("mine", learned=..., adversarial=...)`` on a factory
``factory(image_dim=..., text_dim=..., **kwargs)`` returning an :class:`Imputer`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from ..errors import ConfigError
from ..registry import imputers as imputer_registry

__all__ = [
    "ALIGN_CHOICES",
    "GenerativeImputer",
    "Imputation",
    "Imputer",
    "ModalityDiscriminator",
    "NetImputer",
    "RegressionImputer",
    "TokenImputer",
    "embedding_diagnostics",
    "evaluate_imputation",
    "frechet_distance",
    "grad_reverse",
    "mean_pairwise_distance",
]

ALIGN_CHOICES = (None, "adversarial")


@dataclass
class Imputation:
    """Generated stand-ins of one forward pass (rows where ``imputed`` is False are unused)."""

    #: [B, 2] bool: (image imputed, report imputed) per sample
    imputed: Tensor
    #: [B, Di] generated pooled image embedding, or None
    image: Tensor | None = None
    #: [B, Dt] generated pooled report embedding, or None
    text: Tensor | None = None
    #: [B, K, Di] generated image tokens, or None
    image_tokens: Tensor | None = None
    #: [B, K, Dt] generated report tokens, or None
    text_tokens: Tensor | None = None


@dataclass
class ImputerLoss:
    """The imputer's training loss with plain-number diagnostics."""

    loss: Tensor
    diagnostics: dict[str, float] = field(default_factory=dict)


class _GradReverse(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: Tensor, scale: float) -> Tensor:  # type: ignore[override]
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:  # type: ignore[override]
        return -ctx.scale * grad, None


def grad_reverse(x: Tensor, scale: float = 1.0) -> Tensor:
    """Identity forward; the gradient is multiplied by ``-scale`` on the way back."""
    return _GradReverse.apply(x, float(scale))


def _net(d_in: int, d_out: int, hidden: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(d_in, hidden),
        nn.LeakyReLU(0.2),
        nn.Linear(hidden, hidden),
        nn.LeakyReLU(0.2),
        nn.Linear(hidden, d_out),
    )


class Imputer(nn.Module):
    """Base class: ``impute`` gives the stand-ins, ``training_loss`` the pairs' loss."""

    name: ClassVar[str] = ""
    #: True where the imputer has parameters of its own (trained from pairs)
    learned: ClassVar[bool] = False
    adversarial: ClassVar[bool] = False

    def __init__(self) -> None:
        super().__init__()
        self._kwargs: dict[str, Any] = {}

    def config(self) -> dict[str, Any]:
        return {"name": self.name, "kwargs": dict(self._kwargs)}

    def impute(
        self, image: Any, text: Any, mask: Tensor, *, sample: bool | None = None
    ) -> Imputation | None:
        raise NotImplementedError

    def training_loss(self, image: Any, text: Any) -> ImputerLoss | None:
        return None


class TokenImputer(Imputer):
    """The fusion's learned missing-modality tokens stand in (no parameters here)."""

    name = "token"

    def impute(
        self, image: Any, text: Any, mask: Tensor, *, sample: bool | None = None
    ) -> Imputation | None:
        return None


class _Generator(nn.Module):
    def __init__(self, d_cond: int, d_out: int, tokens: int, noise_dim: int, hidden: int):
        super().__init__()
        self.d_out, self.tokens, self.noise_dim = d_out, tokens, noise_dim
        self.norm = nn.LayerNorm(d_cond)
        self.body = _net(d_cond + noise_dim, d_out * (1 + tokens), hidden)

    def forward(self, cond: Tensor, z: Tensor) -> tuple[Tensor, Tensor]:
        x = self.norm(cond)
        if self.noise_dim:
            x = torch.cat([x, z], -1)
        out = self.body(x).view(cond.shape[0], 1 + self.tokens, self.d_out)
        return out[:, 0], out[:, 1:]


class _Discriminator(nn.Module):
    def __init__(self, d_cond: int, d_x: int, hidden: int):
        super().__init__()
        self.norm = nn.LayerNorm(d_cond)
        self.body = _net(d_cond + d_x, 1, hidden)

    def forward(self, cond: Tensor, x: Tensor) -> Tensor:
        return self.body(torch.cat([self.norm(cond), x], -1)).squeeze(-1)


def _frozen_call(module: nn.Module, *args: Tensor) -> Tensor:
    """``module(*args)`` with its parameters detached: the generator's adversarial term must
    not train the discriminator."""
    params = {n: p.detach() for n, p in module.named_parameters()}
    return torch.func.functional_call(module, params, args)


def _chunk_tokens(tokens: Tensor, valid: Tensor | None, k: int) -> Tensor:
    """[B, N, D] → [B, k, D]: (masked) means of ``k`` consecutive chunks of the sequence."""
    x = tokens.transpose(1, 2)
    if valid is None:
        return F.adaptive_avg_pool1d(x, k).transpose(1, 2)
    m = valid.to(x.dtype).unsqueeze(1)
    num = F.adaptive_avg_pool1d(x * m, k)
    den = F.adaptive_avg_pool1d(m, k).clamp_min(1e-6)
    return (num / den).transpose(1, 2)


class NetImputer(Imputer):
    """G(present pooled embedding, noise) → missing pooled embedding + ``tokens`` tokens, one
    generator per direction; ``adversarial`` adds a conditional discriminator per direction."""

    learned = True

    def __init__(
        self,
        image_dim: int,
        text_dim: int,
        *,
        tokens: int = 4,
        noise_dim: int = 8,
        hidden: int = 0,
        weight: float = 1.0,
        adv_weight: float = 0.1,
        loss: str = "nonsaturating",
        gp_weight: float = 10.0,
    ) -> None:
        super().__init__()
        if int(tokens) < 1 or int(noise_dim) < 0 or int(hidden) < 0:
            raise ConfigError(
                f"imputer needs tokens >= 1, noise_dim >= 0, hidden >= 0; got tokens={tokens} "
                f"noise_dim={noise_dim} hidden={hidden}"
            )
        if loss not in ("nonsaturating", "wgan_gp"):
            raise ConfigError(f"imputer loss must be 'nonsaturating' or 'wgan_gp', got {loss!r}")
        self.image_dim, self.text_dim = int(image_dim), int(text_dim)
        self.tokens, self.noise_dim = int(tokens), int(noise_dim)
        self.hidden = int(hidden) or max(64, 2 * max(self.image_dim, self.text_dim))
        self.weight, self.adv_weight = float(weight), float(adv_weight)
        self.loss_kind, self.gp_weight = loss, float(gp_weight)
        self._kwargs = {"tokens": self.tokens, "noise_dim": self.noise_dim, "hidden": self.hidden}
        if self.weight != 1.0:
            self._kwargs["weight"] = self.weight
        self.gen_image = _Generator(
            self.text_dim, self.image_dim, self.tokens, self.noise_dim, self.hidden
        )
        self.gen_text = _Generator(
            self.image_dim, self.text_dim, self.tokens, self.noise_dim, self.hidden
        )
        self.disc_image: _Discriminator | None = None
        self.disc_text: _Discriminator | None = None
        if self.adversarial:
            self._kwargs.update(adv_weight=self.adv_weight, loss=self.loss_kind)
            if loss == "wgan_gp":
                self._kwargs["gp_weight"] = self.gp_weight
            self.disc_image = _Discriminator(self.text_dim, self.image_dim, self.hidden)
            self.disc_text = _Discriminator(self.image_dim, self.text_dim, self.hidden)

    def _noise(self, n: int, ref: Tensor, sample: bool | None) -> Tensor:
        if sample is None:
            sample = self.training
        if sample:
            return torch.randn(n, self.noise_dim, device=ref.device, dtype=ref.dtype)
        return ref.new_zeros(n, self.noise_dim)

    def generate(
        self, direction: str, cond: Tensor, *, sample: bool | None = None
    ) -> tuple[Tensor, Tensor]:
        """``direction`` "image" (from a report embedding) or "text" (from an image embedding):
        (pooled [B, D], tokens [B, K, D])."""
        gen = self.gen_image if direction == "image" else self.gen_text
        dtype = gen.norm.weight.dtype
        cond = cond.to(dtype)
        return gen(cond, self._noise(cond.shape[0], cond, sample))

    def impute(
        self, image: Any, text: Any, mask: Tensor, *, sample: bool | None = None
    ) -> Imputation | None:
        imputed = torch.stack([~mask[:, 0] & mask[:, 1], mask[:, 0] & ~mask[:, 1]], 1)
        out = Imputation(imputed)
        if text is not None and bool(imputed[:, 0].any()):
            out.image, out.image_tokens = self.generate("image", text.pooled, sample=sample)
        else:
            out.imputed[:, 0] = False
        if image is not None and bool(imputed[:, 1].any()):
            out.text, out.text_tokens = self.generate("text", image.pooled, sample=sample)
        else:
            out.imputed[:, 1] = False
        return out

    def _adversarial(
        self, disc: _Discriminator, cond: Tensor, real: Tensor, fake: Tensor
    ) -> tuple[Tensor, Tensor, float]:
        """(discriminator loss, generator loss, discriminator accuracy)."""
        d_real, d_fake = disc(cond, real), disc(cond, fake.detach())
        g_score = _frozen_call(disc, cond, fake)
        if self.loss_kind == "nonsaturating":
            d_loss = F.softplus(-d_real).mean() + F.softplus(d_fake).mean()
            g_loss = F.softplus(-g_score).mean()
            cut = 0.0
        else:
            eps = torch.rand(real.shape[0], 1, device=real.device, dtype=real.dtype)
            mix = (eps * real + (1 - eps) * fake.detach()).requires_grad_(True)
            (grad,) = torch.autograd.grad(disc(cond, mix).sum(), mix, create_graph=True)
            gp = ((grad.norm(dim=-1) - 1) ** 2).mean()
            d_loss = d_fake.mean() - d_real.mean() + self.gp_weight * gp
            g_loss = -g_score.mean()
            cut = float(torch.cat([d_real, d_fake]).mean().detach())
        acc = 0.5 * (
            float((d_real.detach() > cut).float().mean())
            + float((d_fake.detach() <= cut).float().mean())
        )
        return d_loss, g_loss, acc

    def training_loss(self, image: Any, text: Any) -> ImputerLoss | None:
        if image is None or text is None:
            return None
        both = image.present.to(torch.bool) & text.present.to(torch.bool)
        if int(both.sum()) < 2:
            return None
        dtype = self.gen_image.norm.weight.dtype
        img = image.pooled[both].detach().to(dtype)
        txt = text.pooled[both].detach().to(dtype)
        k = self.tokens
        targets = {
            "image": (txt, img, _chunk_tokens(image.features.flatten(2).transpose(1, 2), None, k)),
            "text": (img, txt, _chunk_tokens(text.tokens, text.mask.to(torch.bool), k)),
        }
        total = img.new_zeros(())
        diag: dict[str, float] = {}
        for direction, (cond, real, real_tok) in targets.items():
            real_tok = real_tok[both].detach().to(dtype)
            fake, fake_tok = self.generate(direction, cond)
            if self.adversarial:  # reconstruct the noise-free output only (see the class)
                fake_mean, tok_mean = self.generate(direction, cond, sample=False)
            else:
                fake_mean, tok_mean = fake, fake_tok
            recon = F.mse_loss(fake_mean, real) + F.mse_loss(tok_mean, real_tok)
            total = total + self.weight * recon
            diag[f"recon_{direction}"] = float(recon.detach())
            disc = self.disc_image if direction == "image" else self.disc_text
            if disc is not None:
                d_loss, g_loss, acc = self._adversarial(disc, cond, real, fake)
                total = total + self.weight * (self.adv_weight * g_loss + d_loss)
                diag[f"disc_acc_{direction}"] = acc
        return ImputerLoss(total, diag)


class RegressionImputer(NetImputer):
    """:class:`NetImputer` trained with the reconstruction loss only."""

    name = "regression"


class GenerativeImputer(NetImputer):
    """:class:`NetImputer` trained with reconstruction + adversarial loss.

    The reconstruction loss acts on the noise-free output G(c, 0), the one a prediction uses,
    and the adversarial loss on G(c, z) with sampled noise. A reconstruction loss on the sampled
    outputs would pull every sample towards the one real target of its condition, teaching the
    generator to ignore its noise: the generated image embeddings spread 0.38 as much as real
    ones at n 1500, against 0.93 so (docs/models.md)."""

    name = "generative"
    adversarial = True


class ModalityDiscriminator(nn.Module):
    """Tells image from report embeddings in the fusion's shared space; its input passes a
    gradient reversal, so minimising its loss makes the fusion's embeddings harder to tell
    apart (``align="adversarial"``)."""

    def __init__(self, dim: int, *, weight: float = 0.1, hidden: int = 0) -> None:
        super().__init__()
        self.weight = float(weight)
        self.body = _net(int(dim), 1, int(hidden) or max(32, int(dim)))

    def loss(self, image_emb: Tensor, text_emb: Tensor, mask: Tensor) -> ImputerLoss | None:
        """Loss on the present (not imputed) samples' embeddings: image = 1, report = 0."""
        hi, ht = image_emb[mask[:, 0]], text_emb[mask[:, 1]]
        if hi.shape[0] == 0 or ht.shape[0] == 0:
            return None
        h = torch.cat([hi, ht]).float()
        y = torch.cat([h.new_ones(hi.shape[0]), h.new_zeros(ht.shape[0])])
        logits = self.body(grad_reverse(h)).squeeze(-1)
        bce = F.binary_cross_entropy_with_logits(logits, y)
        acc = float(((logits.detach() > 0).float() == y).float().mean())
        return ImputerLoss(self.weight * bce, {"align_disc_acc": acc})


# -- diagnostics ----------------------------------------------------------------------------------


def mean_pairwise_distance(x: np.ndarray) -> float:
    """Mean Euclidean distance over all pairs of rows (the mode-collapse check)."""
    x = np.asarray(x, dtype=np.float64)
    if len(x) < 2:
        return float("nan")
    sq = (x * x).sum(1)
    d2 = np.clip(sq[:, None] + sq[None, :] - 2.0 * x @ x.T, 0.0, None)
    iu = np.triu_indices(len(x), 1)
    return float(np.sqrt(d2[iu]).mean())


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to the rows of ``a`` and ``b``:
    ``|μa − μb|² + tr(Σa + Σb − 2 (Σa Σb)^½)``."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if len(a) < 2 or len(b) < 2:
        return float("nan")
    mu = a.mean(0) - b.mean(0)
    sa, sb = np.atleast_2d(np.cov(a, rowvar=False)), np.atleast_2d(np.cov(b, rowvar=False))
    eig = np.linalg.eigvals(sa @ sb)
    tr_sqrt = float(np.sqrt(np.clip(eig.real, 0.0, None)).sum())
    return float(mu @ mu + np.trace(sa) + np.trace(sb) - 2.0 * tr_sqrt)


def embedding_diagnostics(real: np.ndarray, generated: np.ndarray) -> dict[str, float]:
    """Diversity (mean pairwise distance) of generated and real embeddings, their ratio and
    the Fréchet distance between them."""
    div_r, div_g = mean_pairwise_distance(real), mean_pairwise_distance(generated)
    return {
        "n": len(real),
        "diversity_real": round(div_r, 5),
        "diversity_generated": round(div_g, 5),
        "diversity_ratio": round(div_g / div_r, 4) if div_r > 0 else float("nan"),
        "frechet": round(frechet_distance(real, generated), 5),
    }


# -- registry entries -----------------------------------------------------------------------------


@imputer_registry.register("token", learned=False, adversarial=False)
def token(**kwargs: Any) -> TokenImputer:
    """Learned missing-modality tokens (see :class:`TokenImputer`)."""
    kwargs.pop("image_dim", None)
    kwargs.pop("text_dim", None)
    if kwargs:
        raise ConfigError(f"the token imputer takes no options, got {sorted(kwargs)}")
    return TokenImputer()


@imputer_registry.register("regression", learned=True, adversarial=False)
def regression(**kwargs: Any) -> RegressionImputer:
    """Conditional network, reconstruction loss only (see :class:`RegressionImputer`)."""
    return RegressionImputer(**kwargs)


@imputer_registry.register("generative", learned=True, adversarial=True)
def generative(**kwargs: Any) -> GenerativeImputer:
    """Conditional GAN: reconstruction + adversarial loss (see :class:`GenerativeImputer`)."""
    return GenerativeImputer(**kwargs)


@torch.no_grad()
def evaluate_imputation(model: Any, batches: Any) -> dict[str, Any]:
    """Diagnostics of ``model``'s imputer and alignment on ``batches`` (model-input dicts, e.g.
    validation cases): per direction, the diversity and Fréchet distance of generated (noise
    sampled) vs real embeddings over the cases with both modalities, and the discriminators'
    accuracy (0.5: generated and real cannot be told apart). Written into the model card."""
    fusion = model.fusion
    imp = fusion.imputer
    was = model.training
    model.eval()
    real: dict[str, list[np.ndarray]] = {"image": [], "text": []}
    gen: dict[str, list[np.ndarray]] = {"image": [], "text": []}
    acc: dict[str, list[float]] = {}
    try:
        for batch in batches:
            batch = {k: v for k, v in batch.items() if k != "records"}
            out = model(**batch)
            img, txt = out.image, out.text
            if fusion.align_disc is not None and out.fusion.modality_embeddings:
                emb = out.fusion.modality_embeddings
                al = fusion.align_disc.loss(emb["image"], emb["text"], out.mask)
                if al is not None:
                    acc.setdefault("align_disc_acc", []).append(al.diagnostics["align_disc_acc"])
            if not imp.learned or img is None or txt is None:
                continue
            both = out.mask[:, 0] & out.mask[:, 1]
            if not bool(both.any()):
                continue
            pairs = {"image": (txt.pooled[both], img.pooled[both]),
                     "text": (img.pooled[both], txt.pooled[both])}  # fmt: skip
            for direction, (cond, target) in pairs.items():
                fake, _ = imp.generate(direction, cond, sample=True)
                real[direction].append(target.float().cpu().numpy())
                gen[direction].append(fake.float().cpu().numpy())
                disc = imp.disc_image if direction == "image" else imp.disc_text
                if disc is not None and imp.loss_kind == "nonsaturating":
                    c = cond.to(fake.dtype)
                    hit = torch.cat([disc(c, target.to(fake.dtype)) > 0, disc(c, fake) <= 0])
                    acc.setdefault(f"disc_acc_{direction}", []).append(float(hit.float().mean()))
    finally:
        model.train(was)
    result: dict[str, Any] = {"missing": fusion.missing, "align": fusion._init_kwargs.get("align")}
    for direction in ("image", "text"):
        if real[direction]:
            result[f"{direction}_from_{'report' if direction == 'image' else 'image'}"] = (
                embedding_diagnostics(
                    np.concatenate(real[direction]), np.concatenate(gen[direction])
                )
            )
    for k, v in acc.items():
        result[k] = round(float(np.mean(v)), 4)
    return result
