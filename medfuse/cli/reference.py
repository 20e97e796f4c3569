"""Write the CLI reference (docs/cli.md) from the commands' own ``--help``.

python -m medfuse.cli.reference > docs/cli.md
"""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

__all__ = ["command_names", "reference_markdown"]

_PROGRAM = "from medfuse.cli.main import app; app(prog_name='medfuse')"


def command_names() -> list[str]:
    """Every command path, e.g. ``["info", ..., "cohort make", ...]``."""
    import typer

    from .main import app

    root = typer.main.get_command(app)
    names: list[str] = []

    def walk(group: Any, prefix: str) -> None:
        for name, cmd in group.commands.items():
            path = f"{prefix}{name}"
            if hasattr(cmd, "commands"):  # a command group
                walk(cmd, path + " ")
            else:
                names.append(path)

    walk(root, "")
    return names


def _help(args: list[str]) -> str:
    env = {**os.environ, "COLUMNS": "100", "TERM": "dumb", "NO_COLOR": "1"}
    out = subprocess.run(
        [sys.executable, "-c", _PROGRAM, *args, "--help"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    return "\n".join(line.rstrip() for line in out.stdout.strip("\n").splitlines())


def reference_markdown() -> str:
    parts = [
        "# Command-line reference",
        "",
        "Generated from `--help` by `python -m medfuse.cli.reference > docs/cli.md`; "
        "`medfuse COMMAND --help` prints the same.",
        "",
        "```text",
        _help([]),
        "```",
    ]
    for name in command_names():
        parts += ["", f"## `medfuse {name}`", "", "```text", _help(name.split()), "```"]
    return "\n".join(parts) + "\n"


if __name__ == "__main__":  # pragma: no cover
    sys.stdout.write(reference_markdown())
