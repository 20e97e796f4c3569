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


class PhaseBars:
    """A ``progress(phase, done, total)`` callback drawing one bar per phase name."""

    def __init__(self, progress) -> None:
        self.p = progress
        self.tasks: dict[str, int] = {}

    def __call__(self, phase: str, done: int, total: int) -> None:
        if phase not in self.tasks:
            self.tasks[phase] = self.p.add_task(phase, total=total)
        self.p.update(self.tasks[phase], completed=done, total=total)
