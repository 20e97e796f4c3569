"""Package foundation: lazy imports, error hierarchy, registries, CLI entry point."""

from __future__ import annotations

import pickle
import subprocess
import sys

import pytest

from medfuse import errors
from medfuse.registry import Registry

HEAVY = ("torch", "monai", "numpy", "pydicom", "nibabel", "spacy", "SimpleITK")


def _imported_after(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", code + "\nimport sys; print(' '.join(sys.modules))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return {m.split(".")[0] for m in out}


def test_import_medfuse_is_light():
    mods = _imported_after("import medfuse")
    assert not mods & set(HEAVY), f"import medfuse pulled in {sorted(mods & set(HEAVY))}"


def test_cli_help_imports_nothing_heavy():
    mods = _imported_after(
        "import sys; sys.argv=['medfuse','--help']\n"
        "from medfuse.cli.main import main\n"
        "import contextlib, io\n"
        "with contextlib.redirect_stdout(io.StringIO()): main(['--help'])"
    )
    assert not mods & {"torch", "monai", "numpy", "pydicom", "nibabel", "spacy"}, sorted(
        mods & set(HEAVY)
    )


def test_cli_help_lists_commands():
    res = subprocess.run(
        [sys.executable, "-m", "medfuse.cli.main", "--help"], capture_output=True, text=True
    )
    assert res.returncode == 0
    for cmd in ("info", "convert"):
        assert cmd in res.stdout


def test_lazy_api_attributes():
    import medfuse

    assert callable(medfuse.read_study)
    assert medfuse.MedfuseError is errors.MedfuseError
    with pytest.raises(AttributeError):
        medfuse.does_not_exist  # noqa: B018


def test_error_names_path_reason_and_hint():
    e = errors.GeometryError("missing slice", path="/data/ct/1.dcm", hint="copy it")
    assert str(e) == "/data/ct/1.dcm: missing slice (copy it)"
    assert isinstance(e, errors.InputError) and isinstance(e, errors.MedfuseError)
    e2 = pickle.loads(pickle.dumps(e))
    assert (type(e2), e2.path, e2.reason, e2.hint) == (
        errors.GeometryError,
        e.path,
        e.reason,
        e.hint,
    )
    assert issubclass(errors.CodecError, errors.DicomError)


def test_registry_register_get_create_and_errors():
    reg: Registry = Registry("widgets_test")

    @reg.register("double")
    def double(x: int = 1) -> int:
        return 2 * x

    assert reg.get("double") is double
    assert reg.create("double", x=4) == 8
    assert "double" in reg and reg.names() == ["double"] and len(reg) == 1
    with pytest.raises(errors.ConfigError, match="choose one of: double"):
        reg.get("triple")
    with pytest.raises(errors.ConfigError, match="already has"):
        reg.register("double", lambda: 0)
    reg.register("double", lambda: 0, overwrite=True)
    assert reg.create("double") == 0


def test_plugins_are_loaded_from_entry_points(monkeypatch):
    import importlib.metadata as md

    from medfuse import registry

    calls = []

    class EP:
        name = "demo"

        def load(self):
            return lambda: calls.append("loaded")

    class Broken(EP):
        name = "broken"

        def load(self):
            raise ImportError("nope")

    def fake_entry_points(group=None):
        assert group == registry.PLUGIN_GROUP
        return [EP(), Broken()]

    monkeypatch.setattr(md, "entry_points", fake_entry_points)
    assert registry.load_plugins(force=True) == ["demo"]
    assert calls == ["loaded"]
