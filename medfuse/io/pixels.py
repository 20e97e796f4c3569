"""Pixel data of one DICOM file as an integer array: plain little-endian data straight from the
file, everything else through pydicom's decoders (pylibjpeg, pyjpegls)."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..errors import CodecError, DicomError
from .frames import number_of_frames

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

__all__ = ["check_codec", "decode_file"]


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


def check_codec(ds: Dataset, path: Path) -> str:
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
        if not nbytes <= ds.pixel_length <= nbytes + 1:  # + 1: the padding of an odd length
            raise DicomError(
                f"pixel data holds {ds.pixel_length} bytes, the header (Rows × Columns × "
                f"frames × BitsAllocated) needs {nbytes}",
                path=path,
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


def _check_native_length(ds: Dataset, path: Path, n_frames: int) -> None:
    """Uncompressed pixel data must be as long as the header says (pydicom would silently drop
    the excess, e.g. the second half of 16-bit data whose BitsAllocated says 8)."""
    ts = str(getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", "") or "")
    if (ts and ts not in UNCOMPRESSED_LE and ts != "1.2.840.10008.1.2.2") or "PixelData" not in ds:
        return
    bits = int(ds.get("BitsAllocated", 0) or 0)
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    count = int(ds.Rows) * int(ds.Columns) * n_frames * samples
    needed = (count + 7) // 8 if bits == 1 else count * bits // 8
    have = len(ds.PixelData)
    if not needed <= have <= needed + 1:
        raise DicomError(
            f"pixel data holds {have} bytes, the header (Rows × Columns × frames × "
            f"BitsAllocated) needs {needed}",
            path=path,
        )


def decode_file(path: Path, ds_header: Dataset) -> np.ndarray:
    """All frames of one file as an integer array (rows, cols) or (frames, rows, cols)."""
    n_frames = number_of_frames(ds_header, path)
    try:
        arr = _fast_pixels(path, ds_header, n_frames)
    except (ValueError, TypeError, OverflowError) as exc:  # e.g. BitsStored "NO"
        raise DicomError(
            f"invalid pixel description (Rows, Columns, BitsAllocated, BitsStored, "
            f"PixelRepresentation): {type(exc).__name__}: {exc}",
            path=path,
        ) from exc
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
            _check_native_length(ds, path, n_frames)
            return ds.pixel_array
    except (DicomError, CodecError, KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:
        # Truncated or corrupt pixel data raises many different errors, and a Rust decoder
        # (pylibjpeg-rle) that panics raises pyo3's PanicException, a BaseException.
        if isinstance(exc, GeneratorExit) or not _is_decoder_error(exc):
            raise
        raise DicomError(
            f"pixel data cannot be decoded ({type(exc).__name__}: {exc})", path=path
        ) from exc


def _is_decoder_error(exc: BaseException) -> bool:
    """An ordinary exception, or a panic of a Rust extension (pyo3_runtime.PanicException)."""
    return isinstance(exc, Exception) or type(exc).__name__ == "PanicException"
