"""Atomic writes: the target is the old file or the new one, never partial or missing; over an
existing regular file the names are exchanged (Linux) and the old version removed."""

from __future__ import annotations

import os
import sys

import pytest

from medfuse._atomic import _exchange, atomic_path, atomic_write_bytes


def _leftovers(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".tmp" in p.name)


def test_new_and_overwritten_files(tmp_path):
    target = tmp_path / "out.nii"
    atomic_write_bytes(target, b"first")
    assert target.read_bytes() == b"first"
    inode = target.stat().st_ino
    atomic_write_bytes(target, b"second version")
    assert target.read_bytes() == b"second version"
    assert target.stat().st_ino != inode  # a new file, not the old one rewritten
    assert _leftovers(tmp_path) == []
    assert oct(target.stat().st_mode & 0o777) == oct(0o666 & ~_umask())


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="renameat2 is Linux's")
def test_exchange_swaps_two_names(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.write_text("A")
    b.write_text("B")
    if not _exchange(a, b):
        pytest.skip("this file system does not exchange names")
    assert (a.read_text(), b.read_text()) == ("B", "A")


def test_an_error_keeps_the_old_file(tmp_path):
    target = tmp_path / "keep.txt"
    atomic_write_bytes(target, b"old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("writer failed")
    assert target.read_bytes() == b"old" and _leftovers(tmp_path) == []


def test_a_link_is_replaced_and_a_folder_refused(tmp_path):
    real = tmp_path / "real.txt"
    real.write_text("real")
    link = tmp_path / "link.txt"
    link.symlink_to(real)
    atomic_write_bytes(link, b"new")
    assert not link.is_symlink() and link.read_bytes() == b"new"
    assert real.read_text() == "real"  # the link's target is untouched, as with os.replace
    folder = tmp_path / "folder"
    folder.mkdir()
    with pytest.raises(OSError):
        atomic_write_bytes(folder, b"x")
    assert folder.is_dir() and _leftovers(tmp_path) == []
