"""``medfuse info`` and ``medfuse convert``."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    app.command("info", short_help="List the series of a study and which one a model would use.")(
        info
    )
    app.command("convert", short_help="Convert a series to NIfTI (the geometry dcm2niix writes).")(
        convert
    )


def info(
    path: Path = typer.Argument(
        ..., help="DICOM folder or file, or a .nii/.nii.gz/.nrrd/.mha volume."
    ),
    series: str = typer.Option(
        None, "--series", "-s", help="Select this series (UID, UID#part or description)."
    ),
    as_json: bool = typer.Option(
        False, "--json", help="Print machine-readable JSON instead of a table."
    ),
) -> None:
    """List the image series found at PATH (description, modality, slices, spacing, orientation), which one a model would use, and why every other one was not chosen.

    Example: medfuse info sample_cases/chest_ct_0001
    """
    import json

    from ..io.study import read_study

    study = read_study(path, series=series)
    summary = study.summary()
    if as_json:
        typer.echo(json.dumps(summary, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{path}  ({len(study.series)} series, {len(study.skipped)} files skipped)")
    for col in (
        "",
        "#",
        "uid",
        "description",
        "mod",
        "kind",
        "slices",
        "matrix",
        "spacing mm",
        "orient",
        "why",
    ):
        table.add_column(col, overflow="fold")
    for s in study.series:
        sp = ""
        if s.pixel_spacing:
            sp = "×".join(f"{v:.3g}" for v in (s.pixel_spacing[1], s.pixel_spacing[0]))
            sp += f"×{s.slice_spacing:.3g}" if s.slice_spacing else ""
        slices = f"{s.n_slices}" + (f"×{s.n_volumes}" if s.n_volumes > 1 else "")
        table.add_row(
            "[bold green]✔[/]" if s.selected else "",
            "" if s.series_number is None else str(s.series_number),
            "…" + s.key[-10:] if len(s.key) > 11 else s.key,
            s.description or "—",
            s.modality,
            s.kind,
            slices,
            f"{s.columns}×{s.rows}",
            sp,
            s.orientation,
            s.reason,
        )
    import shutil

    console = Console(width=max(shutil.get_terminal_size((140, 24)).columns, 120))
    console.print(table)
    for w in study.warnings:
        console.print(f"[yellow]warning:[/] {w}")
    if study.skipped:
        reasons: dict[str, int] = {}
        for _f, r in study.skipped:
            reasons[r] = reasons.get(r, 0) + 1
        console.print("skipped: " + "; ".join(f"{n}× {r}" for r, n in sorted(reasons.items())))


def convert(
    path: Path = typer.Argument(..., help="DICOM folder or file (or another volume format)."),
    out: Path = typer.Argument(..., help="Output file, .nii or .nii.gz."),
    series: str = typer.Option(
        None, "--series", "-s", help="Convert this series instead of the selected one."
    ),
    sidecar: bool = typer.Option(
        True, help="Also write OUT.json with the geometry and reading warnings."
    ),
) -> None:
    """Convert the selected series (or --series) to NIfTI with the same world geometry that dcm2niix writes.

    A series whose images are of several types (e.g. magnitude and field map) gives one file per type, named OUT_<type>.nii.gz; time points or echoes of one type become the 4th dimension.

    Example: medfuse convert sample_cases/chest_ct_0001 out/ct.nii.gz
    """
    from ._convert import convert_study

    convert_study(
        path,
        out,
        series,
        sidecar,
        echo=typer.echo,
        warn=lambda line: typer.secho(line, fg="yellow", err=True),
    )
