"""The progress bar the CLI commands share (rich is imported only when one is shown)."""

from __future__ import annotations


def progress_bar():
    """A rich ``Progress`` with description, bar, done/total and elapsed time."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
