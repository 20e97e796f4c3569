"""Model grid → original grid: maps computed on the model's input grid, seen on the source
volume's voxels.

    sal = OriginalGridMap(cam, record)      # nothing computed yet
    sal.stats.argmax                        # peak voxel (i, j, k) on the DICOM grid
    for k0, frames in sal.iter_frames():    # [k, row = j, column = i] float32 slabs
        ...
    arr = to_original_grid(cam, record)     # the whole map at once, Fortran-ordered [i, j, k]

A 512² × 500 map on the original grid is 0.5 GB of float32; the model-grid map it comes from is
a few hundred kB. :class:`OriginalGridMap` therefore keeps the small map and resamples it a slab
of slices at a time as an exporter writes it (NIfTI blocks, DICOM frames): an explanation of
four labels holds four small maps instead of 2 GB.

For the usual axis-aligned geometry (the model grid is the original one reoriented, resampled
and cropped) trilinear resampling is separable: the map is first resampled in-plane onto the
original rows and columns, keeping the model's planes along the slice axis (``[n, J, I]``, a
tenth of the full map or less); each original slice is then a weighted sum of two of those
planes. That also bounds every slice's maximum and minimum by its two planes', so the peak and
value range of a map are found by resampling the few slices that can hold them. Other
geometries (oblique model grids, nearest-neighbour) use ``scipy.ndimage.map_coordinates`` slice
by slice.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .errors import ConfigError
from .types import PreprocessingRecord, Volume, voxel_to_world

if TYPE_CHECKING:
    import numpy as np

__all__ = ["MapStats", "OriginalGridMap", "to_original_grid", "to_original_volume"]

#: voxels per slab when a whole map is streamed (8 MB of float32: 32 slices of 512²)
SLAB_VOXELS = 1 << 23


@dataclass(frozen=True)
class MapStats:
    """Range and peak of a map on the original grid."""

    min: float
    max: float
    #: voxel index ``(i, j, k)`` of the maximum (the first one with ``i`` fastest, as
    #: ``np.argmax`` on the Fortran-ordered map)
    argmax: tuple[int, int, int]

    @property
    def abs_max(self) -> float:
        """The largest magnitude."""
        return max(abs(self.min), abs(self.max))


class OriginalGridMap:
    """A model-grid map ``values`` ``[X, Y, Z]`` (numpy or torch) seen on the original grid of
    ``record``, resampled on demand (``order`` 1 trilinear, 0 nearest; ``cval`` outside the
    model's field of view).

    ``shape`` and ``affine`` are the original volume's. :meth:`frames` gives any range of
    slices as C-ordered ``[k, j, i]`` float32 (the order of DICOM frames and of NIfTI's voxels),
    :attr:`stats` the range and peak, :attr:`array` the whole map (allocated on each access: the
    exporters stream instead). Thread-safe; pickles without its cached plan.
    """

    def __init__(
        self,
        values: Any,
        record: PreprocessingRecord,
        *,
        order: int = 1,
        cval: float = 0.0,
        units: str = "",
    ) -> None:
        import numpy as np

        if hasattr(values, "detach"):
            values = values.detach().float().cpu().numpy()
        arr = np.asarray(values, dtype=np.float32)
        if arr.ndim != 3:
            raise ConfigError(f"a map to resample must be 3D, got shape {arr.shape}")
        expected = tuple(record.output_shape[-3:])
        if tuple(arr.shape) != expected:
            raise ConfigError(f"map shape {arr.shape} is not the model grid {expected}")
        self.model = arr
        i, j, k = (int(s) for s in record.original_shape[:3])
        self.shape: tuple[int, int, int] = (i, j, k)
        self.affine = np.asarray(record.original_affine, dtype=np.float64)
        self.units = units
        self._to_model = record.original_to_model
        self._order, self._cval = order, float(cval)
        self._source: np.ndarray | None = None
        self._init_cache()

    @classmethod
    def from_volume(cls, volume: Volume) -> OriginalGridMap:
        """A map already on its grid (a 3D :class:`~medfuse.types.Volume`), e.g. one made by
        hand or read from a file."""
        import numpy as np

        if volume.array.ndim != 3:
            raise ConfigError(f"a saliency map must be 3D, got shape {volume.array.shape}")
        grid = cls.__new__(cls)
        grid.model = None  # type: ignore[assignment]
        i, j, k = (int(s) for s in volume.shape[:3])
        grid.shape = (i, j, k)
        grid.affine = np.asarray(volume.affine, dtype=np.float64)
        grid.units = volume.units
        grid._to_model, grid._order, grid._cval = None, 1, 0.0
        grid._source = volume.array
        grid._init_cache()
        return grid

    def _init_cache(self) -> None:
        self._lock = threading.Lock()
        self._cached_plan: _Plan | None = None
        self._stats: MapStats | None = None

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        for key in ("_lock", "_cached_plan"):
            state.pop(key)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        stats = state.pop("_stats", None)
        self.__dict__.update(state)
        self._init_cache()
        self._stats = stats

    def voxel_to_world(self, ijk: Any) -> np.ndarray:
        """RAS mm of voxel index/indices ``ijk`` (shape (3,) or (N, 3))."""
        return voxel_to_world(self.affine, ijk)

    def _plan(self) -> _Plan:
        with self._lock:
            if self._cached_plan is None:
                if self._source is not None:
                    self._cached_plan = _ArrayPlan(self._source)
                else:
                    self._cached_plan = make_plan(
                        self.model, self._to_model, self.shape, self._order, self._cval
                    )
            return self._cached_plan

    def frames(
        self, k0: int = 0, k1: int | None = None, out: np.ndarray | None = None
    ) -> np.ndarray:
        """Slices ``k0:k1`` as a new C-ordered float32 array ``[k1 - k0, J, I]`` (or into
        ``out``)."""
        import numpy as np

        k1 = self.shape[2] if k1 is None else k1
        if not 0 <= k0 <= k1 <= self.shape[2]:
            raise IndexError(f"slices {k0}:{k1} outside 0:{self.shape[2]}")
        if out is None:
            out = np.empty((k1 - k0, self.shape[1], self.shape[0]), np.float32)
        self._plan().frames(k0, k1, out)
        return out

    def slab_slices(self) -> int:
        """Slices per slab in :meth:`iter_frames`."""
        return max(1, SLAB_VOXELS // max(self.shape[0] * self.shape[1], 1))

    def iter_frames(self, step: int | None = None) -> Iterator[tuple[int, np.ndarray]]:
        """``(k0, frames(k0, k0 + step))`` over the whole map."""
        step = step or self.slab_slices()
        for k0 in range(0, self.shape[2], step):
            yield k0, self.frames(k0, min(k0 + step, self.shape[2]))

    @property
    def stats(self) -> MapStats:
        """Minimum, maximum and the maximum's voxel (computed once)."""
        with self._lock:
            stats = self._stats
        if stats is None:
            stats = self._plan().stats(self)
            with self._lock:
                self._stats = stats
        return stats

    @property
    def array(self) -> np.ndarray:
        """The whole map, float32 ``[i, j, k]`` (Fortran-ordered), newly allocated."""
        import numpy as np

        i, j, k = self.shape
        out = np.empty((k, j, i), np.float32)
        step = self.slab_slices()
        for k0 in range(0, k, step):
            k1 = min(k0 + step, k)
            self.frames(k0, k1, out=out[k0:k1])
        return out.T

    def save(self, path: str | os.PathLike) -> str:
        """Write the map as float32 NIfTI (``.nii`` / ``.nii.gz``) atomically, a slab at a time;
        returns the path written."""
        from .io.volumes import write_nifti_map

        return write_nifti_map(self, path)

    def volume(self) -> Volume:
        """:attr:`array` as a :class:`~medfuse.types.Volume` with the original affine."""
        return Volume(self.array, self.affine, modality="OT", units=self.units)

    def __repr__(self) -> str:
        kind = "array" if self._source is not None else f"resampled from {self.model.shape}"
        return f"OriginalGridMap(shape={self.shape}, {kind})"


class _Plan:
    """How to compute slices of one map."""

    def frames(self, k0: int, k1: int, out: np.ndarray) -> None:
        raise NotImplementedError

    def stats(self, grid: OriginalGridMap) -> MapStats:
        """A pass over every slab (plans that can bound slices do better)."""
        import numpy as np

        lo, hi, best = np.inf, -np.inf, (0, 0, 0)
        for k0, slab in grid.iter_frames():
            lo = min(lo, float(slab.min()))
            top = int(np.argmax(slab))
            if slab.flat[top] > hi:
                hi = float(slab.flat[top])
                k, j, i = np.unravel_index(top, slab.shape)
                best = (int(i), int(j), int(k0 + k))
        return MapStats(lo, hi, best)


class _ArrayPlan(_Plan):
    def __init__(self, arr: np.ndarray) -> None:
        self.arr = arr

    def frames(self, k0: int, k1: int, out: np.ndarray) -> None:
        out[...] = self.arr[:, :, k0:k1].T


class _AffinePlan(_Plan):
    """``scipy.ndimage.map_coordinates`` slice by slice (any affine, any spline order). The
    coordinates of slice ``k`` are computed the same way whichever slab asks for it, so a slab
    equals those slices of the whole map to the bit."""

    def __init__(
        self, a: np.ndarray, m: np.ndarray, shape: tuple[int, ...], order: int, cval: float
    ) -> None:
        import numpy as np

        self.a, self.order, self.cval = a, order, cval
        j, i = np.meshgrid(np.arange(shape[1]), np.arange(shape[0]), indexing="ij")
        # [3, J, I]: the input coordinates of slice 0; slice k adds k times the third column
        self.base = np.einsum("xc,cji->xji", m[:3, :2], np.stack([i, j]).astype(np.float64))
        self.base += m[:3, 3, None, None]
        self.step = m[:3, 2, None, None].copy()

    def frames(self, k0: int, k1: int, out: np.ndarray) -> None:
        from scipy import ndimage

        for r, k in enumerate(range(k0, k1)):
            ndimage.map_coordinates(
                self.a,
                self.base + self.step * k,
                output=out[r],
                order=self.order,
                mode="constant",
                cval=self.cval,
            )


class _SeparablePlan(_Plan):
    """Trilinear resampling for an axis-aligned affine as three 1D linear interpolations (what
    ``ndimage.affine_transform(order=1, mode="constant")`` gives, to float32 rounding, inside
    the model grid; outside it exactly ``cval``, where scipy blends towards ``cval`` over the
    first voxel), about 10× faster on large grids. The two in-plane steps are done once
    (``planes``: ``[n, J, I]``, the model's planes along the slice axis); each slice is then
    ``planes[lo] + w (planes[hi] - planes[lo])``: two reads and a multiply-add per voxel."""

    def __init__(
        self, a: np.ndarray, m: np.ndarray, perm: list[int], shape: tuple[int, ...], cval: float
    ) -> None:
        import numpy as np

        # C order [k, j, i]: output axis d of `rev` is original axis 2 - d
        rev = m.copy()
        rev[:, :3] = m[:, 2::-1]
        perm = perm[::-1]
        out_shape = tuple(shape[::-1])
        arr = np.ascontiguousarray(np.transpose(a, perm), dtype=np.float32)
        self.cval = cval
        for d in (2, 1):  # columns, then rows
            lo, hi, w, outside = _linear_weights(
                rev[perm[d], d], rev[perm[d], 3], out_shape[d], arr.shape[d]
            )
            wshape = [1, 1, 1]
            wshape[d] = -1
            a0 = np.take(arr, lo, axis=d)
            a1 = np.take(arr, hi, axis=d)
            a1 -= a0
            a1 *= w.reshape(wshape)
            a0 += a1
            if outside.any():
                index: list[Any] = [slice(None)] * 3
                index[d] = outside
                a0[tuple(index)] = cval
            arr = a0
        self.planes = arr
        self.lo, self.hi, self.w, self.outside = _linear_weights(
            rev[perm[0], 0], rev[perm[0], 3], out_shape[0], arr.shape[0]
        )

    def frames(self, k0: int, k1: int, out: np.ndarray) -> None:
        import numpy as np

        planes, lo, hi, w = self.planes, self.lo, self.hi, self.w
        for r, k in enumerate(range(k0, k1)):
            if self.outside[k]:
                out[r] = self.cval
                continue
            np.subtract(planes[hi[k]], planes[lo[k]], out=out[r])
            out[r] *= w[k]
            out[r] += planes[lo[k]]

    def stats(self, grid: OriginalGridMap) -> MapStats:
        """Each slice lies between its two planes' extremes (weighted as the slice), so the
        peak and the range come from the few slices whose bound can beat the best value found
        (in decreasing order of bound)."""
        import numpy as np

        flat = self.planes.reshape(len(self.planes), -1)
        pmax, pmin = flat.max(axis=1).astype(np.float64), flat.min(axis=1).astype(np.float64)
        w = self.w.astype(np.float64)
        upper = np.where(self.outside, self.cval, (1 - w) * pmax[self.lo] + w * pmax[self.hi])
        lower = np.where(self.outside, self.cval, (1 - w) * pmin[self.lo] + w * pmin[self.hi])
        # float32 rounding of a slice may pass its bound by a few ulp: look a little further
        tol = 1e-5 * max(
            float(np.abs(pmax).max()), float(np.abs(pmin).max()), abs(self.cval), 1e-30
        )
        frame = np.empty(self.planes.shape[1:], np.float32)
        hi_v, hi_at = -np.inf, (0, 0, 0)
        for k in np.argsort(-upper, kind="stable"):
            if upper[k] + tol < hi_v:
                break
            self.frames(int(k), int(k) + 1, frame[None])
            top = int(np.argmax(frame))
            v = float(frame.flat[top])
            if v > hi_v or (v == hi_v and k < hi_at[2]):
                j, i = np.unravel_index(top, frame.shape)
                hi_v, hi_at = v, (int(i), int(j), int(k))
        # no slice goes below the lowest plane value (or cval outside): once found, stop (maps
        # that are 0 over much of the volume would otherwise have every slice looked at)
        floor = min(float(pmin.min()), self.cval if self.outside.any() else np.inf)
        lo_v = np.inf
        for k in np.argsort(lower, kind="stable"):
            if lower[k] - tol > lo_v or lo_v <= floor:
                break
            self.frames(int(k), int(k) + 1, frame[None])
            lo_v = min(lo_v, float(frame.min()))
        return MapStats(lo_v, hi_v, hi_at)


def _linear_weights(scale: float, offset: float, n_out: int, n_in: int):
    """For output index ``o`` read at input coordinate ``scale·o + offset``: the two input
    indices, the weight of the second, and whether it lies outside the input."""
    import numpy as np

    c = scale * np.arange(n_out, dtype=np.float64) + offset
    outside = (c < -1e-6) | (c > n_in - 1 + 1e-6)
    lo = np.clip(np.floor(c), 0, max(n_in - 2, 0)).astype(np.intp)
    hi = np.minimum(lo + 1, n_in - 1)
    w = np.clip(c - lo, 0.0, 1.0).astype(np.float32)
    return lo, hi, w, outside


def make_plan(
    a: np.ndarray, m: np.ndarray, shape: tuple[int, ...], order: int = 1, cval: float = 0.0
) -> _Plan:
    """The plan that resamples ``a`` onto ``shape`` for ``m`` (output voxel → input voxel)."""
    perm = _axis_aligned(m) if order == 1 else None
    if perm is not None:
        return _SeparablePlan(a, m, perm, shape, cval)
    return _AffinePlan(a, m, shape, order, cval)


def _axis_aligned(m: np.ndarray) -> list[int] | None:
    """For an affine whose 3×3 part is a scaled permutation (no rotation: the usual case), the
    input axis that each output axis maps to; None otherwise."""
    import numpy as np

    a = np.abs(np.asarray(m[:3, :3], dtype=np.float64))
    perm = [int(np.argmax(a[:, d])) for d in range(3)]
    if sorted(perm) != [0, 1, 2]:
        return None
    off = a.copy()
    off[perm, [0, 1, 2]] = 0.0
    return perm if off.max() <= 1e-9 * max(a.max(), 1e-12) else None


def to_original_grid(
    values: Any, record: PreprocessingRecord, *, order: int = 1, cval: float = 0.0
) -> np.ndarray:
    """Resample a map on the model grid (``[X, Y, Z]`` or ``[C, X, Y, Z]``, numpy or torch) onto the
    original volume's voxel grid, using :attr:`PreprocessingRecord.model_to_original`.

    ``order`` is the spline order (0 nearest, 1 trilinear); voxels outside the model's field of
    view get ``cval``. Returns float32 ``[i, j, k]`` (Fortran-ordered; or ``[C, i, j, k]``) in
    the original shape. :class:`OriginalGridMap` does the same a slab at a time.
    """
    import numpy as np

    if hasattr(values, "detach"):
        values = values.detach().float().cpu().numpy()
    arr = np.asarray(values, dtype=np.float32)
    if arr.ndim not in (3, 4):
        raise ConfigError(
            f"a map to resample must be 3D or 4D (channel first), got shape {arr.shape}"
        )
    if arr.ndim == 3:
        return OriginalGridMap(arr, record, order=order, cval=cval).array
    return np.stack([OriginalGridMap(a, record, order=order, cval=cval).array for a in arr])


def to_original_volume(
    values: Any, record: PreprocessingRecord, *, order: int = 1, units: str = ""
) -> Volume:
    """:func:`to_original_grid` as a :class:`Volume` with the original affine."""
    import numpy as np

    arr = to_original_grid(values, record, order=order)
    if arr.ndim == 4:
        arr = np.moveaxis(arr, 0, 3)
    return Volume(arr, np.asarray(record.original_affine), modality="OT", units=units)
