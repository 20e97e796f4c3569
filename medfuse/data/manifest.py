"""A user's cohort as a manifest: one row per case, validated as a whole before any work starts.

CSV (UTF-8, header row) or a MONAI-style datalist JSON. Columns::

    case_id       required, unique
    patient_id    optional; rows of one patient always land in the same split
    image         a DICOM folder or a volume file (.nii/.nii.gz/.nrrd/.mha), relative to the
                  manifest's folder; empty: the case has no image
    report        a report file (.txt/.json/.html/DICOM SR), relative like ``image``; or
    report_text   the report inline; both empty: the case has no report
    <label>       one column per label: 1, 0, -1 (uncertain) or empty (unknown)
    time, event   optional survival target (time >= 0, event 0 or 1; both or neither)
    split         optional: train, val or test (all rows or none)

A datalist JSON is ``{"training": [...], "validation": [...], "test": [...]}`` (MONAI's keys;
each item a mapping with the columns above, ``case_id`` defaulting to the image file's name and
a ``label`` list or number mapping onto the requested labels) or a plain list of such mappings.

Every problem of every row is collected (:class:`RowProblem`, naming the row and the column)
and raised together as one :class:`~medfuse.errors.ConfigError`, or, with
``on_invalid="skip"``, the rows with problems are left out and listed in
:attr:`Manifest.invalid`.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError

__all__ = [
    "RESERVED_COLUMNS",
    "SPLITS",
    "Manifest",
    "ManifestRow",
    "RowProblem",
    "read_manifest",
    "write_manifest",
]

SPLITS = ("train", "val", "test")
RESERVED_COLUMNS = (
    "case_id",
    "patient_id",
    "image",
    "report",
    "report_text",
    "time",
    "event",
    "split",
)
_DATALIST_SPLITS = {"training": "train", "validation": "val", "test": "test", "testing": "test"}
_UNKNOWN = ("", "nan", "na", "n/a", "none", "null")
#: Problems quoted in the error message (all of them are in ``Manifest.invalid``).
_QUOTED = 20


@dataclass(frozen=True)
class RowProblem:
    """What is wrong with one cell (``row`` is the 1-based data row; CSV line = row + 1)."""

    row: int
    case_id: str
    column: str
    reason: str

    def __str__(self) -> str:
        who = f" (case_id {self.case_id!r})" if self.case_id else ""
        return f"row {self.row}{who}, column {self.column!r}: {self.reason}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "row": self.row,
            "case_id": self.case_id,
            "column": self.column,
            "reason": self.reason,
        }


@dataclass(frozen=True)
class ManifestRow:
    """One validated case. Label values are 1, 0, -1 (uncertain) or NaN (unknown)."""

    row: int
    case_id: str
    patient_id: str | None
    image: Path | None
    report: Path | None
    report_text: str | None
    labels: dict[str, float]
    time: float | None = None
    event: float | None = None
    split: str | None = None

    @property
    def group(self) -> str:
        """The unit splits keep together: the patient, else the case."""
        return self.patient_id or f"case:{self.case_id}"

    @property
    def has_report(self) -> bool:
        return self.report is not None or bool(self.report_text)


@dataclass
class Manifest:
    """The valid rows of a manifest file and what was wrong with the others."""

    path: Path
    rows: list[ManifestRow]
    #: label columns, in the order of the ``labels`` asked for (else the file's order)
    labels: list[str]
    #: problems of the rows left out (``on_invalid="skip"``)
    invalid: list[RowProblem] = field(default_factory=list)
    #: SHA-256 of the manifest file's bytes (provenance without identifiers)
    sha256: str = ""

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def has_survival(self) -> bool:
        return any(r.time is not None for r in self.rows)

    @property
    def has_split(self) -> bool:
        return any(r.split is not None for r in self.rows)

    @property
    def has_images(self) -> bool:
        return any(r.image is not None for r in self.rows)

    @property
    def has_reports(self) -> bool:
        return any(r.has_report for r in self.rows)


# -- reading ----------------------------------------------------------------------------------------
def _records(path: Path) -> tuple[list[dict[str, Any]], list[str]]:
    """Raw records and the column names (CSV header or the union of JSON keys)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read manifest: {exc.strerror or exc}", path=path) from None
    if path.suffix.lower() == ".json":
        try:
            obj = json.loads(data.decode("utf-8-sig"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ConfigError(f"manifest is not valid JSON: {exc}", path=path) from None
        items: list[dict[str, Any]] = []
        if isinstance(obj, list):
            items = [dict(x) if isinstance(x, Mapping) else {"_bad": x} for x in obj]
        elif isinstance(obj, Mapping):
            for key, split in _DATALIST_SPLITS.items():
                for x in obj.get(key) or ():
                    item = dict(x) if isinstance(x, Mapping) else {"_bad": x}
                    item.setdefault("split", split)
                    items.append(item)
            if not items:
                raise ConfigError(
                    "a datalist JSON needs a 'training', 'validation' or 'test' list of cases",
                    path=path,
                )
        else:
            raise ConfigError("a manifest JSON is a list of cases or a datalist", path=path)
        cols: list[str] = []
        for it in items:
            cols.extend(k for k in it if k not in cols)
        return items, cols
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"manifest is not UTF-8 text: {exc}", path=path) from None
    # a StringIO, not splitlines(): a quoted multi-line cell (a report) keeps its line breaks
    reader = csv.DictReader(io.StringIO(text, newline=""))
    if not reader.fieldnames:
        raise ConfigError("manifest is empty (no header row)", path=path)
    cols = [c.strip() for c in reader.fieldnames]
    if len(set(cols)) != len(cols):
        dup = sorted({c for c in cols if cols.count(c) > 1})
        raise ConfigError(f"manifest repeats the column(s) {dup}", path=path)
    rows = []
    for rec in reader:
        if None in rec:  # more cells than header names
            rec = {k: v for k, v in rec.items() if k is not None} | {"_extra": rec[None]}
        rows.append({(k or "").strip(): v for k, v in rec.items()})
    return rows, cols


def _text(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float) and math.isnan(v):
        return ""
    return str(v).strip()


def _label_value(v: Any) -> float | None:
    """1, 0, -1 or NaN; None when the value is not one of them."""
    s = _text(v).lower()
    if s in _UNKNOWN:
        return math.nan
    try:
        f = float(s)
    except ValueError:
        return None
    return f if f in (1.0, 0.0, -1.0) else None


def read_manifest(
    path: str | os.PathLike,
    labels: Sequence[str] | None = None,
    *,
    on_invalid: str = "error",
    allow_missing_labels: bool = False,
) -> Manifest:
    """Read and validate a manifest (see the module docstring).

    ``labels``: the label columns to use (default: every column that is not reserved).
    ``allow_missing_labels``: label columns may be absent (they are filled from reports later).
    ``on_invalid``: ``"error"`` raises one :class:`ConfigError` listing every problem;
    ``"skip"`` leaves the rows with problems out (:attr:`Manifest.invalid`).
    """
    if on_invalid not in ("error", "skip"):
        raise ConfigError(f"on_invalid must be 'error' or 'skip', got {on_invalid!r}")
    p = Path(path)
    if not p.is_file():
        raise ConfigError("manifest file not found", path=p, hint="give the path of a CSV or JSON")
    records, cols = _records(p)
    if "case_id" not in cols and not (p.suffix.lower() == ".json"):
        raise ConfigError(
            "manifest has no 'case_id' column",
            path=p,
            hint=f"columns: {', '.join(cols)}; see docs/training.md",
        )
    label_cols = (
        list(labels) if labels is not None else [c for c in cols if c not in RESERVED_COLUMNS]
    )
    if labels is not None:
        if len(set(label_cols)) != len(label_cols):
            raise ConfigError(f"labels are listed more than once: {label_cols}", path=p)
        absent = [c for c in label_cols if c not in cols]
        if absent and not allow_missing_labels and "label" not in cols:
            raise ConfigError(
                f"label column(s) {absent} not in the manifest",
                path=p,
                hint=f"columns: {', '.join(cols)}; or set data.labels_from_reports: true",
            )
    base = p.resolve().parent
    problems: list[RowProblem] = []
    rows: list[ManifestRow] = []
    seen: dict[str, int] = {}
    for i, rec in enumerate(records, start=1):
        bad: list[RowProblem] = []
        case_id = _text(rec.get("case_id"))
        if not case_id and rec.get("image"):
            case_id = Path(_text(rec["image"])).name.split(".")[0]

        def problem(
            column: str, reason: str, *, bad=bad, row: int = i, case_id: str = case_id
        ) -> None:
            bad.append(RowProblem(row, case_id, column, reason))

        if "_bad" in rec:
            problem("(row)", f"a case must be a mapping, not {type(rec['_bad']).__name__}")
            problems.extend(bad)
            continue
        if "_extra" in rec:
            problem("(row)", "more cells than the header has columns")
        if not case_id:
            problem("case_id", "empty")
        elif case_id in seen:
            problem("case_id", f"duplicate of row {seen[case_id]}")
        else:
            seen[case_id] = i

        def file_of(column: str, rec: dict[str, Any] = rec) -> Path | None:
            s = _text(rec.get(column))
            if not s:
                return None
            f = Path(os.path.expanduser(s))
            f = f if f.is_absolute() else base / f
            if not f.exists():
                problem(column, f"not found: {f}")
                return None
            return f

        image = file_of("image")
        report = file_of("report")
        report_text = _text(rec.get("report_text")) or None
        if report is not None and report_text:
            problem("report", "give report or report_text, not both")
        values: dict[str, float] = {}
        packed = rec.get("label")
        for j, name in enumerate(label_cols):
            raw = rec.get(name)
            if name not in rec and packed is not None:  # MONAI "label": number or list
                seq = packed if isinstance(packed, list) else [packed]
                raw = seq[j] if len(label_cols) == len(seq) else None
            v = _label_value(raw)
            if v is None:
                problem(name, f"label value {_text(raw)!r} is not 1, 0, -1 or empty")
                v = math.nan
            values[name] = v
        t_s, e_s = _text(rec.get("time")), _text(rec.get("event"))
        time = event = None
        if t_s or e_s:
            try:
                time = float(t_s)
                if not (math.isfinite(time) and time >= 0):
                    raise ValueError
            except ValueError:
                problem("time", f"{t_s!r} is not a time >= 0" if t_s else "event without time")
                time = None
            try:
                event = float(e_s)
                if event not in (0.0, 1.0):
                    raise ValueError
            except ValueError:
                problem("event", f"{e_s!r} is not 0 or 1" if e_s else "time without event")
                event = None
        split = _text(rec.get("split")).lower() or None
        if split is not None and split not in SPLITS:
            problem("split", f"{split!r} is not one of {', '.join(SPLITS)}")
            split = None
        if bad:
            problems.extend(bad)
            continue
        rows.append(
            ManifestRow(
                row=i,
                case_id=case_id,
                patient_id=_text(rec.get("patient_id")) or None,
                image=image,
                report=report,
                report_text=report_text,
                labels=values,
                time=time,
                event=event,
                split=split,
            )
        )
    problems.extend(_split_problems(rows))
    if any(r.time is not None for r in rows) and any(r.time is None for r in rows):
        problems.extend(
            RowProblem(r.row, r.case_id, "time", "empty while other rows have a survival target")
            for r in rows
            if r.time is None
        )
    if problems and on_invalid == "error":
        listed = "; ".join(str(pr) for pr in problems[:_QUOTED])
        more = f"; and {len(problems) - _QUOTED} more" if len(problems) > _QUOTED else ""
        raise ConfigError(
            f"{len(problems)} problem(s) in the manifest: {listed}{more}",
            path=p,
            hint="fix those rows, or set data.on_invalid: skip to leave them out (they are "
            "listed in dataset_report.json)",
        )
    dropped = {pr.row for pr in problems}
    rows = [r for r in rows if r.row not in dropped]
    if not rows:
        raise ConfigError("no usable rows in the manifest", path=p)
    return Manifest(
        path=p,
        rows=rows,
        labels=label_cols,
        invalid=problems,
        sha256=hashlib.sha256(p.read_bytes()).hexdigest(),
    )


def _split_problems(rows: Iterable[ManifestRow]) -> list[RowProblem]:
    """A patient in two splits (every row of that patient is named), or a split given for some
    rows only."""
    rows = list(rows)
    with_split = [r for r in rows if r.split is not None]
    if with_split and len(with_split) != len(rows):
        return [
            RowProblem(r.row, r.case_id, "split", "empty while other rows give a split")
            for r in rows
            if r.split is None
        ]
    by_patient: dict[str, set[str]] = {}
    for r in with_split:
        if r.patient_id:
            by_patient.setdefault(r.patient_id, set()).add(r.split)  # type: ignore[arg-type]
    mixed = {p for p, s in by_patient.items() if len(s) > 1}
    return [
        RowProblem(
            r.row,
            r.case_id,
            "patient_id",
            f"patient {r.patient_id!r} is in more than one split "
            f"({', '.join(sorted(by_patient[r.patient_id]))})",  # type: ignore[index]
        )
        for r in rows
        if r.patient_id in mixed
    ]


def write_manifest(
    path: str | os.PathLike, rows: Sequence[Mapping[str, Any]], labels: Sequence[str]
) -> Path:
    """Write a manifest CSV (reserved columns present in ``rows`` first, then ``labels``);
    paths in the rows should be relative to the manifest's folder. ``None`` cells are empty."""
    import io

    from .._atomic import atomic_write_text

    present = [c for c in RESERVED_COLUMNS if any(c in r for r in rows)]
    cols = [*present, *labels]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: "" if r.get(k) is None else r.get(k) for k in cols})
    p = Path(path)
    atomic_write_text(p, buf.getvalue())
    return p
