"""NIfTI (nibabel) and NRRD / MHA / MHD (SimpleITK) volumes, read into and written from
:class:`~medfuse.types.Volume`."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .._atomic import atomic_path
from ..errors import ExportError, VolumeError
from ..types import Volume

__all__ = [
    "ITK_SUFFIXES",
    "NIFTI_SUFFIXES",
    "read_itk",
    "read_nifti",
    "volume_format",
    "write_nifti",
]

NIFTI_SUFFIXES = (".nii", ".nii.gz")
ITK_SUFFIXES = (".nrrd", ".nhdr", ".mha", ".mhd")
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


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


def write_nifti(volume: Volume, path: str | os.PathLike) -> str:
    """Write ``volume`` as NIfTI atomically (temporary file + rename)."""
    import nibabel as nib

    path = Path(path)
    if volume_format(path) != "nifti":
        raise ExportError("NIfTI file names end in .nii or .nii.gz", path=path)
    try:
        with atomic_path(path) as tmp:
            nib.save(volume.to_nifti(), tmp)
    except OSError as exc:
        raise ExportError(f"cannot write NIfTI ({exc.strerror or exc})", path=path) from exc
    return str(path)
