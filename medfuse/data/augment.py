"""Random 3D augmentations of training batches, configured from the training YAML's ``augment:``.

The trainer builds one augmentation per run and applies it to every training batch after
preprocessing (on the model grid)::

    aug = build_augmentation(cfg.augment, seed=cfg.seed)   # None when empty or disabled
    x = aug(x) if aug is not None else x                   # float32 [B, C, X, Y, Z] -> same shape

Augmentations are **off by default**: chest CT has a laterality (the heart is on the left), so
no left-right flip should be switched on there by accident. Shapes without a side (MedMNIST3D
adrenal glands, vessel segments) can use flips on every axis and 90° rotations.

YAML schema (every section optional; a section that is absent is off; unknown keys are an error)::

    augment:
      enabled: true                 # false switches the whole block off
      flip:                         # mirror each listed axis independently
        axes: [0, 1, 2]             #   spatial axes of [X, Y, Z] (0 = X = left-right in RAS)
        prob: 0.5                   #   per axis
      rotate90:                     # quarter turns (1, 2 or 3, uniformly) in each listed plane
        planes: [[0, 1], [0, 2], [1, 2]]   # the two axes of each plane must have equal sizes
        prob: 0.5                   #   per plane
      affine:                       # small random affine, resampled (MONAI RandAffine)
        prob: 0.2
        rotate_deg: 10.0            #   uniform in ±rotate_deg about every axis
        scale: 0.1                  #   zoom factor uniform in 1 ± scale per axis
        translate: 2.0              #   voxels, uniform in ± per axis
        mode: bilinear              #   or nearest
        padding: border             #   zeros | border | reflection
      elastic:                      # smooth random deformation (MONAI Rand3DElastic)
        prob: 0.1
        sigma: [5.0, 7.0]           #   smoothing of the displacement field, voxels
        magnitude: [20.0, 60.0]     #   displacement magnitude range
        padding: border
      intensity:                    # intensity jitter (on the [0, 1]-scaled input)
        prob: 0.3
        scale: 0.1                  #   x (1 + u), u uniform in ±scale
        shift: 0.05                 #   + u, u uniform in ±shift
        noise_std: 0.0              #   Gaussian noise (0 = off)

Each sample of a batch gets its own random draw. The random state is seeded once from ``seed``
(MONAI's ``set_random_state``), so a run with the same seed and the same batches sees the same
augmentations.
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ..errors import ConfigError

if TYPE_CHECKING:
    import torch

__all__ = ["AugmentConfig", "Augmentation", "build_augmentation"]

log = logging.getLogger(__name__)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FlipSection(_Strict):
    axes: list[int] = Field(default_factory=lambda: [0, 1, 2])
    prob: float = Field(0.5, ge=0, le=1)

    @field_validator("axes")
    @classmethod
    def _axes(cls, v: list[int]) -> list[int]:
        if not v or any(a not in (0, 1, 2) for a in v) or len(set(v)) != len(v):
            raise ValueError(f"axes are distinct spatial axes among 0, 1, 2, got {v}")
        return v


class Rotate90Section(_Strict):
    planes: list[list[int]] = Field(default_factory=lambda: [[0, 1], [0, 2], [1, 2]])
    prob: float = Field(0.5, ge=0, le=1)

    @field_validator("planes")
    @classmethod
    def _planes(cls, v: list[list[int]]) -> list[list[int]]:
        for p in v:
            if len(p) != 2 or p[0] == p[1] or any(a not in (0, 1, 2) for a in p):
                raise ValueError(f"a plane is two different spatial axes among 0, 1, 2, got {p}")
        if not v:
            raise ValueError("planes needs at least one plane")
        return v


class AffineSection(_Strict):
    prob: float = Field(0.2, ge=0, le=1)
    rotate_deg: float = Field(10.0, ge=0, le=180)
    scale: float = Field(0.1, ge=0, lt=1)
    translate: float = Field(2.0, ge=0)
    mode: str = Field("bilinear", pattern="^(bilinear|nearest)$")
    padding: str = Field("border", pattern="^(zeros|border|reflection)$")


class ElasticSection(_Strict):
    prob: float = Field(0.1, ge=0, le=1)
    sigma: tuple[float, float] = (5.0, 7.0)
    magnitude: tuple[float, float] = (20.0, 60.0)
    padding: str = Field("border", pattern="^(zeros|border|reflection)$")

    @field_validator("sigma", "magnitude")
    @classmethod
    def _range(cls, v: tuple[float, float]) -> tuple[float, float]:
        if not 0 <= v[0] <= v[1]:
            raise ValueError(f"a range is (low, high) with 0 <= low <= high, got {list(v)}")
        return v


class IntensitySection(_Strict):
    prob: float = Field(0.3, ge=0, le=1)
    scale: float = Field(0.1, ge=0)
    shift: float = Field(0.05, ge=0)
    noise_std: float = Field(0.0, ge=0)


class AugmentConfig(_Strict):
    """The ``augment:`` block (see the module docstring)."""

    enabled: bool = True
    flip: FlipSection | None = None
    rotate90: Rotate90Section | None = None
    affine: AffineSection | None = None
    elastic: ElasticSection | None = None
    intensity: IntensitySection | None = None

    @property
    def active(self) -> bool:
        """True when at least one transform is configured and the block is enabled."""
        return self.enabled and any(
            getattr(self, k) is not None
            for k in ("flip", "rotate90", "affine", "elastic", "intensity")
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> AugmentConfig:
        """Validate a YAML dict; a :class:`ConfigError` names the bad key."""
        if data is None:
            return cls(enabled=False)
        if not isinstance(data, dict):
            raise ConfigError(f"augment must be a mapping, got {type(data).__name__}")
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            msgs = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'augment'}: {e['msg']}"
                for e in exc.errors()
            )
            raise ConfigError(f"invalid augment configuration: {msgs}") from None


class Augmentation:
    """Seeded random transforms applied sample by sample to a batch ``[B, C, X, Y, Z]``."""

    def __init__(self, config: AugmentConfig, seed: int = 0):
        from monai.transforms import (
            Compose,
            Rand3DElastic,
            RandAffine,
            RandFlip,
            RandGaussianNoise,
            RandRotate90,
            RandScaleIntensity,
            RandShiftIntensity,
        )

        self.config = config
        self.seed = int(seed)
        self._planes: list[tuple[int, int]] = []
        parts: list[Any] = []
        c = config
        if c.flip is not None:
            parts += [RandFlip(prob=c.flip.prob, spatial_axis=a) for a in c.flip.axes]
        if c.rotate90 is not None:
            self._planes = [(int(p[0]), int(p[1])) for p in c.rotate90.planes]
            parts += [
                RandRotate90(prob=c.rotate90.prob, max_k=3, spatial_axes=p) for p in self._planes
            ]
        if c.affine is not None:
            a = c.affine
            r = math.radians(a.rotate_deg)
            parts.append(
                RandAffine(
                    prob=a.prob,
                    rotate_range=(r, r, r),
                    scale_range=(a.scale,) * 3,
                    translate_range=(a.translate,) * 3,
                    mode=a.mode,
                    padding_mode=a.padding,
                )
            )
        if c.elastic is not None:
            e = c.elastic
            parts.append(
                Rand3DElastic(
                    sigma_range=tuple(e.sigma),
                    magnitude_range=tuple(e.magnitude),
                    prob=e.prob,
                    padding_mode=e.padding,
                )
            )
        if c.intensity is not None:
            i = c.intensity
            if i.scale > 0:
                parts.append(RandScaleIntensity(factors=i.scale, prob=i.prob))
            if i.shift > 0:
                parts.append(RandShiftIntensity(offsets=i.shift, prob=i.prob))
            if i.noise_std > 0:
                parts.append(RandGaussianNoise(prob=i.prob, std=i.noise_std))
        self._compose = Compose(parts)
        self._compose.set_random_state(seed=self.seed)

    def describe(self) -> dict[str, Any]:
        """The configuration, as a JSON-able dict (for the model card / training summary)."""
        return {"seed": self.seed, **self.config.model_dump(exclude_none=True)}

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        import torch

        if not isinstance(x, torch.Tensor) or x.ndim != 5:
            raise ConfigError(
                "augmentation takes a tensor [B, C, X, Y, Z], got "
                + (str(tuple(x.shape)) if isinstance(x, torch.Tensor) else type(x).__name__)
            )
        spatial = tuple(int(s) for s in x.shape[2:])
        for p in self._planes:
            if spatial[p[0]] != spatial[p[1]]:
                raise ConfigError(
                    f"rotate90 in plane {list(p)} needs equal sizes on both axes, the input is "
                    f"{spatial}",
                    hint="drop that plane from augment.rotate90.planes or use a cubic spatial_size",
                )
        from monai.data import get_track_meta, set_track_meta

        out = torch.empty_like(x, dtype=torch.float32)
        tracking = get_track_meta()
        set_track_meta(False)  # plain tensors: no metadata to carry, about 3x less overhead
        try:
            for b in range(x.shape[0]):
                y = self._compose(x[b].float())
                y = y.as_tensor() if hasattr(y, "as_tensor") else torch.as_tensor(y)
                out[b] = y.to(dtype=torch.float32, device=x.device)
        finally:
            set_track_meta(tracking)
        return out


def build_augmentation(
    config: dict[str, Any] | AugmentConfig | None, *, seed: int = 0
) -> Augmentation | None:
    """The augmentation of a training config's ``augment:`` dict; None when it is empty, absent
    or ``enabled: false``. Bad keys or values are a :class:`ConfigError`."""
    cfg = config if isinstance(config, AugmentConfig) else AugmentConfig.from_dict(config or None)
    if not cfg.active:
        return None
    aug = Augmentation(cfg, seed=seed)
    log.info("training augmentation: %s", aug.describe())
    return aug
