"""Lazy public names for packages: ``import medfuse`` stays instant, heavy modules load on use."""

from __future__ import annotations

import importlib
import sys
import types
from collections.abc import Callable
from typing import Any

__all__ = ["callable_module", "lazy_exports"]


def lazy_exports(
    package: str, names: dict[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """Module-level ``__getattr__`` and ``__dir__`` for ``package``.

    ``names`` maps each public name to the module defining it (absolute, or relative to
    ``package`` when it starts with a dot). The value is imported on first access and cached
    on the package.
    """

    def __getattr__(name: str) -> Any:
        target = names.get(name)
        if target is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(target, package), name)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:
        return sorted(set(names) | set(vars(sys.modules[package])))

    return __getattr__, __dir__


def callable_module(name: str, fn: Callable[..., Any]) -> None:
    """Make the (already imported) module ``name`` callable as ``fn``: a package that shares its
    name with its main function (``medfuse.export(...)``, ``medfuse.train(...)``) stays callable
    even after the import system has set the parent's attribute to the package itself."""

    class _CallableModule(types.ModuleType):
        def __call__(self, *args: Any, **kwargs: Any) -> Any:
            return fn(*args, **kwargs)

    _CallableModule.__doc__ = f"``{name}`` is both this package and :func:`{fn.__name__}`."
    sys.modules[name].__class__ = _CallableModule
