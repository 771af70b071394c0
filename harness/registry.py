"""Name -> factory registries for components (connectors, adapters, fusions, ...).

Components register with a decorator and are built by name; an unknown name fails loudly with the list of known
names and a did-you-mean suggestion, in the style of timm's `register_model` / `create_model`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from harness.errors import RegistryError, did_you_mean, one_of

T = TypeVar("T")


class Registry(Generic[T]):
    """A named collection of factories of one kind (e.g. 'connector')."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator: register `obj` under `name`; registering a name twice is an error."""

        def decorator(obj: T) -> T:
            if name in self._entries and self._entries[name] is not obj:
                raise RegistryError(f"{self.kind} '{name}' is registered twice")
            self._entries[name] = obj
            return obj

        return decorator

    def get(self, name: str) -> T:
        """Return the entry registered under `name`, or fail with the known names."""
        try:
            return self._entries[name]
        except KeyError:
            raise RegistryError(
                f"unknown {self.kind} '{name}'{did_you_mean(name, self._entries)}; "
                f"known: {one_of(self._entries)}"
            ) from None

    def names(self) -> list[str]:
        """Sorted registered names."""
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
