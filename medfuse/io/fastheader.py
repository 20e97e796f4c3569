"""A fast reader for the header elements medfuse needs, for the common kind of DICOM file.

Scanning a study reads every header, and pydicom spends about a millisecond per file building a
full Dataset. This reader walks the elements of an explicit-VR little-endian file (which
includes every compressed transfer syntax) with ``struct``, converts only the ~40 elements the
reader uses, and notes where the pixel data starts. It returns ``None`` for anything else —
implicit VR, big endian, deflate, files without a preamble, enhanced multi-frame objects,
mosaics, Philips private scaling, or any parse surprise — and the caller falls back to pydicom,
so the result is the same either way (tested against pydicom on every file in the test data).
"""

from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import Any

__all__ = ["FastHeader", "read_fast_header"]

EXPLICIT_LE = "1.2.840.10008.1.2.1"
# Transfer syntaxes whose data set is explicit VR little endian and not deflated.
_NOT_EXPLICIT_LE = {"1.2.840.10008.1.2", "1.2.840.10008.1.2.2", "1.2.840.10008.1.2.1.99"}
_LONG_VRS = {
    b"OB",
    b"OD",
    b"OF",
    b"OL",
    b"OV",
    b"OW",
    b"SQ",
    b"SV",
    b"UC",
    b"UN",
    b"UR",
    b"UT",
    b"UV",
}
_TEXT_VRS = {
    b"AE",
    b"AS",
    b"CS",
    b"DA",
    b"DT",
    b"LO",
    b"LT",
    b"PN",
    b"SH",
    b"ST",
    b"TM",
    b"UC",
    b"UI",
    b"UR",
    b"UT",
}
_BINARY = {b"US": "H", b"SS": "h", b"UL": "I", b"SL": "i", b"FL": "f", b"FD": "d"}
_UNDEFINED = 0xFFFFFFFF
_PIXEL_TAGS = {0x7FE00010, 0x7FE00008, 0x7FE00009}
_ITEM, _ITEM_END, _SEQ_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD

# tag -> keyword, for the elements the DICOM reader uses
WANTED: dict[int, str] = {
    0x00020002: "MediaStorageSOPClassUID",
    0x00020010: "TransferSyntaxUID",
    0x00080008: "ImageType",
    0x00080016: "SOPClassUID",
    0x00080018: "SOPInstanceUID",
    0x00080032: "AcquisitionTime",
    0x00080033: "ContentTime",
    0x00080060: "Modality",
    0x00080070: "Manufacturer",
    0x0008103E: "SeriesDescription",
    0x00180050: "SliceThickness",
    0x00180086: "EchoNumbers",
    0x00180088: "SpacingBetweenSlices",
    0x00181030: "ProtocolName",
    0x00181060: "TriggerTime",
    0x00181120: "GantryDetectorTilt",
    0x00181210: "ConvolutionKernel",
    0x00185100: "PatientPosition",
    0x0020000D: "StudyInstanceUID",
    0x0020000E: "SeriesInstanceUID",
    0x00200011: "SeriesNumber",
    0x00200012: "AcquisitionNumber",
    0x00200013: "InstanceNumber",
    0x00200032: "ImagePositionPatient",
    0x00200037: "ImageOrientationPatient",
    0x00200052: "FrameOfReferenceUID",
    0x00200100: "TemporalPositionIdentifier",
    0x00280002: "SamplesPerPixel",
    0x00280004: "PhotometricInterpretation",
    0x00280008: "NumberOfFrames",
    0x00280010: "Rows",
    0x00280011: "Columns",
    0x00280030: "PixelSpacing",
    0x00280100: "BitsAllocated",
    0x00280101: "BitsStored",
    0x00280103: "PixelRepresentation",
    0x00281052: "RescaleIntercept",
    0x00281053: "RescaleSlope",
    0x00281054: "RescaleType",
}
_ENHANCED = 0x52009230  # PerFrameFunctionalGroupsSequence
_MULTI_KEYWORDS = {"ImageType", "ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing"}


class _Unsupported(Exception):
    """This file is not for the fast path; use pydicom."""


class _Meta:
    def __init__(self, values: dict[str, Any]):
        self.TransferSyntaxUID = values.get("TransferSyntaxUID", "")
        self.MediaStorageSOPClassUID = values.get("MediaStorageSOPClassUID", "")


class FastHeader:
    """The subset of a pydicom Dataset's interface the reader uses (``get``, ``in``, attributes,
    ``file_meta``), plus where the pixel data lies."""

    def __init__(self, values: dict[str, Any], pixel_offset: int | None, pixel_length: int | None):
        self._values = values
        self.file_meta = _Meta(values)
        #: byte offset of the pixel data value (uncompressed) and its length
        self.pixel_offset = pixel_offset
        self.pixel_length = pixel_length

    def get(self, key: str, default: Any = None) -> Any:
        v = self._values.get(key)
        return default if v is None else v

    def __contains__(self, key: object) -> bool:
        return self._values.get(key) is not None  # type: ignore[arg-type]

    def __getattr__(self, key: str) -> Any:
        if key.startswith("_"):
            raise AttributeError(key)
        try:
            v = self._values[key]
        except KeyError:
            raise AttributeError(key) from None
        if v is None:
            raise AttributeError(key)
        return v


def _convert(keyword: str, vr: bytes, raw: bytes) -> Any:
    if vr in _TEXT_VRS or vr in (b"DS", b"IS"):
        text = raw.decode("latin-1").rstrip("\x00 ").strip()
        if text == "":
            return None
        parts = [p.strip() for p in text.split("\\")]
        if vr == b"DS":
            vals: list[Any] = [float(p) for p in parts]
        elif vr == b"IS":
            vals = [int(float(p)) for p in parts]
        else:
            vals = parts
    elif vr in _BINARY:
        fmt = _BINARY[vr]
        n = len(raw) // struct.calcsize(fmt)
        if n == 0:
            return None
        vals = list(struct.unpack(f"<{n}{fmt}", raw[: n * struct.calcsize(fmt)]))
    else:
        raise _Unsupported(f"unexpected VR {vr!r} for {keyword}")
    if keyword in _MULTI_KEYWORDS:
        return vals
    return (
        vals[0] if len(vals) == 1 else "\\".join(str(v) for v in vals) if vr in _TEXT_VRS else vals
    )


class _Reader:
    def __init__(self, fh):
        self.fh = fh
        self.buf = fh.read(16384)
        self.size = os.fstat(fh.fileno()).st_size

    def need(self, end: int) -> None:
        if end > self.size:  # a length beyond the end of the file: never try to read it
            raise _Unsupported("truncated header")
        while end > len(self.buf):
            more = self.fh.read(max(65536, end - len(self.buf)))
            if not more:
                raise _Unsupported("truncated header")
            self.buf += more

    def element(self, pos: int) -> tuple[int, bytes, int, int]:
        """(tag, vr, value length, value offset) of the element at ``pos`` (explicit VR LE)."""
        self.need(pos + 8)
        g, e = struct.unpack_from("<HH", self.buf, pos)
        tag = (g << 16) | e
        if g == 0xFFFE:  # item / delimiters have no VR
            (length,) = struct.unpack_from("<I", self.buf, pos + 4)
            return tag, b"", length, pos + 8
        vr = bytes(self.buf[pos + 4 : pos + 6])
        if vr in _LONG_VRS:
            self.need(pos + 12)
            (length,) = struct.unpack_from("<I", self.buf, pos + 8)
            return tag, vr, length, pos + 12
        if not (65 <= vr[0] <= 90 and 65 <= vr[1] <= 90):
            raise _Unsupported("not explicit VR")
        (length,) = struct.unpack_from("<H", self.buf, pos + 6)
        return tag, vr, length, pos + 8

    def skip_undefined(self, pos: int) -> int:
        """Position after an undefined-length sequence value starting at ``pos``."""
        while True:
            tag, _vr, length, start = self.element(pos)
            if tag == _SEQ_END:
                return start
            if tag != _ITEM:
                raise _Unsupported("malformed sequence")
            if length != _UNDEFINED:
                pos = start + length
                continue
            pos = start
            while True:  # elements of an undefined-length item
                tag, _vr, length, start = self.element(pos)
                if tag == _ITEM_END:
                    pos = start
                    break
                pos = self.skip_undefined(start) if length == _UNDEFINED else start + length


def read_fast_header(path: str | Path) -> FastHeader | None:
    """The wanted elements of ``path``, or None when the file needs pydicom."""
    try:
        with open(path, "rb") as fh:
            r = _Reader(fh)
            if len(r.buf) < 132 or r.buf[128:132] != b"DICM":
                return None
            values: dict[str, Any] = {}
            pos = 132
            while True:  # file meta information: always explicit VR little endian
                r.need(pos + 8)
                if struct.unpack_from("<H", r.buf, pos)[0] != 0x0002:
                    break
                tag, vr, length, start = r.element(pos)
                if tag in WANTED:
                    r.need(start + length)
                    values[WANTED[tag]] = _convert(WANTED[tag], vr, r.buf[start : start + length])
                pos = start + length
            ts = values.get("TransferSyntaxUID") or ""
            if not isinstance(ts, str) or not ts or ts in _NOT_EXPLICIT_LE:
                return None
            pixel_offset = pixel_length = None
            while True:
                try:
                    r.need(pos + 8)
                except _Unsupported:
                    break  # a header with no pixel data
                tag, vr, length, start = r.element(pos)
                if tag in _PIXEL_TAGS:
                    if length != _UNDEFINED:
                        pixel_offset, pixel_length = start, length
                    break
                if tag == _ENHANCED:
                    return None
                if length == _UNDEFINED:
                    pos = r.skip_undefined(start)
                    continue
                kw = WANTED.get(tag)
                if kw is not None:
                    r.need(start + length)
                    values[kw] = _convert(kw, vr, r.buf[start : start + length])
                pos = start + length
    except (
        _Unsupported,
        OSError,
        struct.error,
        ValueError,
        UnicodeDecodeError,
        IndexError,
        TypeError,  # a value of an unexpected VR (a list where text belongs)
        RecursionError,  # sequences nested thousands deep: let pydicom judge the file
        MemoryError,
    ):
        return None
    image_type = values.get("ImageType") or []
    if "MOSAIC" in (str(v).upper() for v in image_type):
        return None  # needs the CSA header
    if "PHILIPS" in str(values.get("Manufacturer", "")).upper():
        return None  # private floating-point scaling lives in private elements
    return FastHeader(values, pixel_offset, pixel_length)


def ends_cleanly(path: str | Path) -> bool | None:
    """Whether an explicit-VR little-endian Part 10 file is complete: its elements, sequences
    and items (undefined lengths included) end exactly at the end of the file. False when it is
    cut short or malformed; None when this cannot tell (implicit VR, big endian, deflate, no
    preamble). pydicom reads a file cut inside a sequence without complaint; this does not."""
    try:
        with open(path, "rb") as fh:
            r = _Reader(fh)
            if len(r.buf) < 132 or r.buf[128:132] != b"DICM":
                return None
            pos, ts = 132, ""
            while pos < r.size:
                r.need(pos + 8)
                if struct.unpack_from("<H", r.buf, pos)[0] != 0x0002:
                    break
                tag, _vr, length, start = r.element(pos)
                if tag == 0x00020010:
                    r.need(start + length)
                    ts = r.buf[start : start + length].decode("latin-1").rstrip("\x00 ")
                pos = start + length
            if not ts or ts in _NOT_EXPLICIT_LE:
                return None
            while pos < r.size:
                tag, _vr, length, start = r.element(pos)
                pos = r.skip_undefined(start) if length == _UNDEFINED else start + length
                r.need(pos)
            return pos == r.size
    except _Unsupported:
        return False
    except (OSError, struct.error, ValueError, UnicodeDecodeError, IndexError, RecursionError):
        return None
