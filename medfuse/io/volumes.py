"""NIfTI (nibabel) and NRRD / MHA / MHD (SimpleITK) volumes, read into and written from
:class:`~medfuse.types.Volume`."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .._atomic import atomic_open
from ..errors import ExportError, VolumeError
from ..types import Volume
from .geometry import LPS_TO_RAS

__all__ = [
    "ITK_SUFFIXES",
    "NIFTI_SUFFIXES",
    "read_itk",
    "read_nifti",
    "volume_format",
    "write_nifti",
    "write_nifti_int16_stack",
]

NIFTI_SUFFIXES = (".nii", ".nii.gz")
ITK_SUFFIXES = (".nrrd", ".nhdr", ".mha", ".mhd")


def volume_format(path: str | os.PathLike) -> str | None:
    """ "nifti", "itk" or None, from the file name."""
    name = str(path).lower()
    if name.endswith(NIFTI_SUFFIXES):
        return "nifti"
    if name.endswith(ITK_SUFFIXES):
        return "itk"
    return None


def _check(array: np.ndarray, path: Path) -> np.ndarray:
    if array.ndim == 5 and array.shape[3] == 1:  # NIfTI stores vectors in the 5th dim
        array = array[:, :, :, 0, :]
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim not in (3, 4):
        raise VolumeError(f"{array.ndim}-D image; medfuse reads 3D and 4D volumes", path=path)
    if 0 in array.shape:
        raise VolumeError(f"empty image of shape {array.shape}", path=path)
    return array


def read_nifti(path: str | os.PathLike) -> Volume:
    """A NIfTI-1/2 file as a float32 Volume (scl_slope/scl_inter applied; sform, else qform)."""
    import nibabel as nib

    path = Path(path)
    try:
        img = nib.load(path)
        array = np.asarray(img.dataobj, dtype=np.float32)
        affine = np.asarray(img.affine, dtype=np.float64)
    except FileNotFoundError:
        raise VolumeError("file not found", path=path) from None
    except Exception as exc:  # nibabel raises ImageFileError, EOFError, zlib errors, ...
        raise VolumeError(
            f"not a readable NIfTI file ({type(exc).__name__}: {exc})", path=path
        ) from exc
    if not np.all(np.isfinite(affine)) or abs(np.linalg.det(affine[:3, :3])) < 1e-12:
        raise VolumeError("the affine is singular or not finite", path=path)
    return Volume(
        array=_check(array, path),
        affine=affine,
        modality="OT",
        source_files=(str(path),),
        series_description=path.name,
        meta={"format": "nifti"},
    )


def read_itk(path: str | os.PathLike) -> Volume:
    """NRRD / MHA / MHD through SimpleITK; its LPS direction/origin/spacing become a RAS affine."""
    import SimpleITK as sitk

    path = Path(path)
    if not path.exists():
        raise VolumeError("file not found", path=path)
    try:
        img = sitk.ReadImage(str(path))
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[-1] if str(exc).strip() else "unreadable"
        raise VolumeError(f"SimpleITK cannot read it: {first}", path=path) from exc
    dim = img.GetDimension()
    if dim not in (2, 3, 4):
        raise VolumeError(f"{dim}-D image; medfuse reads 3D and 4D volumes", path=path)
    n_comp = img.GetNumberOfComponentsPerPixel()
    arr = sitk.GetArrayViewFromImage(img)  # (z, y, x[, c]) C-order
    array = np.asarray(arr, dtype=np.float32)
    if n_comp > 1:
        array = np.moveaxis(array, -1, 0)  # components become the 4th axis after the transpose
    array = array.transpose(tuple(range(array.ndim))[::-1])
    sdim = min(dim, 3)
    direction = np.asarray(img.GetDirection(), dtype=np.float64).reshape(dim, dim)[:sdim, :sdim]
    spacing = np.asarray(img.GetSpacing(), dtype=np.float64)[:sdim]
    origin = np.asarray(img.GetOrigin(), dtype=np.float64)[:sdim]
    lps = np.eye(4)
    lps[:sdim, :sdim] = direction * spacing
    lps[:sdim, 3] = origin
    return Volume(
        array=_check(array, path),
        affine=LPS_TO_RAS @ lps,
        modality="OT",
        source_files=(str(path),),
        series_description=path.name,
        meta={"format": path.suffix.lstrip(".").lower()},
    )


def _storage_dtype(volume: Volume) -> np.dtype:
    """int16 when every value is an integer that fits (CT in HU, most MR), else float32 — the
    choice dcm2niix makes; exact either way."""
    if volume.meta.get("integer_valued") and volume.array.size:
        lo, hi = volume.meta.get("value_bounds") or (-np.inf, np.inf)
        if not (lo >= -32768 and hi <= 32767):  # the header bounds are too loose: look
            lo, hi = float(volume.array.min()), float(volume.array.max())
        if lo >= -32768 and hi <= 32767:
            return np.dtype("<i2")
    return np.dtype("<f4")


_NIFTI_CODES = {"<i2": (4, 16), "<f4": (16, 32)}


def _quaternion(rot: np.ndarray) -> tuple[float, float, float]:
    """(b, c, d) of the unit quaternion of a proper rotation matrix (a = sqrt(1-b²-c²-d²) ≥ 0)."""
    r = rot
    a = r[0, 0] + r[1, 1] + r[2, 2] + 1.0
    if a > 0.5:
        a = 0.5 * np.sqrt(a)
        b, c, d = (
            0.25 * (r[2, 1] - r[1, 2]) / a,
            0.25 * (r[0, 2] - r[2, 0]) / a,
            0.25 * (r[1, 0] - r[0, 1]) / a,
        )
    else:
        xd, yd, zd = (
            1 + r[0, 0] - r[1, 1] - r[2, 2],
            1 + r[1, 1] - r[0, 0] - r[2, 2],
            1 + r[2, 2] - r[0, 0] - r[1, 1],
        )
        if xd > 1.0:
            b = 0.5 * np.sqrt(xd)
            c, d, a = (
                0.25 * (r[0, 1] + r[1, 0]) / b,
                0.25 * (r[0, 2] + r[2, 0]) / b,
                0.25 * (r[2, 1] - r[1, 2]) / b,
            )
        elif yd > 1.0:
            c = 0.5 * np.sqrt(yd)
            b, d, a = (
                0.25 * (r[0, 1] + r[1, 0]) / c,
                0.25 * (r[1, 2] + r[2, 1]) / c,
                0.25 * (r[0, 2] - r[2, 0]) / c,
            )
        else:
            d = 0.5 * np.sqrt(zd)
            b, c, a = (
                0.25 * (r[0, 2] + r[2, 0]) / d,
                0.25 * (r[1, 2] + r[2, 1]) / d,
                0.25 * (r[1, 0] - r[0, 1]) / d,
            )
        if a < 0:
            b, c, d = -b, -c, -d
    return float(b), float(c), float(d)


def nifti1_header(
    shape: tuple[int, ...], affine: np.ndarray, dtype: np.dtype, scale: float = 1.0
) -> bytes:
    """A 352-byte NIfTI-1 single-file header (348 + empty extension flag) with sform and, when
    the affine has no shear, the equivalent qform — written directly, so that writing a volume
    does not need nibabel (0.5 s to import)."""
    import struct

    code, bitpix = _NIFTI_CODES[dtype.str]
    affine = np.asarray(affine, dtype=np.float64)
    m = affine[:3, :3]
    zooms = np.linalg.norm(m, axis=0)
    rot = m / np.where(zooms > 0, zooms, 1.0)
    qfac = 1.0
    if np.linalg.det(rot) < 0:
        qfac = -1.0
        rot = rot.copy()
        rot[:, 2] *= -1
    orthonormal = np.allclose(rot.T @ rot, np.eye(3), atol=1e-5)
    quat = _quaternion(rot) if orthonormal else (0.0, 0.0, 0.0)
    dim = [len(shape), *shape] + [1] * (7 - len(shape))
    pixdim = [qfac, *zooms, 1.0 if len(shape) > 3 else 0.0, 0.0, 0.0, 0.0]
    hdr = bytearray(352)
    struct.pack_into("<i", hdr, 0, 348)
    hdr[38:39] = b"r"
    struct.pack_into("<8h", hdr, 40, *dim)
    struct.pack_into("<hhh", hdr, 70, code, bitpix, 0)
    struct.pack_into("<8f", hdr, 76, *pixdim)
    struct.pack_into("<fff", hdr, 108, 352.0, float(scale) if dtype.kind == "i" else 0.0, 0.0)
    hdr[123] = 2 | 8  # mm, seconds
    descrip = b"medfuse"
    hdr[148 : 148 + len(descrip)] = descrip
    struct.pack_into("<hh", hdr, 252, 1 if orthonormal else 0, 1)
    struct.pack_into("<6f", hdr, 256, *quat, *affine[:3, 3])
    struct.pack_into("<12f", hdr, 280, *affine[:3, :].ravel())
    hdr[344:348] = b"n+1\x00"
    return bytes(hdr)


_BLOCK_BYTES = 8 << 20


def _nifti_blocks(
    header: bytes, vols: Sequence[np.ndarray], dtype: np.dtype, scales: Sequence[float] | None
):
    """The NIfTI byte stream in blocks of about ``_BLOCK_BYTES``: the header, then the voxels
    with i fastest — each k-slab of each 3D volume in ``vols`` (arrays ``[i, j, k]``, or maps
    with ``frames(k0, k1)`` such as :class:`~medfuse.regrid.OriginalGridMap`) in Fortran order,
    multiplied by that volume's entry of ``scales`` and rounded first when given.

    A map's slabs are computed into one float32 buffer, scaled and rounded in place: a new
    array per step (four per slab) cost a page fault per page of it, and writing two 512² × 300
    saliency maps took 0.82 s of CPU instead of 0.29 s (docs/benchmarks.md). Every block
    yielded is a new array, since the gzip threads may still hold earlier ones."""
    yield header
    slab_bytes = vols[0].shape[0] * vols[0].shape[1] * np.dtype(dtype).itemsize
    step = max(1, _BLOCK_BYTES // max(slab_bytes, 1))
    buf: np.ndarray | None = None
    for v, vol3 in enumerate(vols):
        for k0 in range(0, vol3.shape[2], step):
            k1 = min(k0 + step, vol3.shape[2])
            # frames [k0:k1, j, i] in C order == [i, j, k0:k1] in F order
            if hasattr(vol3, "frames"):
                if buf is None:
                    buf = np.empty((step, vol3.shape[1], vol3.shape[0]), np.float32)
                slab = vol3.frames(k0, k1, out=buf[: k1 - k0])
                if scales is not None:
                    slab *= np.float32(scales[v])
                    np.rint(slab, out=slab)
                block = slab.astype(dtype)  # a copy, even of float32: ``buf`` is reused
            else:
                slab = vol3[:, :, k0:k1].T
                if scales is not None:
                    slab = np.rint(slab * np.float32(scales[v]))
                block = np.ascontiguousarray(slab, dtype=dtype)
            yield memoryview(block).cast("B")


def _gzip_member(data) -> bytes:
    """``data`` as one complete gzip member: ISA-L's deflate (level 1) where python-isal is
    installed (a medfuse dependency), else zlib's level 1. On saliency stacks ISA-L takes about
    an eighth of zlib's CPU for a 4 % larger file (docs/benchmarks.md); the bytes inflate to the
    same data either way."""
    comp = _deflater().compressobj(1, 8, 31)  # DEFLATED; wbits 31: a complete gzip member
    return comp.compress(data) + comp.flush()


def _deflater():
    """``isal.isal_zlib`` (releases the GIL, several times faster than zlib) or ``zlib``."""
    try:
        from isal import isal_zlib

        return isal_zlib
    except ImportError:  # pragma: no cover - isal is a dependency; its wheel may be missing
        import zlib

        return zlib


def _gzip_members(blocks):
    """Compress ``blocks`` as gzip members on a thread pool, in order, with a bounded number in
    flight (memory stays a few blocks)."""
    from collections import deque
    from concurrent.futures import ThreadPoolExecutor

    workers = max(1, min(8, os.cpu_count() or 1))
    with ThreadPoolExecutor(workers, thread_name_prefix="medfuse-gzip") as pool:
        pending: deque = deque()
        for block in blocks:
            pending.append(pool.submit(_gzip_member, block))
            if len(pending) > 2 * workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def write_nifti(volume: Volume, path: str | os.PathLike) -> str:
    """Write ``volume`` as NIfTI-1 atomically (temporary file + rename), a block of slices at a
    time so that no second copy of the volume is made. Names ending in ``.gz`` are gzipped
    (level 1; ISA-L where installed, see :func:`_gzip_member`) as independent gzip members of
    about 8 MB compressed in parallel threads (ISA-L and zlib release the GIL): a multi-member
    gzip file, which gzip, zlib, nibabel and ITK read as one stream."""
    path = _nifti_path(path)
    dtype = _storage_dtype(volume)
    arr = volume.array
    # integer-valued arrays that stand for scaled values carry their scl_slope in meta
    header = nifti1_header(arr.shape, volume.affine, dtype, volume.meta.get("nifti_scale", 1.0))
    vols = [arr[..., v] for v in range(arr.shape[3])] if arr.ndim == 4 else [arr]
    return _write_blocks(path, _nifti_blocks(header, vols, dtype, None))


def write_nifti_map(grid: Any, path: str | os.PathLike) -> str:
    """Write a map computed slab by slab (:class:`~medfuse.regrid.OriginalGridMap`) as float32
    NIfTI-1, a block of slices at a time, never whole in memory. As :func:`write_nifti`
    otherwise."""
    path = _nifti_path(path)
    dtype = np.dtype(np.float32)
    header = nifti1_header(tuple(grid.shape), grid.affine, dtype)
    return _write_blocks(path, _nifti_blocks(header, [grid], dtype, None))


def write_nifti_int16_stack(
    arrays: Sequence[Any],
    scales: Sequence[float],
    affine: np.ndarray,
    path: str | os.PathLike,
    *,
    scl_slope: float,
) -> str:
    """Write 3D ``arrays`` of one grid (numpy ``[i, j, k]``, or
    :class:`~medfuse.regrid.OriginalGridMap`) as one int16 NIfTI-1 image (4D with one volume
    per array when there are several): ``rint(array * scale)``, converted a slab at a time as it
    is written (no int16 copy of the stack in memory); the header's ``scl_slope`` gives the values
    back. As :func:`write_nifti` otherwise."""
    path = _nifti_path(path)
    if not arrays or len(arrays) != len(scales):
        raise ExportError("one scale per array, at least one array", path=path)
    shape = tuple(arrays[0].shape[:3])
    if any(tuple(a.shape) != shape for a in arrays):
        raise ExportError("the arrays of a NIfTI stack must have one shape", path=path)
    full = (*shape, len(arrays)) if len(arrays) > 1 else shape
    dtype = np.dtype(np.int16)
    header = nifti1_header(full, affine, dtype, scl_slope)
    return _write_blocks(path, _nifti_blocks(header, list(arrays), dtype, list(scales)))


def _nifti_path(path: str | os.PathLike) -> Path:
    path = Path(path)
    if volume_format(path) != "nifti":
        raise ExportError("NIfTI file names end in .nii or .nii.gz", path=path)
    return path


def _write_blocks(path: Path, blocks) -> str:
    try:
        with atomic_open(path) as fh:
            for data in _gzip_members(blocks) if str(path).endswith(".gz") else blocks:
                fh.write(data)
    except OSError as exc:
        raise ExportError(f"cannot write NIfTI ({exc.strerror or exc})", path=path) from exc
    return str(path)
