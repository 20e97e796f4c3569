"""Installable as a package: shipped workflows by name, one source of truth for the repository's
workflows/, ``python -m medfuse`` and the ``medfuse workflows`` commands. (The wheel itself is
built, installed and run by .ci/wheel_test.sh: `make wheel-test`.)"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

import medfuse
from medfuse.cli.main import app, main
from medfuse.config import find_workflow, load_workflow, shipped_workflows
from medfuse.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
PACKAGED = Path(medfuse.__file__).resolve().parent / "assets" / "workflows"

runner = CliRunner()


def test_shipped_workflows_are_the_packaged_files():
    shipped = shipped_workflows()
    assert set(shipped) >= {"chest_ct_triage", "brain_mr_research"}
    for name, path in shipped.items():
        assert path.parent == PACKAGED
        wf = load_workflow(path)
        assert wf.name == name, f"{path}: name {wf.name!r} differs from the file name"


def test_top_level_workflows_are_links_to_the_packaged_ones():
    """One source of truth: each workflows/*.yaml is a link to medfuse/assets/workflows/*.yaml
    (a copy would drift), and every packaged workflow has its link."""
    repo_dir = REPO / "workflows"
    if not repo_dir.is_dir():
        pytest.skip("no workflows/ folder (running from an installed package)")
    linked = {p.stem: p for p in repo_dir.glob("*.yaml")}
    assert set(linked) == set(shipped_workflows())
    for name, link in linked.items():
        assert link.is_symlink(), (
            f"{link} must be a link to ../medfuse/assets/workflows/{name}.yaml"
        )
        assert not Path(os.readlink(link)).is_absolute(), f"{link}: use a relative link"
        assert link.resolve() == (PACKAGED / f"{name}.yaml").resolve()
        assert link.read_bytes() == (PACKAGED / f"{name}.yaml").read_bytes()


def test_a_name_finds_the_shipped_workflow_from_any_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for ref in ("chest_ct_triage", "chest_ct_triage.yaml"):
        assert find_workflow(ref) == PACKAGED / "chest_ct_triage.yaml"
    wf = load_workflow("chest_ct_triage")
    assert wf.name == "chest_ct_triage"
    assert wf.model == "chest_ct_demo"
    # relative paths resolve against the file's folder; the shipped model is found by name
    assert Path(wf.base_dir) == PACKAGED.resolve()
    assert wf.model_ref() == "chest_ct_demo"


def test_a_file_of_that_name_wins(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    mine = yaml.safe_load((PACKAGED / "chest_ct_triage.yaml").read_text())
    mine["name"] = "my_triage"
    (tmp_path / "chest_ct_triage").write_text(yaml.safe_dump(mine))
    (tmp_path / "chest_ct_triage.yaml").write_text(yaml.safe_dump({**mine, "name": "my_yaml"}))
    assert load_workflow("chest_ct_triage").name == "my_triage"
    assert load_workflow("chest_ct_triage.yaml").name == "my_yaml"
    assert Path(load_workflow("chest_ct_triage").base_dir) == tmp_path.resolve()


def test_unknown_names_and_missing_paths_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="no shipped workflow of that name") as exc:
        load_workflow("no_such_workflow")
    assert "chest_ct_triage" in str(exc.value) and exc.value.path == "no_such_workflow"
    # a path is never looked up among the shipped names, even when its last part is one
    with pytest.raises(ConfigError, match="cannot read workflow"):
        load_workflow(tmp_path / "chest_ct_triage.yaml")
    with pytest.raises(ConfigError, match="cannot read workflow"):
        load_workflow("../chest_ct_triage")


def test_workflows_list_names_model_and_exports():
    result = runner.invoke(app, ["workflows", "list"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    for name, path in shipped_workflows().items():
        wf = load_workflow(path)
        line = next(line for line in result.output.splitlines() if f" {name} " in line)
        assert wf.model in line
        assert ", ".join(wf.export.formats) in line


def test_workflows_list_imports_nothing_heavy():
    code = (
        "import contextlib, io, sys\n"
        "from medfuse.cli.main import main\n"
        "with contextlib.redirect_stdout(io.StringIO()): rc = main(['workflows', 'list'])\n"
        "print(rc, ' '.join(sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    assert out[0] == "0"
    heavy = {m.split(".")[0] for m in out[1:]} & {"torch", "monai", "numpy", "spacy", "pydicom"}
    assert not heavy, sorted(heavy)


def test_workflows_show_prints_the_yaml_to_copy(tmp_path, capsys):
    assert main(["workflows", "show", "brain_mr_research"]) == 0
    text = capsys.readouterr().out
    assert text == (PACKAGED / "brain_mr_research.yaml").read_text()
    copy = tmp_path / "mine.yaml"
    copy.write_text(text)
    assert load_workflow(copy).model_dump() == load_workflow("brain_mr_research").model_dump()
    assert main(["workflows", "show", "nope"]) == 2
    assert "no shipped workflow of that name" in capsys.readouterr().err


def test_run_takes_a_name_and_says_a_file_wins(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    study = REPO / "sample_cases" / "chest_ct_0001"
    if not study.is_dir():
        pytest.skip("sample_cases/ not found (running from an installed package)")
    rc = main(["run", "chest_ct_triage", "-i", str(study), "-o", "out", "--dry-run"])
    out = capsys.readouterr().out
    assert rc == 0 and "workflow 'chest_ct_triage' is valid" in out and "1 studies" in out
    help_text = runner.invoke(app, ["run", "--help"], env={"COLUMNS": "100"}).output
    assert "file of that name" in help_text and "wins" in help_text
    # the extra's brackets are shown, not eaten as Rich markup (issue 23)
    assert "pip install 'medfuse[ray]'" in " ".join(help_text.replace("│", " ").split())


def test_python_dash_m_medfuse_is_the_cli(tmp_path):
    env = {**os.environ, "COLUMNS": "100", "NO_COLOR": "1"}
    version = subprocess.run(
        [sys.executable, "-m", "medfuse", "--version"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        check=True,
    )
    assert version.stdout.strip() == f"medfuse {medfuse.__version__}"
    bad = subprocess.run(
        [sys.executable, "-m", "medfuse", "workflows", "show", "nope"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
    )
    assert bad.returncode == 2 and "no shipped workflow of that name" in bad.stderr
