"""Atomic file writing: write to a temporary file in the same folder, fsync, then rename.

Writers hand the kernel at most :data:`WRITE_PIECE` bytes per ``write()`` (:func:`atomic_open`).
Linux's ext4 (6.x) caches a ``write()`` of 2 MiB or more in 2 MiB folios. On a virtual machine
that returns free memory to its host in 8 MiB blocks (free page reporting, the machines this
project is measured on), such folios are taken from memory the host must fault back in, at
80-100 MB/s, while smaller pieces are served from free memory the guest still holds for as long
as it lasts: 256 MiB to a new file took 0.06-0.19 s as 1 MiB pieces against 2.4-3.2 s as 8 MiB
pieces in that state, and both ran at ~100 MB/s once it was used up (``dd``;
``benchmarks/memory_pages.py``). ``medfuse convert`` of a 512² series writing over its previous
output (``benchmarks/convert_ab.py``, median of 12 in one run): 0.74 × the time with 8 MiB
pieces at 500 slices, 0.88 × at 300, and no run above 1.1 s against up to 2.95 s. On other
machines 1 MiB pieces cost about as much as larger ones.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

__all__ = ["WRITE_PIECE", "atomic_open", "atomic_path", "atomic_write_bytes", "atomic_write_text"]

#: The most bytes one ``write()`` call is given (see the module docstring).
WRITE_PIECE = 1 << 20


@contextlib.contextmanager
def atomic_path(
    path: str | os.PathLike, suffix: str | None = None, *, fsync: bool | None = None
) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success it replaces ``path`` atomically.

    ``suffix`` defaults to the target's full suffix (``.nii.gz``), for writers that infer the
    format from the file name. On error the temporary file is removed and ``path`` is untouched,
    so a reader (or a crash, or ``kill -9``) never sees a partial file. ``fsync`` also flushes
    the data to disk before the rename, for durability across power loss; it defaults to the
    environment variable ``MEDFUSE_FSYNC=1`` (off otherwise: it costs ~1 s per GB).
    """
    if fsync is None:
        fsync = os.environ.get("MEDFUSE_FSYNC", "") == "1"
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    if suffix is None:
        suffix = "".join(target.suffixes)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=f".tmp{suffix}", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp_path, 0o666 & ~umask)  # mkstemp creates 0600; outputs get the usual mode
    try:
        yield tmp_path
        if fsync:
            with open(tmp_path, "rb+") as fh:
                os.fsync(fh.fileno())
        _replace(tmp_path, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()


def _replace(tmp: Path, target: Path) -> None:
    """Put ``tmp`` at ``target`` atomically. Over an existing regular file, on Linux, the two
    names are exchanged (``renameat2(RENAME_EXCHANGE)``) and the old file, now under the
    temporary name, is unlinked: ext4 starts writing back a file renamed *over* another at the
    rename itself (``auto_da_alloc``), 0.06-0.15 s for a 157-262 MB NIfTI here, and the writes
    that follow wait on that I/O; an exchange does not (docs/benchmarks.md). Either way a
    reader sees the old file or the new one, never neither. Elsewhere, or when the exchange is
    refused (a file system without it), ``os.replace``."""
    import stat

    try:
        st = os.lstat(target)
    except FileNotFoundError:
        os.replace(tmp, target)
        return
    if not stat.S_ISREG(st.st_mode) or not _exchange(tmp, target):
        os.replace(tmp, target)
        return
    os.unlink(tmp)  # the previous version


def _exchange(a: Path, b: Path) -> bool:
    """Swap the names ``a`` and ``b`` atomically (Linux ``renameat2``); False when unavailable."""
    import ctypes
    import sys

    if not sys.platform.startswith("linux"):
        return False
    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):  # a C library without renameat2 (glibc < 2.28, musl)
        return False
    at_fdcwd, rename_exchange = -100, 2
    return fn(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0


class _PieceWriter:
    """A binary file whose ``write`` passes the data on in pieces of at most
    :data:`WRITE_PIECE` bytes; everything else is the file's own."""

    def __init__(self, fh: BinaryIO) -> None:
        self._fh = fh

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        for start in range(0, len(view), WRITE_PIECE):
            self._fh.write(view[start : start + WRITE_PIECE])
        return len(view)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._fh, name)


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, *, fsync: bool | None = None) -> Iterator[Any]:
    """A binary file open for writing that replaces ``path`` atomically when the block ends
    (:func:`atomic_path`); its writes reach the kernel in pieces of at most :data:`WRITE_PIECE`
    bytes. Takes anything with a ``write`` method, such as pydicom's ``save_as``."""
    with atomic_path(path, fsync=fsync) as tmp, open(tmp, "wb") as fh:
        yield _PieceWriter(fh)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    with atomic_open(path) as fh:
        fh.write(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike, text: str, encoding: str = "utf-8") -> Path:
    return atomic_write_bytes(path, text.encode(encoding))
