"""Typed registries: one per kind of plugin-provided thing, with did-you-mean lookups.

Each registry accepts only its own kind of spec (a loss registry takes :class:`LossSpec`, never
a :class:`ModelSpec`), and every name matches one pattern, so a plugin that registers the wrong
thing or an unusable name is refused when it loads, with the plugin named, rather than failing
later inside a run.

Names. A registered name is lowercase letters and digits in words joined by one ``-``, ``_``
or ``.``: ``my-net``, ``resnet18``, ``vit_base_patch16_224``, ``cross-entropy-smooth``
(:data:`NAME_PATTERN`). Names end up in result paths, cache keys and command lines, which is
why capitals, spaces, slashes and leading dots (``My_Net``, ``my net``, ``a/b``, ``../x``) are
refused. A model family is addressed by a prefix ending in ``:`` (``timm:``, ``dln:``;
:data:`FAMILY_PREFIX_PATTERN`) and is listed as ``<prefix>*``; the family's ``resolve`` decides
which names after the prefix exist.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from functools import cache
from typing import Generic, Iterator, TypeVar

from abawbench.errors import PluginError, UnknownNameError
from abawbench.hookspecs import PROJECT_NAME
from abawbench.specs import (
    AugmentationSpec,
    DatasetSpec,
    EnsembleSpec,
    LossSpec,
    ModelFamily,
    ModelSpec,
)

T = TypeVar("T")

KINDS = ("models", "datasets", "losses", "ensembles", "tracks", "augmentations")

_WORDS = r"[a-z0-9]+(?:[-_.][a-z0-9]+)*"
NAME_PATTERN = re.compile(_WORDS)
"""What a registered name looks like (matched in full)."""
FAMILY_PREFIX_PATTERN = re.compile(_WORDS + ":")
"""What a model family's prefix looks like (matched in full)."""
NAME_RULE = "lowercase letters and digits in words joined by '-', '_' or '.' (e.g. 'my-net')"


def hook_name(kind: str) -> str:
    """The hook through which plugins register things of ``kind``."""
    return f"{PROJECT_NAME}_register_{kind}"


@cache
def spec_types(kind: str) -> tuple[type, ...]:
    """The types a registry of ``kind`` accepts.

    Tracks are imported here, on first use, because :mod:`abawbench.tracks` brings torch with
    it, and the command line's help and ``abawbench list`` must not pay for torch.
    """
    if kind == "tracks":
        from abawbench.tracks import Track

        return (Track,)
    return {
        "models": (ModelSpec, ModelFamily),
        "datasets": (DatasetSpec,),
        "losses": (LossSpec,),
        "ensembles": (EnsembleSpec,),
        "augmentations": (AugmentationSpec,),
    }[kind]


@dataclass(frozen=True)
class Entry(Generic[T]):
    """A registered item and the plugin that registered it."""

    name: str
    item: T
    plugin: str


def close_matches(name: str, candidates: list[str], limit: int = 3) -> list[str]:
    """Candidates that look like ``name``: close spellings, else those containing it."""
    if not name:
        return []  # every candidate "contains" the empty name: none of them is a suggestion
    close = difflib.get_close_matches(name, candidates, n=limit, cutoff=0.6)
    if not close:
        lowered = name.lower()
        close = [c for c in candidates if lowered in c.lower()][:limit]
    return close


def suggest(name: str, candidates: list[str], limit: int = 3) -> str:
    """`` (did you mean 'a', 'b'?)`` for close matches, or an empty string."""
    close = close_matches(name, candidates, limit)
    if not close:
        return ""
    return " (did you mean " + ", ".join(repr(c) for c in close) + "?)"


def _wrong_type_message(item: object, plugin: str, hook: str, accepted: tuple[type, ...]) -> str:
    takes = " or ".join(t.__name__ for t in accepted)
    # A class passed instead of an instance (register(MyTrack)) is the common slip: say so.
    if isinstance(item, type):
        what, advice = f"the class {item.__name__}", f"; register an instance: {item.__name__}(...)"
    else:
        what, advice = f"a {type(item).__name__}", ""
    return f"plugin {plugin!r} registered {what} through {hook}, which takes only {takes}{advice}"


class Registry(Generic[T]):
    """Named items of one kind (``kind`` is e.g. ``"models"``).

    Plain items are looked up by their ``name``. Model families (:class:`ModelFamily`) are kept
    apart: any name starting with a family's ``prefix`` is made on demand by the family's
    ``resolve``, and a failed lookup suggests names from its ``known_names``.
    """

    def __init__(self, kind: str) -> None:
        if kind not in KINDS:
            raise ValueError(f"unknown registry kind {kind!r}; kinds: {', '.join(KINDS)}")
        self.kind = kind
        self.hook = hook_name(kind)
        self._entries: dict[str, Entry[T]] = {}
        self._families: dict[str, Entry[T]] = {}

    @property
    def singular(self) -> str:
        """``"loss"`` for ``"losses"``: what one item is called in messages."""
        return self.kind[:-2] if self.kind.endswith("sses") else self.kind[:-1]

    def check(self, item: object, plugin: str) -> str:
        """The name of ``item`` if this registry may hold it; :class:`PluginError` naming the
        plugin, the hook and the problem otherwise."""
        accepted = spec_types(self.kind)
        if not isinstance(item, accepted):
            raise PluginError(_wrong_type_message(item, plugin, self.hook, accepted))
        if isinstance(item, ModelFamily):
            prefix = item.prefix
            if not isinstance(prefix, str) or not FAMILY_PREFIX_PATTERN.fullmatch(prefix):
                raise PluginError(
                    f"plugin {plugin!r} registered a {self.singular} family with prefix "
                    f"{prefix!r} through {self.hook}: a family prefix is a name followed by "
                    f"':' (e.g. 'timm:'), a name being {NAME_RULE}"
                )
            return item.name
        name = getattr(item, "name", None)
        if not isinstance(name, str) or not name:
            raise PluginError(
                f"plugin {plugin!r} registered a {self.singular} without a name through "
                f"{self.hook}: {item!r}"
            )
        if not NAME_PATTERN.fullmatch(name):
            raise PluginError(
                f"plugin {plugin!r} registered the {self.singular} name {name!r} through "
                f"{self.hook}: names are {NAME_RULE}"
            )
        return name

    def add(self, item: T, plugin: str) -> None:
        """Register ``item`` on behalf of ``plugin``; a wrong type, a bad name or a name taken
        by another plugin is a :class:`PluginError`."""
        name = self.check(item, plugin)
        table = self._families if isinstance(item, ModelFamily) else self._entries
        if name in table:
            other = table[name].plugin
            raise PluginError(
                f"duplicate {self.singular} name {name!r}: registered by plugin {other!r} "
                f"and by plugin {plugin!r}"
            )
        table[name] = Entry(name=name, item=item, plugin=plugin)

    def remove(self, name: str) -> None:
        """Forget ``name`` (a plain name or a family's ``<prefix>*``); unknown names are ignored.
        Lets the loader take back what a plugin registered before it failed."""
        self._entries.pop(name, None)
        self._families.pop(name, None)

    def get(self, name: str) -> T:
        """The item called ``name``; :class:`UnknownNameError` with suggestions otherwise."""
        entry = self._entries.get(name)
        if entry is not None:
            return entry.item
        family = self._family_for(name)
        if family is not None:
            return self._resolve_member(family, name)
        hint = suggest(name, list(self._entries) + list(self._families))
        known = ", ".join(sorted(self._entries)) or "none"
        raise UnknownNameError(f"unknown {self.singular} {name!r}{hint}; known: {known}")

    def _family_for(self, name: str) -> ModelFamily | None:
        """The family whose prefix ``name`` starts with (the longest such prefix wins)."""
        matching = [entry.item for entry in self._families.values()
                    if name.startswith(entry.item.prefix)]  # type: ignore[attr-defined]
        return max(matching, key=lambda family: len(family.prefix), default=None)

    def _resolve_member(self, family: ModelFamily, name: str) -> T:
        """``family.resolve`` for the part after the prefix; on an unknown member the error
        suggests full names from ``known_names`` (asked only now: the list may be long)."""
        member = name[len(family.prefix):]
        try:
            return family.resolve(member)  # type: ignore[return-value]
        except UnknownNameError as exc:
            try:
                known = list(family.known_names())
            except Exception:  # a failing list must not hide why the name was unknown
                known = []
            close = [c for c in close_matches(member, known) if c != member]
            if not close:
                raise
            hint = ", ".join(repr(family.prefix + c) for c in close)
            raise UnknownNameError(
                f"unknown {self.singular} {name!r} (did you mean {hint}?)"
            ) from exc

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
