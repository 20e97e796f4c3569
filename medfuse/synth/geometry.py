"""Image-plane geometry of a synthetic series: where every voxel of a volume lies in the patient.

Conventions (the same as :mod:`medfuse.types`): a volume ``array[i, j, k]`` has ``i`` along a
DICOM row (the column index, direction ``row_dir``), ``j`` along a DICOM column (the row index,
direction ``col_dir``) and ``k`` along the slice normal ``row_dir × col_dir``. Directions and
positions are DICOM patient coordinates (LPS, millimetres); :attr:`Geometry.affine_ras` is the
nibabel-style RAS+ affine of the same grid.

Every number that will end up in a DICOM header (direction cosines, positions, spacings) is rounded
here *once*, so the ground-truth affine is exactly what the written headers say.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from ..errors import ConfigError
from ..io.geometry import LPS_TO_RAS

__all__ = ["PATIENT_POSITIONS", "Geometry", "make_geometry"]

#: Default (row_dir, col_dir) of an axial image for each patient position, as scanners write them.
_AXIAL_IOP = {
    "HFS": ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0)),
    "HFP": ((-1.0, 0.0, 0.0), (0.0, -1.0, 0.0)),
    "FFS": ((-1.0, 0.0, 0.0), (0.0, 1.0, 0.0)),
    "FFP": ((1.0, 0.0, 0.0), (0.0, -1.0, 0.0)),
}
PATIENT_POSITIONS = tuple(_AXIAL_IOP)

_PRESETS = {
    "sagittal": ((0.0, 1.0, 0.0), (0.0, 0.0, -1.0)),
    "coronal": ((1.0, 0.0, 0.0), (0.0, 0.0, -1.0)),
}

#: Decimal places kept for direction cosines and for positions (mm).
_DIR_DECIMALS = 8
_POS_DECIMALS = 4


@dataclass(frozen=True)
class Geometry:
    """A regular grid of ``shape`` voxels placed in patient space.

    ``spacing`` is (along i, along j, along k) in mm, i.e. (PixelSpacing[1], PixelSpacing[0],
    slice step). ``origin_lps`` is the ImagePositionPatient of slice ``k = 0``.
    """

    shape: tuple[int, int, int]
    spacing: tuple[float, float, float]
    row_dir: tuple[float, float, float]
    col_dir: tuple[float, float, float]
    origin_lps: tuple[float, float, float]
    patient_position: str = "HFS"

    @cached_property
    def normal(self) -> np.ndarray:
        """Unit slice normal (row_dir × col_dir), LPS."""
        n = np.cross(np.asarray(self.row_dir), np.asarray(self.col_dir))
        return n / np.linalg.norm(n)

    @property
    def iop(self) -> tuple[float, ...]:
        """ImageOrientationPatient: row direction then column direction."""
        return (*self.row_dir, *self.col_dir)

    @property
    def pixel_spacing(self) -> tuple[float, float]:
        """DICOM PixelSpacing: (distance between rows, distance between columns)."""
        return (self.spacing[1], self.spacing[0])

    @cached_property
    def affine_lps(self) -> np.ndarray:
        """4x4 voxel (i, j, k) → LPS mm."""
        a = np.eye(4)
        a[:3, 0] = np.asarray(self.row_dir) * self.spacing[0]
        a[:3, 1] = np.asarray(self.col_dir) * self.spacing[1]
        a[:3, 2] = self.normal * self.spacing[2]
        a[:3, 3] = self.origin_lps
        return a

    @property
    def affine_ras(self) -> np.ndarray:
        """4x4 voxel (i, j, k) → RAS+ mm (the nibabel convention)."""
        return LPS_TO_RAS @ self.affine_lps

    @property
    def center_lps(self) -> np.ndarray:
        """LPS mm of the centre of the grid."""
        return self.ijk_to_lps((np.asarray(self.shape, dtype=float) - 1.0) / 2.0)

    def position(self, k: int) -> tuple[float, float, float]:
        """ImagePositionPatient of slice ``k`` (rounded as written in the header)."""
        p = np.asarray(self.origin_lps) + k * self.spacing[2] * self.normal
        return tuple(_clean(round(float(v), _POS_DECIMALS)) for v in p)

    def ijk_to_lps(self, ijk) -> np.ndarray:
        """LPS mm of voxel index/indices ``ijk`` (shape (3,) or (N, 3))."""
        a = self.affine_lps
        return np.asarray(ijk, dtype=np.float64) @ a[:3, :3].T + a[:3, 3]

    def lps_to_ijk(self, lps) -> np.ndarray:
        """Continuous voxel index of LPS point(s)."""
        inv = np.linalg.inv(self.affine_lps)
        return np.asarray(lps, dtype=np.float64) @ inv[:3, :3].T + inv[:3, 3]

    def slice_coords(self, k: int) -> tuple:
        """LPS coordinates (x, y, z) of the voxel centres of slice ``k``.

        Each is broadcastable to ``shape[:2]``: an axis that does not vary in the slice is a
        Python float, one that varies only along i is an (X, 1) array, and so on. Phantoms use
        this to evaluate anatomy per slice without building full coordinate grids.
        """
        nx, ny, _ = self.shape
        base = np.asarray(self.origin_lps) + k * self.spacing[2] * self.normal
        ii = np.arange(nx, dtype=np.float32)[:, None]
        jj = np.arange(ny, dtype=np.float32)[None, :]
        out = []
        for c in range(3):
            di = self.row_dir[c] * self.spacing[0]
            dj = self.col_dir[c] * self.spacing[1]
            v = float(base[c])
            if di != 0.0:
                v = v + ii * np.float32(di)
            if dj != 0.0:
                v = v + jj * np.float32(dj)
            out.append(v)
        return tuple(out)

    def plane_distance(self, k: int, point_lps) -> float:
        """Signed distance (mm) of ``point_lps`` from the plane of slice ``k``."""
        base = np.asarray(self.origin_lps) + k * self.spacing[2] * self.normal
        return float(np.dot(np.asarray(point_lps, dtype=float) - base, self.normal))

    def to_dict(self) -> dict:
        """JSON-friendly description."""
        return {
            "shape": list(self.shape),
            "spacing": list(self.spacing),
            "image_orientation_patient": list(self.iop),
            "pixel_spacing": list(self.pixel_spacing),
            "origin_lps": list(self.origin_lps),
            "slice_normal_lps": [_clean(round(float(v), 10)) for v in self.normal],
            "patient_position": self.patient_position,
            "affine_lps": _rounded(self.affine_lps),
            "affine_ras": _rounded(self.affine_ras),
        }


def make_geometry(
    shape: Sequence[int],
    spacing: Sequence[float],
    *,
    orientation: str | Sequence[float] = "axial",
    patient_position: str = "HFS",
    center_lps: Sequence[float] = (0.0, 0.0, 0.0),
    oblique_deg: float | Sequence[float] = 0.0,
) -> Geometry:
    """Build a :class:`Geometry` whose grid centre lies at ``center_lps``.

    ``orientation`` is ``"axial"`` (directions from ``patient_position``: HFS ``[1,0,0,0,1,0]``,
    HFP ``[-1,0,0,0,-1,0]``, FFS ``[-1,0,0,0,1,0]``, FFP ``[1,0,0,0,-1,0]``), ``"coronal"``
    (``[1,0,0,0,0,-1]``), ``"sagittal"`` (``[0,1,0,0,0,-1]``) or six direction cosines.
    ``oblique_deg`` tilts the plane: one angle rotates it about its row direction, a pair
    ``(a, b)`` rotates about the row direction by ``a`` and then about the column direction by ``b``
    (double oblique).
    """
    shape_t = tuple(int(s) for s in shape)
    spacing_t = tuple(float(s) for s in spacing)
    if len(shape_t) != 3 or min(shape_t) < 1:
        raise ConfigError(f"shape must be three positive integers, got {tuple(shape)}")
    if len(spacing_t) != 3 or not all(math.isfinite(s) and s > 0 for s in spacing_t):
        raise ConfigError(f"spacing must be three positive numbers (mm), got {tuple(spacing)}")
    pp = str(patient_position).upper()
    if pp not in _AXIAL_IOP:
        raise ConfigError(
            f"patient_position must be one of {', '.join(PATIENT_POSITIONS)}, got {patient_position!r}"
        )
    if isinstance(orientation, str):
        key = orientation.lower()
        if key == "axial":
            row, col = _AXIAL_IOP[pp]
        elif key in _PRESETS:
            row, col = _PRESETS[key]
        else:
            raise ConfigError(
                f"orientation must be 'axial', 'coronal', 'sagittal' or 6 direction cosines, got {orientation!r}"
            )
        row, col = np.asarray(row, float), np.asarray(col, float)
    else:
        vals = np.asarray(orientation, dtype=float).ravel()
        if vals.size != 6 or not np.all(np.isfinite(vals)):
            raise ConfigError(f"orientation needs 6 direction cosines, got {orientation!r}")
        row, col = vals[:3], vals[3:]
        if np.linalg.norm(row) < 1e-6 or np.linalg.norm(col) < 1e-6:
            raise ConfigError(f"orientation has a zero direction: {orientation!r}")
        row = row / np.linalg.norm(row)
        col = col - np.dot(col, row) * row  # make exactly orthogonal
        if np.linalg.norm(col) < 1e-6:
            raise ConfigError(
                f"orientation row and column directions are parallel: {orientation!r}"
            )
        col = col / np.linalg.norm(col)

    angles = np.atleast_1d(np.asarray(oblique_deg, dtype=float))
    if angles.size not in (1, 2):
        raise ConfigError(f"oblique_deg must be one angle or a pair, got {oblique_deg!r}")
    if angles[0]:
        r = _rotation(row, math.radians(angles[0]))
        col = r @ col
    if angles.size == 2 and angles[1]:
        r = _rotation(col, math.radians(angles[1]))
        row = r @ row

    row_t = tuple(_clean(round(float(v), _DIR_DECIMALS)) for v in row)
    col_t = tuple(_clean(round(float(v), _DIR_DECIMALS)) for v in col)
    provisional = Geometry(shape_t, spacing_t, row_t, col_t, (0.0, 0.0, 0.0), pp)
    # Put the grid centre at center_lps: origin = centre - A[:3,:3] @ (shape-1)/2.
    half = (np.asarray(shape_t, dtype=float) - 1.0) / 2.0
    origin = np.asarray(center_lps, dtype=float) - provisional.affine_lps[:3, :3] @ half
    origin_t = tuple(_clean(round(float(v), _POS_DECIMALS)) for v in origin)
    return Geometry(shape_t, spacing_t, row_t, col_t, origin_t, pp)


def _rotation(axis: np.ndarray, angle: float) -> np.ndarray:
    """Rodrigues rotation matrix about unit ``axis`` by ``angle`` radians."""
    a = np.asarray(axis, dtype=float)
    a = a / np.linalg.norm(a)
    k = np.array([[0, -a[2], a[1]], [a[2], 0, -a[0]], [-a[1], a[0], 0]])
    return np.eye(3) + math.sin(angle) * k + (1 - math.cos(angle)) * (k @ k)


def _clean(v: float) -> float:
    """Turn -0.0 into 0.0 (so headers never say "-0")."""
    return 0.0 if v == 0 else v


def _rounded(a: np.ndarray, nd: int = 6) -> list[list[float]]:
    return [[_clean(round(float(v), nd)) for v in row] for row in a]
