"""The import structure of medfuse, read from the source with :mod:`ast` (nothing is imported).

* No import cycle between medfuse modules at module level (what runs at import time: imports
  under ``if TYPE_CHECKING:`` do not run and do not count). A module importing its own package
  (``from . import x`` in a submodule) is not an edge: the package is already being imported.
* A lazy import inside a function that would close a cycle (its target reaches the importing
  module through module-level imports) is listed in :data:`LAZY_CYCLES` with the reason; a new
  one fails, and so does an entry that no longer exists.
* Rooms import only rooms below them (:data:`LAYERS`, the order in docs/architecture.md); an
  import upwards, module-level or lazy, is listed in :data:`UPWARD` with the reason.
* Every room (a package under ``medfuse/``) says in its ``__init__`` docstring what it owns and
  what it must not touch.
"""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[2] / "medfuse"

#: (module, function, imported module) -> why the lazy import that closes a cycle is there
LAZY_CYCLES: dict[tuple[str, str, str], str] = {
    ("medfuse.types", "coerce", "medfuse.text.pipeline"): (
        "Case.coerce parses report text; the text room builds on the types every room shares"
    ),
    ("medfuse.types", "get_series", "medfuse.io.select"): (
        "Study.get_series applies the io room's selection rules to the study it describes"
    ),
    ("medfuse.types", "load", "medfuse.io.study"): (
        "Series.load decodes its files through the io room (headers only until asked)"
    ),
    ("medfuse.types", "save", "medfuse.io.volumes"): (
        "Volume.save writes NIfTI through the io room's atomic writer"
    ),
}

#: Rooms from the bottom up: a room may import the rooms of its own and lower layers.
LAYERS: dict[str, int] = {
    **dict.fromkeys(("errors", "_version", "_lazy", "_atomic", "_pages", "disclaimer"), 0),
    **dict.fromkeys(("types", "registry"), 1),
    **dict.fromkeys(("io", "text", "regrid", "transforms", "synth"), 2),
    **dict.fromkeys(("models", "data"), 3),
    **dict.fromkeys(("explain", "prediction"), 4),
    "export": 5,
    **dict.fromkeys(("config", "workflows", "train"), 6),
    **dict.fromkeys(("cli", "__main__"), 7),
    "medfuse": 8,  # the package's lazy public API names everything
}

#: (module, room it imports upwards) -> why
UPWARD: dict[tuple[str, str], str] = {
    ("medfuse.types", "io"): "Study / Series / Volume load and save themselves through io",
    ("medfuse.types", "text"): "Case.coerce parses report text",
    ("medfuse.explain.render", "export"): (
        "a saliency peak's DICOM InstanceNumber comes from the source headers, which "
        "export.source reads once per volume"
    ),
    ("medfuse.prediction", "export"): "Prediction._repr_html_ shows the HTML report's fragment",
    ("medfuse.train.api", "cli"): "medfuse.train(...) in a notebook shows the CLI's progress bars",
}


def _name(path: Path) -> str:
    parts = list(path.relative_to(PKG.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@cache
def _modules() -> dict[str, Path]:
    return {_name(p): p for p in PKG.rglob("*.py")}


def _ancestors(module: str) -> list[str]:
    parts = module.split(".")
    return [".".join(parts[:k]) for k in range(1, len(parts))]


def _room(module: str) -> str:
    return module.split(".")[1] if "." in module else module


def _targets(module: str, node: ast.Import | ast.ImportFrom) -> set[str]:
    """The medfuse modules an import statement runs (the closest existing module of each name)."""
    mods = _modules()
    names = []
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
    else:
        if node.level:
            base = module.split(".")
            if mods[module].name != "__init__.py":
                base = base[:-1]
            base = base[: len(base) - (node.level - 1)]
            source = ".".join([*base, *([node.module] if node.module else [])])
        else:
            source = node.module or ""
        names = [source, *(f"{source}.{a.name}" for a in node.names)]
    out = set()
    for name in names:
        if not name.startswith("medfuse"):
            continue
        while name not in mods and "." in name:
            name = name.rsplit(".", 1)[0]
        if name in mods:
            # importing a.b.c runs a and a.b first: those count, except the importer's own
            # packages (already being imported when it runs)
            out.update(a for a in [*_ancestors(name), name] if a not in _ancestors(module))
    out.discard(module)
    return out


def _type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _module_level(body: list[ast.stmt]) -> list[ast.Import | ast.ImportFrom]:
    out: list[ast.Import | ast.ImportFrom] = []
    for node in body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            out.append(node)
        elif isinstance(node, ast.If):
            if not _type_checking(node.test):
                out += _module_level(node.body)
            out += _module_level(node.orelse)
        elif isinstance(node, ast.Try):
            out += _module_level(node.body + node.orelse + node.finalbody)
            for handler in node.handlers:
                out += _module_level(handler.body)
        elif isinstance(node, (ast.ClassDef, ast.With)):
            out += _module_level(node.body)
    return out


@cache
def _parsed() -> dict[str, ast.Module]:
    return {m: ast.parse(p.read_text(encoding="utf-8")) for m, p in _modules().items()}


@cache
def _graph() -> dict[str, frozenset[str]]:
    """Module-level imports: module -> the medfuse modules importing it runs."""
    graph = {}
    for module, tree in _parsed().items():
        edges: set[str] = set()
        for node in _module_level(tree.body):
            edges |= _targets(module, node)
        graph[module] = frozenset(edges)
    return graph


def _lazy_imports() -> list[tuple[str, str, str]]:
    """(module, function, imported module) for every import inside a function."""
    out = []
    for module, tree in _parsed().items():
        for fn in ast.walk(tree):
            if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for node in ast.walk(fn):
                    if isinstance(node, (ast.Import, ast.ImportFrom)):
                        out += [(module, fn.name, t) for t in sorted(_targets(module, node))]
    return sorted(set(out))


@cache
def _reach(module: str) -> frozenset[str]:
    graph, seen, todo = _graph(), set(), [module]
    while todo:
        for nxt in graph.get(todo.pop(), ()):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return frozenset(seen)


def _cycle() -> list[str] | None:
    """One module-level import cycle, or None."""
    graph, state, stack = _graph(), {}, []

    def visit(m: str) -> list[str] | None:
        state[m] = "open"
        stack.append(m)
        for nxt in sorted(graph.get(m, ())):
            if state.get(nxt) == "open":
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        state[m] = "done"
        stack.pop()
        return None

    for m in sorted(graph):
        if m not in state and (found := visit(m)):
            return found
    return None


def test_the_parser_sees_the_package():
    graph = _graph()
    assert len(graph) > 80
    assert "medfuse.models.encoders.image" in graph["medfuse.models.model"]
    assert "medfuse.registry" in graph["medfuse.models.encoders.image"]
    # TYPE_CHECKING imports do not run: prediction names Explanation only for the type checker
    assert not any(m.startswith("medfuse.explain") for m in graph["medfuse.prediction"])


def test_no_import_cycle_at_module_level():
    cycle = _cycle()
    assert cycle is None, "module-level import cycle: " + " -> ".join(cycle or [])


def test_lazy_imports_that_close_a_cycle_are_listed_with_a_reason():
    closing = {
        (module, fn, target) for module, fn, target in _lazy_imports() if module in _reach(target)
    }
    unlisted = sorted(closing - set(LAZY_CYCLES))
    stale = sorted(set(LAZY_CYCLES) - closing)
    assert not unlisted, f"lazy imports closing a cycle, not in LAZY_CYCLES: {unlisted}"
    assert not stale, f"LAZY_CYCLES entries that no longer exist: {stale}"
    assert all(reason.strip() for reason in LAZY_CYCLES.values())


def test_rooms_import_only_rooms_below_them():
    edges = {(m, t) for m, targets in _graph().items() for t in targets}
    edges |= {(m, t) for m, _, t in _lazy_imports()}
    upward = set()
    for module, target in edges:
        src, dst = _room(module), _room(target)
        assert src in LAYERS and dst in LAYERS, f"room of {module} or {target} not in LAYERS"
        if LAYERS[dst] > LAYERS[src]:
            upward.add((module, dst))
    unlisted = sorted(upward - set(UPWARD))
    stale = sorted(set(UPWARD) - upward)
    assert not unlisted, f"imports of a higher room, not in UPWARD: {unlisted}"
    assert not stale, f"UPWARD entries that no longer exist: {stale}"


@pytest.mark.parametrize(
    "room", sorted(p.parent.name for p in PKG.glob("*/__init__.py") if p.parent.name != "assets")
)
def test_every_room_says_what_it_owns_and_must_not_touch(room):
    doc = ast.get_docstring(_parsed()[f"medfuse.{room}"]) or ""
    assert "owns" in doc and "must not" in doc, f"medfuse/{room}/__init__.py docstring"
