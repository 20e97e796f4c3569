"""Reading radiology reports: plain text, JSON, CSV rows and DICOM Structured Reports.

    import medfuse
    report = medfuse.read_report("study_0001/report.txt")
    report.labels()                      # {"cardiomegaly": 1, "pleural_effusion": 0, ...}

Every reader ends in the same normalisation (:func:`clean_report_text`): bytes that are not
UTF-8 are decoded with replacement characters and a recorded warning, binary files and empty
reports raise :class:`~medfuse.errors.ReportError` naming the file, HTML markup is removed (with
a warning), line ends become ``\\n``. The text is then parsed by :mod:`medfuse.text` (sections,
sentences, findings with negation / uncertainty); reports longer than
:data:`~medfuse.text.pipeline.MAX_REPORT_CHARS` are parsed, and given to the text encoders, up to
that length, with a note in ``Report.notes``.
"""

from __future__ import annotations

import base64
import codecs
import csv
import html
import json
import os
import re
import stat
import warnings as _pywarnings
from collections import deque
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from ..errors import ReportError
from ..types import Report

__all__ = [
    "TEXT_COLUMN_NAMES",
    "clean_report_text",
    "decode_report_bytes",
    "iter_csv_reports",
    "read_report",
    "read_reports",
    "report_text_from_mapping",
]

#: Column / key names that hold a whole report (case-insensitive), in order of preference.
TEXT_COLUMN_NAMES = ("text", "report", "report_text", "reporttext", "narrative", "content", "body")

_TEXT_SUFFIXES = {".txt", ".text", ".rpt", ".md", ".report", ".html", ".htm", ""}
_CSV_SUFFIXES = {".csv", ".tsv"}
_DICOM_SUFFIXES = {".dcm", ".dicom", ".sr"}

_HTML_TAG = re.compile(
    r"<\s*/?\s*(html|head|body|p|br|div|span|table|thead|tbody|tr|td|th|li|ul|ol|b|i|u|strong|em|"
    r"font|h[1-6]|pre|blockquote|section|article|center|hr)\b[^>]*>",
    re.IGNORECASE,
)
_HTML_DROP = re.compile(r"<(script|style|head)\b.*?</\1\s*>|<!--.*?-->", re.IGNORECASE | re.DOTALL)
_HTML_BREAK = re.compile(
    r"<\s*(br|hr)\b[^>]*>|<\s*/\s*(p|div|li|tr|h[1-6]|table|pre|blockquote|section|article)\s*>",
    re.IGNORECASE,
)
_HTML_ITEM = re.compile(r"<\s*li\b[^>]*>", re.IGNORECASE)
_ANY_TAG = re.compile(r"<[^<>]{0,2000}>")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


# -- decoding and cleaning --------------------------------------------------------------------
def decode_report_bytes(data: bytes, source: str = "") -> tuple[str, list[str], str]:
    """Decode report bytes; returns (text, warnings, encoding used).

    UTF-8 (with or without BOM) and BOM-marked UTF-16/32 decode silently; anything else is
    decoded as UTF-8 with U+FFFD replacement characters and a warning. Binary content raises
    :class:`ReportError`.
    """
    warnings: list[str] = []
    for bom, enc in (
        (codecs.BOM_UTF32_LE, "utf-32"),
        (codecs.BOM_UTF32_BE, "utf-32"),
        (codecs.BOM_UTF8, "utf-8-sig"),
        (codecs.BOM_UTF16_LE, "utf-16"),
        (codecs.BOM_UTF16_BE, "utf-16"),
    ):
        if data.startswith(bom):
            try:
                return data.decode(enc), warnings, enc
            except UnicodeDecodeError:
                break  # a BOM followed by garbage: fall through to the checks below
    if b"\x00" in data[:65536]:
        raise ReportError(
            "looks like a binary file (NUL bytes), not report text",
            path=source or None,
            hint="give a .txt / .json / .csv report or a DICOM SR",
        )
    try:
        return data.decode("utf-8"), warnings, "utf-8"
    except UnicodeDecodeError as exc:
        text = data.decode("utf-8", errors="replace")
        bad = text.count("\ufffd")
        warnings.append(
            f"text is not valid UTF-8 (first bad byte at offset {exc.start}); "
            f"{bad} undecodable byte sequence(s) replaced with U+FFFD"
        )
        if bad > max(8, 0.3 * len(text)):
            raise ReportError(
                f"looks like a binary file ({bad} of {len(text)} characters undecodable), not report text",
                path=source or None,
            ) from None
        return text, warnings, "utf-8 (with replacement)"


def _strip_html(text: str) -> str:
    text = _HTML_DROP.sub(" ", text)
    text = _HTML_ITEM.sub("\n- ", text)
    text = _HTML_BREAK.sub("\n", text)
    text = _ANY_TAG.sub("", text)
    text = html.unescape(text).replace("\xa0", " ")
    lines = [" ".join(line.split()) for line in text.split("\n")]
    text = "\n".join(lines)
    return re.sub(r"\n{3,}", "\n\n", text).strip()


def clean_report_text(text: str, source: str = "") -> tuple[str, list[str]]:
    """Normalise report text; returns (text, warnings). Empty text raises :class:`ReportError`."""
    warnings: list[str] = []
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if _HTML_TAG.search(text):
        stripped = _strip_html(text)
        if stripped != text:
            warnings.append("HTML markup removed from the report text")
            text = stripped
    if _CONTROL.search(text):
        n = len(_CONTROL.findall(text))
        if n > max(8, 0.3 * len(text)):
            raise ReportError(
                "looks like a binary file (control characters), not report text",
                path=source or None,
            )
        text = _CONTROL.sub(" ", text)
        warnings.append(f"{n} control character(s) replaced with spaces")
    if not text.strip():
        raise ReportError("report is empty", path=source or None, hint="the file holds no text")
    return text, warnings


def _finish(
    text: str,
    *,
    source: str,
    warnings: list[str],
    meta: dict[str, Any],
    parse: bool,
    max_chars: int | None,
) -> Report:
    text, more = clean_report_text(text, source)
    if parse:
        from ..text.pipeline import parse_report

        report = parse_report(text, source=source, max_chars=max_chars)
    else:
        report = Report(text=text, source=source)
    report.warnings[:0] = warnings + more
    report.meta.update(meta)
    return report


# -- mappings (JSON objects, CSV rows) --------------------------------------------------------
def _lower_keys(mapping: Mapping[str, Any]) -> dict[str, str]:
    return {str(k).strip().lower(): k for k in mapping}


def report_text_from_mapping(
    mapping: Mapping[str, Any],
    text_column: str | Sequence[str] | None = None,
    source: str = "",
) -> str:
    """The report text of a JSON object or CSV row.

    ``text_column`` names one column (its value is the text) or several (each becomes a section,
    ``NAME: value``, e.g. ``["findings", "impression"]``). Without it, a column named like
    :data:`TEXT_COLUMN_NAMES` is used, else every column named like a report section
    (indication, comparison, findings, impression, ...), in the order of the mapping. Empty
    columns are left out.
    """
    from ..text.sections import SECTION_ALIASES

    keys = _lower_keys(mapping)
    if text_column is not None:
        cols = [text_column] if isinstance(text_column, str) else list(text_column)
        missing = [c for c in cols if c not in mapping and c.lower() not in keys]
        if missing:
            raise ReportError(
                f"no column named {', '.join(map(repr, missing))}",
                path=source or None,
                hint=f"columns are: {', '.join(map(str, mapping))}",
            )
        values = [(c, mapping.get(c, mapping.get(keys.get(c.lower(), c)))) for c in cols]
        if len(values) == 1:
            return "" if values[0][1] is None else str(values[0][1])
        return _join_sections(values)
    for name in TEXT_COLUMN_NAMES:
        if name in keys and isinstance(mapping[keys[name]], str):
            return mapping[keys[name]]
    sections = [
        (k, mapping[k])
        for k in mapping
        if str(k).strip().lower().replace("_", " ") in SECTION_ALIASES
    ]
    if sections:
        return _join_sections(sections)
    raise ReportError(
        "cannot tell which field holds the report text",
        path=source or None,
        hint=f"name it with text_column=...; fields are: {', '.join(map(str, mapping))}",
    )


def _join_sections(pairs: Iterable[tuple[Any, Any]]) -> str:
    """``NAME: value`` lines for the non-empty values ("" when all are empty)."""
    return "\n".join(
        f"{str(k).strip().upper()}: {str(v).strip()}"
        for k, v in pairs
        if v is not None and str(v).strip()
    )


def _fhir_text(obj: Mapping[str, Any], source: str = "") -> str | None:
    """Text of a FHIR DiagnosticReport: presentedForm (text/*), narrative div, conclusion.
    A malformed resource (presentedForm not a list of attachments, data that is not base64 or
    not text) is a :class:`ReportError`."""
    if obj.get("resourceType") != "DiagnosticReport":
        return None
    forms = obj.get("presentedForm") or []
    if not isinstance(forms, list) or not all(isinstance(f, Mapping) for f in forms):
        raise ReportError(
            "FHIR DiagnosticReport.presentedForm must be a list of attachments",
            path=source or None,
        )
    parts = []
    for i, form in enumerate(forms):
        if str(form.get("contentType", "")).startswith("text/") and form.get("data"):
            try:
                data = base64.b64decode(str(form["data"]), validate=True)
            except ValueError as exc:  # binascii.Error
                raise ReportError(
                    f"FHIR presentedForm[{i}].data is not valid base64 ({exc})",
                    path=source or None,
                ) from None
            text, _warnings, _enc = decode_report_bytes(data, source)
            parts.append(text)
    if not parts and isinstance(obj.get("text"), Mapping) and obj["text"].get("div"):
        parts.append(str(obj["text"]["div"]))
    if obj.get("conclusion"):
        parts.append(f"IMPRESSION: {obj['conclusion']}")
    return "\n".join(parts) if parts else None


# -- file readers -----------------------------------------------------------------------------
#: Report files larger than this are refused before reading (a report is a few KB of text).
MAX_REPORT_BYTES = 64 << 20


def _read_bytes(path: Path) -> bytes:
    try:
        st = path.stat()
        if stat.S_ISDIR(st.st_mode):
            raise IsADirectoryError
        if not stat.S_ISREG(st.st_mode):  # a FIFO or a device would block or never end
            raise ReportError("not a regular file (a pipe, socket or device)", path=path)
        if st.st_size > MAX_REPORT_BYTES:
            raise ReportError(
                f"file of {st.st_size} bytes is too large for a report "
                f"(limit {MAX_REPORT_BYTES} bytes)",
                path=path,
            )
        return path.read_bytes()
    except FileNotFoundError:
        raise ReportError("no such file", path=path) from None
    except IsADirectoryError:
        raise ReportError("is a folder, not a report file", path=path) from None
    except OSError as exc:
        raise ReportError(f"cannot read: {exc.strerror or exc}", path=path) from None


def _is_dicom(data: bytes) -> bool:
    return len(data) > 132 and data[128:132] == b"DICM"


def _read_json(data: bytes, path: Path, text_column, row, parse, max_chars) -> Report:
    text, warnings, enc = decode_report_bytes(data, str(path))
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ReportError(f"not valid JSON: {exc.msg} (line {exc.lineno})", path=path) from None
    except RecursionError:
        raise ReportError("not a report: JSON nested too deeply", path=path) from None
    source = str(path)
    if isinstance(obj, list):
        if row is None and len(obj) != 1:
            raise ReportError(
                f"holds {len(obj)} reports", path=path, hint="pass row=<index> to pick one"
            )
        idx = int(row or 0)
        if not -len(obj) <= idx < len(obj):
            raise ReportError(f"row {idx} out of range ({len(obj)} reports)", path=path)
        obj, source = obj[idx], f"{path}#{idx}"
    if isinstance(obj, str):
        body, meta = obj, {}
    elif isinstance(obj, Mapping):
        body = _fhir_text(obj, source) if text_column is None else None
        if body is None:
            body = report_text_from_mapping(obj, text_column, source)
        meta = {
            k: obj[k]
            for k in ("id", "study_id", "accession", "StudyInstanceUID")
            if k in obj and isinstance(obj[k], (str, int))
        }
    else:
        raise ReportError(
            f"JSON holds a {type(obj).__name__}, not a report object or text", path=path
        )
    meta["encoding"] = enc
    return _finish(
        body, source=source, warnings=warnings, meta=meta, parse=parse, max_chars=max_chars
    )


def _csv_reader(fh, path: Path) -> csv.DictReader:
    sample = fh.read(65536)
    fh.seek(0)
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    if path.suffix.lower() != ".tsv":
        try:
            delimiter = csv.Sniffer().sniff(sample, delimiters=",;\t|").delimiter
        except csv.Error:
            delimiter = ","
    return csv.DictReader(fh, delimiter=delimiter)


_REPLACED_IN_CSV = "CSV file is not valid UTF-8; undecodable bytes replaced with U+FFFD"


def iter_csv_reports(
    path: str | os.PathLike,
    text_column: str | Sequence[str] | None = None,
    id_column: str | None = None,
) -> Iterator[tuple[str, str]]:
    """Yield (id, text) for each row of a CSV/TSV file, streaming (constant memory).

    The id is the ``id_column`` value, else the 0-based row number. Rows whose text is empty
    yield ``""`` as text (the caller decides: the labeler writes an empty row).
    """
    path = Path(path)
    csv.field_size_limit(1 << 30)
    if path.exists() and not path.is_file():  # a folder, or a pipe that would block
        raise ReportError("not a regular file", path=path)
    try:
        fh = path.open(newline="", encoding="utf-8", errors="replace")
    except FileNotFoundError:
        raise ReportError("no such file", path=path) from None
    with fh:
        reader = _csv_reader(fh, path)
        if not reader.fieldnames:
            raise ReportError("CSV file has no header row", path=path)
        if id_column is not None and id_column not in reader.fieldnames:
            raise ReportError(
                f"no column named {id_column!r}",
                path=path,
                hint=f"columns are: {', '.join(reader.fieldnames)}",
            )
        for i, rec in enumerate(reader):
            rid = rec.get(id_column, "") if id_column else str(i)
            try:
                text = report_text_from_mapping(rec, text_column, str(path))
            except ReportError as exc:
                raise ReportError(exc.reason, path=path, hint=exc.hint) from None
            yield (rid if rid is not None else "", text)


def _read_csv(path: Path, text_column, id_column, row, parse, max_chars) -> Report:
    chosen: tuple[int, str, str] | None = None
    count = 0
    for i, (rid, text) in enumerate(iter_csv_reports(path, text_column, id_column)):
        count += 1
        if row is None:
            if i == 0:
                chosen = (i, rid, text)
            continue
        if (isinstance(row, int) and i == row) or (
            not isinstance(row, int) and id_column and rid == str(row)
        ):
            chosen = (i, rid, text)
            break
    if row is None and count > 1:
        raise ReportError(
            f"holds {count} reports",
            path=path,
            hint="pass row=<index or id> to pick one, or use read_reports() / `medfuse label-reports`",
        )
    if chosen is None:
        raise ReportError(
            f"no row {row!r}" if row is not None else "CSV file has no rows", path=path
        )
    i, rid, text = chosen
    meta = {"row": i}
    if id_column:
        meta["id"] = rid
    warnings = [_REPLACED_IN_CSV] if "\ufffd" in text else []
    return _finish(
        text,
        source=f"{path}#{rid if id_column else i}",
        warnings=warnings,
        meta=meta,
        parse=parse,
        max_chars=max_chars,
    )


def _sr_text(ds) -> str:
    """Text content items of a DICOM SR, grouped under section headers where their concept names
    (or their container's) are report sections."""
    from ..text.sections import canonical_section

    lines: list[tuple[str | None, str]] = []

    def name_of(item) -> str:
        seq = getattr(item, "ConceptNameCodeSequence", None)
        return str(seq[0].CodeMeaning) if seq and "CodeMeaning" in seq[0] else ""

    def walk(items, heading: str | None) -> None:
        for item in items or []:
            vt = getattr(item, "ValueType", "")
            name = name_of(item)
            section = canonical_section(name) if name else None
            if vt == "TEXT" and str(getattr(item, "TextValue", "")).strip():
                lines.append((section or heading, str(item.TextValue).strip()))
            if "ContentSequence" in item:
                walk(item.ContentSequence, section or heading)

    walk(
        getattr(ds, "ContentSequence", None),
        canonical_section(name_of(ds)) if name_of(ds) else None,
    )
    out: list[str] = []
    last: str | None = None
    for section, value in lines:
        if section and section != last:
            out.append(f"{section}: {value}")
        else:
            out.append(value)
        last = section or last
    return "\n".join(out)


def _read_dicom_sr(path: Path, parse, max_chars) -> Report:
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        with _pywarnings.catch_warnings(record=True) as caught:
            _pywarnings.simplefilter("always")
            ds = pydicom.dcmread(path, stop_before_pixels=True)
            ds.walk(lambda _ds, _elem: None)  # values are parsed lazily: parse them now
    except (InvalidDicomError, OSError, ValueError) as exc:
        raise ReportError(f"not a readable DICOM file: {exc}", path=path) from None
    except Exception as exc:  # pydicom raises assorted errors on corrupt files
        raise ReportError(
            f"not a readable DICOM file ({type(exc).__name__}: {exc})", path=path
        ) from None
    from .fastheader import ends_cleanly

    cut = [w for w in caught if "end of file" in str(w.message).lower()]
    if cut or ends_cleanly(path) is False:
        why = cut[0].message if cut else "its last element or sequence is cut short"
        raise ReportError(f"truncated or malformed DICOM file: {why}", path=path)
    modality = str(getattr(ds, "Modality", ""))
    if modality != "SR" and "ContentSequence" not in ds:
        raise ReportError(
            f"DICOM file is not a structured report (Modality {modality or 'unknown'})",
            path=path,
            hint="read images with medfuse.read_study",
        )
    text = _sr_text(ds)
    if not text.strip():
        raise ReportError("DICOM SR has no text content items (report is empty)", path=path)
    meta = {
        k: str(getattr(ds, k))
        for k in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "SOPClassUID")
        if k in ds
    }
    meta["encoding"] = "dicom"
    return _finish(text, source=str(path), warnings=[], meta=meta, parse=parse, max_chars=max_chars)


# -- public API -------------------------------------------------------------------------------
def read_report(
    src: str | os.PathLike | bytes | Mapping[str, Any] | Report,
    *,
    text_column: str | Sequence[str] | None = None,
    id_column: str | None = None,
    row: int | str | None = None,
    parse: bool = True,
    max_chars: int | None = None,
) -> Report:
    """Read one radiology report into a parsed :class:`~medfuse.types.Report`.

    ``src`` is a path to a ``.txt`` / ``.html`` / ``.json`` / ``.csv`` / ``.tsv`` file or a DICOM
    Structured Report, the report's raw bytes, or a mapping (a CSV row or JSON object; see
    :func:`report_text_from_mapping` for ``text_column``). For a CSV or a JSON list holding
    several reports, ``row`` picks one (0-based index, or the ``id_column`` value).

    ``parse=False`` skips the parser (no sections / findings). ``max_chars`` overrides
    :data:`~medfuse.text.pipeline.MAX_REPORT_CHARS`, the length parsed and given to encoders.

    Raises :class:`~medfuse.errors.ReportError` (naming the file) for missing, binary, empty or
    unreadable reports.
    """
    from ..text.pipeline import MAX_REPORT_CHARS

    limit = MAX_REPORT_CHARS if max_chars is None else max_chars
    if isinstance(src, Report):
        return src
    if isinstance(src, Mapping):
        meta = {"id": src[id_column]} if id_column and id_column in src else {}
        text = report_text_from_mapping(src, text_column)
        return _finish(text, source="", warnings=[], meta=meta, parse=parse, max_chars=limit)
    if isinstance(src, (bytes, bytearray, memoryview)):
        text, warnings, enc = decode_report_bytes(bytes(src))
        return _finish(
            text, source="", warnings=warnings, meta={"encoding": enc}, parse=parse, max_chars=limit
        )
    if not isinstance(src, (str, os.PathLike)):
        raise ReportError(f"cannot read a report from a {type(src).__name__}")
    path = Path(src)
    suffix = path.suffix.lower()
    if suffix in _CSV_SUFFIXES:
        if not path.is_file():
            _read_bytes(path)  # raises the right error
        return _read_csv(path, text_column, id_column, row, parse, limit)
    data = _read_bytes(path)
    if suffix in _DICOM_SUFFIXES or _is_dicom(data):
        return _read_dicom_sr(path, parse, limit)
    if suffix == ".json":
        return _read_json(data, path, text_column, row, parse, limit)
    if not data.strip():
        raise ReportError("report is empty", path=path, hint="the file holds no text")
    text, warnings, enc = decode_report_bytes(data, str(path))
    return _finish(
        text,
        source=str(path),
        warnings=warnings,
        meta={"encoding": enc},
        parse=parse,
        max_chars=limit,
    )


def read_reports(
    path: str | os.PathLike,
    *,
    text_column: str | Sequence[str] | None = None,
    id_column: str | None = None,
    batch_size: int = 64,
    max_chars: int | None = None,
    skip_empty: bool = True,
) -> Iterator[Report]:
    """Read and parse every report of a CSV/TSV file (streamed, parsed in batches).

    Each report's ``meta`` holds ``row`` (0-based) and ``id``. Rows with empty text are skipped
    (``skip_empty``) or raise :class:`ReportError`.
    """
    from ..text.pipeline import MAX_REPORT_CHARS, parse_reports

    limit = MAX_REPORT_CHARS if max_chars is None else max_chars
    path = Path(path)

    def rows() -> Iterable[tuple[int, str, str, list[str]]]:
        for i, (rid, text) in enumerate(iter_csv_reports(path, text_column, id_column)):
            try:
                clean, warnings = clean_report_text(text, f"{path}#{rid}")
            except ReportError:
                if skip_empty:
                    continue
                raise
            if "\ufffd" in text:
                warnings.insert(0, _REPLACED_IN_CSV)
            yield i, rid, clean, warnings

    it = iter(rows())
    pending: deque[tuple[int, str, str, list[str]]] = deque()

    def texts() -> Iterator[str]:
        for item in it:
            pending.append(item)
            yield item[2]

    for report in parse_reports(texts(), batch_size=batch_size, max_chars=limit):
        i, rid, _, warnings = pending.popleft()
        report.source = f"{path}#{rid}"
        report.warnings[:0] = warnings
        report.meta.update({"row": i, "id": rid})
        yield report
