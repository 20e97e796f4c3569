"""The ``medfuse`` console script and ``python -m medfuse``.

``medfuse convert`` is run here without building the typer application: converting one series is
a whole process a user waits for, and typer, click, rich, pydantic (typer's parameter adapters)
and the other commands' modules cost more to import than reading a small series. Anything this
light path does not parse (``--help``, a global option before the command, a usage error) goes
to the full CLI (:func:`medfuse.cli.main.main`), so the help, messages and every other command
are unchanged.
"""

from __future__ import annotations

import os
import sys


def main(argv: list[str] | None = None) -> int:
    """Run the ``medfuse`` command; returns its exit status."""
    # numpy's transparent-huge-page advice can stall a volume's first allocation for seconds
    # (why, and the figures: medfuse._pages). The command owns its process, so it turns the
    # advice off unless the user set NUMPY_MADVISE_HUGEPAGE; `medfuse convert` took 1.9-3.1 s
    # of wall with it against 0.6-1.8 s without (docs/benchmarks.md). Read by numpy when it is
    # first imported, below.
    os.environ.setdefault("NUMPY_MADVISE_HUGEPAGE", "0")
    args = sys.argv[1:] if argv is None else list(argv)
    if args[:1] == ["convert"]:
        rc = _convert(args[1:])
        if rc is not None:
            return rc
    from .main import main as full

    return full(argv)


def _convert(args: list[str]) -> int | None:
    """``medfuse convert`` without typer; None when the arguments need the full CLI."""
    from ._convert import parse_convert_args

    parsed = parse_convert_args(args)
    if parsed is None:
        return None
    import logging

    from ..errors import MedfuseError
    from ._convert import convert_study

    # what the root callback of the full CLI does without -v
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    path, out, series, sidecar = parsed
    try:
        convert_study(path, out, series, sidecar, echo=_echo, warn=_warn)
    except MedfuseError as exc:
        _styled(f"error: {exc}", "31")  # red, as typer.secho(fg="red")
        return 2
    return 0


def _echo(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def _warn(line: str) -> None:
    _styled(line, "33")  # yellow, as typer.secho(fg="yellow")


def _styled(line: str, colour: str) -> None:
    """``line`` on stderr, coloured on a terminal only (what click.secho does)."""
    err = sys.stderr
    if err.isatty():
        line = f"\x1b[{colour}m{line}\x1b[0m"
    err.write(line + "\n")
    err.flush()


if __name__ == "__main__":
    sys.exit(main())
