"""Preprocessing that belongs to the model: MONAI transforms built from a :class:`PreprocessingConfig`.

    cfg = PreprocessingConfig(spacing=(1.5, 1.5, 1.5), ct_windows=("lung", "mediastinum", "bone"),
                              spatial_size=(128, 128, 128))
    x, record = preprocess(volume, cfg)          # x: float32 tensor [C, X, Y, Z]
    cam_on_dicom_grid = to_original_grid(cam, record)

Steps, in order (each one optional, each one recorded in the :class:`PreprocessingRecord` with its
parameters and the shape and spacing after it):

1. ``orientation``  reorient to ``axcodes`` (RAS by default) — MONAI ``Orientation``
2. ``spacing``      resample to a target voxel size in mm — MONAI ``Spacing``
3. ``foreground``   crop to the body (CT: HU above a threshold; MR: above a low percentile) —
                    MONAI ``CropForeground``
4. ``pad_crop``     symmetric pad / centre crop to the model input size — MONAI
                    ``ResizeWithPadOrCrop`` (CT pads with air, -1024 HU)
5. ``intensity``    CT: one channel per HU window, scaled to [0, 1] (``ScaleIntensityRange``);
                    MR: z-score over non-zero voxels (``NormalizeIntensity``) or percentile
                    scaling (``ScaleIntensityRangePercentiles``); generic: linear scaling to
                    [0, 1] from ``generic_range`` (fixed) or the volume's min/max
                    (``ScaleIntensityRange``), no HU windows

``modality="generic"`` is for volumes that are neither CT nor MR intensities (shape masks, NIfTI
volumes without a modality, e.g. MedMNIST3D): one channel, linear scaling to [0, 1], padding
with the low end of the range so that padded voxels become 0.

Steps 1 and 2 run lazily (MONAI's lazy resampling): one resampling of the volume as it is stored
(a DICOM volume's slice stack, without a transposing copy), on the grid the two steps define; the
values equal those of the two steps run one after the other to float32 rounding of the sampling
coordinates. With ``interpolation="nearest"`` they run one after the other, as MONAI's eager
transforms: a sample half-way between two voxels (1 mm to 1.5 mm puts half of them there) would
otherwise go to the other voxel.

The geometric steps are tracked through the MONAI ``MetaTensor`` affine, so the model grid's
RAS affine is known exactly and ``inv(A_original) @ A_model`` maps model voxels to original
voxels (:attr:`PreprocessingRecord.model_to_original`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from .errors import ConfigError
from .regrid import to_original_grid, to_original_volume
from .types import PreprocessingRecord, Volume

if TYPE_CHECKING:
    import numpy as np
    import torch

__all__ = [
    "CT_WINDOWS",
    "PREPROCESS_VERSION",
    "PreprocessingConfig",
    "preprocess",
    "preprocess_batch",
    "to_original_grid",
    "to_original_volume",
]

log = logging.getLogger(__name__)

#: Named CT windows: (centre, width) in HU.
CT_WINDOWS: dict[str, tuple[float, float]] = {
    "lung": (-600.0, 1500.0),
    "mediastinum": (40.0, 400.0),
    "soft_tissue": (50.0, 350.0),
    "bone": (400.0, 1800.0),
    "brain": (40.0, 80.0),
    "abdomen": (60.0, 400.0),
}
#: Bump when :func:`preprocess` gives other values for the same volume and config (the caches
#: of preprocessed inputs key on it). 2: orientation and spacing in one lazy resampling.
PREPROCESS_VERSION = 2
_MODES = ("bilinear", "nearest")
#: axis labels of the orientation codes (RAS: +x towards the patient's right, ...)
_LABELS = (("L", "R"), ("P", "A"), ("I", "S"))
_MR_NORMS = ("zscore", "percentile", "none")


@dataclass
class PreprocessingConfig:
    """How a volume becomes a model input. It is saved in the model card with the weights.

    ``modality`` is ``"CT"``, ``"MR"``, ``"generic"`` or ``"auto"`` (from ``Volume.modality``;
    anything that is not CT is treated as MR). ``ct_windows`` holds names from :data:`CT_WINDOWS`
    or ``(centre, width)`` pairs; each window is one input channel. ``generic_range`` (generic
    modality only) is the fixed ``(low, high)`` intensity range scaled to [0, 1] (clipped); None
    scales each volume's own min/max.
    """

    orientation: str | None = "RAS"
    spacing: tuple[float, float, float] | None = None
    interpolation: str = "bilinear"
    modality: str = "auto"
    ct_windows: tuple[str | tuple[float, float], ...] = ("lung",)
    mr_normalization: str = "zscore"
    mr_percentiles: tuple[float, float] = (0.5, 99.5)
    foreground_crop: bool = False
    #: CT: HU above which a voxel is foreground (-500 by default); MR: percentile of the
    #: intensities above which a voxel is foreground (2 by default).
    foreground_threshold: float | None = None
    foreground_margin: int = 2
    spatial_size: tuple[int, int, int] | None = None
    ct_pad_value: float = -1024.0
    extra: dict[str, Any] = field(default_factory=dict)
    generic_range: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        if self.orientation is not None:
            code = str(self.orientation).upper()
            if (
                len(code) != 3
                or {c for c in code} - set("LRAPIS")
                or len({{"L": 0, "R": 0, "A": 1, "P": 1, "I": 2, "S": 2}[c] for c in code}) != 3
            ):
                raise ConfigError(
                    f"orientation must be three axis codes like 'RAS', got {self.orientation!r}"
                )
            self.orientation = code
        if self.spacing is not None:
            sp = tuple(float(s) for s in self.spacing)
            if len(sp) != 3 or not all(math.isfinite(s) and s > 0 for s in sp):
                raise ConfigError(
                    f"spacing must be three positive numbers (mm), got {self.spacing!r}"
                )
            self.spacing = sp  # type: ignore[assignment]
        if self.interpolation not in _MODES:
            raise ConfigError(f"interpolation must be one of {_MODES}, got {self.interpolation!r}")
        mod = str(self.modality)
        self.modality = mod.lower() if mod.lower() in ("auto", "generic") else mod.upper()
        if self.modality not in ("CT", "MR", "generic", "auto"):
            raise ConfigError(
                f"modality must be 'CT', 'MR', 'generic' or 'auto', got {self.modality!r}"
            )
        if self.generic_range is not None:
            if self.modality != "generic":
                raise ConfigError(
                    "generic_range applies to modality 'generic' only",
                    hint="CT uses ct_windows, MR uses mr_normalization",
                )
            pair = tuple(float(v) for v in self.generic_range)
            if len(pair) != 2 or not all(math.isfinite(v) for v in pair) or pair[1] <= pair[0]:
                raise ConfigError(
                    f"generic_range must be (low, high) with high > low, got {self.generic_range!r}"
                )
            self.generic_range = pair  # type: ignore[assignment]
        windows = []
        for w in self.ct_windows:
            if isinstance(w, str):
                if w not in CT_WINDOWS:
                    raise ConfigError(
                        f"unknown CT window {w!r}",
                        hint=f"choose one of {sorted(CT_WINDOWS)} or give (centre, width)",
                    )
                windows.append(w)
            else:
                pair = tuple(float(v) for v in w)
                if len(pair) != 2 or pair[1] <= 0:
                    raise ConfigError(f"a CT window is (centre, width > 0) in HU, got {w!r}")
                windows.append(pair)
        if not windows:
            raise ConfigError("ct_windows needs at least one window")
        self.ct_windows = tuple(windows)
        if self.mr_normalization not in _MR_NORMS:
            raise ConfigError(
                f"mr_normalization must be one of {_MR_NORMS}, got {self.mr_normalization!r}"
            )
        lo, hi = (float(v) for v in self.mr_percentiles)
        if not 0 <= lo < hi <= 100:
            raise ConfigError(
                f"mr_percentiles must satisfy 0 <= low < high <= 100, got {self.mr_percentiles!r}"
            )
        self.mr_percentiles = (lo, hi)
        if self.spatial_size is not None:
            size = tuple(int(s) for s in self.spatial_size)
            if len(size) != 3 or min(size) < 1:
                raise ConfigError(
                    f"spatial_size must be three positive integers, got {self.spatial_size!r}"
                )
            self.spatial_size = size  # type: ignore[assignment]
        if self.foreground_margin < 0:
            raise ConfigError("foreground_margin must be >= 0")

    def channels(self, modality: str | None = None) -> int:
        """Number of model input channels for ``modality`` (CT: one per window; MR: 1)."""
        return len(self.ct_windows) if self._modality(modality) == "CT" else 1

    @property
    def in_channels(self) -> int:
        """Input channels of the model this config feeds (MR and 'auto' count CT windows when the
        config is CT)."""
        return len(self.ct_windows) if self.modality == "CT" else 1

    def _modality(self, volume_modality: str | None) -> str:
        if self.modality != "auto":
            return self.modality
        return "CT" if (volume_modality or "").upper() == "CT" else "MR"

    def window_ranges(self) -> list[tuple[float, float]]:
        """(low, high) HU of every CT window, in channel order."""
        out = []
        for w in self.ct_windows:
            c, width = CT_WINDOWS[w] if isinstance(w, str) else w
            out.append((c - width / 2, c + width / 2))
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form."""
        d = asdict(self)
        for k in ("spacing", "spatial_size", "mr_percentiles", "generic_range"):
            if d[k] is not None:
                d[k] = list(d[k])
        if d["generic_range"] is None:  # configs from before the generic modality stay as they were
            del d["generic_range"]
        d["ct_windows"] = [w if isinstance(w, str) else list(w) for w in self.ct_windows]
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PreprocessingConfig:
        """Inverse of :meth:`to_dict`; unknown keys are a :class:`ConfigError`."""
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise ConfigError(f"unknown preprocessing options: {sorted(unknown)}")
        d = dict(data)
        for k in ("spacing", "spatial_size", "mr_percentiles", "generic_range"):
            if d.get(k) is not None:
                d[k] = tuple(d[k])
        if "ct_windows" in d:
            d["ct_windows"] = tuple(w if isinstance(w, str) else tuple(w) for w in d["ct_windows"])
        return cls(**d)


def _spacing_of(affine: np.ndarray) -> list[float]:
    import numpy as np

    return [round(float(v), 6) for v in np.linalg.norm(np.asarray(affine)[:3, :3], axis=0)]


def _affine_np(img: Any) -> np.ndarray:
    import numpy as np

    return np.asarray(img.affine.detach().cpu().numpy(), dtype=np.float64)


def _in_memory_order(data: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``data`` ``[C, *spatial]`` and its affine with the spatial axes permuted into memory order
    (largest stride first), so that the array is C-contiguous where its buffer is.

    A volume read from DICOM is a transposed view of its slice stack (Fortran order); given as it
    is, MONAI's resampling copies the whole grid into C order first (0.6-0.7 s at 512² × 300).
    Given in the stack's order with the columns of the affine permuted alike, the voxels and
    their world positions are the same, and the orientation step, applied lazily, composes the
    permutation into the one resampling.

    nibabel picks each axis's nearest orientation in turn; where two axes tie (45°), the pick
    can depend on the axes' order: there the volume is copied into C order instead."""
    import numpy as np
    from nibabel.orientations import io_orientation

    spatial = sorted(range(1, data.ndim), key=lambda i: -abs(data.strides[i]))
    if spatial == list(range(1, data.ndim)):
        return data, affine
    cols = [i - 1 for i in spatial]
    permuted = affine[:, [*cols, 3]]
    if not np.array_equal(io_orientation(permuted), io_orientation(affine)[cols]):
        return np.ascontiguousarray(data), affine
    return data.transpose(0, *spatial), permuted


def preprocess(
    volume: Volume, config: PreprocessingConfig | dict[str, Any] | None = None
) -> tuple[torch.Tensor, PreprocessingRecord]:
    """Apply ``config`` to ``volume``: a float32 tensor ``[C, X, Y, Z]`` and its record.

    A 4D volume keeps its 4th axis as channels (CT windows then apply to the first one only).
    """
    import numpy as np
    import torch
    from monai.data import MetaTensor
    from monai.transforms import (
        CropForeground,
        NormalizeIntensity,
        Orientation,
        ResizeWithPadOrCrop,
        ScaleIntensityRange,
        ScaleIntensityRangePercentiles,
        Spacing,
        apply_pending,
    )
    from nibabel.orientations import aff2axcodes

    cfg = _as_config(config)
    modality = cfg._modality(volume.modality)
    arr = np.asarray(volume.array).astype(np.float32, copy=False)  # keeps the memory layout
    data = arr[None] if arr.ndim == 3 else np.moveaxis(arr, 3, 0)
    # a sum is finite when every voxel is (or it overflowed: then the exact test decides)
    with np.errstate(over="ignore", invalid="ignore"):
        total = float(data.sum())
    if not math.isfinite(total) and not np.all(np.isfinite(data)):
        log.warning("volume has non-finite voxels; they are set to 0 before preprocessing")
        data = np.nan_to_num(data, nan=0.0, posinf=0.0, neginf=0.0)
    if min(data.strides) < 0:  # torch takes any layout but negative strides
        data = np.ascontiguousarray(data)
    affine = np.asarray(volume.affine, dtype=np.float64)
    steps: list[dict[str, Any]] = [
        {
            "name": "input",
            "params": {"modality": modality, "orientation": volume.orientation},
            "shape": [int(s) for s in data.shape],
            "spacing": _spacing_of(affine),
        }
    ]

    def record(name: str, params: dict[str, Any]) -> None:
        steps.append(
            {
                "name": name,
                "params": params,
                "shape": [int(img.shape[0]), *(int(s) for s in img.peek_pending_shape())],
                "spacing": _spacing_of(img.peek_pending_affine()),
            }
        )

    # Orientation and Spacing run lazily: the voxels' memory order, the orientation and the voxel
    # size become one resampling of the volume as stored (MONAI's lazy resampling). Not for
    # nearest neighbour: a sample half-way between two voxels would go to the other one.
    lazy = cfg.interpolation != "nearest"
    stored, stored_affine = _in_memory_order(data, affine) if lazy else (data, affine)
    img = MetaTensor(torch.from_numpy(stored), affine=torch.as_tensor(stored_affine))
    # else the volume's own axis order, by nibabel's reckoning as MONAI's Orientation's (not
    # Volume.orientation's, which pairs the axes of a strongly sheared affine differently)
    axcodes = cfg.orientation or "".join(aff2axcodes(affine, _LABELS))
    img = Orientation(axcodes=axcodes, labels=_LABELS, lazy=lazy)(img)
    if cfg.orientation is not None:
        record("orientation", {"axcodes": cfg.orientation})
    if cfg.spacing is not None:
        mode = cfg.interpolation
        img = Spacing(
            pixdim=cfg.spacing, mode=mode, padding_mode="border", dtype=torch.float32, lazy=lazy
        )(img)
        record("spacing", {"pixdim": list(cfg.spacing), "mode": mode})
    if lazy:
        img = apply_pending(img, overrides={"dtype": torch.float32})[0]  # else float64
    if cfg.foreground_crop:
        if modality == "CT":
            thr = -500.0 if cfg.foreground_threshold is None else float(cfg.foreground_threshold)
            params = {"threshold_hu": thr}
        else:
            q = 2.0 if cfg.foreground_threshold is None else float(cfg.foreground_threshold)
            thr = float(
                torch.quantile(
                    img[0].flatten()[:: max(1, img[0].numel() // 1_000_000)].float(), q / 100
                )
            )
            params = {"threshold_percentile": q, "threshold_value": thr}
        params["margin"] = cfg.foreground_margin
        first = img[:1]
        if bool((first > thr).any()):
            img = CropForeground(
                select_fn=lambda x, t=thr: (x[:1] > t).expand_as(x),
                margin=cfg.foreground_margin,
                allow_smaller=True,
            )(img)
        else:
            params["skipped"] = "no voxel above the threshold"
        record("foreground", params)
    generic_range: tuple[float, float] | None = None
    if modality == "generic":  # fixed range, or this volume's min/max before any padding
        if cfg.generic_range is not None:
            generic_range = (float(cfg.generic_range[0]), float(cfg.generic_range[1]))
        else:
            generic_range = (float(img.min()), float(img.max()))
    if cfg.spatial_size is not None:
        pad_value = cfg.ct_pad_value if modality == "CT" else 0.0
        if generic_range is not None:
            pad_value = generic_range[0]
        img = ResizeWithPadOrCrop(cfg.spatial_size, mode="constant", value=pad_value)(img)
        record("pad_crop", {"spatial_size": list(cfg.spatial_size), "pad_value": pad_value})
    model_affine = _affine_np(img)
    if modality == "CT":
        ranges = cfg.window_ranges()
        chans = [
            ScaleIntensityRange(lo, hi, 0.0, 1.0, clip=True)(img[:1]).as_tensor()
            for lo, hi in ranges
        ]
        out = torch.cat(chans, 0)
        params = {"windows": [[lo, hi] for lo, hi in ranges], "to": [0.0, 1.0]}
    elif generic_range is not None:
        lo, hi = generic_range
        source = "fixed" if cfg.generic_range is not None else "min_max"
        params = {"method": "generic", "range": [lo, hi], "source": source, "to": [0.0, 1.0]}
        if hi > lo:
            out = ScaleIntensityRange(lo, hi, 0.0, 1.0, clip=True)(img).as_tensor()
        else:  # a constant volume: nothing to scale
            out = torch.zeros(img.shape, dtype=torch.float32)
            params["constant"] = True
    elif cfg.mr_normalization == "zscore":
        out = NormalizeIntensity(nonzero=True, channel_wise=True)(img).as_tensor()
        params = {"method": "zscore", "nonzero": True}
    elif cfg.mr_normalization == "percentile":
        lo, hi = cfg.mr_percentiles
        out = ScaleIntensityRangePercentiles(lo, hi, 0.0, 1.0, clip=True, channel_wise=True)(img)
        out = out.as_tensor() if hasattr(out, "as_tensor") else out
        params = {"method": "percentile", "percentiles": [lo, hi]}
    else:
        out = img.as_tensor()
        params = {"method": "none"}
    out = out.to(torch.float32).contiguous()
    steps.append(
        {
            "name": "intensity",
            "params": params,
            "shape": list(out.shape),
            "spacing": _spacing_of(model_affine),
        }
    )
    rec = PreprocessingRecord(
        original_shape=tuple(int(s) for s in volume.shape),
        original_affine=affine.tolist(),
        model_affine=model_affine.tolist(),
        output_shape=tuple(int(s) for s in out.shape),
        steps=steps,
        config=cfg.to_dict(),
    )
    return out, rec


def preprocess_batch(
    volumes: Sequence[Volume | None],
    config: PreprocessingConfig | dict[str, Any] | None,
) -> tuple[torch.Tensor, torch.Tensor, list[PreprocessingRecord | None]]:
    """Preprocess a batch (``None`` for a missing image): ``(x [B, C, X, Y, Z], present [B],
    records)``. Missing images are zero tensors with ``present`` False; the config must set
    ``spatial_size`` so that the batch has one shape."""
    import torch

    cfg = _as_config(config)
    if cfg.spatial_size is None:
        raise ConfigError("preprocess_batch needs spatial_size in the preprocessing config")
    outs: list[torch.Tensor | None] = []
    recs: list[PreprocessingRecord | None] = []
    for v in volumes:
        if v is None:
            outs.append(None)
            recs.append(None)
        else:
            x, r = preprocess(v, cfg)
            outs.append(x)
            recs.append(r)
    channels = next((o.shape[0] for o in outs if o is not None), cfg.in_channels)
    shape = (channels, *cfg.spatial_size)
    x = (
        torch.stack([o if o is not None else torch.zeros(shape) for o in outs])
        if outs
        else torch.zeros((0, *shape))
    )
    present = torch.tensor([o is not None for o in outs], dtype=torch.bool)
    return x, present, recs


def _as_config(config: PreprocessingConfig | dict[str, Any] | None) -> PreprocessingConfig:
    if config is None:
        return PreprocessingConfig()
    if isinstance(config, dict):
        return PreprocessingConfig.from_dict(config)
    if isinstance(config, PreprocessingConfig):
        return config
    raise ConfigError(
        f"preprocessing config must be a PreprocessingConfig or dict, not {type(config).__name__}"
    )
