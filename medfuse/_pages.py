"""numpy's transparent-huge-page advice, off while medfuse reads, predicts and exports.

numpy asks the kernel for transparent huge pages (``madvise``) for every array of 4 MiB or more.
Where the kernel's THP defrag setting is ``madvise``, and more so on a virtual machine that
returns free memory to its host (the machines this project is measured on), the first touch of
such an array either finds huge pages free or stalls in direct compaction: the first 315 MB
array of a process took 0.04-0.08 s in 9 of 17 runs and 1.4-1.5 s in 4, against 0.14-0.46 s
with 4 KiB pages (``benchmarks/memory_pages.py``); a warm 512² × 300 study in
``benchmarks/end_to_end.py`` took 5.92 s against 3.76 s (docs/benchmarks.md). medfuse takes the
steady case.

The ``medfuse`` command owns its process and sets ``NUMPY_MADVISE_HUGEPAGE=0`` before numpy is
imported (:mod:`medfuse.cli.entry`). In a process it does not own (a notebook, a script),
:func:`small_pages` turns the advice off while medfuse works and gives the previous setting back
when the last piece of medfuse work running in the process ends. Whoever set
``NUMPY_MADVISE_HUGEPAGE`` keeps their choice.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator

__all__ = ["small_pages"]

_lock = threading.Lock()
_depth = 0
_saved = True


def _set_advice(enabled: bool) -> bool:
    """Set numpy's huge-page advice; returns the previous setting."""
    try:
        from numpy._core.multiarray import _set_madvise_hugepage
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import _set_madvise_hugepage
    return bool(_set_madvise_hugepage(enabled))


@contextlib.contextmanager
def small_pages() -> Iterator[None]:
    """Within the block (or the decorated call), numpy allocates large arrays without the
    huge-page advice, unless ``NUMPY_MADVISE_HUGEPAGE`` is set. Nested and concurrent blocks
    (a prefetch thread beside the model) share one switch: the first turns the advice off,
    the last puts the saved setting back."""
    global _depth, _saved
    if "NUMPY_MADVISE_HUGEPAGE" in os.environ:
        yield
        return
    with _lock:
        if _depth == 0:
            _saved = _set_advice(False)
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                _set_advice(_saved)
