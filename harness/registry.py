"""Name -> factory registries for components (connectors, adapters, fusions, judges), open to plugins.

A registry knows three kinds of entries:
- built-ins, declared as `"module:attribute"` strings in `harness/components.py` and imported on first use, so
  listing names never imports torch (timm's light `_registry` split from its heavy factories), or given as the
  objects themselves where they are light declarations (the benchmark splits); validating a config
  that names a plugin imports that plugin, so a broken one fails before anything is written;
- plugins: entry points of the registry's group (`ablate.connectors`, ...) in any installed package, discovered in
  every process that looks a name up (grid workers, `ablate eval`, the report) and loaded on first use;
- objects registered at run time with the `register` decorator (tests, notebooks). These exist only in the process
  that registered them: grid workers are fresh processes, so use an entry point for anything a grid with
  `workers > 1` or `ablate eval` must find.

An unknown name fails with the known names and a did-you-mean suggestion. A plugin that fails to load disables
only itself: its name stays listed with the error, and only using it fails, with one line naming the package.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from typing import Any, Generic, TypeVar

from harness.errors import RegistryError, did_you_mean, one_of

T = TypeVar("T")


@dataclass(frozen=True)
class Origin:
    """Where an entry comes from: 'built-in', 'plugin', or 'registered' (at run time)."""

    kind: str
    location: str  # "module:attribute", or the object's qualified name
    package: str = ""  # a plugin's distribution name
    version: str = ""

    def text(self) -> str:
        if self.kind == "plugin":
            return f"plugin {self.package} {self.version} ({self.location})"
        return f"{self.kind} ({self.location})"


def load_location(location: str) -> Any:
    """The object named by "package.module:attribute"."""
    module, _, attribute = location.partition(":")
    obj = importlib.import_module(module)
    for part in attribute.split(".") if attribute else []:
        obj = getattr(obj, part)
    return obj


class Registry(Generic[T]):
    """A named collection of factories of one kind (e.g. 'connector')."""

    def __init__(self, kind: str, group: str | None = None, builtins: dict[str, str | T] | None = None) -> None:
        self.kind, self.group = kind, group
        self._builtins = dict(builtins or {})
        self._loaded: dict[str, T] = {}
        self._registered: dict[str, T] = {}
        self._plugins: dict[str, EntryPoint] | None = None  # discovered on first use
        self._broken: dict[str, str] = {}

    # ---- discovery -------------------------------------------------------------------------------------------

    def plugins(self) -> dict[str, EntryPoint]:
        """This group's entry points by name (metadata only: nothing is imported)."""
        if self._plugins is None:
            self._plugins = {}
            for ep in entry_points(group=self.group) if self.group else []:
                if ep.name in self._builtins:
                    continue
                other = self._plugins.get(ep.name)
                if other is not None and other.value != ep.value:  # two packages claim one name: use neither
                    packages = sorted(str(getattr(e.dist, "name", "?")) for e in (other, ep))
                    self._broken[ep.name] = f"the name is claimed by two plugins ({' and '.join(packages)})"
                self._plugins[ep.name] = ep
        return self._plugins

    def refresh(self) -> None:
        """Forget discovered plugins (after installing one into a running process)."""
        self._plugins = None
        self._loaded = {k: v for k, v in self._loaded.items() if k in self._builtins}
        self._broken.clear()

    # ---- registration and lookup -----------------------------------------------------------------------------

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator: register `obj` under `name` at run time; a name that is already taken is an error."""

        def decorator(obj: T) -> T:
            if name in self and self._registered.get(name) is not obj:
                raise RegistryError(f"{self.kind} '{name}' is registered twice ({self.origin(name).text()})")
            self._registered[name] = obj
            return obj

        return decorator

    def get(self, name: str) -> T:
        """The entry registered under `name`, imported on first use; an unknown or broken one fails clearly."""
        if name in self._registered:
            return self._registered[name]
        if name in self._loaded:
            return self._loaded[name]
        if name in self._builtins:
            builtin = self._builtins[name]
            self._loaded[name] = load_location(builtin) if isinstance(builtin, str) else builtin
            return self._loaded[name]
        plugin = self.plugins().get(name)
        if plugin is not None and name in self._broken:
            raise RegistryError(f"{self.kind} '{name}': {self._broken[name]}")
        if plugin is None:
            raise RegistryError(
                f"unknown {self.kind} '{name}'{did_you_mean(name, self.names())}; known: {one_of(self.names())}"
            )
        try:
            self._loaded[name] = plugin.load()
        except Exception as err:  # a broken plugin must name itself, whatever it raised
            self._broken[name] = f"{type(err).__name__}: {err}"
            origin = self.origin(name)
            raise RegistryError(f"{self.kind} '{name}' from plugin {origin.package} {origin.version} "
                                f"({origin.location}) failed to load: {self._broken[name]}") from None
        return self._loaded[name]

    def origin(self, name: str) -> Origin:
        if name in self._registered:
            obj = self._registered[name]
            return Origin("registered", f"{getattr(obj, '__module__', '?')}:{getattr(obj, '__qualname__', obj)}")
        if name in self._builtins:
            builtin = self._builtins[name]
            return Origin("built-in", builtin if isinstance(builtin, str) else type(builtin).__module__)
        ep = self.plugins()[name]
        dist = ep.dist
        return Origin("plugin", ep.value, dist.name if dist else "?", dist.version if dist else "?")

    def check(self, name: str) -> str | None:
        """None when `name` loads, else the reason it does not (for listings)."""
        try:
            self.get(name)
        except RegistryError as err:
            return str(err)
        return None

    def names(self) -> list[str]:
        """Sorted names: built-in, plugin and registered (plugins are listed without importing them)."""
        return sorted({*self._builtins, *self.plugins(), *self._registered})

    def declared_order(self) -> list[str]:
        """Built-ins in the order they were declared, then the other names sorted."""
        return [*self._builtins, *sorted({*self.plugins(), *self._registered} - set(self._builtins))]

    def __contains__(self, name: object) -> bool:
        return name in self._builtins or name in self._registered or name in self.plugins()

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
