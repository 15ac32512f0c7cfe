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

Collisions. Two plugins registering one name are never settled by the order they load in: a
built-in plugin keeps its names whatever else is installed, and a name two other plugins both
register is refused for both (neither is used), so installing or reinstalling a plugin can never
silently swap which model, loss or track a name means. Each such clash is a :class:`Collision`
that the loader reports.
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
    builtin: bool = False


@dataclass(frozen=True)
class Collision:
    """A name more than one plugin registered: who keeps it (a built-in, or nobody) and whose
    registrations of it are refused."""

    singular: str
    name: str
    kept_by: str | None
    refused: tuple[str, ...]

    def describe(self) -> str:
        """The clash in one line, naming every plugin involved."""
        refused = " and ".join(repr(plugin) for plugin in self.refused)
        if self.kept_by is not None:
            by = f"plugin {refused} is" if len(self.refused) == 1 else f"plugins {refused} are"
            return (f"{self.singular} name {self.name!r} belongs to the built-in plugin "
                    f"{self.kept_by!r}; the registration by {by} refused")
        return (f"{self.singular} name {self.name!r} is registered by plugins {refused}; refused "
                f"for all of them (uninstall one, or leave one out with ABAWBENCH_LOAD_PLUGINS)")


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
        # Every registration of every name, kept so that who holds a name can be settled the
        # same way whatever order the plugins arrive in (see _settle).
        self._claims: dict[str, list[Entry[T]]] = {}
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

    def add(self, item: T, plugin: str, builtin: bool = False) -> None:
        """Register ``item`` on behalf of ``plugin`` (``builtin``: one of abawbench's own).

        A wrong type, a bad name, a plugin registering one name twice or two built-ins sharing
        a name is a :class:`PluginError`. A name another plugin registered too is accepted
        here and settled by :meth:`_settle`; :meth:`collisions` reports it."""
        name = self.check(item, plugin)
        claims = self._claims.setdefault(name, [])
        for claim in claims:
            if claim.plugin == plugin:
                raise PluginError(f"plugin {plugin!r} registered the {self.singular} name "
                                  f"{name!r} twice")
            if claim.builtin and builtin:
                raise PluginError(f"duplicate {self.singular} name {name!r}: registered by "
                                  f"built-in plugins {claim.plugin!r} and {plugin!r}")
        claims.append(Entry(name=name, item=item, plugin=plugin, builtin=builtin))
        self._settle(name)

    def remove(self, name: str, plugin: str) -> None:
        """Forget ``plugin``'s registration of ``name`` (a plain name or a family's
        ``<prefix>*``); unknown ones are ignored. Lets the loader take back what a plugin
        registered before it failed."""
        claims = [claim for claim in self._claims.get(name, []) if claim.plugin != plugin]
        if claims:
            self._claims[name] = claims
        else:
            self._claims.pop(name, None)
        self._settle(name)

    def _settle(self, name: str) -> None:
        """Who holds ``name`` now: the built-in that registered it, else its only registrant,
        else nobody. It depends on who registered the name, never on the order they did."""
        claims = self._claims.get(name, [])
        self._entries.pop(name, None)
        self._families.pop(name, None)
        holder = _holder(claims)
        if holder is not None:
            table = self._families if isinstance(holder.item, ModelFamily) else self._entries
            table[name] = holder

    def collisions(self) -> list[Collision]:
        """Every name registered by more than one plugin, with its outcome."""
        found = []
        for name, claims in sorted(self._claims.items()):
            if len(claims) < 2:
                continue
            holder = _holder(claims)
            refused = tuple(sorted(c.plugin for c in claims if c is not holder))
            found.append(Collision(self.singular, name, holder.plugin if holder else None, refused))
        return found

    def holder(self, name: str) -> Entry[T]:
        """The registration that serves ``name``: its own entry, or that of the family whose
        prefix it starts with (a member is not resolved); errors as :meth:`get`."""
        entry = self._entries.get(name)
        if entry is not None:
            return entry
        family = self._family_for(name)
        if family is not None:
            return self._families[family.name]
        self.get(name)  # raises: contested or unknown, with suggestions
        raise UnknownNameError(f"unknown {self.singular} {name!r}")  # pragma: no cover (get raised)

    def get(self, name: str) -> T:
        """The item called ``name``; :class:`UnknownNameError` with suggestions otherwise, or
        :class:`PluginError` naming the plugins when several registered it (none may have it)."""
        entry = self._entries.get(name)
        if entry is not None:
            return entry.item
        family = self._family_for(name)
        if family is not None:
            return self._resolve_member(family, name)
        contested = self._contested(name)
        if contested is not None:  # registered, but by several plugins: none of them may have it
            raise PluginError(contested.describe())
        hint = suggest(name, list(self._entries) + list(self._families)) or self._family_hint(name)
        known = ", ".join(sorted(self._entries)) or "none"
        raise UnknownNameError(f"unknown {self.singular} {name!r}{hint}; known: {known}")

    def _contested(self, name: str) -> Collision | None:
        """The collision that left ``name`` (or the family it would belong to) without a
        holder, if one did."""
        for collision in self.collisions():
            if collision.kept_by is not None:
                continue
            if collision.name == name or (collision.name.endswith(":*")
                                          and name.startswith(collision.name[:-1])):
                return collision
        return None

    def _family_for(self, name: str) -> ModelFamily | None:
        """The family whose prefix ``name`` starts with (the longest such prefix wins)."""
        matching = [entry.item for entry in self._families.values()
                    if name.startswith(entry.item.prefix)]  # type: ignore[attr-defined]
        return max(matching, key=lambda family: len(family.prefix), default=None)

    def _family_hint(self, name: str) -> str:
        """`` (did you mean 'timm:convnext_tiny'?)`` for a name a family knows without its
        prefix (or one close to it), from the families' ``known_names``; asked only after the
        plain names gave no suggestion, and a family whose list fails is passed over."""
        close: list[str] = []
        for entry in sorted(self._families.values(), key=lambda e: e.name):
            family: ModelFamily = entry.item  # type: ignore[assignment]
            try:
                known = list(family.known_names())
            except Exception:
                continue
            matches = [name] if name in known else close_matches(name, known, limit=1)
            close += [family.prefix + match for match in matches]
        if not close:
            return ""
        return " (did you mean " + ", ".join(repr(c) for c in close) + "?)"  # one per family

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


def _holder(claims: list[Entry[T]]) -> Entry[T] | None:
    """The registration that holds a name among ``claims`` (see :meth:`Registry._settle`)."""
    builtin = [claim for claim in claims if claim.builtin]
    if builtin:
        return builtin[0]  # two built-ins never share a name: add() refuses it
    return claims[0] if len(claims) == 1 else None
