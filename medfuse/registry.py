"""Named registries, so that a backbone, fusion, head or exporter is one decorated function away.

    from medfuse.registry import image_encoders

    @image_encoders.register("my_net_3d")
    def my_net_3d(**kw): ...

An entry carries its own facts as keyword metadata, as timm's pretrained configs do: what an
explainer needs (``needs="image"``), the arguments that make an encoder test-sized
(``tiny={...}``). :meth:`Registry.metadata` reads them; a third-party entry registered without
them gets an empty mapping.

    @explainers.register("my_cam", needs="image")
    def my_cam(ctx, labels, **params): ...

Every component is rebuilt from its ``config()`` (``{"name", "kwargs"}``) the same way, by
:meth:`Registry.from_config`, which raises :class:`~medfuse.errors.ConfigError` for a bad one.

Third-party packages extend medfuse through the entry-point group ``medfuse.plugins``: each
entry point names a module (or callable) that registers its objects when imported. Plugins are
loaded once, on the first lookup in any registry, never at ``import medfuse``.

This module owns the registries and their entries' metadata; it imports nothing of medfuse but
:mod:`medfuse.errors` (the modules holding the built-in entries are imported on first lookup).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from types import MappingProxyType
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
    "imputers",
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

    def __init__(
        self,
        name: str,
        builtin_modules: tuple[str, ...] = (),
        *,
        config_keys: tuple[str, ...] = (),
    ):
        self.name = name
        self._entries: dict[str, T] = {}
        self._metadata: dict[str, Mapping[str, Any]] = {}
        self._builtins_loaded = False
        #: top-level keys of a component's ``config()`` that are constructor arguments too
        #: (a text encoder's ``tokenizer``), besides ``kwargs``
        self.config_keys = tuple(config_keys)
        _BUILTIN_MODULES[name] = builtin_modules

    def register(
        self, name: str, obj: T | None = None, *, overwrite: bool = False, **metadata: Any
    ):
        """Register ``obj`` under ``name`` with its ``metadata`` (read by :meth:`metadata`);
        usable as a decorator when ``obj`` is omitted."""

        def _add(o: T) -> T:
            if name in self._entries and not overwrite and self._entries[name] is not o:
                raise ConfigError(
                    f"{self.name} registry already has an entry named {name!r}",
                    hint="pass overwrite=True to replace it",
                )
            self._entries[name] = o
            self._metadata[name] = MappingProxyType(dict(metadata))
            return o

        return _add(obj) if obj is not None else _add

    def metadata(self, name: str) -> Mapping[str, Any]:
        """The read-only metadata ``name`` was registered with (empty when none was given)."""
        self.get(name)
        return self._metadata.get(name, MappingProxyType({}))

    def from_config(self, config: Mapping[str, Any]) -> Any:
        """Build the entry a component's ``config()`` describes (``{"name", "kwargs"}``, plus
        this registry's :attr:`config_keys`), with untrained weights.

        Raises :class:`~medfuse.errors.ConfigError` for a config that is not a mapping, has no
        name, or names no entry."""
        if not isinstance(config, Mapping):
            raise ConfigError(
                f"a {self.name} config is a mapping {{'name', 'kwargs'}}, got "
                f"{type(config).__name__}"
            )
        name = config.get("name")
        if not name:
            raise ConfigError(f"{self.name} config has no name")
        kwargs = dict(config.get("kwargs") or {})
        for key in self.config_keys:
            if config.get(key) is not None:
                kwargs[key] = config[key]
        return self.create(name, **kwargs)

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
    "text_encoders", ("medfuse.models.encoders.text",), config_keys=("tokenizer",)
)
fusion: Registry[Callable[..., Any]] = Registry("fusion", ("medfuse.models.fusion",))
heads: Registry[Callable[..., Any]] = Registry("heads", ("medfuse.models.heads",))
#: Named model configurations for ``create_model`` (``chest_ct_fusion``, ...).
model_presets: Registry[Callable[..., Any]] = Registry("model_presets", ("medfuse.models.model",))
#: Explainers; metadata ``needs``: the modality a method needs ("image", "report"; absent: none
#: in particular). ``needs="image"`` methods give a saliency map of the volume.
explainers: Registry[Callable[..., Any]] = Registry(
    "explainers",
    tuple(f"medfuse.explain.{m}" for m in ("attention", "cam", "ig", "modality", "occlusion")),
)
exporters: Registry[Callable[..., Any]] = Registry("exporters", ("medfuse.export",))
#: Missing-modality imputers of a fusion module (``token``, ``regression``, ``generative``);
#: metadata ``learned``: what stands in for a missing modality, ``adversarial``: a discriminator.
imputers: Registry[Callable[..., Any]] = Registry("imputers", ("medfuse.models.impute",))

registries: dict[str, Registry] = {
    r.name: r
    for r in (
        image_encoders,
        text_encoders,
        fusion,
        heads,
        model_presets,
        explainers,
        exporters,
        imputers,
    )
}
