"""JPEG-LS lossless encoding of 16-bit grayscale frames, frames in parallel threads.

The codec is CharLS, as shipped by pyjpegls (a medfuse dependency; pydicom and highdicom encode
JPEG-LS with it too). pyjpegls' own ``encode_buffer`` keeps the GIL while CharLS runs, so
threads would encode one frame at a time; its extension module also exports CharLS's C API,
which :mod:`ctypes` calls with the GIL released, so here the frames of a map are encoded by
several threads at once. The codestream is the one ``jpeg_ls.encode_buffer`` (and so pydicom's
``pyjpegls`` encoder, which highdicom uses) writes for the same frame: lossless, 16 bits per
sample, default coding parameters (a test compares them byte for byte). Where the C API cannot
be found (another pyjpegls build), ``jpeg_ls.encode_buffer`` is used, frames one at a time.
"""

from __future__ import annotations

import ctypes
import os
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

__all__ = ["encode_frame", "encode_frames", "parallel"]


class _FrameInfo(ctypes.Structure):
    """``charls_frame_info`` (CharLS 2.x and 3.x)."""

    _fields_ = [
        ("width", ctypes.c_uint32),
        ("height", ctypes.c_uint32),
        ("bits_per_sample", ctypes.c_int32),
        ("component_count", ctypes.c_int32),
    ]


_lock = threading.Lock()
_lib: ctypes.CDLL | None = None
_lib_checked = False


def _charls() -> ctypes.CDLL | None:
    """CharLS's C API from pyjpegls' extension module, or None where it is not exported."""
    global _lib, _lib_checked
    with _lock:
        if _lib_checked:
            return _lib
        _lib_checked = True
        try:
            import importlib.util

            spec = importlib.util.find_spec("_CharLS")
            if spec is None or not spec.origin:
                return None
            lib = ctypes.CDLL(spec.origin)
            major, minor, patch = ctypes.c_int32(), ctypes.c_int32(), ctypes.c_int32()
            lib.charls_get_version_number.restype = None
            lib.charls_get_version_number.argtypes = [ctypes.POINTER(ctypes.c_int32)] * 3
            lib.charls_get_version_number(
                ctypes.byref(major), ctypes.byref(minor), ctypes.byref(patch)
            )
            if major.value not in (2, 3):  # the charls_* C API as declared below
                return None
            vp, size_p = ctypes.c_void_p, ctypes.POINTER(ctypes.c_size_t)
            signatures = {
                "charls_jpegls_encoder_create": (vp, []),
                "charls_jpegls_encoder_destroy": (None, [vp]),
                "charls_jpegls_encoder_set_frame_info": (
                    ctypes.c_int,
                    [vp, ctypes.POINTER(_FrameInfo)],
                ),
                "charls_jpegls_encoder_get_estimated_destination_size": (
                    ctypes.c_int,
                    [vp, size_p],
                ),
                "charls_jpegls_encoder_set_destination_buffer": (
                    ctypes.c_int,
                    [vp, vp, ctypes.c_size_t],
                ),
                "charls_jpegls_encoder_encode_from_buffer": (
                    ctypes.c_int,
                    [vp, vp, ctypes.c_size_t, ctypes.c_uint32],
                ),
                "charls_jpegls_encoder_get_bytes_written": (ctypes.c_int, [vp, size_p]),
                "charls_get_error_message": (ctypes.c_char_p, [ctypes.c_int]),
            }
            for name, (restype, argtypes) in signatures.items():
                fn = getattr(lib, name)
                fn.restype, fn.argtypes = restype, argtypes
        except (OSError, AttributeError, ImportError, ValueError):
            return None
        _lib = lib
        return lib


def parallel() -> bool:
    """Whether frames are encoded without the GIL (CharLS's C API was found)."""
    return _charls() is not None


def _check(lib: ctypes.CDLL, err: int) -> None:
    if err:
        message = lib.charls_get_error_message(err) or b"unknown error"
        raise RuntimeError(f"JPEG-LS encoding failed: {message.decode(errors='replace')}")


def encode_frame(frame: np.ndarray) -> bytes:
    """The JPEG-LS lossless codestream of one C-contiguous 2-D uint16 frame (16 bits per
    sample)."""
    import numpy as np

    frame = np.ascontiguousarray(frame, dtype=np.uint16)
    if frame.ndim != 2:
        raise ValueError(f"expected a 2-D frame, got shape {frame.shape}")
    rows, columns = frame.shape
    lib = _charls()
    if lib is None:
        import jpeg_ls

        return bytes(jpeg_ls.encode_buffer(frame.tobytes(), rows, columns, 1, 16))
    encoder = lib.charls_jpegls_encoder_create()
    if not encoder:
        raise MemoryError("cannot create a CharLS encoder")
    try:
        info = _FrameInfo(columns, rows, 16, 1)
        _check(lib, lib.charls_jpegls_encoder_set_frame_info(encoder, ctypes.byref(info)))
        size = ctypes.c_size_t()
        _check(
            lib,
            lib.charls_jpegls_encoder_get_estimated_destination_size(encoder, ctypes.byref(size)),
        )
        # CharLS's estimate can be too small for noise-like frames; pyjpegls allows twice the input
        capacity = max(size.value, 2 * frame.nbytes + 1024)
        dst = ctypes.create_string_buffer(capacity)
        _check(
            lib,
            lib.charls_jpegls_encoder_set_destination_buffer(
                encoder, ctypes.addressof(dst), capacity
            ),
        )
        # ctypes releases the GIL for the call: other threads encode their frames meanwhile
        _check(
            lib,
            lib.charls_jpegls_encoder_encode_from_buffer(
                encoder, frame.ctypes.data, frame.nbytes, 0
            ),
        )
        written = ctypes.c_size_t()
        _check(lib, lib.charls_jpegls_encoder_get_bytes_written(encoder, ctypes.byref(written)))
        return ctypes.string_at(dst, written.value)
    finally:
        lib.charls_jpegls_encoder_destroy(encoder)


def encode_frames(
    frame: Callable[[int], np.ndarray], indices: Sequence[int], workers: int | None = None
) -> list[bytes]:
    """``[encode_frame(frame(i)) for i in indices]``, computed by ``workers`` threads (default:
    one per CPU; one thread where the GIL cannot be released). ``frame`` runs in those threads
    too, so that making a frame (numpy, which releases the GIL) overlaps encoding others."""
    n = workers or os.cpu_count() or 1
    if n <= 1 or len(indices) <= 1 or not parallel():
        return [encode_frame(frame(i)) for i in indices]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(min(n, len(indices)), thread_name_prefix="medfuse-jpegls") as pool:
        return list(pool.map(lambda i: encode_frame(frame(i)), indices))
