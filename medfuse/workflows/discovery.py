"""Discovery: which studies are under the inputs, and the name of each one's output folder.

What counts as a study (:func:`discover_studies`): an input path that directly holds DICOM
files (by the io layer's sniff, :func:`medfuse.io.dicom._sniff`), a report file, a DICOMDIR or
a ``dicom/`` sub-folder, or that is a NIfTI / NRRD / MHA file, is **one study**; any other
folder is a **folder of studies**, each entry (sub-folder or volume file) one study, read
recursively.

Owns :class:`StudyTask`, :func:`study_key` and :func:`safe_name`. Reads file names and the
first 132 bytes of files; never reads a series or a report (that is :mod:`.study` and
:mod:`.reports`).
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError

__all__ = [
    "VOLUME_SUFFIXES",
    "StudyTask",
    "discover_studies",
    "safe_name",
    "study_key",
]

VOLUME_SUFFIXES = (".nii", ".nii.gz", ".nrrd", ".nhdr", ".mha", ".mhd")


@dataclass(frozen=True)
class StudyTask:
    """One study to process: where it is and the name of its output folder. ``retry_formats``
    (a re-run of a ``partial`` study): only these formats are exported, into a copy of the
    study's folder, with the earlier prediction's ``retry_created`` time when its model
    (``retry_model_sha256``) is the same, so that the new outputs carry the same derived
    identifiers as the others."""

    key: str
    path: Path
    retry_formats: tuple[str, ...] = ()
    retry_created: str = ""
    retry_model_sha256: str = ""

    @property
    def name(self) -> str:
        return self.path.name


def _is_volume_file(p: Path) -> bool:
    name = p.name.lower()
    return p.is_file() and name.endswith(VOLUME_SUFFIXES)


def _is_dicom_file(p: Path) -> bool:
    from ..io.dicom import _sniff  # the io layer's one DICOM sniff (132 bytes)

    return _sniff(p) is None


def _is_single_study(folder: Path, report_names: Sequence[str]) -> bool:
    try:
        entries = list(folder.iterdir())
    except OSError as exc:
        raise InputError(f"cannot list the folder: {exc.strerror or exc}", path=folder) from None
    names = {e.name for e in entries}
    if names & set(report_names) or "DICOMDIR" in names:
        return True
    if any(e.is_dir() and e.name.lower() == "dicom" for e in entries):
        return True
    return any(e.is_file() and _is_dicom_file(e) for e in entries)


def safe_name(name: str) -> str:
    """``name`` reduced to a safe file-name part (letters, digits, ``._-``; no leading dot)."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", name).lstrip("._")[:64]
    return cleaned or "study"


def study_key(path: str | os.PathLike, *, readable: bool = False) -> str:
    """The output folder name of a study: pseudonymous ``study-<sha256 of the absolute path,
    12 hex digits>``, or the sanitised folder name when ``readable``."""
    p = Path(path).resolve()
    if readable:
        name = p.name
        for suffix in VOLUME_SUFFIXES:
            if name.lower().endswith(suffix):
                name = name[: -len(suffix)]
                break
        return safe_name(name)
    return "study-" + hashlib.sha256(str(p).encode("utf-8", "surrogatepass")).hexdigest()[:12]


def discover_studies(
    inputs: Sequence[str | os.PathLike],
    *,
    readable_keys: bool = False,
    report_names: Sequence[str] = ("report.txt",),
) -> list[StudyTask]:
    """The studies under ``inputs`` (see the module docstring for the rule), keys unique."""
    tasks: list[StudyTask] = []
    for raw in inputs:
        p = Path(raw)
        if not p.exists():
            raise InputError("no such file or folder", path=p)
        if p.is_file() or _is_single_study(p, report_names):
            candidates = [p]
        else:
            candidates = sorted(
                e
                for e in p.iterdir()
                if not e.name.startswith(".") and (e.is_dir() or _is_volume_file(e))
            )
        tasks.extend(StudyTask(study_key(c, readable=readable_keys), c) for c in candidates)
    seen: dict[str, int] = {}
    unique = []
    for t in tasks:
        n = seen.get(t.key, 0)
        seen[t.key] = n + 1
        unique.append(t if n == 0 else StudyTask(f"{t.key}-{n + 1}", t.path))
    return unique
