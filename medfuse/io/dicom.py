"""DICOM folder → series → geometry-correct :class:`~medfuse.types.Volume`.

Three passes, each cheap before the next:

1. **scan** – walk the folder, keep files that look like DICOM, read headers only
   (``stop_before_pixels``), drop non-image objects (SR, PR, RT, KO, SEG, DICOMDIR, ...).
2. **group** – expand every file into *frames* (one per single-frame image, per enhanced
   multi-frame frame, per Siemens mosaic tile), group them by SeriesInstanceUID and split a series
   whose frames differ in size, orientation, pixel spacing or image type into parts.
3. **load** – for the chosen part only: sort frames by their position projected on the slice
   normal (never by InstanceNumber), check the spacing (gaps, non-uniform steps, duplicates,
   shear), build the RAS affine and decode the pixel data in parallel into one preallocated
   float32 array with the rescale applied.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections import defaultdict
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..errors import CodecError, DicomError, GeometryError
from ..types import Series, Volume, axcodes
from .fastheader import read_fast_header

if TYPE_CHECKING:
    from pydicom.dataset import Dataset
# pydicom (0.3 s to import) is imported only when a file needs it: headers the fast reader
# declines, compressed pixel data, and layouts other than plain little-endian pixels.

log = logging.getLogger(__name__)

__all__ = ["ReadPolicy", "load_frames_volume", "scan_dicom", "series_from_headers"]

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])

# SOP classes that never hold an image volume (prefix match on the SOP Class UID).
NON_IMAGE_SOP_CLASSES = {
    "1.2.840.10008.1.3.10": "DICOMDIR (media storage directory)",
    "1.2.840.10008.5.1.4.1.1.88": "structured report / key object selection",
    "1.2.840.10008.5.1.4.1.1.11": "presentation state",
    "1.2.840.10008.5.1.4.1.1.481": "radiotherapy object",
    "1.2.840.10008.5.1.4.1.1.104": "encapsulated document",
    "1.2.840.10008.5.1.4.1.1.66": "raw data / registration / segmentation / fiducials",
    "1.2.840.10008.5.1.4.1.1.9": "waveform",
    "1.2.840.10008.5.1.4.1.1.7": "secondary capture",
}

# Install hints for compressed transfer syntaxes (the packages are dependencies of medfuse, so a
# missing one means a broken environment).
CODEC_HINTS = {
    "1.2.840.10008.1.2.4.50": "pylibjpeg-libjpeg",
    "1.2.840.10008.1.2.4.51": "pylibjpeg-libjpeg",
    "1.2.840.10008.1.2.4.57": "pylibjpeg-libjpeg",
    "1.2.840.10008.1.2.4.70": "pylibjpeg-libjpeg",
    "1.2.840.10008.1.2.4.80": "pylibjpeg-libjpeg or pyjpegls",
    "1.2.840.10008.1.2.4.81": "pylibjpeg-libjpeg or pyjpegls",
    "1.2.840.10008.1.2.4.90": "pylibjpeg-openjpeg",
    "1.2.840.10008.1.2.4.91": "pylibjpeg-openjpeg",
    "1.2.840.10008.1.2.4.201": "pylibjpeg-openjpeg",
    "1.2.840.10008.1.2.4.202": "pylibjpeg-openjpeg",
    "1.2.840.10008.1.2.4.203": "pylibjpeg-openjpeg",
    "1.2.840.10008.1.2.5": "pylibjpeg-rle",
}
UNCOMPRESSED_LE = {"1.2.840.10008.1.2", "1.2.840.10008.1.2.1"}

#: mm: positions closer than this along the slice normal are the same slice
POSITION_TOL = 1e-2


@dataclass(frozen=True)
class ReadPolicy:
    """What to do with imperfect geometry. The defaults refuse anything that would give a wrong
    volume and record (as warnings on the Volume) what can be represented exactly."""

    #: Relative deviation of slice steps from their mean above which the spacing is non-uniform.
    spacing_tolerance: float = 0.01
    #: A step larger than this multiple of the median step means missing slices.
    gap_factor: float = 1.5
    #: "error" refuses non-uniform spacing; "warn" keeps the mean step and records a warning.
    on_nonuniform: str = "error"
    #: "error" refuses a stack whose positions drift sideways (gantry tilt); "affine" keeps the
    #: exact geometry as a sheared affine and records a warning.
    on_shear: str = "affine"
    #: "error" refuses a series when any of its files cannot be placed (e.g. no
    #: ImagePositionPatient); "skip" loads the rest and records a warning per file.
    on_bad_file: str = "error"
    #: Refuse volumes whose decoded float32 array would exceed this many bytes (checked before
    #: any pixel is decoded).
    max_bytes: int = int(os.environ.get("MEDFUSE_MAX_VOLUME_BYTES", 16 * 2**30))
    #: Threads for decoding pixel data (None: min(8, CPUs)).
    workers: int | None = None

    def __post_init__(self) -> None:
        from ..errors import ConfigError

        if self.on_nonuniform not in ("error", "warn"):
            raise ConfigError(
                f"on_nonuniform must be 'error' or 'warn', not {self.on_nonuniform!r}"
            )
        if self.on_bad_file not in ("error", "skip"):
            raise ConfigError(f"on_bad_file must be 'error' or 'skip', not {self.on_bad_file!r}")
        if self.on_shear not in ("error", "affine"):
            raise ConfigError(f"on_shear must be 'error' or 'affine', not {self.on_shear!r}")


DEFAULT_POLICY = ReadPolicy()


# --------------------------------------------------------------------------------------------
# pass 1: scan
# --------------------------------------------------------------------------------------------


def iter_files(root: Path) -> Iterator[Path]:
    """All regular files under ``root`` (sorted, recursive), following symlinks without loops."""
    if root.is_file():
        yield root
        return
    seen: set[tuple[int, int]] = set()
    stack = [root]
    while stack:
        d = stack.pop()
        try:
            st = d.stat()
        except OSError:
            continue
        if (st.st_dev, st.st_ino) in seen:  # symlink loop or a folder reached twice
            continue
        seen.add((st.st_dev, st.st_ino))
        try:
            entries = sorted(os.scandir(d), key=lambda e: e.name)
        except OSError as exc:
            log.warning("cannot list %s: %s", d, exc)
            continue
        subdirs = []
        for e in entries:
            if e.name.startswith("."):
                continue
            try:
                if e.is_dir():
                    subdirs.append(Path(e.path))
                elif e.is_file():
                    yield Path(e.path)
            except OSError:
                continue
        stack.extend(reversed(subdirs))


def _sniff(path: Path) -> str | None:
    """Why ``path`` is not DICOM, or None if it may be. Reads 132 bytes."""
    if path.name.upper() == "DICOMDIR":
        return "DICOMDIR (media storage directory)"
    try:
        with open(path, "rb") as fh:
            head = fh.read(132)
    except OSError as exc:
        return f"unreadable ({exc.strerror or exc})"
    if len(head) == 132 and head[128:132] == b"DICM":
        return None
    # Old files without the 128-byte preamble start directly with a group 0x0008 element.
    if (
        len(head) >= 8
        and head[:2] == b"\x08\x00"
        and head[2:4] in (b"\x00\x00", b"\x05\x00", b"\x08\x00", b"\x16\x00")
    ):
        return None
    return "not a DICOM file"


def read_header(path: Path) -> Dataset:
    """Header of one DICOM file (no pixel data) read by pydicom; DicomError naming the file
    when unreadable. (The scan tries :mod:`.fastheader` first.)"""
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        with warnings.catch_warnings(), open(path, "rb") as fh:
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(fh, stop_before_pixels=True, force=True)
            at_end = not fh.read(1)
    except (
        InvalidDicomError,
        EOFError,
        OSError,
        ValueError,
        TypeError,
        KeyError,
        IndexError,
        OverflowError,
    ) as exc:
        raise DicomError(f"unreadable DICOM header: {exc}", path=path) from exc
    except Exception as exc:  # pydicom raises assorted errors on corrupt headers
        raise DicomError(f"corrupt DICOM header ({type(exc).__name__}: {exc})", path=path) from exc
    # pydicom returns what it read so far from a truncated file. Reading stops *before* the
    # pixel data, so a file that ended instead, with no sign of being a non-image object,
    # was cut short.
    if at_end and non_image_reason(ds) in (None, "no image (Rows/Columns absent)"):
        raise DicomError(
            f"truncated: the file ends after {path.stat().st_size} bytes, before its pixel data",
            path=path,
        )
    return ds


def non_image_reason(ds: Dataset) -> str | None:
    """Why a header is not a usable image, or None."""
    sop = str(
        ds.get("SOPClassUID", "")
        or getattr(getattr(ds, "file_meta", None), "MediaStorageSOPClassUID", "")
        or ""
    )
    for prefix, what in NON_IMAGE_SOP_CLASSES.items():
        if sop == prefix or sop.startswith(prefix + "."):
            return what
    if "Rows" not in ds or "Columns" not in ds:
        return "no image (Rows/Columns absent)"
    if int(ds.get("SamplesPerPixel", 1) or 1) != 1:
        return (
            f"colour image (SamplesPerPixel={ds.SamplesPerPixel}) cannot form a grey-level volume"
        )
    return None


def scan_dicom(root: str | os.PathLike) -> tuple[list[tuple[Path, Dataset]], list[tuple[str, str]]]:
    """Headers of every image file under ``root``; plus (file, reason) for everything skipped."""
    root = Path(root)
    kept: list[tuple[Path, Dataset]] = []
    skipped: list[tuple[str, str]] = []
    for path in iter_files(root):
        # The fast reader checks the preamble itself; only what it declines is sniffed first.
        fast = read_fast_header(path) if path.name.upper() != "DICOMDIR" else None
        why = None if fast is not None else _sniff(path)
        if why is None:
            try:
                ds = fast if fast is not None else read_header(path)
                why = non_image_reason(ds)
                if why is None and not str(ds.get("SeriesInstanceUID", "") or ""):
                    why = "SeriesInstanceUID is missing"
            except DicomError as exc:
                why = exc.reason
            except (ValueError, TypeError, AttributeError, KeyError, OverflowError) as exc:
                why = f"invalid header value ({type(exc).__name__}: {exc})"
            else:
                if why is None:
                    kept.append((path, ds))
                    continue
        skipped.append((str(path), why))
        log.debug("skipped %s: %s", path, why)
    return kept, skipped


# --------------------------------------------------------------------------------------------
# pass 2: frames and series
# --------------------------------------------------------------------------------------------


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


def _num(value, default: float) -> float:
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
    return out


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
        return _num(ds.get(tag, default), default)

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
    n_frames = int(_num(ds.get("NumberOfFrames", 1), 1))
    if n_frames > 1:
        # Legacy multi-frame without functional groups (e.g. NM/US): frames stacked along the
        # normal with SpacingBetweenSlices. Only accepted when that spacing is given.
        step = _num(ds.get("SpacingBetweenSlices"), 0.0)
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
    v = _num(v, 0.0) if v is not None else 0.0
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
    n = int(_num(ds.get("NumberOfFrames", len(per_frame)), len(per_frame)))
    if n != len(per_frame):
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
        temporal = _num(content.get("TemporalPositionIndex", 0), 0) if content is not None else 0
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
    step = _num(ds.get("SpacingBetweenSlices"), 0.0) or _num(ds.get("SliceThickness"), 0.0)
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
        vol_key=(*_classic_vol_key(ds), _num(ds.get("InstanceNumber", 0), 0)),
        units="",
        sop_uid=str(ds.get("SOPInstanceUID", "")),
    )
    return [
        Frame(ipp=ipp0 + t * step * normal, tile=t, tile_grid=grid, **base) for t in range(n_tiles)
    ]


def _close(a, b, tol: float) -> bool:
    """Element-wise |a - b| < tol, in plain Python (these are 2- and 6-vectors, once per file)."""
    return all(abs(float(x) - float(y)) < tol for x, y in zip(a, b, strict=True))


def _description(ds: Dataset) -> str:
    return str(ds.get("SeriesDescription", "") or ds.get("ProtocolName", "") or "").strip()


def series_from_headers(
    headers: Iterable[tuple[Path, Dataset]],
) -> tuple[list[Series], list[tuple[str, str]], list[str]]:
    """Group headers into series (split into parts where needed).

    Returns (series, skipped, warnings). A file whose geometry tags are unusable is skipped with
    the reason, so one bad file does not hide the rest of the study; if it belongs to the series
    that gets selected, the gap it leaves is detected when loading.
    """
    by_uid: dict[str, list[tuple[str, Frame]]] = defaultdict(list)
    skipped: list[tuple[str, str]] = []
    warns: list[str] = []
    rejected: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for path, ds in headers:
        try:
            kind, frames = frames_from_header(path, ds)
        except (DicomError, GeometryError) as exc:
            reason = exc.reason
        except (ValueError, TypeError, AttributeError, KeyError, IndexError, OverflowError) as exc:
            reason = f"invalid header value ({type(exc).__name__}: {exc})"
        else:
            for fr in frames:
                by_uid[str(ds.SeriesInstanceUID)].append((kind, fr))
            continue
        skipped.append((str(path), reason))
        rejected[str(ds.SeriesInstanceUID)].append((str(path), reason))

    out: list[Series] = []
    for uid, items in by_uid.items():
        parts: list[dict] = []
        for kind, fr in items:
            for p in parts:
                if (
                    p["kind"] == kind
                    and p["rows"] == fr.rows
                    and p["cols"] == fr.cols
                    and p["image_type"] == fr.image_type
                    and _close(p["spacing"], fr.spacing, 1e-4)
                    and _close(p["iop"], fr.iop, 1e-3)
                ):
                    p["frames"].append(fr)
                    break
            else:
                parts.append(
                    dict(
                        kind=kind,
                        rows=fr.rows,
                        cols=fr.cols,
                        image_type=fr.image_type,
                        spacing=fr.spacing,
                        iop=fr.iop,
                        frames=[fr],
                    )
                )
        if len(parts) > 1:
            what = sorted({_split_reason(parts[0], p) for p in parts[1:]})
            warns.append(
                f"series {uid} holds {len(parts)} incompatible stacks ({', '.join(what)}); "
                "they are listed as separate parts"
            )
        parts.sort(key=lambda p: -len(p["frames"]))
        for i, p in enumerate(parts):
            out.append(_make_series(uid, i, p))
            out[-1].rejected = list(rejected.get(uid, ()))
    out.sort(key=lambda s: (s.series_number if s.series_number is not None else 10**9, s.key))
    return out, skipped, warns


def _split_reason(a: dict, b: dict) -> str:
    if a["kind"] != b["kind"]:
        return "storage kinds differ"
    if (a["rows"], a["cols"]) != (b["rows"], b["cols"]):
        return "image sizes differ"
    if a["image_type"] != b["image_type"]:
        return "image types differ"
    if not np.allclose(a["spacing"], b["spacing"], atol=1e-4):
        return "pixel spacings differ"
    return "orientations differ"


def _make_series(uid: str, part: int, p: dict) -> Series:
    frames: list[Frame] = p["frames"]
    ds = frames[0].ds
    normal = np.cross(p["iop"][:3], p["iop"][3:])
    d = np.array([fr.ipp @ normal for fr in frames])
    n_pos = len(_cluster_positions(d, POSITION_TOL))
    n_vol = max(1, round(len(frames) / max(n_pos, 1)))
    steps = np.diff(np.unique(np.round(d, 3)))
    slice_spacing = float(np.median(steps)) if len(steps) else None
    iop = p["iop"]
    affine_guess = np.eye(4)
    affine_guess[:3, 0] = iop[:3]
    affine_guess[:3, 1] = iop[3:]
    affine_guess[:3, 2] = normal
    files = tuple(dict.fromkeys(str(fr.file) for fr in frames))
    return Series(
        series_instance_uid=uid,
        modality=str(ds.get("Modality", "") or "OT"),
        description=_description(ds),
        files=files,
        kind=p["kind"],
        rows=p["rows"],
        columns=p["cols"],
        n_slices=n_pos,
        n_volumes=n_vol,
        image_type=p["image_type"],
        series_number=int(_num(ds.get("SeriesNumber"), -1))
        if ds.get("SeriesNumber") is not None
        else None,
        study_instance_uid=str(ds.get("StudyInstanceUID", "")) or None,
        orientation_patient=tuple(float(v) for v in iop),
        pixel_spacing=tuple(p["spacing"]),
        slice_spacing=slice_spacing,
        orientation=axcodes(LPS_TO_RAS @ affine_guess),
        transfer_syntax_uid=str(
            getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", "") or ""
        ),
        part=part,
        headers=frames,
    )


# --------------------------------------------------------------------------------------------
# pass 3: geometry and pixels
# --------------------------------------------------------------------------------------------


def _cluster_positions(d: np.ndarray, tol: float) -> list[np.ndarray]:
    """Indices of ``d`` grouped by equal position (within ``tol``), in ascending position."""
    order = np.argsort(d, kind="stable")
    groups: list[list[int]] = []
    last = None
    for i in order:
        if last is None or d[i] - last > tol:
            groups.append([int(i)])
            last = d[i]
        else:
            groups[-1].append(int(i))
    return [np.array(g) for g in groups]


@dataclass
class Geometry:
    affine_ras: np.ndarray
    #: frames[k][v]: the frame at slice k of volume v
    grid: list[list[Frame]]
    warnings: list[str] = field(default_factory=list)


def build_geometry(frames: list[Frame], policy: ReadPolicy = DEFAULT_POLICY) -> Geometry:
    """Sort frames on the slice normal, check the stack, and build the RAS affine."""
    warns: list[str] = []
    f0 = frames[0]
    iop = f0.iop
    r_dir, c_dir = iop[:3], iop[3:]
    normal = np.cross(r_dir, c_dir)
    normal /= np.linalg.norm(normal)
    # Exact duplicates (the same SOP instance twice) are dropped with a warning.
    uniq: dict[tuple, Frame] = {}
    for fr in frames:
        key = (fr.sop_uid, fr.frame, fr.tile)
        if key in uniq and fr.sop_uid:
            warns.append(
                f"{fr.file}: duplicate of SOP instance {fr.sop_uid} (also in {uniq[key].file}); ignored"
            )
            continue
        uniq[key] = fr
    frames = list(uniq.values())
    d = np.array([fr.ipp @ normal for fr in frames])
    groups = _cluster_positions(d, POSITION_TOL)
    counts = {len(g) for g in groups}
    if len(counts) != 1:
        by_count = defaultdict(list)
        for g in groups:
            by_count[len(g)].append(g)
        rare = min(by_count, key=lambda c: len(by_count[c]))
        example = frames[by_count[rare][0][0]]
        raise GeometryError(
            f"positions hold different numbers of images ({sorted(counts)}), e.g. {rare} at "
            f"{d[by_count[rare][0][0]]:.2f} mm along the normal: slices are missing from a volume "
            "or duplicated",
            path=example.file,
        )
    n_vol = counts.pop()
    grid: list[list[Frame]] = []
    for g in groups:
        at = sorted((frames[i] for i in g), key=lambda fr: fr.vol_key)
        if n_vol > 1:
            keys = [fr.vol_key for fr in at]
            if len(set(keys)) != len(keys):
                dup = [fr for fr in at if keys.count(fr.vol_key) > 1]
                raise GeometryError(
                    f"duplicate slices: {len(dup)} images at the same position "
                    f"({d[g[0]]:.2f} mm along the normal) with nothing (time, echo, acquisition) "
                    f"to tell them apart: {', '.join(sorted({os.path.basename(str(x.file)) for x in dup}))}",
                    path=dup[0].file,
                    hint="remove the duplicate files or pick another series",
                )
        grid.append(at)
    pos = np.array([grid[k][0].ipp for k in range(len(grid))])
    n = len(grid)
    affine = np.eye(4)
    affine[:3, 0] = r_dir * f0.spacing[1]  # i: along a row, step = column spacing
    affine[:3, 1] = c_dir * f0.spacing[0]  # j: down a column, step = row spacing
    affine[:3, 3] = pos[0]
    if n == 1:
        ds = f0.ds
        thick = (
            _num(ds.get("SpacingBetweenSlices"), 0.0) or _num(ds.get("SliceThickness"), 0.0) or 1.0
        )
        affine[:3, 2] = normal * thick
        warns.append(f"single-slice series: slice step set to {thick:g} mm from the header")
        return Geometry(LPS_TO_RAS @ affine, grid, warns)
    dk = np.diff(pos @ normal)
    med = float(np.median(dk))
    if med <= 0:
        raise GeometryError("slice positions do not advance along the normal", path=f0.file)
    big = np.nonzero(dk > policy.gap_factor * med)[0]
    if len(big):
        k = int(big[0])
        raise GeometryError(
            f"missing slice(s): a gap of {dk[k]:.3g} mm between "
            f"{os.path.basename(str(grid[k][0].file))} and {os.path.basename(str(grid[k + 1][0].file))} "
            f"where the usual step is {med:.3g} mm ({len(big)} gap(s) in all)",
            path=grid[k + 1][0].file,
            hint="the series is incomplete; copy the missing files or pick another series",
        )
    step_vec = (pos[-1] - pos[0]) / (n - 1)
    mean = float(step_vec @ normal)
    dev = float(np.max(np.abs(dk - mean)))
    if dev > policy.spacing_tolerance * mean:
        msg = (
            f"non-uniform slice spacing: steps from {dk.min():.4g} to {dk.max():.4g} mm "
            f"(mean {mean:.4g} mm)"
        )
        if policy.on_nonuniform == "error":
            raise GeometryError(
                msg,
                path=f0.file,
                hint="ReadPolicy(on_nonuniform='warn') accepts it with the mean step",
            )
        warns.append(msg + "; the mean step is used")
    # Sideways drift of the positions = sheared stack (gantry tilt or a reformatted oblique).
    lateral = (pos - pos[0]) - np.outer((pos - pos[0]) @ normal, normal)
    drift = float(np.max(np.linalg.norm(lateral, axis=1)))
    if drift > 1e-2 + 1e-3 * n * mean:
        tilt = float(
            np.degrees(np.arccos(np.clip(abs(step_vec @ normal) / np.linalg.norm(step_vec), -1, 1)))
        )
        gtilt = _num(f0.ds.get("GantryDetectorTilt"), 0.0)
        msg = f"sheared stack: slices drift {drift:.3g} mm sideways ({tilt:.2f}° from the normal"
        msg += f", GantryDetectorTilt {gtilt:g}°)" if gtilt else ")"
        if policy.on_shear == "error":
            raise GeometryError(
                msg, path=f0.file, hint="ReadPolicy(on_shear='affine') keeps it as a sheared affine"
            )
        # Also check the drift is linear, else no affine can represent it.
        resid = pos - (pos[0] + np.outer(np.arange(n), step_vec))
        if float(np.max(np.linalg.norm(resid, axis=1))) > max(
            0.05, policy.spacing_tolerance * mean
        ):
            raise GeometryError(msg + " and the slices do not lie on a straight line", path=f0.file)
        affine[:3, 2] = step_vec
        warns.append(msg + "; the affine keeps the true (sheared) slice step")
    else:
        affine[:3, 2] = normal * mean
    return Geometry(LPS_TO_RAS @ affine, grid, warns)


def _check_codec(ds: Dataset, path: Path) -> str:
    ts = str(
        getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", "") or "1.2.840.10008.1.2"
    )
    if ts in UNCOMPRESSED_LE or ts == "1.2.840.10008.1.2.2" or ts == "1.2.840.10008.1.2.1.99":
        return ts
    from pydicom.pixels import get_decoder
    from pydicom.uid import UID

    try:
        dec = get_decoder(ts)
    except NotImplementedError:
        name = UID(ts).name
        raise CodecError(
            f"unsupported transfer syntax {ts} ({name}): no decoder exists for it",
            path=path,
            hint="convert the file to an uncompressed or JPEG/JPEG-LS/JPEG 2000/RLE transfer syntax",
        ) from None
    if not dec.is_available:
        pkg = CODEC_HINTS.get(ts, "pylibjpeg with the matching plugin")
        raise CodecError(
            f"pixel data is compressed as {UID(ts).name} ({ts}) and no decoder is installed",
            path=path,
            hint=f"pip install {pkg}",
        )
    return ts


_DTYPES = {
    (8, 0): "u1",
    (8, 1): "i1",
    (16, 0): "<u2",
    (16, 1): "<i2",
    (32, 0): "<u4",
    (32, 1): "<i4",
}


def _fast_pixels(path: Path, ds: Dataset, n_frames: int) -> np.ndarray | None:
    """Uncompressed little-endian pixel data read straight from the file when it sits, whole, at
    the end of it (the usual layout); None when the layout is anything else."""
    ts = str(getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", "") or "")
    if ts not in UNCOMPRESSED_LE:
        return None
    bits, rep = int(ds.get("BitsAllocated", 0) or 0), int(ds.get("PixelRepresentation", 0) or 0)
    stored = int(ds.get("BitsStored", bits) or bits)
    dtype = _DTYPES.get((bits, rep))
    if dtype is None or (stored != bits and rep == 1):
        return None  # sign extension of partial bit depths: leave it to pydicom
    rows, cols = int(ds.Rows), int(ds.Columns)
    nbytes = rows * cols * n_frames * bits // 8
    count = rows * cols * n_frames
    offset = getattr(ds, "pixel_offset", None)
    if offset is not None:  # located by the fast header reader
        if ds.pixel_length < nbytes:
            raise DicomError(
                f"pixel data holds {ds.pixel_length} bytes, the header needs {nbytes}", path=path
            )
        arr = np.fromfile(path, dtype=dtype, count=count, offset=offset)
        if arr.size != count:
            raise DicomError(
                f"file truncated: {arr.size * bits // 8} of {nbytes} pixel bytes present", path=path
            )
        return arr.reshape(n_frames, rows, cols) if n_frames > 1 else arr.reshape(rows, cols)
    try:
        size = path.stat().st_size
    except OSError:
        return None
    for header_len in (12, 8) if ts == "1.2.840.10008.1.2.1" else (8,):
        for pad in (0, nbytes % 2):
            off = size - pad - nbytes - header_len
            if off < 0:
                continue
            with open(path, "rb") as fh:
                fh.seek(off)
                head = fh.read(header_len)
                if head[:4] != b"\xe0\x7f\x10\x00":
                    continue
                length = int.from_bytes(head[-4:], "little")
                if length not in (nbytes, nbytes + pad):
                    continue
                arr = np.fromfile(fh, dtype=dtype, count=count)
            if arr.size != count:
                return None
            return arr.reshape(n_frames, rows, cols) if n_frames > 1 else arr.reshape(rows, cols)
    return None


def _decode_file(path: Path, ds_header: Dataset) -> np.ndarray:
    """All frames of one file as an integer array (rows, cols) or (frames, rows, cols)."""
    n_frames = int(_num(ds_header.get("NumberOfFrames", 1), 1))
    arr = _fast_pixels(path, ds_header, n_frames)
    if arr is not None:
        return arr
    import pydicom

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(path, force=True)
            if (
                "PixelData" not in ds
                and "FloatPixelData" not in ds
                and "DoubleFloatPixelData" not in ds
            ):
                raise DicomError("no pixel data", path=path)
            return ds.pixel_array
    except (DicomError, CodecError):
        raise
    except Exception as exc:  # truncated or corrupt pixel data raises many different errors
        raise DicomError(
            f"pixel data cannot be decoded ({type(exc).__name__}: {exc})", path=path
        ) from exc


def _value_bounds(frames: list[Frame]) -> tuple[float, float]:
    """Bounds every value lies within, from BitsStored / PixelRepresentation and the rescale
    (no pass over the pixels): lets a writer pick an integer type without scanning the data."""
    lo, hi = np.inf, -np.inf
    for fr in frames:
        bits = int(_num(fr.ds.get("BitsStored", fr.ds.get("BitsAllocated", 16)), 16))
        signed = int(_num(fr.ds.get("PixelRepresentation", 0), 0)) == 1
        raw = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1)
        vals = [r * fr.slope + fr.intercept for r in raw]
        lo, hi = min(lo, *vals), max(hi, *vals)
    return float(lo), float(hi)


def load_frames_volume(series: Series, policy: ReadPolicy = DEFAULT_POLICY) -> Volume:
    """Decode one series part into a Volume (3D, or 4D when it holds several volumes)."""
    frames: list[Frame] = series.headers
    if not frames:
        raise DicomError(
            "series has no frames to load", path=series.files[0] if series.files else None
        )
    bad_files = [f"{os.path.basename(f)}: {r}" for f, r in series.rejected]
    if bad_files and policy.on_bad_file == "error":
        raise GeometryError(
            f"{len(bad_files)} file(s) of this series cannot be placed in the volume ({'; '.join(bad_files[:3])})",
            path=series.rejected[0][0],
            hint="fix or remove them, or use ReadPolicy(on_bad_file='skip') to load the rest",
        )
    geom = build_geometry(frames, policy)
    geom.warnings[:0] = [f"file left out: {b}" for b in bad_files]
    grid = geom.grid
    n_k, n_v = len(grid), len(grid[0])
    rows, cols = frames[0].rows, frames[0].cols
    nbytes = n_k * n_v * rows * cols * 4
    if nbytes > policy.max_bytes:
        raise DicomError(
            f"volume of {cols}×{rows}×{n_k}×{n_v} voxels needs {nbytes / 2**30:.1f} GiB, above the "
            f"limit of {policy.max_bytes / 2**30:.1f} GiB",
            path=frames[0].file,
            hint="raise ReadPolicy.max_bytes or MEDFUSE_MAX_VOLUME_BYTES if this is intended",
        )
    for fr in {id(fr.ds): fr for fr in frames}.values():
        _check_codec(fr.ds, fr.file)
    # Map each file to the (k, v, frame, tile) slots it fills.
    slots: dict[Path, list[tuple[int, int, Frame]]] = defaultdict(list)
    for k in range(n_k):
        for v in range(n_v):
            fr = grid[k][v]
            slots[fr.file].append((k, v, fr))
    out = np.empty((n_v, n_k, rows, cols), dtype=np.float32)
    philips = any(fr.philips_ss for fr in frames)
    float_pixels: list[Path] = []  # files whose stored values are not integers

    def work(item: tuple[Path, list[tuple[int, int, Frame]]]) -> None:
        path, targets = item
        px = _decode_file(path, targets[0][2].ds)
        if px.dtype.kind not in "iu":
            float_pixels.append(path)
        for k, v, fr in targets:
            if fr.tile is not None:
                tr, tc = divmod(fr.tile, fr.tile_grid)
                img = px[tr * rows : (tr + 1) * rows, tc * cols : (tc + 1) * cols]
            elif fr.frame is not None and px.ndim == 3:
                img = px[fr.frame]
            else:
                img = px
            if img.shape != (rows, cols):
                raise DicomError(
                    f"decoded image is {img.shape}, header says {(rows, cols)}", path=path
                )
            dst = out[v, k]
            if fr.philips_ss:
                # Philips 'precise' floating-point values, as dcm2niix writes by default:
                # FP = (PV·RS + RI) / (RS·SS)
                np.multiply(img, fr.slope / (fr.slope * fr.philips_ss), out=dst, casting="unsafe")
                dst += fr.intercept / (fr.slope * fr.philips_ss)
            elif fr.slope != 1.0:
                np.multiply(img, fr.slope, out=dst, casting="unsafe")
                if fr.intercept:
                    dst += fr.intercept
            else:  # one pass; float32 is exact for integers below 2**24
                np.add(img, np.float32(fr.intercept), out=dst, casting="unsafe")

    n_workers = policy.workers or min(8, os.cpu_count() or 1)
    items = list(slots.items())
    if n_workers > 1 and len(items) > 1:
        with ThreadPoolExecutor(n_workers) as pool:
            list(pool.map(work, items))
    else:
        for it in items:
            work(it)
    # (v, k, rows, cols) -> (i=cols, j=rows, k[, v]) without copying
    array = out[0].transpose(2, 1, 0) if n_v == 1 else out.transpose(3, 2, 1, 0)
    ds = frames[0].ds
    modality = series.modality
    warns = list(geom.warnings)
    if str(ds.get("PhotometricInterpretation", "")).upper() == "MONOCHROME1":
        warns.append("MONOCHROME1: low values display white; stored values are kept as they are")
    meta = {
        "manufacturer": str(ds.get("Manufacturer", "") or ""),
        "patient_position": str(ds.get("PatientPosition", "") or ""),
        "image_type": list(series.image_type),
        "kind": series.kind,
        "transfer_syntax_uid": series.transfer_syntax_uid,
        "convolution_kernel": str(ds.get("ConvolutionKernel", "") or ""),
        "slice_thickness": _num(ds.get("SliceThickness"), 0.0) or None,
    }
    if philips:
        meta["intensity_scaling"] = "philips_floating_point"
    # Integer stored values with integer rescale give integer values (CT in HU): writers may
    # then store them exactly as integers.
    meta["integer_valued"] = (
        not philips
        and not float_pixels
        and all(float(fr.slope).is_integer() and float(fr.intercept).is_integer() for fr in frames)
    )
    if meta["integer_valued"]:
        meta["value_bounds"] = _value_bounds(frames)
    labels: tuple[str, ...] = ()
    if n_v > 1:
        labels = tuple(f"volume {v + 1}" for v in range(n_v))
    return Volume(
        array=array,
        affine=geom.affine_ras,
        modality=modality,
        study_instance_uid=str(ds.get("StudyInstanceUID", "")) or None,
        series_instance_uid=series.series_instance_uid,
        frame_of_reference_uid=str(ds.get("FrameOfReferenceUID", "")) or None,
        series_description=series.description,
        source_files=series.files,
        units=frames[0].units,
        volume_labels=labels,
        warnings=warns,
        meta=meta,
    )
