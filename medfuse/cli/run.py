"""``medfuse run WORKFLOW --input PATH --out DIR``: a workflow over DICOM studies."""

from __future__ import annotations

from pathlib import Path

import typer

from ._progress import progress_bar

__all__ = ["PARTIAL_EXIT", "register"]

#: exit status of a run where no study failed but some are ``partial`` (1: a study failed)
PARTIAL_EXIT = 3

_HELP = """Run a workflow (YAML) over one study or a folder of studies.

WORKFLOW is a workflow file, or the name of a workflow shipped with medfuse (medfuse workflows
list; e.g. chest_ct_triage). A file of that name, when one exists, wins over the shipped workflow.

INPUT is one study when it directly holds DICOM files, report.txt, a DICOMDIR or a dicom/ folder
(or is a NIfTI / NRRD / MHA file); otherwise each sub-folder (or volume file) in it is one
study. Each study's report is found as the workflow's `reports` section says (report.txt in the
study folder by default); studies without one run image-only and say so.

Per study, DIR/<key>/ gets prediction.json, report.html, report.pdf, sr.dcm, saliency/ (DICOM
parametric map + NIfTI) and fhir.json, each complete or absent. DIR/status.jsonl gets one line
per study: ok; partial (some formats failed, the others were written; it names each failed
format and why); or error with the reason. Re-running skips finished studies (--force redoes
them), redoes only the failed formats of partial ones and retries failed ones. The exit status
is 1 when any study failed, 3 when none failed but some are partial, else 0.

Examples:

  medfuse run chest_ct_triage --input sample_cases --out out

  medfuse run my_workflow.yaml --input /data/studies --out results --workers 2
"""


def run_cmd(
    workflow: str = typer.Argument(
        ...,
        metavar="WORKFLOW",
        help="Workflow YAML file, or a shipped workflow's name (a file of that name wins).",
    ),
    inputs: list[Path] = typer.Option(
        ..., "--input", "-i", help="A study folder, or a folder of studies (repeatable)."
    ),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder."),
    workers: int | None = typer.Option(
        None,
        "--workers",
        "-w",
        min=1,
        max=64,
        help="Worker processes; 1 runs in this process (default: the workflow's run.workers, "
        "auto unless set: one per CPU core, at most one per two studies to run and per 2 GiB "
        "of available memory).",
    ),
    force: bool = typer.Option(False, "--force", help="Redo studies that already finished."),
    engine: str | None = typer.Option(
        None,
        "--engine",
        help="local (this machine) or ray (Ray actors, pip install 'medfuse\\[ray]'); "
        "default: the workflow's run.engine.",
    ),
    address: str | None = typer.Option(
        None, "--address", help="Ray cluster address (with --engine ray; default: a local one)."
    ),
    include_phi: bool = typer.Option(
        False,
        "--include-phi",
        help="Name output folders after the study folders and put patient header values in "
        "the human-readable outputs (off by default: pseudonymous keys).",
    ),
    deidentify: bool = typer.Option(
        False,
        "--deidentify",
        help="De-identify the DICOM outputs (sr.dcm, saliency/*.dcm) with the DICOM PS3.15 "
        "basic profile: patient name and ID replaced by the study key, identifying attributes "
        "removed, UIDs replaced consistently within each study's outputs.",
    ),
    dry_run: bool = typer.Option(
        False,
        "--dry-run",
        help="Validate the workflow, list the studies and say how many worker processes would "
        "run them (and whether an export worker would write the DICOM outputs); run nothing.",
    ),
) -> None:
    from ..config import load_workflow
    from ..workflows import discover_studies, run_workflow
    from ..workflows.engines import SerialEngine, make_engine, resolve_workers

    wf = load_workflow(workflow)
    if engine not in (None, "local", "ray"):
        raise typer.BadParameter(f"--engine must be local or ray, not {engine!r}")
    if include_phi:
        wf = wf.model_copy(update={"export": wf.export.model_copy(update={"include_phi": True})})
    if deidentify:
        wf = wf.model_copy(update={"export": wf.export.model_copy(update={"deidentify": True})})
    if dry_run:
        tasks = discover_studies(
            inputs, readable_keys=wf.export.include_phi, report_names=wf.reports.filenames
        )
        n = resolve_workers(workers or wf.run.workers, len(tasks))
        chosen = make_engine(engine or wf.run.engine, n, None, None, wf.run.export_worker)
        helper = chosen.export_worker_for(wf) if isinstance(chosen, SerialEngine) else None
        beside = ""
        if helper is not None:
            which = (
                f"studies of {helper.min_voxels:,} voxels or more"
                if helper.min_voxels
                else "every study"
            )
            beside = f", and an export worker for the DICOM outputs of {which}"
        typer.echo(
            f"workflow {wf.name!r} is valid: model {wf.model!r}, {len(tasks)} studies; "
            f"{'up to ' if n > 1 else ''}{n} worker process{'es' if n > 1 else ' (this one)'}"
            f"{beside}"
        )
        for t in tasks:
            typer.echo(f"  {t.key}  <-  {t.path}")
        return

    ok_style = {"ok": "green", "partial": "yellow", "error": "red"}
    with progress_bar() as p:
        bar: dict[str, int] = {}

        def on_start(todo: int, skipped: int) -> None:
            if skipped:
                p.console.print(f"{skipped} studies already finished (use --force to redo them)")
            bar["id"] = p.add_task(f"{wf.name}", total=todo)

        def on_result(rec: dict) -> None:
            status = rec["status"]
            wall = rec.get("timings_s", {}).get("wall")
            extra = f" {wall:.1f} s" if wall else ""
            reason = f": {rec['reason']}" if status != "ok" else ""
            p.console.print(
                f"[{ok_style.get(status, 'red')}]{status}[/] {rec['key']}{extra}{reason}",
                highlight=False,
            )
            p.advance(bar["id"])

        summary = run_workflow(
            wf,
            inputs,
            out,
            workers=workers,
            force=force,
            engine=engine,
            address=address,
            on_result=on_result,
            on_start=on_start,
        )
    _print_summary(summary)
    if summary.failed:
        raise typer.Exit(1)
    if summary.partial:
        raise typer.Exit(PARTIAL_EXIT)


def _print_summary(summary) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"medfuse run → {summary.out_dir}", title_justify="left")
    for col in ("study", "input", "status", "uses", "positive findings", "time (s)"):
        table.add_column(col, overflow="fold")
    styles = {"ok": "[green]ok[/]", "partial": "[yellow]partial[/]"}
    for rec in summary.records:
        status = rec["status"]
        done = status in styles  # a prediction was made and outputs written
        if status == "partial":
            found = (", ".join(rec.get("positive", [])) or "none") + f"; {rec.get('reason', '')}"
        else:
            found = ", ".join(rec.get("positive", [])) if done else rec.get("reason", "")
        table.add_row(
            rec["key"],
            rec["input"],
            styles.get(status, "[red]error[/]"),
            "+".join(rec.get("modalities_used", [])) if done else "",
            found,
            f"{rec.get('timings_s', {}).get('wall', 0):.1f}",
        )
    for task in summary.skipped:
        table.add_row(task.key, str(task.path), "done before", "", "", "")
    console = Console()
    console.print(table)
    workers = f" ({summary.workers} worker processes)" if summary.workers > 1 else ""
    console.print(
        f"{len(summary.ok)} ok, {len(summary.partial)} partial, {len(summary.failed)} failed, "
        f"{len(summary.skipped)} skipped "
        f"in {summary.wall_s:.1f} s{workers}; outputs in {summary.out_dir}/<study>/, "
        f"status in {summary.out_dir}/status.jsonl",
        highlight=False,
    )


def register(app: typer.Typer) -> None:
    app.command("run", help=_HELP, no_args_is_help=True)(run_cmd)
