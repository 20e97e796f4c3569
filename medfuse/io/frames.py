"""DICOM headers → *frames*: one per single-frame image, per enhanced multi-frame frame
(per-frame / shared functional groups) and per Siemens mosaic tile (CSA header)."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..errors import DicomError, GeometryError

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

__all__ = ["Frame", "as_float", "frames_from_header", "number_of_frames"]


@dataclass
class Frame:
    """One 2D image in patient space: a single-frame file, one frame of a multi-frame file, or
    one tile of a Siemens mosaic."""

    file: Path
    ds: Dataset
    ipp: np.ndarray  # (3,) LPS mm, centre of the first transmitted pixel
    iop: np.ndarray  # (6,) row cosine, column cosine
    spacing: tuple[float, float]  # (row spacing, column spacing) = PixelSpacing
    rows: int
    cols: int
    slope: float = 1.0
    intercept: float = 0.0
    frame: int | None = None  # index in a multi-frame file
    tile: int | None = None  # index of a mosaic tile
    tile_grid: int = 0  # tiles per mosaic row
    image_type: tuple[str, ...] = ()
    #: sort key of the volume (time point / echo) this frame belongs to
    vol_key: tuple = ()
    #: Philips floating-point scale slope (2005,100E), when present
    philips_ss: float | None = None
    units: str = ""
    sop_uid: str = ""


def _floats(value, n: int, what: str, path: Path) -> np.ndarray:
    try:
        arr = np.array([float(v) for v in value], dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise GeometryError(f"{what} is not numeric ({value!r})", path=path) from exc
    if arr.shape != (n,) or not np.all(np.isfinite(arr)):
        raise GeometryError(f"{what} must hold {n} finite numbers, got {value!r}", path=path)
    return arr


def as_float(value, default: float) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return default
    return v if np.isfinite(v) else default


def _rescale(ds: Dataset, path: Path) -> dict[str, float]:
    """RescaleSlope / RescaleIntercept (1 and 0 when absent); a value that is present but not a
    usable number is an error, never silently replaced."""
    out = {}
    for key, name, default in (
        ("slope", "RescaleSlope", 1.0),
        ("intercept", "RescaleIntercept", 0.0),
    ):
        raw = ds.get(name)
        if raw is None or raw == "":
            out[key] = default
            continue
        try:
            value = float(raw)
        except (TypeError, ValueError):
            value = float("nan")
        if not np.isfinite(value) or (key == "slope" and value == 0):
            raise DicomError(f"{name} {raw!r} is not a usable number", path=path)
        out[key] = value
    # Values are decoded into float32: a rescale that would overflow it is refused, never
    # turned into infinities.
    bits = int(as_float(ds.get("BitsStored", ds.get("BitsAllocated", 16)), 16))
    largest = abs(out["slope"]) * 2.0 ** min(max(bits, 1), 64) + abs(out["intercept"])
    if largest > _FLOAT32_MAX:
        raise DicomError(
            f"RescaleSlope {out['slope']:g} / RescaleIntercept {out['intercept']:g} give values "
            "beyond the float32 range",
            path=path,
        )
    return out


_FLOAT32_MAX = float(np.finfo(np.float32).max) / 2
_UNCOMPRESSED = {"1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2"}


def number_of_frames(ds: Dataset, path: Path) -> int:
    """NumberOfFrames (1 when absent), refused when not a positive integer or when the file is
    too small to hold that many frames (checked before anything is expanded or allocated)."""
    raw = ds.get("NumberOfFrames")
    if raw is None or raw == "":
        return 1
    n = as_float(raw, float("nan"))
    if not np.isfinite(n) or n < 1 or n != int(n):
        raise DicomError(f"NumberOfFrames {raw!r} is not a positive integer", path=path)
    n = int(n)
    if n > 1:
        try:
            size = path.stat().st_size
        except OSError:
            size = None
        ts = str(getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", "") or "")
        rows, cols = int(as_float(ds.get("Rows"), 0)), int(as_float(ds.get("Columns"), 0))
        bits = int(as_float(ds.get("BitsAllocated"), 8))
        per_frame = rows * cols * max(bits, 1) // 8 if ts in _UNCOMPRESSED or not ts else 8
        if size is not None and n * max(per_frame, 1) > size:
            raise DicomError(
                f"NumberOfFrames {n} cannot fit in a file of {size} bytes "
                f"({rows}×{cols} pixels of {bits} bits per frame)",
                path=path,
            )
    return n


def _private(ds: Dataset, group: int, creator: str, elem: int):
    """Value of a private element (group, creator, element offset), or None."""
    try:
        return ds.private_block(group, creator)[elem].value
    except (KeyError, ValueError, TypeError):
        return None


def _check_iop(iop: np.ndarray, path: Path) -> None:
    r0, r1, r2, c0, c1, c2 = (float(v) for v in iop)  # plain floats: called once per file
    nr, nc = (r0 * r0 + r1 * r1 + r2 * r2) ** 0.5, (c0 * c0 + c1 * c1 + c2 * c2) ** 0.5
    if abs(nr - 1) > 1e-2 or abs(nc - 1) > 1e-2 or abs(r0 * c0 + r1 * c1 + r2 * c2) > 1e-2:
        raise GeometryError(
            f"ImageOrientationPatient {list(np.round(iop, 5))} is not two orthogonal unit vectors",
            path=path,
        )


def _classic_vol_key(ds: Dataset) -> tuple:
    def n(tag, default=0.0):
        return as_float(ds.get(tag, default), default)

    return (
        n("TemporalPositionIdentifier"),
        n("EchoNumbers"),
        n("AcquisitionNumber"),
        n("TriggerTime"),
        str(ds.get("AcquisitionTime", "") or ds.get("ContentTime", "") or ""),
    )


def _units(ds: Dataset, modality: str) -> str:
    rtype = str(ds.get("RescaleType", "") or "").strip()
    if modality == "CT" and rtype in ("", "HU"):
        return "HU"
    return rtype if rtype.upper() not in ("US", "NORMALIZED") else ""


def frames_from_header(path: Path, ds: Dataset) -> tuple[str, list[Frame]]:
    """Expand one header into frames; returns (kind, frames)."""
    if "PerFrameFunctionalGroupsSequence" in ds:
        return "enhanced", _enhanced_frames(path, ds)
    image_type = tuple(str(v).upper() for v in (ds.get("ImageType") or ()))
    if "MOSAIC" in image_type:
        return "mosaic", _mosaic_frames(path, ds)
    for tag in ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing"):
        if ds.get(tag) is None:
            raise GeometryError(
                f"{tag} is missing, so the slice cannot be placed in space", path=path
            )
    iop = _floats(ds.ImageOrientationPatient, 6, "ImageOrientationPatient", path)
    _check_iop(iop, path)
    spacing = _floats(ds.PixelSpacing, 2, "PixelSpacing", path)
    if np.any(spacing <= 0):
        raise GeometryError(f"PixelSpacing {list(spacing)} must be positive", path=path)
    modality = str(ds.get("Modality", "") or "")
    frame = Frame(
        file=path,
        ds=ds,
        ipp=_floats(ds.ImagePositionPatient, 3, "ImagePositionPatient", path),
        iop=iop,
        spacing=(float(spacing[0]), float(spacing[1])),
        rows=int(ds.Rows),
        cols=int(ds.Columns),
        **_rescale(ds, path),
        image_type=image_type,
        vol_key=_classic_vol_key(ds),
        philips_ss=_philips_scale_slope(ds, ds),
        units=_units(ds, modality),
        sop_uid=str(ds.get("SOPInstanceUID", "")),
    )
    n_frames = number_of_frames(ds, path)
    if n_frames > 1:
        # Legacy multi-frame without functional groups (e.g. NM/US): frames stacked along the
        # normal with SpacingBetweenSlices. Only accepted when that spacing is given.
        step = as_float(ds.get("SpacingBetweenSlices"), 0.0)
        if step <= 0:
            raise GeometryError(
                f"multi-frame image ({n_frames} frames) without per-frame positions or SpacingBetweenSlices",
                path=path,
            )
        normal = np.cross(iop[:3], iop[3:])
        frames = []
        for f in range(n_frames):
            fr = Frame(**{**frame.__dict__, "frame": f, "ipp": frame.ipp + f * step * normal})
            frames.append(fr)
        return "enhanced", frames
    return "slices", [frame]


def _philips_scale_slope(ds: Dataset, item: Dataset) -> float | None:
    """Philips private floating-point scale slope, used for 'precise' values as dcm2niix does."""
    if "PHILIPS" not in str(ds.get("Manufacturer", "")).upper():
        return None
    v = _private(item, 0x2005, "Philips MR Imaging DD 001", 0x0E)
    v = as_float(v, 0.0) if v is not None else 0.0
    return v if v else None


def _fg(item: Dataset, shared: Dataset | None, seq: str) -> Dataset | None:
    """First item of functional group ``seq`` from a per-frame item, else from the shared group."""
    for src in (item, shared):
        if src is not None and seq in src and len(src[seq].value):
            return src[seq].value[0]
    return None


def _enhanced_frames(path: Path, ds: Dataset) -> list[Frame]:
    per_frame = ds.PerFrameFunctionalGroupsSequence
    shared = (
        ds.SharedFunctionalGroupsSequence[0] if ds.get("SharedFunctionalGroupsSequence") else None
    )
    n = int(as_float(ds.get("NumberOfFrames", len(per_frame)), len(per_frame)))
    if n != len(per_frame) or n < 1:
        raise DicomError(
            f"NumberOfFrames is {n} but there are {len(per_frame)} per-frame functional groups",
            path=path,
        )
    rows, cols = int(ds.Rows), int(ds.Columns)
    modality = str(ds.get("Modality", "") or "")
    # Which dimension index is the in-stack position (excluded from the volume key).
    in_stack = None
    for idx, dim in enumerate(ds.get("DimensionIndexSequence") or ()):
        if dim.get("DimensionIndexPointer") == 0x00209057:
            in_stack = idx
    frames = []
    for f, item in enumerate(per_frame):
        pos = _fg(item, shared, "PlanePositionSequence")
        ori = _fg(item, shared, "PlaneOrientationSequence")
        meas = _fg(item, shared, "PixelMeasuresSequence")
        if pos is None or ori is None or meas is None or "PixelSpacing" not in meas:
            raise GeometryError(
                f"frame {f + 1}: plane position, plane orientation or pixel measures are missing",
                path=path,
            )
        iop = _floats(
            ori.ImageOrientationPatient, 6, f"frame {f + 1} ImageOrientationPatient", path
        )
        _check_iop(iop, path)
        spacing = _floats(meas.PixelSpacing, 2, f"frame {f + 1} PixelSpacing", path)
        pvt = _fg(item, shared, "PixelValueTransformationSequence") or ds
        ftype_item = None
        for seq in ("MRImageFrameTypeSequence", "CTImageFrameTypeSequence", "FrameTypeSequence"):
            ftype_item = _fg(item, shared, seq)
            if ftype_item is not None:
                break
        image_type = (
            tuple(str(v).upper() for v in (ftype_item.get("FrameType") or ())) if ftype_item else ()
        )
        content = _fg(item, shared, "FrameContentSequence")
        dims = list(content.get("DimensionIndexValues") or ()) if content is not None else []
        if isinstance(dims, int):
            dims = [dims]
        if in_stack is not None and in_stack < len(dims):
            dims.pop(in_stack)
        temporal = (
            as_float(content.get("TemporalPositionIndex", 0), 0) if content is not None else 0
        )
        priv = item.get((0x2005, 0x140F))
        philips_item = None
        if priv is not None and priv.VR == "SQ" and len(priv.value):
            philips_item = priv.value[0]
        else:
            for elem in item:
                if elem.tag.group == 0x2005 and elem.VR == "SQ" and len(elem.value):
                    philips_item = elem.value[0]
                    break
        units = ""
        rwv = _fg(item, shared, "RealWorldValueMappingSequence")
        if rwv is not None and rwv.get("MeasurementUnitsCodeSequence"):
            units = str(rwv.MeasurementUnitsCodeSequence[0].get("CodeValue", "") or "")
            units = "" if units in ("1", "no units") else units
        frames.append(
            Frame(
                file=path,
                ds=ds,
                ipp=_floats(
                    pos.ImagePositionPatient, 3, f"frame {f + 1} ImagePositionPatient", path
                ),
                iop=iop,
                spacing=(float(spacing[0]), float(spacing[1])),
                rows=rows,
                cols=cols,
                **_rescale(pvt, path),
                frame=f,
                image_type=image_type,
                vol_key=(temporal, *(float(d) for d in dims)),
                philips_ss=_philips_scale_slope(ds, philips_item)
                if philips_item is not None
                else None,
                units=units or _units(ds, modality),
                sop_uid=str(ds.get("SOPInstanceUID", "")),
            )
        )
    return frames


def _mosaic_frames(path: Path, ds: Dataset) -> list[Frame]:
    """Tiles of a Siemens mosaic as frames, with positions corrected to each tile's corner."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from nibabel.nicom import csareader

        try:
            csa = csareader.get_csa_header(ds, "image")
        except Exception as exc:  # nibabel raises its own CSAReadError and struct errors
            raise DicomError(
                f"Siemens mosaic with an unreadable CSA header ({exc})", path=path
            ) from exc
    if not csa:
        raise DicomError(
            "Siemens mosaic without the CSA image header needed to un-tile it", path=path
        )
    n_tiles = csareader.get_n_mosaic(csa)
    normal = csareader.get_slice_normal(csa)
    if not n_tiles or normal is None:
        raise DicomError(
            "mosaic CSA header lacks NumberOfImagesInMosaic or SliceNormalVector", path=path
        )
    n_tiles = int(n_tiles)
    normal = np.asarray(normal, dtype=np.float64)
    grid = int(np.ceil(np.sqrt(n_tiles)))
    rows, cols = int(ds.Rows), int(ds.Columns)
    if rows % grid or cols % grid:
        raise DicomError(
            f"mosaic of {rows}×{cols} cannot hold a {grid}×{grid} grid of tiles", path=path
        )
    t_rows, t_cols = rows // grid, cols // grid
    iop = _floats(ds.ImageOrientationPatient, 6, "ImageOrientationPatient", path)
    _check_iop(iop, path)
    spacing = _floats(ds.PixelSpacing, 2, "PixelSpacing", path)
    ipp = _floats(ds.ImagePositionPatient, 3, "ImagePositionPatient", path)
    # The stored IPP is the corner of the whole mosaic as if it were one big slice; move it to the
    # corner of one tile (centred in the same field of view).
    r_dir, c_dir = iop[:3], iop[3:]
    ipp0 = ipp + r_dir * spacing[1] * (cols - t_cols) / 2 + c_dir * spacing[0] * (rows - t_rows) / 2
    step = as_float(ds.get("SpacingBetweenSlices"), 0.0) or as_float(ds.get("SliceThickness"), 0.0)
    if step <= 0:
        raise GeometryError("mosaic without SpacingBetweenSlices or SliceThickness", path=path)
    base = dict(
        file=path,
        ds=ds,
        iop=iop,
        spacing=(float(spacing[0]), float(spacing[1])),
        rows=t_rows,
        cols=t_cols,
        **_rescale(ds, path),
        image_type=tuple(str(v).upper() for v in ds.ImageType),
        vol_key=(*_classic_vol_key(ds), as_float(ds.get("InstanceNumber", 0), 0)),
        units="",
        sop_uid=str(ds.get("SOPInstanceUID", "")),
    )
    return [
        Frame(ipp=ipp0 + t * step * normal, tile=t, tile_grid=grid, **base) for t in range(n_tiles)
    ]
