"""``medfuse label-reports`` and ``medfuse parse-report``: the offline report labeler."""

from __future__ import annotations

from pathlib import Path

import typer

_STYLES = {"present": "bold red", "uncertain": "bold yellow", "absent": "green"}


def register(app: typer.Typer) -> None:
    app.command("label-reports")(label_reports)
    app.command("parse-report")(parse_report)


def label_reports(
    csv_in: Path = typer.Argument(..., help="CSV or TSV file with one report per row."),
    text_column: list[str] = typer.Option(
        ...,
        "--text-column",
        "-t",
        help="Column holding the report text. Repeat it to join several columns as sections "
        "(-t findings -t impression gives 'FINDINGS: …\\nIMPRESSION: …').",
    ),
    out: Path = typer.Option(..., "--out", "-o", help="Output CSV (written atomically)."),
    id_column: str = typer.Option(
        None, "--id-column", help="Column with the report id; default: the 0-based row number."
    ),
    batch_size: int = typer.Option(64, "--batch-size", min=1, help="Reports parsed per batch."),
    uncertain: str = typer.Option(
        "keep",
        "--uncertain",
        help="What an uncertain finding is written as: keep (-1), positive (1, CheXpert's "
        "U-Ones) or negative (0, U-Zeros).",
    ),
) -> None:
    """Label every report of a CSV file with the finding codes, CheXpert style.

    Writes one row per input row: the id, then one column per finding code with 1 (present),
    0 (absent), -1 (uncertain; see --uncertain) or empty (not mentioned). no_finding is 1 when no
    other finding is present or uncertain. Mentions in INDICATION / HISTORY / COMPARISON /
    TECHNIQUE sections and historical mentions ("history of …") do not make a label. Rows with
    no text are written with every column empty.

    Example: medfuse label-reports reports.csv -t findings -t impression --id-column id -o labels.csv
    """
    import csv
    import logging
    import time

    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )
    from rich.table import Table

    from .._atomic import atomic_path
    from ..errors import ReportError
    from ..io.reports import clean_report_text, iter_csv_reports
    from ..text.labels import UNCERTAIN_POLICIES, apply_uncertain_policy, report_labels
    from ..text.lexicon import FINDING_CODES
    from ..text.pipeline import doc_to_report, get_pipeline

    log = logging.getLogger("medfuse.cli.text")
    if uncertain not in UNCERTAIN_POLICIES:
        raise typer.BadParameter(
            f"{uncertain!r} is not one of {', '.join(UNCERTAIN_POLICIES)}",
            param_hint="--uncertain",
        )
    columns = text_column[0] if len(text_column) == 1 else list(text_column)
    total = sum(1 for _ in iter_csv_reports(csv_in, columns, id_column))  # validates columns too
    console = Console(stderr=True)
    nlp = get_pipeline()

    empty_rows: list[str] = []
    counts = {code: {1: 0, 0: 0, -1: 0} for code in FINDING_CODES}

    def texts():
        for rid, text in iter_csv_reports(csv_in, columns, id_column):
            try:
                clean, _ = clean_report_text(text)
            except ReportError:
                empty_rows.append(rid)
                clean = ""
            yield clean, rid

    t0 = time.perf_counter()
    with (
        atomic_path(out) as tmp,
        tmp.open("w", newline="", encoding="utf-8") as fh,
        Progress(
            TextColumn("[bold]labelling[/]"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"),
            TimeRemainingColumn(),
            console=console,
            transient=True,
        ) as progress,
    ):
        task = progress.add_task("reports", total=total, rate="")
        writer = csv.writer(fh)
        writer.writerow([id_column or "row", *FINDING_CODES])
        done = 0
        for doc, rid in nlp.pipe(texts(), as_tuples=True, batch_size=batch_size):
            if len(doc):
                labels = apply_uncertain_policy(report_labels(doc_to_report(doc)), uncertain)
                for code, v in labels.items():
                    if v is not None:
                        counts[code][v] += 1
                row = ["" if labels[c] is None else str(labels[c]) for c in FINDING_CODES]
            else:
                row = [""] * len(FINDING_CODES)
            writer.writerow([rid, *row])
            done += 1
            if done % 16 == 0 or done == total:
                rate = done / max(time.perf_counter() - t0, 1e-9)
                progress.update(task, completed=done, rate=f"{rate:,.0f} reports/s")
    elapsed = time.perf_counter() - t0

    if empty_rows:
        log.warning("%d row(s) had no report text: %s", len(empty_rows), ", ".join(empty_rows[:10]))
    table = Table(title=f"{done} reports → {out}  ({done / max(elapsed, 1e-9):,.0f} reports/s)")
    for col in ("finding", "present (1)", "uncertain (-1)", "absent (0)"):
        table.add_column(col, justify="left" if col == "finding" else "right")
    for code in FINDING_CODES:
        c = counts[code]
        table.add_row(code, str(c[1]), str(c[-1]), str(c[0]))
    Console().print(table)
    if empty_rows:
        Console().print(f"[yellow]{len(empty_rows)} row(s) had no text; their labels are empty[/]")


def parse_report(
    path: Path = typer.Argument(
        ..., help="Report: .txt/.html, .json, .csv/.tsv (with --row), or DICOM SR."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the parsed report as JSON."),
    text_column: list[str] = typer.Option(
        None, "--text-column", "-t", help="For CSV/JSON: the column(s) holding the text."
    ),
    row: str = typer.Option(
        None, "--row", help="For CSV/JSON lists: row index, or id with --id-column."
    ),
    id_column: str = typer.Option(None, "--id-column", help="For CSV: the id column."),
) -> None:
    """Show how a report was understood: sections, sentences and every finding mention,
    highlighted by status (present / uncertain / absent), with the report-level labels.

    Example: medfuse parse-report report.txt
    """
    import json

    from ..io.reports import read_report

    columns = (
        None
        if not text_column
        else (text_column[0] if len(text_column) == 1 else list(text_column))
    )
    pick: int | str | None = row
    if row is not None and id_column is None and row.lstrip("-").isdigit():
        pick = int(row)
    report = read_report(path, text_column=columns, row=pick, id_column=id_column)
    if as_json:
        typer.echo(json.dumps(report.to_dict(), indent=2, ensure_ascii=False))
        return
    _show(report)


def _show(report) -> None:
    from rich.console import Console
    from rich.panel import Panel
    from rich.table import Table
    from rich.text import Text

    from ..text.sections import BODY, find_sections

    console = Console()
    shown = report.encoder_text
    text = Text(shown)
    for s in find_sections(shown):
        if s.name != BODY:
            text.stylize("bold cyan", s.start, s.body_start)
    for f in report.findings:
        style = _STYLES[f.status.value] + (" italic dim" if f.historical else "")
        text.stylize(style, f.start, f.end)
    legend = (
        "  ".join(f"[{st}]{name}[/]" for name, st in _STYLES.items())
        + "  [italic dim]historical[/]"
    )
    console.print(Panel(text, title=report.source or "report", subtitle=legend))

    table = Table(title=f"{len(report.findings)} finding mention(s)")
    for col in ("code", "text", "status", "hist", "section", "sent", "cue"):
        table.add_column(col, overflow="fold")
    for f in report.findings:
        table.add_row(
            f.code,
            f.text,
            f"[{_STYLES[f.status.value]}]{f.status.value}[/]",
            "yes" if f.historical else "",
            f.section,
            str(f.sentence),
            f.cue,
        )
    console.print(table)
    labels = report.labels()
    shown_labels = ", ".join(f"{k}={v}" for k, v in labels.items() if v is not None)
    console.print(f"[bold]labels[/]: {shown_labels}")
    if report.abbreviations:
        console.print(
            "[bold]abbreviations[/]: "
            + ", ".join(f"{k} = {v}" for k, v in report.abbreviations.items())
        )
    for w in report.warnings:
        console.print(f"[yellow]warning[/]: {w}")
    for n in report.notes:
        console.print(f"[blue]note[/]: {n}")
