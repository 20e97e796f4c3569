"""Report pairing: the report of a study, as :class:`medfuse.config.ReportSource` describes
(a file in the study folder, a reports folder or a CSV by AccessionNumber / StudyInstanceUID).

Owns :func:`find_report` and the per-run :class:`CsvReports` cache (held by the engine that
runs the studies, never at module level). Reads reports and the AccessionNumber of the study's
first source file; never the series itself.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ReportError
from .discovery import StudyTask, safe_name, study_key

if TYPE_CHECKING:
    from ..config import Workflow

__all__ = ["REPORT_SUFFIXES", "CsvReports", "find_report"]

REPORT_SUFFIXES = (".txt", ".json", ".md", ".html")


def _study_ids(volume: Any) -> dict[str, str]:
    """AccessionNumber and StudyInstanceUID of the volume's first source file."""
    ids = {"study_instance_uid": getattr(volume, "study_instance_uid", None) or ""}
    files = getattr(volume, "source_files", ())
    if files:
        import pydicom

        with contextlib.suppress(Exception):  # a report lookup must not fail the study
            ds = pydicom.dcmread(
                files[0], stop_before_pixels=True, specific_tags=["AccessionNumber"]
            )
            ids["accession_number"] = str(ds.get("AccessionNumber", "") or "")
    return {k: v for k, v in ids.items() if v}


class CsvReports:
    """A reports CSV loaded once: id -> text."""

    def __init__(self, path: Path, id_column: str, text_column: str | None):
        from ..io.reports import iter_csv_reports

        self.path = path
        self.rows = {
            rid.strip(): text
            for rid, text in iter_csv_reports(path, text_column, id_column)
            if rid and rid.strip()
        }


def find_report(
    task: StudyTask, workflow: Workflow, volume: Any = None, csv_cache: dict | None = None
) -> tuple[Any, str]:
    """``(Report or None, where it came from)`` for ``task`` following ``workflow.reports``
    (``csv_cache``: path -> :class:`CsvReports`, kept by the caller across studies)."""
    from ..io.reports import read_report

    src = workflow.reports
    base = task.path if task.path.is_dir() else task.path.parent
    names = list(src.filenames)
    if task.path.is_file():
        stem = study_key(task.path, readable=True)
        names = [f"{stem}{s}" for s in REPORT_SUFFIXES] + names
    for name in names:
        candidate = base / name
        if candidate.is_file():
            return read_report(candidate), f"{name} in the study folder"
    ids = _study_ids(volume) if (src.folder or src.csv) and volume is not None else {}
    if src.folder and ids:
        folder = workflow.resolve(src.folder)
        for kind, value in ids.items():
            for suffix in REPORT_SUFFIXES:
                candidate = folder / f"{safe_name(value)}{suffix}"  # type: ignore[operator]
                if candidate.is_file():
                    return read_report(candidate), f"reports folder, by {kind}"
    if src.csv and ids:
        path = workflow.resolve(src.csv)
        cache = csv_cache if csv_cache is not None else {}
        if path not in cache:
            cache[path] = CsvReports(path, src.id_column, src.text_column)  # type: ignore[arg-type]
        rows = cache[path].rows
        for kind, value in ids.items():
            if value in rows and rows[value].strip():
                report = read_report({"text": rows[value]})
                report.source = f"{path}#{value}"
                return report, f"reports CSV, by {kind}"
    if src.required:
        raise ReportError(
            "no report found for this study",
            path=task.path,
            hint="put report.txt in the study folder or configure reports.folder / reports.csv",
        )
    return None, "none found: image-only"
