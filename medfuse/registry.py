"""Named registries, so that a backbone, fusion, head or exporter is one decorated function away.

    from medfuse.registry import image_encoders

    @image_encoders.register("my_net_3d")
    def my_net_3d(**kw): ...

Third-party packages extend medfuse through the entry-point group ``medfuse.plugins``: each
entry point names a module (or callable) that registers its objects when imported. Plugins are
loaded once, on the first lookup in any registry, never at ``import medfuse``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

from .errors import ConfigError

__all__ = [
    "PLUGIN_GROUP",
    "Registry",
    "explainers",
    "exporters",
    "fusion",
    "heads",
    "image_encoders",
    "load_plugins",
    "model_presets",
    "registries",
    "text_encoders",
]

log = logging.getLogger(__name__)
PLUGIN_GROUP = "medfuse.plugins"
T = TypeVar("T")

# Modules that register medfuse's own entries, per registry; imported on first lookup so that
# `import medfuse` stays free of torch.
_BUILTIN_MODULES: dict[str, tuple[str, ...]] = {}
_plugins_loaded = False


class Registry(Generic[T]):
    """A mapping from names to factories with helpful errors."""

    def __init__(self, name: str, builtin_modules: tuple[str, ...] = ()):
        self.name = name
        self._entries: dict[str, T] = {}
        self._builtins_loaded = False
        _BUILTIN_MODULES[name] = builtin_modules

    def register(self, name: str, obj: T | None = None, *, overwrite: bool = False):
        """Register ``obj`` under ``name``; usable as a decorator when ``obj`` is omitted."""

        def _add(o: T) -> T:
            if name in self._entries and not overwrite and self._entries[name] is not o:
                raise ConfigError(
                    f"{self.name} registry already has an entry named {name!r}",
                    hint="pass overwrite=True to replace it",
                )
            self._entries[name] = o
            return o

        return _add(obj) if obj is not None else _add

    def _ensure_loaded(self) -> None:
        if not self._builtins_loaded:
            self._builtins_loaded = True
            import importlib

            for mod in _BUILTIN_MODULES.get(self.name, ()):
                importlib.import_module(mod)
        load_plugins()

    def get(self, name: str) -> T:
        self._ensure_loaded()
        try:
            return self._entries[name]
        except KeyError:
            choices = ", ".join(sorted(self._entries)) or "(none)"
            raise ConfigError(
                f"unknown {self.name} {name!r}", hint=f"choose one of: {choices}"
            ) from None

    def create(self, name: str, /, **kwargs: Any) -> Any:
        """Look up ``name`` and call it with ``kwargs``."""
        factory = self.get(name)
        if not callable(factory):
            raise ConfigError(f"{self.name} entry {name!r} is not callable")
        return factory(**kwargs)

    def names(self) -> list[str]:
        self._ensure_loaded()
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        self._ensure_loaded()
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self.names())

    def __repr__(self) -> str:
        return f"Registry({self.name!r}, {len(self._entries)} entries)"


def load_plugins(force: bool = False) -> list[str]:
    """Import every ``medfuse.plugins`` entry point once; a broken plugin is logged, not fatal."""
    global _plugins_loaded
    if _plugins_loaded and not force:
        return []
    _plugins_loaded = True
    from importlib.metadata import entry_points

    loaded = []
    for ep in entry_points(group=PLUGIN_GROUP):
        try:
            obj = ep.load()
            if callable(obj):
                obj()
            loaded.append(ep.name)
        except Exception as exc:  # a third-party plugin must not break medfuse
            log.warning("medfuse plugin %r failed to load: %s", ep.name, exc)
    return loaded


# The second argument lists the modules holding medfuse's own entries (imported on first lookup).
image_encoders: Registry[Callable[..., Any]] = Registry(
    "image_encoders", ("medfuse.models.encoders.image",)
)
text_encoders: Registry[Callable[..., Any]] = Registry(
    "text_encoders", ("medfuse.models.encoders.text",)
)
fusion: Registry[Callable[..., Any]] = Registry("fusion", ("medfuse.models.fusion",))
heads: Registry[Callable[..., Any]] = Registry("heads", ("medfuse.models.heads",))
#: Named model configurations for ``create_model`` (``chest_ct_fusion``, ...).
model_presets: Registry[Callable[..., Any]] = Registry("model_presets", ("medfuse.models.model",))
explainers: Registry[Callable[..., Any]] = Registry("explainers", ("medfuse.explain",))
exporters: Registry[Callable[..., Any]] = Registry("exporters", ("medfuse.export",))

registries: dict[str, Registry] = {
    r.name: r
    for r in (image_encoders, text_encoders, fusion, heads, model_presets, explainers, exporters)
}
