"""Batch state: the status file, the run lock and the atomic commit of each study's folder.

``out/status.jsonl`` holds one :class:`StudyRecord` per finished study, as one JSON line,
appended in a single ``write`` (lines never interleave; a line cut by a crash is ignored when
read). The last record of a key is the study's state: :func:`read_status`. The schema is
documented in ``docs/workflows.md`` ("status.jsonl").

Each study's files are written into a hidden temporary folder inside ``out``
(:data:`TMP_PREFIX`) and renamed to ``out/<key>/`` when complete (:func:`commit_folder`); a run
holds an advisory lock on ``out/.medfuse.lock`` (:func:`run_lock`) and first removes what an
interrupted run left (:func:`clean_partials`).

Owns the output folder's layout; never reads studies or runs a model.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import json
import os
import shutil
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ConfigError

__all__ = [
    "STATUS_FILE",
    "TMP_PREFIX",
    "StudyRecord",
    "append_status",
    "clean_partials",
    "commit_folder",
    "copy_outputs",
    "read_status",
    "run_lock",
]

STATUS_FILE = "status.jsonl"
TMP_PREFIX = ".partial-"


@dataclass(eq=False)
class StudyRecord(Mapping[str, Any]):
    """One line of ``status.jsonl``: what happened to one study (``docs/workflows.md``).

    Fields left None are not written. It reads like the JSON object it is written as
    (``record["status"]``, ``record.get("reason")``), as the status lines are read back.
    """

    #: the study's output folder name (``out/<key>/``)
    key: str
    #: the study's input path
    input: str
    #: ``ok``, ``partial`` (some formats failed, the others were written) or ``error``
    status: str
    #: the inputs the prediction used (``["image", "report"]``, ...); ok / partial
    modalities_used: list[str] | None = None
    #: where the report came from (``report.txt in the study folder``, ...); ok / partial
    report: str | None = None
    #: the positive findings' labels; ok / partial
    positive: list[str] | None = None
    #: the files in ``out/<key>/``, relative, ``/``-separated; ok / partial
    outputs: list[str] | None = None
    #: the formats this run redid (a re-run of a ``partial`` study)
    retried: list[str] | None = None
    #: format -> ``{"error_type", "reason"}`` of each format that failed
    failed: dict[str, dict[str, str]] | None = None
    #: the exception's class name (error; partial: the first failed format's)
    error_type: str | None = None
    #: why, in words (error / partial)
    reason: str | None = None
    #: the prediction's ``created`` time and model SHA-256 (partial: a re-run reuses them)
    created: str | None = None
    model_sha256: str | None = None
    #: the prediction's warnings; ok / partial
    warnings: list[str] | None = None
    #: seconds per stage (scan, decode, report, preprocess, forward, explain, export_<format>,
    #: wall)
    timings_s: dict[str, float] | None = None
    #: when the line was written (UTC, ISO 8601, seconds)
    finished: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The JSON object of the status line (None fields left out)."""
        return {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if getattr(self, f.name) is not None
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> StudyRecord:
        """A record from a status line's object (keys this version does not know are
        dropped)."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    # the record reads like its JSON object
    def __getitem__(self, name: str) -> Any:
        value = getattr(self, name, None) if name in _FIELD_NAMES else None
        if value is None:
            raise KeyError(name)
        return value

    def __iter__(self) -> Iterator[str]:
        return iter(self.to_dict())

    def __len__(self) -> int:
        return len(self.to_dict())


_FIELD_NAMES = frozenset(f.name for f in dataclasses.fields(StudyRecord))


def read_status(out_dir: str | os.PathLike) -> dict[str, StudyRecord]:
    """The last status record per key in ``out_dir/status.jsonl`` (unreadable lines ignored:
    a line cut by a crash is simply not a finished study)."""
    path = Path(out_dir) / STATUS_FILE
    last: dict[str, StudyRecord] = {}
    if not path.is_file():
        return last
    with path.open(encoding="utf-8", errors="replace") as fh:
        for line in fh:
            with contextlib.suppress(ValueError, TypeError):
                rec = json.loads(line)
                if isinstance(rec, dict) and isinstance(rec.get("key"), str):
                    last[rec["key"]] = StudyRecord.from_dict(rec)
    return last


def append_status(out_dir: Path, record: StudyRecord) -> StudyRecord:
    """Append ``record`` as one line, stamped ``finished`` now (a single ``write`` on an
    O_APPEND file: lines never interleave); the stamped record."""
    record = dataclasses.replace(
        record, finished=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    )
    data = json.dumps(record.to_dict(), ensure_ascii=False, allow_nan=False)
    line = (data + "\n").encode("utf-8")
    fd = os.open(out_dir / STATUS_FILE, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o666)
    try:
        # a line cut by a crash must not glue onto the next one
        if os.fstat(fd).st_size and not _ends_with_newline(out_dir / STATUS_FILE):
            line = b"\n" + line
        os.write(fd, line)
        if os.environ.get("MEDFUSE_FSYNC", "") == "1":
            os.fsync(fd)
    finally:
        os.close(fd)
    return record


def _ends_with_newline(path: Path) -> bool:
    with path.open("rb") as fh:
        fh.seek(-1, os.SEEK_END)
        return fh.read(1) == b"\n"


@contextlib.contextmanager
def run_lock(out_dir: Path) -> Iterator[None]:
    """One run per output folder at a time (advisory lock on ``out/.medfuse.lock``)."""
    try:
        import fcntl
    except ImportError:  # Windows: no advisory lock
        yield
        return
    with open(out_dir / ".medfuse.lock", "a+b") as fh:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise ConfigError(
                "another medfuse run is writing to this output folder", path=out_dir
            ) from None
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def clean_partials(out_dir: Path) -> None:
    """Remove what an interrupted run left (temporary study folders)."""
    for p in out_dir.glob(f"{TMP_PREFIX}*"):
        shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)


def commit_folder(tmp: Path, final: Path) -> None:
    """Rename the finished temporary folder to ``final`` (replacing an old one)."""
    if final.exists():
        trash = final.with_name(f"{TMP_PREFIX}old-{final.name}-{os.getpid()}")
        os.replace(final, trash)
        shutil.rmtree(trash, ignore_errors=True)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes 0700; outputs get the usual mode
    os.replace(tmp, final)


def copy_outputs(src: Path, dst: Path) -> None:
    """The earlier outputs of a study into its new temporary folder (hard links where the
    filesystem allows: every output is replaced by renaming, never written in place)."""

    def link(a: str, b: str) -> None:
        try:
            os.link(a, b)
        except OSError:
            shutil.copy2(a, b)

    shutil.copytree(src, dst, copy_function=link, dirs_exist_ok=True)
