"""Prediction heads on the fused embedding (registry ``heads``).

==================  =============================================================================
``multilabel``      one logit per label; per-label temperature and decision threshold buffers
                    (fitted on validation data, saved with the weights and in the model card)
``cox``             one log-risk per sample; Cox partial likelihood loss (Breslow ties)
``discrete_time``   hazard logits over ``bins`` time intervals; discrete-time survival NLL
==================  =============================================================================

Every head is built as ``factory(in_dim=..., **kwargs)``, returns a tensor from ``forward`` and
has ``loss(output, ...)`` and ``config()``.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from ..errors import ConfigError
from ..registry import heads as heads_registry

__all__ = [
    "DiscreteTimeHead",
    "Head",
    "MultiLabelHead",
    "RiskHead",
    "cox_partial_likelihood",
    "discrete_time_nll",
    "head_from_config",
]


class Head(nn.Module):
    """Base class for heads. ``name`` is the head's kind: its registry name (``multilabel``,
    ``cox``, ``discrete_time``), which also says what its output means."""

    name: ClassVar[str] = ""

    def __init__(self, in_dim: int) -> None:
        super().__init__()
        if in_dim < 1:
            raise ConfigError(f"head in_dim must be positive, got {in_dim}")
        self.in_dim = int(in_dim)
        self._init_kwargs: dict[str, Any] = {}

    def config(self) -> dict[str, Any]:
        return {"name": self.name, "kwargs": {"in_dim": self.in_dim, **self._init_kwargs}}


class MultiLabelHead(Head):
    """Multi-label diagnosis: ``forward`` gives raw logits ``[B, L]``; :meth:`probabilities`
    divides by the per-label temperature before the sigmoid; :meth:`decide` applies the
    per-label thresholds."""

    name = "multilabel"

    def __init__(
        self,
        in_dim: int,
        labels: Sequence[str] = ("finding",),
        *,
        hidden: int = 0,
        dropout: float = 0.0,
    ):
        super().__init__(in_dim)
        labels = [str(x) for x in labels]
        if not labels or len(set(labels)) != len(labels):
            raise ConfigError(f"labels must be a non-empty list of distinct names, got {labels}")
        self.labels = labels
        self._init_kwargs = {"labels": list(labels), "hidden": hidden, "dropout": dropout}
        L = len(labels)
        if hidden:
            self.net: nn.Module = nn.Sequential(
                nn.Dropout(dropout), nn.Linear(in_dim, hidden), nn.GELU(), nn.Linear(hidden, L)
            )
        else:
            self.net = nn.Sequential(nn.Dropout(dropout), nn.Linear(in_dim, L))
        self.register_buffer("temperature", torch.ones(L))
        self.register_buffer("threshold", torch.full((L,), 0.5))

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)

    def probabilities(self, logits: Tensor) -> Tensor:
        """Calibrated probabilities: ``sigmoid(logits / temperature)``."""
        return torch.sigmoid(logits / self.temperature.clamp_min(1e-6))

    def decide(self, logits: Tensor) -> Tensor:
        """Boolean decisions ``[B, L]``: calibrated probability ≥ the label's threshold."""
        return self.probabilities(logits) >= self.threshold

    def set_calibration(
        self,
        temperature: Sequence[float] | Tensor | None = None,
        threshold: Sequence[float] | Tensor | None = None,
    ) -> None:
        """Set per-label temperatures (> 0) and/or thresholds (in (0, 1))."""
        L = len(self.labels)
        if temperature is not None:
            t = torch.as_tensor(temperature, dtype=self.temperature.dtype).reshape(-1)
            if t.numel() != L or bool((t <= 0).any()):
                raise ConfigError(f"need {L} positive temperatures, got {t.tolist()}")
            self.temperature.copy_(t)
        if threshold is not None:
            th = torch.as_tensor(threshold, dtype=self.threshold.dtype).reshape(-1)
            if th.numel() != L or bool(((th <= 0) | (th >= 1)).any()):
                raise ConfigError(f"need {L} thresholds in (0, 1), got {th.tolist()}")
            self.threshold.copy_(th)

    def loss(self, logits: Tensor, targets: Tensor, pos_weight: Tensor | None = None) -> Tensor:
        """Binary cross-entropy over known labels; NaN (or negative, e.g. -1 = uncertain)
        targets are ignored."""
        targets = targets.to(logits.dtype)
        known = torch.isfinite(targets) & (targets >= 0)
        if not bool(known.any()):
            return logits.sum() * 0.0
        t = torch.where(known, targets, torch.zeros_like(targets))
        per = F.binary_cross_entropy_with_logits(logits, t, reduction="none", pos_weight=pos_weight)
        return (per * known).sum() / known.sum()


def cox_partial_likelihood(risk: Tensor, time: Tensor, event: Tensor) -> Tensor:
    """Negative Cox partial log-likelihood (Breslow ties), averaged over events.

    ``risk`` [B] log-hazard ratios, ``time`` [B] follow-up time, ``event`` [B] 1 for an event,
    0 for censoring. Zero (with a gradient path) when there is no event in the batch.
    """
    risk = risk.reshape(-1)
    time = time.reshape(-1).to(risk.dtype)
    event = event.reshape(-1).to(risk.dtype)
    if not bool(event.any()):
        return risk.sum() * 0.0
    # at-risk set of i: everyone with time >= time_i (ties share the set: Breslow)
    at_risk = time.unsqueeze(0) >= time.unsqueeze(1)  # [i, j]
    log_denominator = torch.logsumexp(risk.unsqueeze(0).masked_fill(~at_risk, float("-inf")), dim=1)
    return -((risk - log_denominator) * event).sum() / event.sum()


def discrete_time_nll(hazard_logits: Tensor, bin_index: Tensor, event: Tensor) -> Tensor:
    """Negative log-likelihood of discrete-time survival.

    ``hazard_logits`` [B, K]: logit of the hazard in each interval; ``bin_index`` [B]: the interval
    of the event or of censoring; ``event`` [B]: 1 event, 0 censored (survived through the
    interval).
    """
    K = hazard_logits.shape[1]
    idx = bin_index.reshape(-1).long().clamp(0, K - 1)
    event = event.reshape(-1).to(hazard_logits.dtype)
    log_h = F.logsigmoid(hazard_logits)
    log_1mh = F.logsigmoid(-hazard_logits)
    steps = torch.arange(K, device=hazard_logits.device).unsqueeze(0)
    before = (steps < idx.unsqueeze(1)).to(hazard_logits.dtype)
    at = (steps == idx.unsqueeze(1)).to(hazard_logits.dtype)
    ll = (
        (log_1mh * before).sum(1)
        + event * (log_h * at).sum(1)
        + (1 - event) * (log_1mh * at).sum(1)
    )
    return -ll.mean()


class RiskHead(Head):
    """Cox proportional-hazards head: one log-risk per sample (higher = earlier event)."""

    name = "cox"

    def __init__(self, in_dim: int, *, hidden: int = 0, dropout: float = 0.0):
        super().__init__(in_dim)
        self._init_kwargs = {"hidden": hidden, "dropout": dropout}
        if hidden:
            self.net: nn.Module = nn.Sequential(
                nn.Dropout(dropout), nn.Linear(in_dim, hidden), nn.GELU(), nn.Linear(hidden, 1)
            )
        else:
            self.net = nn.Sequential(nn.Dropout(dropout), nn.Linear(in_dim, 1))

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x).squeeze(-1)

    def risk_score(self, output: Tensor) -> Tensor:
        """The log-risk itself ``[B]``."""
        return output

    def loss(self, output: Tensor, time: Tensor, event: Tensor) -> Tensor:
        return cox_partial_likelihood(output, time, event)


class DiscreteTimeHead(Head):
    """Discrete-time survival: hazard logits ``[B, bins]``; :meth:`survival` gives S(t) per bin
    and :meth:`risk_score` the probability of the event by the last bin."""

    name = "discrete_time"

    def __init__(
        self,
        in_dim: int,
        *,
        bins: int = 10,
        bin_edges: Sequence[float] | None = None,
        hidden: int = 0,
        dropout: float = 0.0,
    ):
        super().__init__(in_dim)
        if bin_edges is not None:
            edges = [float(e) for e in bin_edges]
            if len(edges) < 2 or any(b <= a for a, b in itertools.pairwise(edges)):
                raise ConfigError(
                    f"bin_edges must be increasing with at least 2 values, got {edges}"
                )
            bins = len(edges) - 1
        else:
            edges = None
        if bins < 1:
            raise ConfigError(f"bins must be >= 1, got {bins}")
        self.bins = int(bins)
        self.bin_edges = edges
        self._init_kwargs = {
            "bins": self.bins,
            "bin_edges": edges,
            "hidden": hidden,
            "dropout": dropout,
        }
        if hidden:
            self.net: nn.Module = nn.Sequential(
                nn.Dropout(dropout),
                nn.Linear(in_dim, hidden),
                nn.GELU(),
                nn.Linear(hidden, self.bins),
            )
        else:
            self.net = nn.Sequential(nn.Dropout(dropout), nn.Linear(in_dim, self.bins))

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)

    def survival(self, output: Tensor) -> Tensor:
        """S(end of bin k) ``[B, bins]``."""
        return torch.cumprod(torch.sigmoid(-output), dim=1)

    def risk_score(self, output: Tensor) -> Tensor:
        """P(event by the end of the last bin) ``[B]``."""
        return 1.0 - self.survival(output)[:, -1]

    def time_to_bin(self, time: Tensor) -> Tensor:
        """Bin index of each time (needs ``bin_edges``)."""
        if self.bin_edges is None:
            raise ConfigError("time_to_bin needs bin_edges")
        edges = torch.as_tensor(self.bin_edges[1:-1], dtype=torch.float64, device=time.device)
        return torch.bucketize(time.to(torch.float64), edges, right=True)

    def loss(self, output: Tensor, bin_index: Tensor, event: Tensor) -> Tensor:
        return discrete_time_nll(output, bin_index, event)


@heads_registry.register("multilabel")
def multilabel(**kwargs: Any) -> MultiLabelHead:
    """Multi-label diagnosis logits with temperature/threshold buffers."""
    return MultiLabelHead(**kwargs)


@heads_registry.register("cox")
def cox(**kwargs: Any) -> RiskHead:
    """Cox proportional-hazards risk head."""
    return RiskHead(**kwargs)


@heads_registry.register("discrete_time")
def discrete_time(**kwargs: Any) -> DiscreteTimeHead:
    """Discrete-time survival head."""
    return DiscreteTimeHead(**kwargs)


#: Rebuild a head (untrained) from its ``config()``
#: (:meth:`~medfuse.registry.Registry.from_config`).
head_from_config = heads_registry.from_config
