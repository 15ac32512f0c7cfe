"""Typed registries: one per kind of plugin-provided thing, with did-you-mean lookups."""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Generic, Iterator, TypeVar

from abawbench.errors import PluginError, UnknownNameError

T = TypeVar("T")

KINDS = ("models", "datasets", "losses", "ensembles", "tracks", "augmentations")


@dataclass(frozen=True)
class Entry(Generic[T]):
    """A registered item and the plugin that registered it."""

    name: str
    item: T
    plugin: str


def suggest(name: str, candidates: list[str], limit: int = 3) -> str:
    """`` (did you mean 'a', 'b'?)`` for close matches, or an empty string."""
    close = difflib.get_close_matches(name, candidates, n=limit, cutoff=0.6)
    if not close:
        lowered = name.lower()
        close = [c for c in candidates if lowered in c.lower()][:limit]
    if not close:
        return ""
    return " (did you mean " + ", ".join(repr(c) for c in close) + "?)"


class Registry(Generic[T]):
    """Named items of one kind (``kind`` is e.g. ``"models"``).

    Items carry a ``name`` attribute. Items whose name ends in ``*`` are families: their
    ``prefix`` addresses many names and their ``resolve(rest)`` makes the item on demand.
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Entry[T]] = {}
        self._families: dict[str, Entry[T]] = {}

    @property
    def singular(self) -> str:
        return self.kind[:-1] if self.kind.endswith("s") else self.kind

    def add(self, item: T, plugin: str) -> None:
        """Register ``item`` on behalf of ``plugin``; a name taken by another plugin is an error."""
        name = getattr(item, "name", None)
        if not isinstance(name, str) or not name:
            raise PluginError(
                f"plugin {plugin!r} registered a {self.singular} without a name: {item!r}"
            )
        table = self._families if name.endswith("*") else self._entries
        if name in table:
            other = table[name].plugin
            raise PluginError(
                f"duplicate {self.singular} name {name!r}: registered by plugin {other!r} "
                f"and by plugin {plugin!r}"
            )
        table[name] = Entry(name=name, item=item, plugin=plugin)

    def get(self, name: str) -> T:
        """The item called ``name``; :class:`UnknownNameError` with suggestions otherwise."""
        entry = self._entries.get(name)
        if entry is not None:
            return entry.item
        for family in self._families.values():
            prefix = family.item.prefix  # type: ignore[attr-defined]
            if name.startswith(prefix):
                return family.item.resolve(name[len(prefix):])  # type: ignore[attr-defined]
        hint = suggest(name, list(self._entries) + [e.name for e in self._families.values()])
        known = ", ".join(sorted(self._entries)) or "none"
        raise UnknownNameError(f"unknown {self.singular} {name!r}{hint}; known: {known}")

    def entry(self, name: str) -> Entry[T]:
        """The registration record of a plain (non-family) name."""
        if name not in self._entries:
            self.get(name)  # raises with suggestions, or resolves a family member
            raise UnknownNameError(f"{name!r} is a member of a {self.singular} family")
        return self._entries[name]

    def names(self) -> list[str]:
        return sorted(self._entries) + sorted(self._families)

    def entries(self) -> Iterator[Entry[T]]:
        for name in self.names():
            yield self._entries.get(name) or self._families[name]

    def __contains__(self, name: object) -> bool:
        return name in self._entries or name in self._families

    def __len__(self) -> int:
        return len(self._entries) + len(self._families)
