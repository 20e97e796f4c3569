"""numpy's huge-page advice while medfuse works (medfuse._pages), and the 1 MiB write pieces of
the atomic writer (medfuse._atomic)."""

from __future__ import annotations

import io
import threading

import numpy as np
import pytest

from medfuse._atomic import WRITE_PIECE, _PieceWriter, atomic_open
from medfuse._pages import _set_advice, small_pages


def advice() -> bool:
    """numpy's current huge-page advice."""
    return bool(np.core.multiarray._get_madvise_hugepage())


@pytest.fixture
def advice_on(monkeypatch):
    monkeypatch.delenv("NUMPY_MADVISE_HUGEPAGE", raising=False)
    previous = _set_advice(True)
    yield
    _set_advice(previous)


def test_advice_is_off_inside_and_given_back_after(advice_on):
    with small_pages():
        assert advice() is False
        with small_pages():
            assert advice() is False
        assert advice() is False  # the outer block still runs
    assert advice() is True


def test_a_decorated_call_turns_it_off_even_when_it_raises(advice_on):
    @small_pages()
    def work():
        assert advice() is False
        raise ValueError("bad input")

    with pytest.raises(ValueError):
        work()
    assert advice() is True


def test_concurrent_blocks_share_one_switch(advice_on):
    """A prefetch thread that ends while the model still works leaves the advice off."""
    inside, release = threading.Event(), threading.Event()

    def prefetch():
        with small_pages():
            inside.set()
            release.wait(10)

    with small_pages():
        t = threading.Thread(target=prefetch)
        t.start()
        inside.wait(10)
        release.set()
        t.join()
        assert advice() is False
    assert advice() is True


def test_the_users_setting_is_kept(monkeypatch):
    monkeypatch.setenv("NUMPY_MADVISE_HUGEPAGE", "1")
    previous = _set_advice(True)
    try:
        with small_pages():
            assert advice() is True
    finally:
        _set_advice(previous)


class _Recording(io.BytesIO):
    """A BytesIO that keeps the size of every write it is given."""

    def __init__(self) -> None:
        super().__init__()
        self.sizes: list[int] = []

    def write(self, data) -> int:
        self.sizes.append(memoryview(data).nbytes)
        return super().write(data)


def test_writes_reach_the_file_in_pieces_of_at_most_one_mebibyte():
    data = np.arange(5 * WRITE_PIECE // 4 + 123, dtype=np.int32)  # 5 MiB and a bit, 2D-able
    raw = _Recording()
    writer = _PieceWriter(raw)
    assert writer.write(memoryview(data.reshape(-1, 1))) == data.nbytes
    assert writer.write(b"tail") == 4
    assert max(raw.sizes) <= WRITE_PIECE and len(raw.sizes) == 6 + 1
    assert raw.getvalue() == data.tobytes() + b"tail"
    assert writer.tell() == data.nbytes + 4  # the rest is the file's own


def test_atomic_open_replaces_the_file_whole(tmp_path):
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    payload = bytes(range(256)) * (3 * WRITE_PIECE // 256 + 1)
    with atomic_open(target) as fh:
        fh.write(payload)
        assert target.read_bytes() == b"old"  # not yet replaced
    assert target.read_bytes() == payload
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]
