"""``medfuse convert`` through the light entry point (medfuse.cli.entry, the console script):
the same files, bytes and messages as the typer command, and a start-up that imports neither
the CLI's other commands nor typer, click, rich, torch, spaCy or highdicom (issue 27)."""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from medfuse.cli._convert import parse_convert_args
from medfuse.cli.entry import main as light
from medfuse.cli.main import COMMAND_MODULES
from medfuse.cli.main import main as full

REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO / "sample_cases"
# what `medfuse convert` must not import (typer's completion machinery is typer._completion_*
# and shellingham; rich and click come with typer)
FORBIDDEN = {
    "torch",
    "monai",
    "spacy",
    "highdicom",
    "rich",
    "typer",
    "click",
    "shellingham",
    "pydantic",
}
# the other commands' modules
OTHER_COMMANDS = {"medfuse.cli.main", *COMMAND_MODULES}


def _run(fn, argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = fn(argv)
    return rc, out.getvalue(), err.getvalue()


def _series_dirs() -> list[Path]:
    return [SAMPLES / name for name in ("chest_ct_0001", "chest_ct_0003", "mr_sag_0001")]


@pytest.mark.parametrize("folder", _series_dirs(), ids=lambda p: p.name)
@pytest.mark.parametrize("name", ["vol.nii", "vol.nii.gz"])
def test_light_convert_writes_what_the_typer_command_writes(folder, name, tmp_path):
    if not folder.is_dir():
        pytest.skip(f"{folder} not found (running from an installed package)")
    a, b = tmp_path / "light", tmp_path / "typer"
    rc_a, out_a, err_a = _run(light, ["convert", str(folder), str(a / name)])
    rc_b, out_b, err_b = _run(full, ["convert", str(folder), str(b / name)])
    assert rc_a == rc_b == 0
    assert out_a.replace(str(a), "X") == out_b.replace(str(b), "X") and err_a == err_b
    files_a = sorted(p.name for p in a.iterdir())
    assert files_a == sorted(p.name for p in b.iterdir()) and len(files_a) == 2
    for f in files_a:
        assert (a / f).read_bytes() == (b / f).read_bytes(), f


def test_convert_writes_ct_as_int16_hu_identical_to_the_float_volume(tmp_path):
    """The int16 decoding of the light path gives the voxels of the float32 volume."""
    import nibabel as nib

    import medfuse

    folder = SAMPLES / "chest_ct_0001"
    if not folder.is_dir():
        pytest.skip(f"{folder} not found")
    assert light(["convert", str(folder), str(tmp_path / "ct.nii"), "--no-sidecar"]) == 0
    assert [p.name for p in tmp_path.iterdir()] == ["ct.nii"]
    img = nib.load(tmp_path / "ct.nii")
    vol = medfuse.read_volume(folder)
    assert img.get_data_dtype() == np.int16 and vol.array.dtype == np.float32
    np.testing.assert_array_equal(np.asarray(img.dataobj), vol.array)
    np.testing.assert_allclose(img.affine, vol.affine, atol=1e-5)


def test_convert_series_option_and_errors_match(tmp_path):
    folder = SAMPLES / "chest_ct_0002"
    if not folder.is_dir():
        pytest.skip(f"{folder} not found")
    rc, _, _ = _run(light, ["convert", str(folder), str(tmp_path / "a.nii"), "-s", "nope"])
    rc_f, _, _ = _run(full, ["convert", str(folder), str(tmp_path / "b.nii"), "-s", "nope"])
    assert rc == rc_f == 2 and not list(tmp_path.iterdir())
    rc, _, err = _run(light, ["convert", str(tmp_path / "missing"), str(tmp_path / "a.nii")])
    assert rc == 2 and "error:" in err and "no such file or folder" in err


def test_parse_convert_args_takes_the_typer_forms_and_leaves_the_rest():
    p = Path
    assert parse_convert_args(["a", "b"]) == (p("a"), p("b"), None, True)
    assert parse_convert_args(["a", "b", "--series", "X", "--no-sidecar"]) == (
        p("a"),
        p("b"),
        "X",
        False,
    )
    assert parse_convert_args(["-s", "X", "a", "b"]) == (p("a"), p("b"), "X", True)
    assert parse_convert_args(["a", "--series=1.2#3", "b", "--sidecar"]) == (
        p("a"),
        p("b"),
        "1.2#3",
        True,
    )
    assert parse_convert_args(["a", "-sX", "--", "-b"]) == (p("a"), p("-b"), "X", True)
    for args in (
        ["a"],
        ["a", "b", "c"],
        ["a", "b", "--help"],
        ["-h"],
        ["a", "b", "-v"],
        ["a", "b", "-s"],
    ):
        assert parse_convert_args(args) is None, args


def test_convert_help_and_usage_errors_are_the_typer_ones(capsys):
    rc = light(["convert", "--help"])
    help_text = capsys.readouterr().out
    assert rc == 0 and "--series" in help_text and "dcm2niix" in help_text
    assert light(["convert", "only-one"]) == 2
    assert "Missing argument" in capsys.readouterr().err


def test_convert_start_up_imports_nothing_heavy_nor_the_other_commands(tmp_path):
    folder = SAMPLES / "chest_ct_0001"
    if not folder.is_dir():
        pytest.skip(f"{folder} not found")
    code = (
        "import sys\n"
        "from medfuse.cli.entry import main\n"
        f"rc = main(['convert', {str(folder)!r}, {str(tmp_path / 'ct.nii.gz')!r}])\n"
        "print(rc, ' '.join(sys.modules), file=sys.stderr)"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    words = res.stderr.split()
    assert words[0] == "0", res.stderr[-2000:]
    mods = set(words[1:])
    heavy = {m.split(".")[0] for m in mods} & FORBIDDEN
    assert not heavy, sorted(heavy)
    assert not mods & OTHER_COMMANDS, sorted(mods & OTHER_COMMANDS)
    assert json.loads((tmp_path / "ct.json").read_text())["orientation"]


def test_console_script_and_python_dash_m_take_the_light_path(tmp_path):
    """The installed ``medfuse`` script and ``python -m medfuse`` run medfuse.cli.entry."""
    script = Path(sys.executable).with_name("medfuse")
    if not script.exists():
        pytest.skip(f"no console script beside {sys.executable}")
    if "medfuse.cli.entry" not in script.read_text():
        pytest.skip(
            f"{script} predates the light entry point: reinstall medfuse (pip install -e .) "
            "to pick up pyproject's [project.scripts]"
        )
    folder = SAMPLES / "chest_ct_0001"
    if not folder.is_dir():
        pytest.skip(f"{folder} not found")
    code = (
        "import runpy, sys\n"
        f"sys.argv = ['medfuse', 'convert', {str(folder)!r}, {str(tmp_path / 'ct.nii')!r}]\n"
        "try:\n    runpy.run_module('medfuse', run_name='__main__')\n"
        "except SystemExit as e:\n    rc = e.code\n"
        "print(rc, 'typer' in sys.modules, file=sys.stderr)"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert res.stderr.split()[-2:] == ["0", "False"], res.stderr[-2000:]


@pytest.mark.parametrize(("user", "expected"), [(None, "False"), ("1", "True")])
def test_the_command_turns_numpys_huge_page_advice_off_unless_the_user_set_it(user, expected):
    """numpy's transparent-huge-page advice stalled a volume's first allocation for seconds
    (docs/benchmarks.md): every ``medfuse`` command turns it off for its own process, before
    numpy is imported, and leaves a user's NUMPY_MADVISE_HUGEPAGE as it is."""
    code = (
        "import contextlib, io, sys\n"
        "from medfuse.cli.entry import main\n"
        "assert 'numpy' not in sys.modules\n"
        "with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()):\n"
        "    main(['convert', '--help'])\n"
        "import numpy\n"
        "print(numpy.core.multiarray._get_madvise_hugepage())\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "NUMPY_MADVISE_HUGEPAGE"}
    if user is not None:
        env["NUMPY_MADVISE_HUGEPAGE"] = user
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=False
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1] == expected
