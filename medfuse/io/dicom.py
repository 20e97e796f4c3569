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
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..errors import DicomError, GeometryError
from ..types import Series, Volume, axcodes
from .fastheader import read_fast_header
from .frames import Frame, as_float, frames_from_header
from .geometry import LPS_TO_RAS, POSITION_TOL, build_geometry, cluster_positions
from .pixels import check_codec, decode_file
from .policy import DEFAULT_POLICY, ReadPolicy

if TYPE_CHECKING:
    from pydicom.dataset import Dataset
# pydicom (0.3 s to import) is imported only when a file needs it: headers the fast reader
# declines, compressed pixel data, and layouts other than plain little-endian pixels.

log = logging.getLogger(__name__)

__all__ = ["ReadPolicy", "load_frames_volume", "scan_dicom", "series_from_headers"]

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
    suffix = path.suffix.lower()
    if len(head) < 132 and (suffix in DICOM_SUFFIXES or suffix[1:].isdigit()):
        # named like a DICOM file but too short to be one: empty or cut before its header
        return f"too short for a DICOM file ({len(head)} bytes): empty or truncated"
    if suffix in DICOM_SUFFIXES - {""}:
        return f"named {suffix} but not a DICOM file (no DICM marker at byte 128)"
    return "not a DICOM file"


#: File name suffixes of DICOM files ("" too: many archives use bare names or numbers).
DICOM_SUFFIXES = {".dcm", ".dicom", ".dic", ".ima", ""}


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
    _drop_unreadable(ds)
    # pydicom returns what it read so far from a truncated file. Reading stops *before* the
    # pixel data, so a file that ended instead, with no sign of being a non-image object,
    # was cut short.
    if at_end and non_image_reason(ds) in (None, "no image (Rows/Columns absent)"):
        raise DicomError(
            f"truncated: the file ends after {path.stat().st_size} bytes, before its pixel data",
            path=path,
        )
    return ds


def _drop_unreadable(ds: Dataset, depth: int = 0) -> None:
    """Convert every element now (pydicom converts lazily, on first access, and an element
    with an unknown VR or a value it cannot parse then raises wherever it is used); elements
    that cannot be converted are dropped, so that the reader treats them as absent."""
    for tag in list(ds.keys()):
        try:
            elem = ds[tag]
            items = list(elem.value) if elem.VR == "SQ" else ()
        except Exception:  # pydicom raises many kinds here
            del ds[tag]
            continue
        if depth < 16:
            for item in items:
                _drop_unreadable(item, depth + 1)


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
            except Exception as exc:  # any failure to interpret one file's header skips it
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
        except Exception as exc:  # a header that cannot be interpreted skips that file only
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
    n_pos = len(cluster_positions(d, POSITION_TOL))
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
        series_number=int(as_float(ds.get("SeriesNumber"), -1))
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


def _value_bounds(frames: list[Frame]) -> tuple[float, float]:
    """Bounds every value lies within, from BitsStored / PixelRepresentation and the rescale
    (no pass over the pixels): lets a writer pick an integer type without scanning the data."""
    lo, hi = np.inf, -np.inf
    for fr in frames:
        bits = int(as_float(fr.ds.get("BitsStored", fr.ds.get("BitsAllocated", 16)), 16))
        bits = min(max(bits, 1), 64)  # an absurd BitsStored must not overflow the bounds
        signed = int(as_float(fr.ds.get("PixelRepresentation", 0), 0)) == 1
        raw = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1)
        vals = [r * fr.slope + fr.intercept for r in raw]
        lo, hi = min(lo, *vals), max(hi, *vals)
    return float(lo), float(hi)


def _int16_by_header(frames: list[Frame], philips: bool) -> bool:
    """Whether every value of these frames is an integer within int16 by the header alone:
    slope 1, integer intercepts, and stored bits whose rescaled range fits."""
    if philips or not all(fr.slope == 1.0 and float(fr.intercept).is_integer() for fr in frames):
        return False
    lo, hi = _value_bounds(frames)
    return lo >= -32768 and hi <= 32767


def load_frames_volume(
    series: Series, policy: ReadPolicy = DEFAULT_POLICY, *, integers: bool = False
) -> Volume:
    """Decode one series part into a Volume (3D, or 4D when it holds several volumes).

    The array is float32. With ``integers``, a series whose values are integers that fit int16
    by its header (integer stored values, RescaleSlope 1, integer RescaleIntercept: CT in HU) is
    decoded into an int16 array instead, with the same values: what the NIfTI writer stores them
    as, so that ``medfuse convert`` neither builds nor converts a float32 copy."""
    frames: list[Frame] = series.headers
    if not frames:
        raise DicomError(
            "series has no frames to load", path=series.files[0] if series.files else None
        )
    for name in ("RescaleIntercept", "RescaleSlope"):
        if series.kind != "slices":
            break
        lacking = [fr.file for fr in frames if fr.ds.get(name) in (None, "")]
        if lacking and len(lacking) < len(frames):
            raise DicomError(
                f"{name} is missing from {len(lacking)} of the {len(frames)} images of the "
                f"series ({', '.join(os.path.basename(str(f)) for f in lacking[:3])}): their "
                "values cannot be put on the same scale as the others",
                path=lacking[0],
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
        check_codec(fr.ds, fr.file)
    # Map each file to the (k, v, frame, tile) slots it fills.
    slots: dict[Path, list[tuple[int, int, Frame]]] = defaultdict(list)
    for k in range(n_k):
        for v in range(n_v):
            fr = grid[k][v]
            slots[fr.file].append((k, v, fr))
    philips = any(fr.philips_ss for fr in frames)
    as_int16 = integers and _int16_by_header(frames, philips)
    out = np.empty((n_v, n_k, rows, cols), dtype=np.int16 if as_int16 else np.float32)
    float_pixels: list[Path] = []  # files whose stored values are not integers

    def work(item: tuple[Path, list[tuple[int, int, Frame]]]) -> None:
        path, targets = item
        px = decode_file(path, targets[0][2].ds)
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
            if as_int16:
                # slope 1 and an integer intercept by _int16_by_header; the int32 sum fits int16
                np.add(img, np.int32(fr.intercept), out=dst, casting="unsafe")
            elif fr.philips_ss:
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
    if as_int16 and float_pixels:  # floating-point pixel data after all: decode as float32
        return load_frames_volume(series, policy)
    # (v, k, rows, cols) -> (i=cols, j=rows, k[, v]) without copying
    array = out[0].transpose(2, 1, 0) if n_v == 1 else out.transpose(3, 2, 1, 0)
    ds = frames[0].ds
    modality = series.modality
    warns = list(geom.warnings)
    if series.kind == "slices" and modality == "CT":
        missing = sum(1 for fr in frames if fr.ds.get("RescaleIntercept") in (None, ""))
        if missing:
            warns.append(
                f"{missing} CT image(s) without RescaleIntercept: their stored values are used "
                "as they are (intercept 0, slope 1 unless given), which may not be HU"
            )
    if str(ds.get("PhotometricInterpretation", "")).upper() == "MONOCHROME1":
        warns.append("MONOCHROME1: low values display white; stored values are kept as they are")
    meta = {
        "manufacturer": str(ds.get("Manufacturer", "") or ""),
        "patient_position": str(ds.get("PatientPosition", "") or ""),
        "image_type": list(series.image_type),
        "kind": series.kind,
        "transfer_syntax_uid": series.transfer_syntax_uid,
        "convolution_kernel": str(ds.get("ConvolutionKernel", "") or ""),
        "slice_thickness": as_float(ds.get("SliceThickness"), 0.0) or None,
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
