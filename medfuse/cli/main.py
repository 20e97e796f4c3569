"""Entry point of the ``medfuse`` command.

Each command group lives in its own module exposing ``register(app)``; command bodies import
their heavy dependencies lazily so that ``medfuse --help`` answers instantly.
"""

from __future__ import annotations

import importlib
import logging
import sys

import typer

from ..errors import MedfuseError

# Modules that add commands; each defines register(app: typer.Typer) -> None.
COMMAND_MODULES = (
    "medfuse.cli.io",
    "medfuse.cli.cohort",
    "medfuse.cli.text",
    "medfuse.cli.train",
    "medfuse.cli.run",
    "medfuse.cli.workflows",
)

app = typer.Typer(
    name="medfuse",
    help=(
        "Multimodal medical imaging analysis: read DICOM / NIfTI / NRRD studies with correct "
        "geometry, understand radiology reports, fuse both in a model, explain and export.\n\n"
        "Examples:\n\n"
        "  medfuse run chest_ct_triage --input sample_cases --out out\n\n"
        "  medfuse info sample_cases/chest_ct_0001\n\n"
        "  medfuse convert sample_cases/chest_ct_0001 out/ct.nii.gz"
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        from .._version import __version__

        typer.echo(f"medfuse {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    verbose: int = typer.Option(
        0, "--verbose", "-v", count=True, help="More logging (-vv for debug)."
    ),
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")


for _mod in COMMAND_MODULES:
    importlib.import_module(_mod).register(app)


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; a MedfuseError becomes a one-line message and exit status 2."""
    try:
        # with standalone_mode=False click returns the code of a typer.Exit instead of raising
        rc = app(args=argv, standalone_mode=False)
    except MedfuseError as exc:
        typer.secho(f"error: {exc}", fg="red", err=True)
        return 2
    except typer.Exit as exc:
        return exc.exit_code
    except typer.Abort:
        typer.echo("aborted", err=True)
        return 130
    except Exception as exc:  # click usage errors
        if isinstance(exc, _click_exceptions()):
            exc.show()
            return exc.exit_code
        raise
    return rc if isinstance(rc, int) else 0


def _click_exceptions() -> tuple[type[Exception], ...]:
    """Click's usage-error class: typer >= 0.20 raises the one of the click it vendors
    (typer._click), older typer the one of click."""
    import click

    kinds: list[type[Exception]] = [click.ClickException]
    try:
        from typer._click.exceptions import ClickException
    except ImportError:  # typer without a vendored click
        pass
    else:
        kinds.append(ClickException)
    return tuple(kinds)


if __name__ == "__main__":
    sys.exit(main())
