"""Editing a DICOM file in place for the robustness tests."""

from __future__ import annotations

from pathlib import Path

import pydicom


def edit(path: Path, **changes) -> None:
    """Set each keyword of ``changes`` in the file at ``path`` (``None`` deletes it) and write it
    back as it was (no file-format repairs)."""
    ds = pydicom.dcmread(path)
    for key, value in changes.items():
        if value is None:
            delattr(ds, key)
        else:
            setattr(ds, key, value)
    ds.save_as(path, enforce_file_format=False)
