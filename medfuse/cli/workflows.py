"""``medfuse workflows list|show``: the workflows shipped with medfuse."""

from __future__ import annotations

import typer

__all__ = ["register"]

workflows_app = typer.Typer(
    name="workflows",
    help=(
        "The workflows shipped with medfuse (medfuse/assets/workflows). `medfuse run NAME` runs "
        "one by name; `medfuse workflows show NAME > my.yaml` gives a copy to edit and run as "
        "`medfuse run my.yaml`."
    ),
    no_args_is_help=True,
)


@workflows_app.command("list")
def list_cmd() -> None:
    """List the shipped workflows: name, model and exports.

    Example: medfuse workflows list
    """
    import yaml
    from rich.console import Console
    from rich.table import Table

    from ..config import ExportSection, InputSection, shipped_workflows

    # Read, not validated: validation looks the explainers and exporters up in their registries,
    # which imports torch (seconds); the shipped workflows are validated by the tests.
    default_modalities = InputSection.model_fields["modalities"].default
    default_formats = ExportSection.model_fields["formats"].default
    table = Table(title="shipped workflows (medfuse run NAME ...)", title_justify="left")
    for col in ("name", "model", "modalities", "exports"):
        table.add_column(col, overflow="fold")
    for name, path in shipped_workflows().items():
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        modalities = (data.get("input") or {}).get("modalities", default_modalities)
        formats = (data.get("export") or {}).get("formats", default_formats)
        table.add_row(name, str(data["model"]), "+".join(modalities), ", ".join(formats))
    Console().print(table)


@workflows_app.command("show")
def show_cmd(
    name: str = typer.Argument(..., metavar="NAME", help="A shipped workflow's name."),
) -> None:
    """Print a shipped workflow's YAML, to copy and edit.

    Relative paths in a workflow resolve against the folder of its file, so a copy's `model:`
    or `reports.folder` may name folders next to the copy.

    Example: medfuse workflows show chest_ct_triage > my_triage.yaml
    """
    from ..config import shipped_workflows
    from ..errors import ConfigError

    shipped = shipped_workflows()
    stem = name[:-5] if name.endswith(".yaml") else name
    if stem not in shipped:
        raise ConfigError(
            "no shipped workflow of that name",
            path=name,
            hint=f"shipped workflows: {', '.join(shipped) or 'none'}",
        )
    typer.echo(shipped[stem].read_text(encoding="utf-8"), nl=False)


def register(app: typer.Typer) -> None:
    app.add_typer(workflows_app, name="workflows")
