"""The generated CLI reference lists every command; the docs name the files they describe."""

from __future__ import annotations

from pathlib import Path

from medfuse.cli.reference import command_names

REPO = Path(__file__).resolve().parents[2]


def test_cli_reference_lists_every_command():
    text = (REPO / "docs" / "cli.md").read_text()
    missing = [n for n in command_names() if f"## `medfuse {n}`" not in text]
    assert not missing, f"regenerate: python -m medfuse.cli.reference > docs/cli.md ({missing})"


def test_docs_exist_for_the_user_facing_parts():
    for name in ("quickstart.md", "workflows.md", "exports.md", "cli.md", "architecture.md"):
        assert (REPO / "docs" / name).is_file(), name
