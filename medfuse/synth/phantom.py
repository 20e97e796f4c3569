"""Deterministic anatomical phantoms defined in patient space (LPS millimetres).

Anatomy is described analytically around an *anatomy centre* and evaluated slice by slice at the
voxel centres given by a :class:`~medfuse.synth.geometry.Geometry`, so the same patient looks
right in any orientation (axial HFS/HFP/FFS/FFP, coronal, sagittal, oblique). Each slice is a
handful of vectorised numpy operations on 2D arrays; a 512×512×500 chest CT takes a few seconds.

Two phantoms:

* :class:`ChestPhantom` — CT in Hounsfield units (int16): air, skin / subcutaneous fat / muscle,
  two lungs with a diaphragm dome and mild noise, heart (``heart_scale`` > 1.25 reads as
  cardiomegaly), descending aorta, vertebral bodies with discs and posterior arches, ribs, sternum,
  optional dependent pleural effusion and emphysema, and spherical lesions (nodules / masses).
* :class:`HeadPhantom` — a T1-like brain MR in arbitrary units (uint16): scalp fat, skull, CSF,
  grey and white matter, lateral ventricles (``ventricle_scale`` >= 1.7 reads as hydrocephalus),
  cerebellum, brainstem, neck, optional lesions.

Lesion voxels carry exactly the lesion value (no noise), so a test can check the voxel at a
lesion's centre.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError
from .geometry import Geometry, make_geometry

__all__ = [
    "ChestPhantom",
    "HeadPhantom",
    "Lesion",
    "chest_ct_phantom",
    "head_mr_phantom",
]

HU_MIN, HU_MAX = -1024, 3071

# Chest CT tissue values (HU).
HU_AIR = -1000
HU_FAT = -100
HU_SOFT = 40
HU_LUNG = -850
HU_LUNG_EMPHYSEMA = -925
HU_BLOOD = 45
HU_BONE = 700
HU_MARROW = 300
HU_DISC = 90
HU_CSF = 10
HU_FLUID = 12
HU_LESION = 30

# Chest anatomy, mm relative to the anatomy centre (u: +left, v: +posterior, w: +superior).
_BODY_A, _BODY_B = 165.0, 115.0
_SKIN, _FAT = 3.0, 12.0
_LUNG_U, _LUNG_A, _LUNG_B = 78.0, 58.0, 85.0
_LUNG_BASE, _LUNG_APEX, _DOME = -120.0, 120.0, 40.0
_HEART_C = (22.0, -35.0, -55.0)
_HEART_R = (58.0, 48.0, 52.0)


@dataclass(frozen=True)
class Lesion:
    """A spherical lesion. Give its centre in patient mm (``center_lps``) *or* as a voxel index of
    the phantom's grid (``center_ijk``, may be fractional)."""

    radius_mm: float
    center_lps: tuple[float, float, float] | None = None
    center_ijk: tuple[float, float, float] | None = None
    #: Intensity inside the sphere (HU for CT, arbitrary units for MR); None = phantom default.
    value: float | None = None
    #: "nodule", "mass", ... (free text, copied to the ground truth).
    kind: str = "nodule"

    def resolve(self, geometry: Geometry) -> np.ndarray:
        """The centre in LPS mm on ``geometry``."""
        if not (self.radius_mm > 0 and math.isfinite(self.radius_mm)):
            raise ConfigError(
                f"lesion radius must be a positive number of mm, got {self.radius_mm!r}"
            )
        if (self.center_lps is None) == (self.center_ijk is None):
            raise ConfigError("give a lesion exactly one of center_lps (mm) or center_ijk (voxel)")
        if self.center_lps is not None:
            c = np.asarray(self.center_lps, dtype=float)
        else:
            c = geometry.ijk_to_lps(np.asarray(self.center_ijk, dtype=float))
        if c.shape != (3,) or not np.all(np.isfinite(c)):
            raise ConfigError(f"lesion centre must be three finite numbers, got {c.tolist()}")
        return c


class _Phantom:
    """Shared machinery: geometry, anatomy centre, deterministic noise, lesions, slicing."""

    dtype: type = np.int16
    default_lesion_value: float = 0.0
    #: Standard deviation of the additive noise (0 = none); ``noise=`` overrides it.
    noise_sigma: float = 0.0

    def __init__(
        self,
        geometry: Geometry,
        *,
        seed: int = 0,
        lesions: Sequence[Lesion] = (),
        anatomy_center_lps: Sequence[float] | None = None,
        noise: float | None = None,
    ) -> None:
        self.geometry = geometry
        self.seed = int(seed)
        c = geometry.center_lps if anatomy_center_lps is None else anatomy_center_lps
        self.center = np.asarray(c, dtype=float)
        if self.center.shape != (3,):
            raise ConfigError(
                f"anatomy_center_lps must be three numbers, got {anatomy_center_lps!r}"
            )
        self.lesions = tuple(lesions)
        self._lesion_centres = [les.resolve(geometry) for les in self.lesions]
        if noise is not None:
            if noise < 0:
                raise ConfigError(f"noise must be >= 0, got {noise}")
            self.noise_sigma = float(noise)
        nx, ny, _ = geometry.shape
        self._pad = (31, 29)
        if self.noise_sigma > 0:
            rng = np.random.default_rng(np.random.SeedSequence([self.seed, 0x5EED]))
            bank = rng.standard_normal((nx + self._pad[0], ny + self._pad[1]), dtype=np.float32)
            self._noise_bank = np.rint(bank * np.float32(self.noise_sigma)).astype(np.int16)
        else:
            self._noise_bank = None

    # -- public -------------------------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, int, int]:
        return self.geometry.shape

    def lesion_centres_lps(self) -> list[np.ndarray]:
        """Lesion centres in LPS mm, in the order given."""
        return [c.copy() for c in self._lesion_centres]

    def slice(self, k: int) -> np.ndarray:
        """Slice ``k`` as an (X, Y) array (``array[:, :, k]`` of :meth:`volume`)."""
        nz = self.geometry.shape[2]
        if not 0 <= k < nz:
            raise IndexError(f"slice {k} out of range 0..{nz - 1}")
        x, y, z = self.geometry.slice_coords(k)
        u = x - self.center[0]
        v = y - self.center[1]
        w = z - self.center[2]
        out = np.empty(self.geometry.shape[:2], dtype=np.int16)
        self._paint(out, u, v, w, k)
        for les, c in zip(self.lesions, self._lesion_centres, strict=True):
            r = float(les.radius_mm)
            if abs(self.geometry.plane_distance(k, c)) > r:
                continue
            m = (x - c[0]) ** 2 + (y - c[1]) ** 2 + (z - c[2]) ** 2 <= r * r
            val = self.default_lesion_value if les.value is None else les.value
            np.copyto(out, np.int16(round(val)), where=m)
        return self._finish(out)

    def volume(self, workers: int | None = None) -> np.ndarray:
        """The whole volume, shape ``geometry.shape`` (slices are built in ``workers`` threads;
        the result is a view with the slice axis outermost in memory)."""
        nx, ny, nz = self.geometry.shape
        buf = np.empty((nz, nx, ny), dtype=self.dtype)
        self.slice(0)  # fill caches before threads share them

        def one(k: int) -> None:
            buf[k] = self.slice(k)

        n = workers if workers is not None else min(4, os.cpu_count() or 1)
        if n > 1 and nz > 8:
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(max_workers=n) as pool:
                list(pool.map(one, range(nz)))
        else:
            for k in range(nz):
                one(k)
        return np.moveaxis(buf, 0, 2)

    def value_at_lesion(self, index: int) -> float:
        les = self.lesions[index]
        return float(round(self.default_lesion_value if les.value is None else les.value))

    # -- helpers for subclasses -----------------------------------------------------------------
    def _noise(self, k: int) -> np.ndarray | None:
        if self._noise_bank is None:
            return None
        nx, ny, _ = self.geometry.shape
        ox = (k * 7919 + self.seed) % self._pad[0]
        oy = (k * 104729 + 3 * self.seed) % self._pad[1]
        return self._noise_bank[ox : ox + nx, oy : oy + ny]

    def _paint(self, out: np.ndarray, u, v, w, k: int) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _finish(self, out: np.ndarray) -> np.ndarray:
        return out


class ChestPhantom(_Phantom):
    """Chest CT in HU (int16, within -1024..3071).

    ``heart_scale`` scales the heart (1.0 normal; ≥ 1.3 is cardiomegaly), ``effusion`` is None,
    ``"left"``, ``"right"`` or ``"both"`` (fluid layers on the dependent side, which follows the
    geometry's patient position: posterior when supine, anterior when prone), ``emphysema`` lowers
    lung attenuation. Lesions default to ``HU_LESION`` (30 HU).
    """

    default_lesion_value = float(HU_LESION)
    noise_sigma = 15.0

    def __init__(
        self,
        geometry: Geometry,
        *,
        seed: int = 0,
        lesions: Sequence[Lesion] = (),
        heart_scale: float = 1.0,
        effusion: str | None = None,
        emphysema: bool = False,
        anatomy_center_lps: Sequence[float] | None = None,
        noise: float | None = None,
    ) -> None:
        super().__init__(
            geometry, seed=seed, lesions=lesions, anatomy_center_lps=anatomy_center_lps, noise=noise
        )
        if not (0.5 <= float(heart_scale) <= 2.0):
            raise ConfigError(f"heart_scale must be within 0.5..2.0, got {heart_scale}")
        if effusion not in (None, "left", "right", "both"):
            raise ConfigError(f"effusion must be None, 'left', 'right' or 'both', got {effusion!r}")
        self.heart_scale = float(heart_scale)
        self.effusion = effusion
        self.emphysema = bool(emphysema)
        # Gravity: fluid collects posteriorly when supine, anteriorly when prone.
        self._dependent = -1.0 if geometry.patient_position.endswith("P") else 1.0
        self._plane_cache: dict | None = None

    # Analytic anatomy queries (used to place lesions and name lobes) ------------------------
    def lung_label(self, points_lps) -> np.ndarray:
        """For LPS points of shape (N, 3): -1 inside the right lung, +1 inside the left lung, 0
        elsewhere (the heart is not lung)."""
        p = np.atleast_2d(np.asarray(points_lps, dtype=float)) - self.center
        u, v, w = p[:, 0], p[:, 1], p[:, 2]
        out = np.zeros(len(p), dtype=np.int8)
        heart = self._heart_mask(u, v, w)
        for sign in (-1.0, 1.0):
            out[self._lung_mask(u, v, w, sign) & ~heart] = int(sign)
        return out

    def lung_side(self, lps) -> str | None:
        """``"right"`` / ``"left"`` if the point lies inside a lung (not the heart), else None."""
        code = int(self.lung_label(lps)[0])
        return {-1: "right", 1: "left"}.get(code)

    def lobe(self, lps) -> str:
        """Lobe name of a point in a lung (synthetic convention: right lung split in thirds by
        height with the middle lobe anterior, left lung in halves)."""
        side = self.lung_side(lps)
        u, v, w = np.asarray(lps, dtype=float) - self.center
        if side is None:
            side = "right" if u < 0 else "left"
        t = (w - _LUNG_BASE) / (_LUNG_APEX - _LUNG_BASE)
        if side == "right":
            if t > 0.55:
                return "right upper lobe"
            if v < -15.0 and t > 0.15:
                return "right middle lobe"
            return "right lower lobe"
        return "left upper lobe" if t > 0.45 else "left lower lobe"

    def _lung_q(self, u, v, sign: float):
        return ((u - sign * _LUNG_U) / _LUNG_A) ** 2 + (v / _LUNG_B) ** 2

    def _lung_mask(self, u, v, w, sign: float):
        q = self._lung_q(u, v, sign)
        t = np.clip((w - _LUNG_BASE) / (_LUNG_APEX - _LUNG_BASE), 0.0, 1.0)
        s2 = 1.0 - t * t
        # Diaphragm dome: the base rises towards the middle of each lung.
        above_dome = w >= _LUNG_BASE + _DOME * (1.0 - q)
        return (q <= s2) & above_dome & (w <= _LUNG_APEX)

    def _heart_mask(self, u, v, w):
        hs = self.heart_scale
        a, b, c = (r * hs for r in _HEART_R)
        return (
            ((u - _HEART_C[0]) / a) ** 2
            + ((v - _HEART_C[1]) / b) ** 2
            + ((w - _HEART_C[2]) / c) ** 2
        ) <= 1.0

    # Painting ---------------------------------------------------------------------------------
    def _in_plane(self, u, v) -> dict:
        """Everything that depends on (u, v) only. Axial slices share u and v, so this is
        computed once for them and cached."""
        qb = (u / _BODY_A) ** 2 + (v / _BODY_B) ** 2
        a1, b1 = _BODY_A - _SKIN, _BODY_B - _SKIN
        a2, b2 = a1 - _FAT, b1 - _FAT
        body = np.full(np.broadcast_shapes(np.shape(u), np.shape(v)), HU_AIR, dtype=np.int16)
        np.copyto(body, np.int16(HU_SOFT), where=qb <= 1.0)
        np.copyto(body, np.int16(HU_FAT), where=(u / a1) ** 2 + (v / b1) ** 2 <= 1.0)
        np.copyto(body, np.int16(HU_SOFT), where=(u / a2) ** 2 + (v / b2) ** 2 <= 1.0)
        qr = (u / 143.0) ** 2 + (v / 92.0) ** 2
        ring = (qr >= 0.94) & (qr <= 1.06)
        ring &= ~((np.abs(u) < 35.0) & (v < 0)) & ~((np.abs(u) < 30.0) & (v > 0))
        hs = self.heart_scale
        ha, hb = _HEART_R[0] * hs, _HEART_R[1] * hs
        rv = u**2 + (v - 62.0) ** 2
        rc = u**2 + (v - 91.0) ** 2
        return {
            "body": body,
            "ring": ring,
            "sternum": (np.abs(u) < 14.0) & (v > -100.0) & (v < -88.0),
            "lung_q": {s: self._lung_q(u, v, s) for s in (-1.0, 1.0)},
            "heart_q": ((u - _HEART_C[0]) / ha) ** 2 + ((v - _HEART_C[1]) / hb) ** 2,
            "aorta": (u - 25.0) ** 2 + (v - 45.0) ** 2 <= 12.0**2,
            "vb_outer": rv <= 19.0**2,
            "vb_inner": rv <= 16.0**2,
            "arch": ((rc <= 14.0**2) | ((np.abs(u) < 4.0) & (v > 91.0) & (v < 110.0))) & (v > 80.0),
            "canal": rc <= 8.0**2,
            "dependent": (self._dependent * v) > (_LUNG_B - 35.0),
        }

    def _paint(self, out: np.ndarray, u, v, w, k: int) -> None:
        put = np.copyto
        if np.ndim(w) == 0:  # axial: in-plane coordinates are the same on every slice
            if self._plane_cache is None:
                self._plane_cache = self._in_plane(u, v)
            st = self._plane_cache
        else:
            st = self._in_plane(u, v)
        # Body: skin (soft tissue), subcutaneous fat, then muscle / mediastinum.
        put(out, st["body"])

        in_cage = (w > -150.0) & (w < 140.0)
        # Ribs: a band just inside the chest wall, in sloping bands along z; sternum.
        rib_band = (np.mod(w - 0.4 * v, 28.0) < 11.0) & in_cage
        put(out, np.int16(HU_BONE), where=st["ring"] & rib_band)
        put(out, np.int16(HU_BONE), where=st["sternum"] & ((w > -100.0) & (w < 100.0)))

        # Lungs (with noise), diaphragm dome rising towards the middle of each lung; effusion.
        t = np.clip((w - _LUNG_BASE) / (_LUNG_APEX - _LUNG_BASE), 0.0, 1.0)
        s2 = 1.0 - t * t
        dome_q = 1.0 - (w - _LUNG_BASE) / _DOME  # q must be >= this (above the dome)
        below_apex = w <= _LUNG_APEX
        masks = {}
        for sign, q in st["lung_q"].items():
            masks[sign] = (q <= s2) & (q >= dome_q) & below_apex
        lungs = masks[-1.0] | masks[1.0]
        lung_hu = np.int16(HU_LUNG_EMPHYSEMA if self.emphysema else HU_LUNG)
        noise = self._noise(k)
        if noise is not None:
            put(out, noise + lung_hu, where=lungs)
        else:
            put(out, lung_hu, where=lungs)
        if self.effusion:
            low = w < _LUNG_BASE + 120.0
            sides = {"left": (1.0,), "right": (-1.0,), "both": (-1.0, 1.0)}[self.effusion]
            for sign in sides:
                put(out, np.int16(HU_FLUID), where=masks[sign] & st["dependent"] & low)

        # Heart (skipped on slices it cannot reach).
        hs = self.heart_scale
        heart_c = self.center + np.asarray(_HEART_C)
        if abs(self.geometry.plane_distance(k, heart_c)) <= max(_HEART_R) * hs:
            dw = ((w - _HEART_C[2]) / (_HEART_R[2] * hs)) ** 2
            put(out, np.int16(HU_SOFT), where=st["heart_q"] <= 1.0 - dw)
        # Descending aorta.
        put(out, np.int16(HU_BLOOD), where=st["aorta"] & ((w > -110.0) & (w < 70.0)))

        # Spine: vertebral bodies (cortex + marrow, discs every 32 mm), canal, posterior arch.
        disc = np.mod(w, 32.0) < 7.0
        put(out, np.int16(HU_BONE), where=st["vb_outer"])
        put(out, np.int16(HU_MARROW), where=st["vb_inner"] & ~disc)
        put(out, np.int16(HU_DISC), where=st["vb_outer"] & disc)
        put(out, np.int16(HU_BONE), where=st["arch"])
        put(out, np.int16(HU_CSF), where=st["canal"])

    def _finish(self, out: np.ndarray) -> np.ndarray:
        np.clip(out, HU_MIN, HU_MAX, out=out)
        return out


# Brain MR intensities (arbitrary units, T1-like).
MR_BACKGROUND = 0
MR_FAT = 950
MR_BONE = 60
MR_CSF = 250
MR_GREY = 620
MR_WHITE = 860
MR_SOFT = 500
MR_LESION = 1250

_HEAD = (72.0, 92.0, 100.0)


class HeadPhantom(_Phantom):
    """T1-like brain MR in arbitrary units (returned as uint16). Lesions default to ``MR_LESION``.

    Noise (``noise``, default 8) is added everywhere except inside lesions and folded to be
    non-negative (magnitude images). ``ventricle_scale`` (1.0 normal, within 0.5..3.0) scales the
    lateral ventricles: their left-right and cranio-caudal semi-axes by ``s`` and their
    antero-posterior one by ``1 + 0.3 (s - 1)``; 1.7 or more reads as hydrocephalus.
    """

    dtype = np.uint16
    default_lesion_value = float(MR_LESION)
    noise_sigma = 8.0

    def __init__(
        self,
        geometry: Geometry,
        *,
        seed: int = 0,
        lesions: Sequence[Lesion] = (),
        ventricle_scale: float = 1.0,
        anatomy_center_lps: Sequence[float] | None = None,
        noise: float | None = None,
    ) -> None:
        super().__init__(
            geometry, seed=seed, lesions=lesions, anatomy_center_lps=anatomy_center_lps, noise=noise
        )
        s = float(ventricle_scale)
        if not (0.5 <= s <= 3.0):
            raise ConfigError(f"ventricle_scale must be within 0.5..3.0, got {ventricle_scale}")
        self.ventricle_scale = s
        # semi-axes (u, v, w) of each lateral ventricle; exactly (5, 26, 11) mm when s == 1
        self._vent_axes = (5.0 * s, 26.0 * (1.0 + 0.3 * (s - 1.0)), 11.0 * s)

    def _paint(self, out: np.ndarray, u, v, w, k: int) -> None:
        out.fill(MR_BACKGROUND)
        put = np.copyto
        ha, hb, hc = _HEAD

        def q(s: float, dw: float = 0.0):
            return (u / (ha * s)) ** 2 + (v / (hb * s)) ** 2 + ((w - dw) / (hc * s)) ** 2

        neck = ((u / 48.0) ** 2 + ((v - 12.0) / 52.0) ** 2 <= 1.0) & (w < -40.0)
        put(out, np.int16(MR_SOFT), where=neck)
        put(out, np.int16(MR_FAT), where=q(1.0) <= 1.0)
        put(out, np.int16(MR_BONE), where=q(0.93) <= 1.0)
        put(out, np.int16(MR_CSF), where=q(0.86) <= 1.0)
        brain = (q(0.83) <= 1.0) & (w > -55.0)
        put(out, np.int16(MR_GREY), where=brain)
        put(out, np.int16(MR_WHITE), where=(q(0.62, 12.0) <= 1.0) & (w > -30.0))
        # Lateral ventricles.
        va, vb, vc = self._vent_axes
        for sign in (-1.0, 1.0):
            vent = ((u - sign * 9.0) / va) ** 2 + ((v + 8.0) / vb) ** 2 + ((w - 12.0) / vc) ** 2
            put(out, np.int16(MR_CSF), where=vent <= 1.0)
        # Cerebellum and brainstem.
        cb = (u / 45.0) ** 2 + ((v - 45.0) / 28.0) ** 2 + ((w + 45.0) / 22.0) ** 2
        put(out, np.int16(MR_GREY + 60), where=cb <= 1.0)
        bs = ((u / 12.0) ** 2 + ((v - 15.0) / 14.0) ** 2 <= 1.0) & (w > -110.0) & (w < -15.0)
        put(out, np.int16(MR_WHITE - 100), where=bs)
        noise = self._noise(k)
        if noise is not None:
            out += noise

    def _finish(self, out: np.ndarray) -> np.ndarray:
        # Painted in int16 (noise may go negative); lesions were painted after the noise.
        return np.abs(out).astype(np.uint16)

    def region(self, lps) -> str:
        """Rough anatomical name of a point (for reports)."""
        u, v, w = np.asarray(lps, dtype=float) - self.center
        side = "right" if u < 0 else "left"
        if w < -25.0 and v > 20.0:
            return f"{side} cerebellar hemisphere"
        if v < -35.0:
            lobe = "frontal"
        elif v > 45.0:
            lobe = "occipital"
        elif w > 25.0:
            lobe = "parietal"
        else:
            lobe = "temporal"
        return f"{side} {lobe} lobe"

    def in_brain(self, points_lps, margin_mm: float = 0.0) -> np.ndarray:
        """For LPS points of shape (N, 3): inside the cerebrum, at least ``margin_mm`` from its
        surface (approximately), and outside the ventricles."""
        p = np.atleast_2d(np.asarray(points_lps, dtype=float)) - self.center
        u, v, w = p[:, 0], p[:, 1], p[:, 2]
        ha, hb, hc = (r * 0.83 - margin_mm for r in _HEAD)
        inside = ((u / ha) ** 2 + (v / hb) ** 2 + (w / hc) ** 2 <= 1.0) & (w > -55.0 + margin_mm)
        # keep clear of the ventricles (|u| < 14 + margin near the midline, around w = 12, for
        # normal-sized ones)
        va, vb, vc = self._vent_axes
        half_u = 9.0 + va
        near_vent = (
            (np.abs(u) < half_u + margin_mm)
            & (np.abs(v + 8.0) < vb + margin_mm)
            & (np.abs(w - 12.0) < vc + margin_mm)
        )
        return inside & ~near_vent


def chest_ct_phantom(
    shape: Sequence[int],
    spacing: Sequence[float],
    *,
    seed: int = 0,
    lesions: Sequence[Lesion] = (),
    heart_scale: float = 1.0,
    effusion: str | None = None,
    emphysema: bool = False,
    geometry: Geometry | None = None,
    **geometry_kw,
) -> np.ndarray:
    """A chest CT volume in HU (int16) of ``shape`` = (X, Y, Z) voxels of ``spacing`` mm.

    The grid is axial HFS centred on the anatomy unless ``geometry`` (or ``make_geometry``
    keywords such as ``orientation=`` / ``patient_position=``) says otherwise.
    """
    geom = geometry or make_geometry(shape, spacing, **geometry_kw)
    if tuple(geom.shape) != tuple(int(s) for s in shape):
        raise ConfigError(f"geometry shape {geom.shape} differs from shape {tuple(shape)}")
    return ChestPhantom(
        geom,
        seed=seed,
        lesions=lesions,
        heart_scale=heart_scale,
        effusion=effusion,
        emphysema=emphysema,
    ).volume()


def head_mr_phantom(
    shape: Sequence[int],
    spacing: Sequence[float],
    *,
    seed: int = 0,
    lesions: Sequence[Lesion] = (),
    ventricle_scale: float = 1.0,
    geometry: Geometry | None = None,
    **geometry_kw,
) -> np.ndarray:
    """A brain MR volume (uint16, arbitrary units); sagittal ``[0,1,0,0,0,-1]`` by default;
    ``ventricle_scale`` >= 1.7 draws hydrocephalus."""
    geometry_kw.setdefault("orientation", "sagittal")
    geom = geometry or make_geometry(shape, spacing, **geometry_kw)
    if tuple(geom.shape) != tuple(int(s) for s in shape):
        raise ConfigError(f"geometry shape {geom.shape} differs from shape {tuple(shape)}")
    return HeadPhantom(geom, seed=seed, lesions=lesions, ventricle_scale=ventricle_scale).volume()
