"""Plugin discovery and registration.

Plugins are modules named by entry points in the ``abawbench`` group (the built-ins in
``plugins/`` are declared the same way in abawbench's own ``pyproject.toml``). Loading is
robust: a plugin that fails to import, implements a hook that does not exist, or fails while
registering is recorded as broken and left out; the rest go on. A plugin that registers nothing
(typically: its hook functions lack ``@hookimpl``) is recorded as empty. Strict mode
(``strict=True`` or ``ABAWBENCH_STRICT_PLUGINS=1``) turns the first such problem, or a name
collision, into a :class:`PluginError`. ``ABAWBENCH_LOAD_PLUGINS=a,b`` loads only the named
entry points (empty: none); ``--plugin MODULE`` adds a module that is not installed, as
plugin ``local:<module>`` (:meth:`PluginHost.add_local_plugin`). :meth:`PluginHost.problems`
says in one line each what a user should know before trusting what loaded; ``run``, ``list``
and ``plugins`` show it.

Built-ins cannot be shadowed, and no collision is settled by load order. The built-ins are the
entry points ``builtin.<name>`` of the ``abawbench`` distribution, pointing into the package
``abawbench_builtins``; both names are reserved, so a third-party entry point using either is
refused (and reported as broken). A model, loss, dataset, ensemble, track or augmentation name
registered by a built-in stays the built-in's whoever else registers it; a name two other
plugins register is refused for both (:mod:`abawbench.registry`). Likewise an entry-point name
declared by two distributions loads from neither. The refused registrations are reported; the
rest of each plugin stays usable.
"""

from __future__ import annotations

import os
import re
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from importlib.metadata import EntryPoint, entry_points
from types import ModuleType
from typing import TYPE_CHECKING, Any, Callable, Iterable

import pluggy

from abawbench import hookspecs
from abawbench.errors import AbawbenchError, PluginError
from abawbench.registry import KINDS, Collision, Registry, hook_name, suggest

if TYPE_CHECKING:
    from abawbench import specs
    from abawbench.tracks import Track

ENTRY_POINT_GROUP = hookspecs.PROJECT_NAME
LOAD_ENV = "ABAWBENCH_LOAD_PLUGINS"
STRICT_ENV = "ABAWBENCH_STRICT_PLUGINS"

HOOK_FOR_KIND = {kind: hook_name(kind) for kind in KINDS}
HOOK_NAMES = tuple(HOOK_FOR_KIND.values())

OWN_DISTRIBUTION = hookspecs.PROJECT_NAME
"""The distribution whose entry points are the built-in plugins."""
BUILTIN_ENTRY_POINT_PREFIX = "builtin."
"""Entry-point names reserved for the built-ins (``builtin.losses``, ...)."""
BUILTIN_PACKAGE = "abawbench_builtins"
"""The package the built-ins live in; no other distribution's entry point may point into it."""
LOCAL_PREFIX = "local:"
"""Plugins loaded with ``--plugin MODULE`` are named ``local:<module>``."""


@dataclass
class PluginInfo:
    """What ``abawbench plugins`` reports about one plugin."""

    name: str
    version: str | None
    distribution: str | None
    hooks: list[str] = field(default_factory=list)
    status: str = "ok"  # "ok", "broken" (left out), "empty" (registered nothing), "conflict"
    error: str | None = None  # why the status is not "ok", in one line

    @property
    def builtin(self) -> bool:
        """Whether this is one of abawbench's own plugins, whose names no other plugin takes."""
        return (_normalised(self.distribution) == OWN_DISTRIBUTION
                and self.name.startswith(BUILTIN_ENTRY_POINT_PREFIX))

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "distribution": self.distribution,
            "hooks": self.hooks,
            "status": self.status,
            "error": self.error,
        }


def strict_from_env() -> bool:
    return os.environ.get(STRICT_ENV, "").strip().lower() in {"1", "true", "yes", "on"}


def allowed_from_env() -> set[str] | None:
    """Names allowed by ``ABAWBENCH_LOAD_PLUGINS``; None when the variable is unset."""
    raw = os.environ.get(LOAD_ENV)
    if raw is None:
        return None
    return {part.strip() for part in raw.split(",") if part.strip()}


class PluginHost:
    """The plugin manager plus one typed registry per kind."""

    def __init__(self, strict: bool = False) -> None:
        self.strict = strict
        self.pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
        self.pm.add_hookspecs(hookspecs)
        self.registries: dict[str, Registry[Any]] = {kind: Registry(kind) for kind in KINDS}
        self.plugins: dict[str, PluginInfo] = {}

    # -- typed accessors, so callers read host.models.get("x") -----------------------------
    @property
    def models(self) -> Registry[specs.ModelSpec | specs.ModelFamily]:
        return self.registries["models"]

    @property
    def datasets(self) -> Registry[specs.DatasetSpec]:
        return self.registries["datasets"]

    @property
    def losses(self) -> Registry[specs.LossSpec]:
        return self.registries["losses"]

    @property
    def ensembles(self) -> Registry[specs.EnsembleSpec]:
        return self.registries["ensembles"]

    @property
    def tracks(self) -> Registry[Track]:
        return self.registries["tracks"]

    @property
    def augmentations(self) -> Registry[specs.AugmentationSpec]:
        return self.registries["augmentations"]

    # -- loading ------------------------------------------------------------------------------
    def load_entry_points(self, allowed: set[str] | None = None) -> None:
        """Load every ``abawbench`` entry point (only ``allowed`` ones when given).

        abawbench's own entry points come first, then the others by name, so reports come in
        a stable order; which plugin holds a name does not depend on it (see the module's
        docstring). An entry-point name declared by two distributions loads from neither.
        """
        candidates = [ep for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=_load_order)
                      if allowed is None or ep.name in allowed]
        declared_by: dict[str, set[str | None]] = {}  # entry-point name -> its distributions
        for ep in candidates:
            if _reserved_name_used(ep) is None:
                declared_by.setdefault(ep.name, set()).add(_distribution_name(ep))
        loaded: set[str] = set()
        for ep in candidates:
            reserved = _reserved_name_used(ep)
            if reserved is not None:
                self._refuse(ep, reserved)
                continue
            if len(declared_by[ep.name]) > 1:
                names = " and ".join(repr(d) for d in sorted(declared_by[ep.name], key=str))
                self._refuse(ep, f"entry point name {ep.name!r} is declared by distributions "
                                 f"{names}; none of them is loaded (uninstall one)")
                continue
            if ep.name in loaded:
                continue  # the same distribution visible twice on sys.path
            loaded.add(ep.name)
            self._load_entry_point(ep)

    def _refuse(self, ep: EntryPoint, reason: str) -> None:
        """Report an entry point that must not load, under a name of its own so that it does
        not overwrite the report of the plugin it collides with."""
        info = _info_for(ep)
        info.name = f"{ep.name} (from {info.distribution or 'an unknown distribution'})"
        self._mark_broken(info, reason, PluginError(reason))

    def _load_entry_point(self, ep: EntryPoint) -> None:
        info = _info_for(ep)
        try:
            module = ep.load()
        except Exception as exc:  # any import-time failure is the plugin's, not ours
            self._mark_broken(info, f"failed to import {ep.value!r}: {describe_exception(exc)}", exc)
            return
        self.add_plugin(module, ep.name, info=info)

    def add_plugin(self, module: ModuleType | object, name: str, info: PluginInfo | None = None) -> PluginInfo:
        """Validate, register and run the hooks of one plugin object (also used by tests)."""
        info = info or PluginInfo(name=name, version=None, distribution=None)
        try:
            info.hooks = self._validated_hooks(module, name)
            self.pm.register(module, name=name)
        except Exception as exc:
            self._mark_broken(info, describe_exception(exc), exc)
            return info
        try:
            staged = self._collect(name)
            self._commit(staged, name, info.builtin)
        except Exception as exc:
            self.pm.unregister(name=name)
            self._mark_broken(info, describe_exception(exc), exc)
            return info
        self.plugins[name] = info
        if not staged:
            self._mark_empty(info, module)
        self._note_collisions(name)
        return info

    def add_local_plugin(self, target: str) -> PluginInfo:
        """Import ``target`` (a ``.py`` file, or a module importable from the current folder)
        and register it as plugin ``local:<module>`` with the same validation as an installed
        plugin: ``--plugin``, for trying a plugin before packaging it. Unlike an installed
        plugin, one named explicitly that fails to import or register is an error, not a
        warning: the user asked for it."""
        from abawbench.local_plugins import import_local_module, local_module_identity

        # The same module named twice (``--plugin my.py ... --plugin ./my.py``, or by file and by
        # module name) is loaded once: importing it again would re-run it and register it twice.
        expected, file = local_module_identity(target)
        loaded = self.pm.get_plugin(LOCAL_PREFIX + expected)
        if loaded is not None and LOCAL_PREFIX + expected in self.plugins:
            loaded_file = getattr(loaded, "__file__", None)
            if file is not None and loaded_file is not None and Path(loaded_file).resolve() == file:
                return self.plugins[LOCAL_PREFIX + expected]
            raise PluginError(f"--plugin {target}: another module named {expected!r} is already loaded as "
                              f"plugin {LOCAL_PREFIX + expected!r} (from {loaded_file}); rename one of them")
        module = import_local_module(target)
        name = LOCAL_PREFIX + module.__name__
        info = self.add_plugin(module, name, PluginInfo(name=name, version=getattr(module, "__version__", None),
                                                          distribution=None))
        if info.status == "broken":
            raise PluginError(f"--plugin {target}: plugin {name!r} is broken: {info.error}")
        return info

    def _validated_hooks(self, module: object, name: str) -> list[str]:
        """Names of the hooks ``module`` implements; unknown hook names are rejected."""
        hooks = []
        for attr in dir(module):
            if self.pm.parse_hookimpl_opts(module, attr) is None:
                continue
            if attr not in HOOK_NAMES:
                raise PluginError(
                    f"plugin {name!r} implements unknown hook {attr!r}"
                    f"{suggest(attr, list(HOOK_NAMES))}"
                )
            hooks.append(attr)
        return sorted(hooks)

    def _collect(self, plugin_name: str) -> list[tuple[str, Any]]:
        """Call each hook of one plugin, gathering what it registers without committing it.

        Each item is checked as it is registered, so a wrong type or a bad name fails at the
        plugin's own ``register(...)`` call."""
        staged: list[tuple[str, Any]] = []
        for kind, hook in HOOK_FOR_KIND.items():
            caller = getattr(self.pm.hook, hook)
            for impl in caller.get_hookimpls():
                if impl.plugin_name != plugin_name:
                    continue
                impl.function(register=_stager(staged, self.registries[kind], plugin_name))
        return staged

    def _commit(self, staged: list[tuple[str, Any]], plugin_name: str, builtin: bool) -> None:
        """Add staged items; if one is refused outright (a name registered twice by this
        plugin), nothing of this plugin stays registered. A name shared with another plugin is
        not refused here: the registry settles it and :meth:`_note_collisions` reports it."""
        added: list[tuple[str, str]] = []
        try:
            for kind, item in staged:
                self.registries[kind].add(item, plugin_name, builtin=builtin)
                added.append((kind, item.name))
        except Exception:
            for kind, item_name in added:
                self.registries[kind].remove(item_name, plugin_name)
            raise

    def _mark_empty(self, info: PluginInfo, module: object) -> None:
        info.status = "empty"
        info.error = _why_empty(module, info.hooks)
        if self.strict:
            raise PluginError(f"plugin {info.name!r} registered nothing: {info.error}")

    def collisions(self) -> list[Collision]:
        """Every name registered by more than one plugin, in every registry."""
        return [found for registry in self.registries.values() for found in registry.collisions()]

    def _note_collisions(self, plugin_name: str) -> None:
        """Mark each plugin that lost a name as "conflict", with the clashes in one line.

        A plugin loaded earlier can lose a name to one loaded later (two third parties
        registering it), so every plugin's status is brought up to date, not only the new
        one's."""
        collisions = self.collisions()
        lost: dict[str, list[str]] = {}
        for collision in collisions:
            for plugin in collision.refused:
                lost.setdefault(plugin, []).append(collision.describe())
        for plugin, reasons in lost.items():
            info = self.plugins.get(plugin)
            if info is not None and info.status in ("ok", "conflict"):
                info.status, info.error = "conflict", "; ".join(reasons)
        if self.strict:
            for collision in collisions:
                if plugin_name in collision.refused or plugin_name == collision.kept_by:
                    raise PluginError(collision.describe())

    def _mark_broken(self, info: PluginInfo, message: str, exc: BaseException) -> None:
        info.status = "broken"
        info.error = message
        self.plugins[info.name] = info
        if self.strict:
            raise PluginError(f"plugin {info.name!r} is broken: {message}") from exc

    def broken(self) -> list[PluginInfo]:
        """The plugins left out entirely (failed to import, to validate or to register)."""
        return [info for info in self.plugins.values() if info.status == "broken"]

    def problems(self) -> list[str]:
        """One line for each broken plugin, each plugin that registered nothing and each name
        registered by more than one plugin: what a user should know before trusting a run."""
        infos = sorted(self.plugins.values(), key=lambda info: info.name)
        lines = [f"plugin {info.name!r} is broken and was left out: {info.error}"
                 for info in infos if info.status == "broken"]
        lines += [f"plugin {info.name!r} registered nothing: {info.error}"
                  for info in infos if info.status == "empty"]
        lines += [collision.describe() for collision in self.collisions()]
        return lines

    def supplier(self, kind: str, name: str) -> dict[str, str | None]:
        """Which plugin supplied ``name`` of ``kind`` (a family member: the family's plugin),
        as ``{"plugin", "distribution", "version"}``: recorded in every result, so a score
        says whose code produced it. An unknown name fails with suggestions."""
        plugin = self.registries[kind].holder(name).plugin
        info = self.plugins.get(plugin)
        return {"plugin": plugin, "distribution": info.distribution if info else None,
                "version": info.version if info else None}


def _stager(staged: list[tuple[str, Any]], registry: Registry[Any], plugin_name: str
            ) -> Callable[[Any], None]:
    def register(item: Any) -> None:
        registry.check(item, plugin_name)
        staged.append((registry.kind, item))

    return register


def _load_order(ep: EntryPoint) -> tuple[bool, str, str]:
    return (_distribution_name(ep) != OWN_DISTRIBUTION, ep.name, _distribution_name(ep) or "")


def _distribution_name(ep: EntryPoint) -> str | None:
    """The normalised name (PEP 503) of the distribution declaring ``ep``, if known."""
    dist = getattr(ep, "dist", None)
    return _normalised(getattr(dist, "name", None) if dist is not None else None)


def _normalised(distribution: str | None) -> str | None:
    """A distribution name as PEP 503 compares them (``Abawbench_X`` is ``abawbench-x``)."""
    return re.sub(r"[-_.]+", "-", distribution).lower() if distribution else None


def _why_empty(module: object, hooks: list[str]) -> str:
    """Why a plugin registered nothing, as a hint its author can act on."""
    unmarked = [hook for hook in HOOK_NAMES
                if hook not in hooks and callable(getattr(module, hook, None))]
    if unmarked:
        return (f"{', '.join(unmarked)} {'is' if len(unmarked) == 1 else 'are'} not decorated "
                f"with @hookimpl (from abawbench.hookspecs import hookimpl)")
    if hooks:
        return f"its hooks ({', '.join(hooks)}) called register() for nothing"
    return "it implements no abawbench hook"


def _reserved_name_used(ep: EntryPoint) -> str | None:
    """Why a third-party ``ep`` may not load (it uses a built-in's name), or None."""
    if _distribution_name(ep) == OWN_DISTRIBUTION:
        return None
    if ep.name.startswith(BUILTIN_ENTRY_POINT_PREFIX):
        return (f"entry point names starting with {BUILTIN_ENTRY_POINT_PREFIX!r} are reserved "
                f"for abawbench's built-in plugins; name it after your package "
                f"(see CONTRIBUTING.md)")
    if ep.module == BUILTIN_PACKAGE or ep.module.startswith(BUILTIN_PACKAGE + "."):
        return (f"entry point {ep.name!r} points into {ep.module!r}; the package "
                f"{BUILTIN_PACKAGE!r} is reserved for abawbench's built-in plugins")
    return None


def _info_for(ep: EntryPoint) -> PluginInfo:
    dist = getattr(ep, "dist", None)
    return PluginInfo(
        name=ep.name,
        version=getattr(dist, "version", None),
        distribution=getattr(dist, "name", None) if dist is not None else None,
    )


def describe_exception(exc: BaseException) -> str:
    """An exception in one line: an abawbench error's own message, anything else with its type
    and the innermost ``file:line``, so a plugin's bug is located without a traceback."""
    if isinstance(exc, AbawbenchError):
        return str(exc)
    frame = traceback.extract_tb(exc.__traceback__)[-1:] if exc.__traceback__ else []
    where = f" (at {frame[0].filename}:{frame[0].lineno})" if frame else ""
    return f"{type(exc).__name__}: {exc}{where}"


def load_plugins(strict: bool | None = None, allowed: Iterable[str] | None = None,
                 local: Iterable[str] = ()) -> PluginHost:
    """A fresh host with every entry-point plugin loaded (honouring the environment), then the
    ``local`` modules (``--plugin``; not limited by ``ABAWBENCH_LOAD_PLUGINS``)."""
    host = PluginHost(strict=strict_from_env() if strict is None else strict)
    host.load_entry_points(set(allowed) if allowed is not None else allowed_from_env())
    for target in local:
        host.add_local_plugin(target)
    return host


_HOST: PluginHost | None = None


def get_host() -> PluginHost:
    """The process-wide host, loaded on first use."""
    global _HOST
    if _HOST is None:
        _HOST = load_plugins()
    return _HOST


def loaded_host() -> PluginHost | None:
    """The process-wide host if plugins were loaded already, else None (never loads them)."""
    return _HOST


def set_host(host: PluginHost | None) -> None:
    """Replace (or with None, forget) the process-wide host: for the CLI's --strict and tests."""
    global _HOST
    _HOST = host
