"""Importing a plugin that is not installed: ``abawbench --plugin MODULE``.

Trying a plugin before packaging it should not need a package: pytest has ``-p``, lm-eval
``--include_path``. The module is then registered by :meth:`abawbench.plugins.PluginHost.add_local_plugin`
like an installed plugin, under the name ``local:<module>``.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

from abawbench.errors import PluginError
from abawbench.plugins import describe_exception


def _is_path(target: str) -> bool:
    return target.endswith(".py") or os.sep in target or "/" in target


def local_module_identity(target: str) -> tuple[str, Path | None]:
    """The module name ``target`` will be imported under and the file it resolves to (None when
    it cannot be found; the import then reports why), without running the module: so that
    ``--plugin ./my.py --plugin my`` can be recognised as one module before it is executed twice."""
    if _is_path(target):
        path = Path(target)
        return path.stem, path.resolve() if path.is_file() else None
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        spec = importlib.util.find_spec(target)
    except Exception:  # a missing parent package: import_local_module explains it
        return target, None
    origin = getattr(spec, "origin", None)
    return target, Path(origin).resolve() if origin and os.path.isfile(origin) else None


def import_local_module(target: str) -> ModuleType:
    """The module ``target`` names: a path to a ``.py`` file (its folder goes on ``sys.path``,
    so it can import its neighbours) or a dotted name importable from the current folder."""
    path = Path(target)
    try:
        if _is_path(target):
            if not path.is_file():
                raise PluginError(f"--plugin {target}: no such file")
            folder = str(path.resolve().parent)
            if folder not in sys.path:
                sys.path.insert(0, folder)
            spec = importlib.util.spec_from_file_location(path.stem, path)
            if spec is None or spec.loader is None:
                raise PluginError(f"--plugin {target}: cannot be imported as a Python module")
            module = importlib.util.module_from_spec(spec)
            sys.modules[path.stem] = module  # as an import would: its classes can be found by name
            spec.loader.exec_module(module)
            return module
        if os.getcwd() not in sys.path and "" not in sys.path:
            sys.path.insert(0, os.getcwd())
        return importlib.import_module(target)
    except PluginError:
        raise
    except Exception as exc:  # the module's own failure, or no such module
        sys.modules.pop(path.stem, None)
        if isinstance(exc, ModuleNotFoundError) and exc.name is not None and (
                target == exc.name or target.startswith(exc.name + ".")):
            raise PluginError(f"--plugin {target}: no module {target!r} importable from {os.getcwd()} "
                              f"(give a .py file or run from the folder that holds the module)") from exc
        raise PluginError(f"--plugin {target}: cannot import it: {describe_exception(exc)}") from exc
