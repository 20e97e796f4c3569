"""Is an explanation faithful? Deletion / insertion curves and the pointing game.

* **Deletion**: replace the most salient voxels first (by the map's order) with a baseline and
  follow the label's probability; a faithful map makes it fall fast (low area under the curve).
  **Insertion** starts from the baseline volume and restores the most salient voxels first; a
  faithful map makes the probability rise fast (high AUC). Both are compared with the same
  curves for random voxel orders (the chance level).
* **Pointing game**: a hit when the map's maximum lies inside the ground-truth region (a lesion
  mask, spheres of known centre and radius, or boxes), optionally within a tolerance in mm.
  The chance level is the region's share of the field of view.

``score_fn`` takes a batch ``[n, C, X, Y, Z]`` (torch) and returns ``n`` scores; use
:func:`label_score_fn` for a model and a label.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..errors import ConfigError
from .explanation import argmax_index

__all__ = [
    "CurveResult",
    "box_mask",
    "deletion_insertion",
    "label_score_fn",
    "pointing_game",
    "pointing_game_spheres",
    "sphere_mask",
]


@dataclass
class CurveResult:
    """Deletion and insertion curves of a map and of random orders."""

    fractions: np.ndarray
    deletion: np.ndarray
    insertion: np.ndarray
    deletion_random: np.ndarray
    insertion_random: np.ndarray
    forward_passes: int = 0
    params: dict[str, Any] = field(default_factory=dict)

    @staticmethod
    def _auc(x: np.ndarray, y: np.ndarray) -> float:
        return float(np.sum((y[1:] + y[:-1]) * np.diff(x)) / 2.0)

    @property
    def deletion_auc(self) -> float:
        return self._auc(self.fractions, self.deletion)

    @property
    def insertion_auc(self) -> float:
        return self._auc(self.fractions, self.insertion)

    @property
    def deletion_auc_random(self) -> float:
        return self._auc(self.fractions, self.deletion_random)

    @property
    def insertion_auc_random(self) -> float:
        return self._auc(self.fractions, self.insertion_random)

    def summary(self) -> dict[str, Any]:
        return {
            "deletion_auc": round(self.deletion_auc, 4),
            "deletion_auc_random": round(self.deletion_auc_random, 4),
            "insertion_auc": round(self.insertion_auc, 4),
            "insertion_auc_random": round(self.insertion_auc_random, 4),
            "forward_passes": self.forward_passes,
            **self.params,
        }


def label_score_fn(
    model: Any, label: str | int, *, text: Any = None
) -> Callable[[torch.Tensor], torch.Tensor]:
    """Score function: calibrated probability of ``label`` for a batch of images (the report
    batch ``text`` of one sample, if any, is repeated)."""
    from .context import repeat_batch

    k = model.labels.index(label) if isinstance(label, str) else int(label)

    @torch.no_grad()
    def score(x: torch.Tensor) -> torch.Tensor:
        t = repeat_batch(text, int(x.shape[0])) if text is not None else None
        out = model(image=x, text=t)
        return model.diagnosis_head.probabilities(out.logits)[:, k]

    return score


def _fill(image: torch.Tensor, baseline: str | float) -> torch.Tensor:
    if isinstance(baseline, (int, float)):
        return torch.full_like(image[0], float(baseline))
    if baseline == "min":
        return image[0].amin(dim=(1, 2, 3), keepdim=True).expand_as(image[0]).clone()
    if baseline == "mean":
        return image[0].mean(dim=(1, 2, 3), keepdim=True).expand_as(image[0]).clone()
    if baseline == "zero":
        return torch.zeros_like(image[0])
    raise ConfigError(f"baseline must be 'min', 'mean', 'zero' or a number, not {baseline!r}")


@torch.no_grad()
def _curve(
    score_fn: Callable[[torch.Tensor], torch.Tensor],
    image: torch.Tensor,
    fill: torch.Tensor,
    order: np.ndarray,
    counts: np.ndarray,
    insertion: bool,
    batch_size: int,
) -> np.ndarray:
    C = image.shape[1]
    src = (fill if insertion else image[0]).reshape(C, -1)
    dst = (image[0] if insertion else fill).reshape(C, -1)
    order_t = torch.as_tensor(order, device=image.device)
    scores: list[float] = []
    for i in range(0, len(counts), batch_size):
        chunk = counts[i : i + batch_size]
        xs = []
        for n in chunk:
            x = src.clone()
            idx = order_t[: int(n)]
            x[:, idx] = dst[:, idx]
            xs.append(x.reshape(image.shape[1:]))
        scores.extend(float(v) for v in score_fn(torch.stack(xs)).reshape(-1).tolist())
    return np.asarray(scores, dtype=np.float64)


def deletion_insertion(
    score_fn: Callable[[torch.Tensor], torch.Tensor],
    image: torch.Tensor,
    saliency: np.ndarray,
    *,
    steps: int = 16,
    baseline: str | float = "min",
    random_repeats: int = 2,
    seed: int = 0,
    batch_size: int = 4,
) -> CurveResult:
    """Deletion and insertion curves of ``saliency`` (``[X, Y, Z]`` on the grid of ``image``
    ``[1, C, X, Y, Z]``) at ``steps + 1`` fractions 0 … 1, and the mean curves of
    ``random_repeats`` random orders."""
    sal = np.asarray(saliency, dtype=np.float64)
    if image.ndim != 5 or image.shape[0] != 1 or tuple(sal.shape) != tuple(image.shape[2:]):
        raise ConfigError(
            f"need image [1, C, X, Y, Z] and a map of its spatial shape, got {tuple(image.shape)} "
            f"and {sal.shape}"
        )
    if steps < 1:
        raise ConfigError("steps must be >= 1")
    n_vox = sal.size
    fractions = np.linspace(0.0, 1.0, steps + 1)
    counts = np.round(fractions * n_vox).astype(np.int64)
    fill = _fill(image, baseline)
    rng = np.random.default_rng(seed)
    # stable descending order; ties broken by a fixed random permutation
    tie = rng.permutation(n_vox)
    flat = sal.reshape(-1)
    order = tie[np.argsort(-flat[tie], kind="stable")]
    dele = _curve(score_fn, image, fill, order, counts, False, batch_size)
    ins = _curve(score_fn, image, fill, order, counts, True, batch_size)
    dr, ir = [], []
    for _ in range(max(1, random_repeats)):
        perm = rng.permutation(n_vox)
        dr.append(_curve(score_fn, image, fill, perm, counts, False, batch_size))
        ir.append(_curve(score_fn, image, fill, perm, counts, True, batch_size))
    return CurveResult(
        fractions,
        dele,
        ins,
        np.mean(dr, 0),
        np.mean(ir, 0),
        forward_passes=2 * len(counts) * (1 + max(1, random_repeats)),
        params={"steps": steps, "baseline": baseline, "random_repeats": random_repeats},
    )


# -- pointing game ---------------------------------------------------------------------------------
def _grid_world(shape: Sequence[int], affine: np.ndarray) -> np.ndarray:
    ii, jj, kk = np.meshgrid(*(np.arange(int(s)) for s in shape[:3]), indexing="ij")
    ijk = np.stack([ii, jj, kk], -1).reshape(-1, 3).astype(np.float64)
    a = np.asarray(affine, dtype=np.float64)
    return (ijk @ a[:3, :3].T + a[:3, 3]).reshape(*[int(s) for s in shape[:3]], 3)


def sphere_mask(
    shape: Sequence[int], affine: np.ndarray, spheres: Sequence[tuple[Sequence[float], float]]
) -> np.ndarray:
    """Boolean mask of the voxels whose centre lies in any sphere ``(centre_ras_mm, radius_mm)``."""
    world = _grid_world(shape, affine)
    mask = np.zeros(tuple(int(s) for s in shape[:3]), dtype=bool)
    for c, r in spheres:
        mask |= np.sum((world - np.asarray(c, dtype=np.float64)) ** 2, -1) <= float(r) ** 2
    return mask


def box_mask(
    shape: Sequence[int],
    affine: np.ndarray,
    boxes: Sequence[tuple[Sequence[float], Sequence[float]]],
) -> np.ndarray:
    """Boolean mask of the voxels whose centre lies in any axis-aligned box ``(lo_ras, hi_ras)``
    (RAS mm, corners in any order)."""
    world = _grid_world(shape, affine)
    mask = np.zeros(tuple(int(s) for s in shape[:3]), dtype=bool)
    for lo, hi in boxes:
        a, b = np.minimum(lo, hi), np.maximum(lo, hi)
        mask |= np.all((world >= a) & (world <= b), -1)
    return mask


def pointing_game(
    saliency: np.ndarray,
    mask: np.ndarray,
    *,
    affine: np.ndarray | None = None,
    tolerance_mm: float = 0.0,
) -> dict[str, Any]:
    """Is the maximum of ``saliency`` inside ``mask`` (same grid), or within ``tolerance_mm`` of
    it (needs ``affine``)? Returns ``{"hit", "peak", "distance_mm", "chance"}`` (chance: the
    mask's share of the grid, the hit rate of a uniformly random point)."""
    sal = np.asarray(saliency)
    mask = np.asarray(mask, dtype=bool)
    if sal.shape != mask.shape:
        raise ConfigError(f"saliency {sal.shape} and mask {mask.shape} must share a grid")
    if not mask.any():
        raise ConfigError("the pointing game needs a non-empty mask")
    peak = argmax_index(sal)
    inside = bool(mask[peak])
    a = np.eye(4) if affine is None else np.asarray(affine, dtype=np.float64)
    dist = 0.0
    if not inside:
        pts = np.argwhere(mask).astype(np.float64) @ a[:3, :3].T + a[:3, 3]
        p = a[:3, :3] @ np.asarray(peak, dtype=np.float64) + a[:3, 3]
        dist = float(np.sqrt(np.min(np.sum((pts - p) ** 2, -1))))
    hit = inside or (affine is not None and dist <= tolerance_mm)
    return {
        "hit": bool(hit),
        "peak": [int(v) for v in peak],
        "distance_mm": dist,
        "chance": float(mask.mean()),
    }


def pointing_game_spheres(
    peak_ras: Sequence[float],
    spheres: Sequence[tuple[Sequence[float], float]],
    *,
    tolerance_mm: float = 0.0,
) -> bool:
    """Is the RAS point ``peak_ras`` within any sphere ``(centre_ras, radius_mm)`` (+ tolerance)?"""
    p = np.asarray(peak_ras, dtype=np.float64)
    return any(
        float(np.linalg.norm(p - np.asarray(c, dtype=np.float64))) <= float(r) + tolerance_mm
        for c, r in spheres
    )
