"""Supply chain: weights only from safetensors files whose SHA-256 matches the model card;
nothing in the package unpickles, evaluates or imports by a name taken from a configuration
(static checks over the source), and workflow names resolve through registries only."""

from __future__ import annotations

import ast
import json
import pickle
from pathlib import Path

import pytest

import medfuse
from medfuse.errors import ConfigError, ModelError

PACKAGE = Path(medfuse.__file__).resolve().parent
#: where importlib.import_module may appear, and the literal name lists it imports from
IMPORT_MODULE_ALLOWED = {
    "_lazy.py": "targets of a package's literal _LAZY table",
    "registry.py": "the registries' literal built-in module lists",
    "cli/main.py": "the literal COMMAND_MODULES tuple",
}


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory) -> Path:
    import torch

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("model") / "tiny"
    medfuse.save_model(medfuse.create_model("chest_ct_fusion_tiny"), None, folder, name="tiny")
    return folder


def _copy(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst)
    return dst


def test_untampered_model_loads(saved_model):
    model = medfuse.load_model(saved_model)
    assert model.card.weights_sha256


def test_tampered_weights_are_refused(saved_model, tmp_path):
    folder = _copy(saved_model, tmp_path / "m")
    weights = folder / "weights.safetensors"
    data = bytearray(weights.read_bytes())
    data[-5] ^= 0x01  # one bit of one weight
    weights.write_bytes(bytes(data))
    with pytest.raises(ModelError, match="checksum mismatch") as info:
        medfuse.load_model(folder)
    assert info.value.path == str(weights)


def test_tampered_tokenizer_is_refused(saved_model, tmp_path):
    folder = _copy(saved_model, tmp_path / "m")
    card = json.loads((folder / "card.json").read_text())
    if not card.get("tokenizer_file"):
        pytest.skip("this preset has no tokenizer file")
    tok = folder / card["tokenizer_file"]
    tok.write_text(tok.read_text().replace("effusion", "efusion", 1) + " ")
    with pytest.raises(ModelError, match="tokenizer checksum mismatch"):
        medfuse.load_model(folder)


class _Payload:
    """Unpickling this creates ``marker`` (it must never happen)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_pickle_is_never_unpickled(saved_model, tmp_path):
    """A model folder whose card names a pickle, or whose 'safetensors' file is a pickle with a
    matching SHA-256 in the card, fails with ModelError and runs nothing."""
    from medfuse.models.weights import load_weights, sha256_file

    marker = tmp_path / "pwned"
    folder = _copy(saved_model, tmp_path / "m")
    weights = folder / "weights.safetensors"
    weights.write_bytes(pickle.dumps({"w": _Payload(marker)}))
    card = json.loads((folder / "card.json").read_text())
    card["weights_sha256"] = sha256_file(weights)  # the attacker controls the whole folder
    (folder / "card.json").write_text(json.dumps(card))
    with pytest.raises(ModelError, match="not a readable safetensors file"):
        medfuse.load_model(folder)
    (folder / "weights.pt").write_bytes(weights.read_bytes())
    with pytest.raises(ModelError, match="pickle checkpoints are not loaded"):
        load_weights(medfuse.create_model("chest_ct_fusion_tiny"), folder / "weights.pt")
    assert not marker.exists()


@pytest.mark.parametrize("field", ["weights_file", "tokenizer_file"])
@pytest.mark.parametrize("name", ["../elsewhere.safetensors", "/etc/passwd", "sub/w.safetensors"])
def test_card_names_files_inside_the_model_folder_only(saved_model, tmp_path, field, name):
    folder = _copy(saved_model, tmp_path / "m")
    card = json.loads((folder / "card.json").read_text())
    card[field] = name
    (folder / "card.json").write_text(json.dumps(card))
    with pytest.raises(ModelError, match="plain file name"):
        medfuse.load_model(folder)


# -- static checks over the package source ----------------------------------------------------------
def _modules() -> list[tuple[str, ast.Module]]:
    out = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).as_posix()
        out.append((rel, ast.parse(path.read_text(encoding="utf-8"), filename=rel)))
    return out


def _calls(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            yield node


def _name(func: ast.AST) -> str:
    """``torch.load`` / ``eval`` / ``importlib.import_module`` for a call's function."""
    parts = []
    while isinstance(func, ast.Attribute):
        parts.append(func.attr)
        func = func.value
    parts.append(func.id if isinstance(func, ast.Name) else "<expr>")  # x().eval() is no eval
    return ".".join(reversed(parts))


def _kw(call: ast.Call, name: str):
    for kw in call.keywords:
        if kw.arg == name and isinstance(kw.value, ast.Constant):
            return kw.value.value
    return None


def test_no_unsafe_deserialisation_or_evaluation():
    problems = []
    for rel, tree in _modules():
        for call in _calls(tree):
            name = _name(call.func)
            where = f"{rel}:{call.lineno} {name}("
            if name in ("torch.load",) and _kw(call, "weights_only") is not True:
                problems.append(f"{where} without weights_only=True")
            if name in ("eval", "exec", "compile", "__import__", "builtins.eval", "builtins.exec"):
                problems.append(where)
            if name.split(".")[-1] in ("loads", "load") and name.split(".")[0] in (
                "pickle", "cPickle", "dill", "joblib", "marshal", "shelve", "cloudpickle"
            ):  # fmt: skip
                problems.append(where)
            if name in ("np.load", "numpy.load") and _kw(call, "allow_pickle") is True:
                problems.append(f"{where} with allow_pickle=True")
            if name in ("yaml.load", "yaml.unsafe_load", "yaml.full_load"):
                problems.append(f"{where} (use yaml.safe_load)")
            if name.endswith("from_pretrained") and _kw(call, "local_files_only") is not True:
                problems.append(f"{where} may download")
            if (
                name.endswith("AutoModel.from_pretrained")
                and _kw(call, "use_safetensors") is not True
            ):
                problems.append(f"{where} may load a pickle checkpoint")
            if _kw(call, "trust_remote_code") is True or _kw(call, "shell") is True:
                problems.append(f"{where} with trust_remote_code / shell=True")
            if name in ("os.system", "os.popen", "subprocess.getoutput"):
                problems.append(where)
    assert not problems, "\n".join(problems)


def test_import_by_name_only_from_literal_lists():
    found = {}
    for rel, tree in _modules():
        for call in _calls(tree):
            if _name(call.func) in ("importlib.import_module", "import_module"):
                found.setdefault(rel, []).append(call.lineno)
    assert set(found) <= set(IMPORT_MODULE_ALLOWED), found
    workflows = [p.relative_to(PACKAGE).as_posix() for p in (PACKAGE / "workflows").glob("*.py")]
    assert workflows, "medfuse/workflows/ not found"
    for rel in ("config.py", *workflows, "export/base.py", "export/context.py", "cli/run.py"):
        assert rel not in found, f"{rel} imports by name"


def test_subprocess_only_for_the_cli_reference():
    users = sorted(
        rel
        for rel, tree in _modules()
        for node in ast.walk(tree)
        if (
            isinstance(node, (ast.Import, ast.ImportFrom))
            and any(a.name == "subprocess" for a in node.names)
        )
        or (isinstance(node, ast.ImportFrom) and node.module == "subprocess")
    )
    assert set(users) <= {"cli/reference.py"}, users


@pytest.mark.parametrize(
    "patch",
    [
        {"explain": {"methods": ["os.system"]}},
        {"explain": {"methods": ["medfuse.explain.cam:gradcam"]}},
        {"export": {"formats": ["subprocess"]}},
        {"export": {"formats": ["medfuse.export.json"]}},
        {"model": "__import__('os')"},
    ],
)
def test_workflow_names_are_never_imported(patch, monkeypatch, tmp_path):
    """Names in a workflow are looked up in registries; nothing named in it is imported."""
    import importlib

    from medfuse.config import load_workflow
    from medfuse.registry import explainers, exporters

    exporters.names(), explainers.names()  # the built-in entries are registered first
    imported = []
    real = importlib.import_module
    monkeypatch.setattr(
        importlib, "import_module", lambda name, *a: imported.append(name) or real(name, *a)
    )
    data = {"name": "t", "model": "chest_ct_demo", **patch}
    try:
        wf = load_workflow(data)
    except ConfigError:
        pass
    else:  # only the model name is free text: a shipped name or a folder, never a module
        with pytest.raises(ModelError):
            medfuse.load_model(wf.model_ref())
    assert not [m for m in imported if not m.startswith("medfuse.")], imported
    assert "os" not in imported and "subprocess" not in imported
