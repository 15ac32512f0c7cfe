"""The command line: parse, dispatch to a command module, turn errors into one line.

Each subcommand lives in ``abawbench/commands/<name>.py`` with ``add_parser(subparsers)``
that sets ``handler=`` on its parser. Handlers return an exit code: 0 success, 1 a run failed,
2 a usage or input error. Heavy imports (torch, h5py) stay inside handlers so ``--help`` and
``list`` are fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import traceback
from types import ModuleType
from typing import Sequence

from abawbench import __version__
from abawbench.errors import AbawbenchError, PluginError

# The modules under abawbench/commands/, in the order --help lists their commands.
COMMAND_MODULES = (
    "run",
    "predict",
    "ensemble",
    "leaderboard",
    "report",
    "compare",
    "data",
    "cache",
    "plugins",
    "check_plugin",
    "listing",
    "config",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="abawbench",
        description=(
            "Benchmark models on a challenge's tracks under one fixed protocol. Tracks, datasets, "
            "models, losses and ensembles are plugins: 'abawbench list tracks' shows the tracks "
            "installed (built in: the ABAW4 challenge's). With no --data, a run uses the embedded "
            "default dataset."
        ),
        epilog="'abawbench COMMAND --help' describes a command and its flags.",
    )
    parser.add_argument("--version", action="version", version=f"abawbench {__version__}")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    parser.add_argument(
        "--strict",
        action="store_true",
        help="fail when any plugin is broken, registered nothing, or clashes with another (also: ABAWBENCH_STRICT_PLUGINS=1)",
    )
    parser.add_argument("--plugin", dest="plugin", action="append", default=[], metavar="MODULE",
                        help=PLUGIN_HELP)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(f"abawbench.commands.{name}").add_parser(subparsers)
    for command in subparsers.choices.values():
        _accept_plugin_after(command)
    return parser


PLUGIN_HELP = ("load this module as a plugin (a .py file, or a module importable from the current "
               "folder; repeatable), named local:<module>, to try a plugin before packaging it; default: "
               "installed plugins only")


def _accept_plugin_after(parser: argparse.ArgumentParser, depth: int = 1) -> None:
    """``--plugin`` after the command too (``abawbench run --plugin my.py ...``), on every
    command and action. Each level gets its own dest (``plugin_after_<depth>``) with no default:
    argparse copies a subparser's whole namespace over its parent's, so one shared dest (or any
    default) at the child level would overwrite what the parent level collected
    (``abawbench cache --plugin my.py ls`` would lose ``my.py``)."""
    parser.add_argument("--plugin", dest=f"{PLUGIN_AFTER}{depth}", action="append", default=argparse.SUPPRESS,
                        metavar="MODULE", help=PLUGIN_HELP)
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                _accept_plugin_after(child, depth + 1)


PLUGIN_AFTER = "plugin_after_"


def plugins_after(args: argparse.Namespace) -> list[str]:
    """The ``--plugin`` values given after the command, outer levels first, in order."""
    levels = sorted((int(key[len(PLUGIN_AFTER):]), value) for key, value in vars(args).items()
                    if key.startswith(PLUGIN_AFTER))
    return [target for _, values in levels for target in values]


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        local = [*args.plugin, *plugins_after(args)]
        if args.strict or local:
            from abawbench.plugins import load_plugins, set_host

            set_host(load_plugins(strict=True if args.strict else None, local=local))
        return int(args.handler(args) or 0)
    except AbawbenchError as exc:
        if args.debug:
            raise
        print(f"abawbench: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("abawbench: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        # A plugin's bug is the plugin author's to fix: name the plugin in one line. Anything
        # raised by the core alone is abawbench's bug and keeps its traceback.
        culprit = None if args.debug else plugin_in_traceback(exc)
        if culprit is None:
            raise
        message = " ".join(str(exc).split()) or "(no message)"
        print(f"abawbench: error: plugin {culprit[0]!r} failed: {type(exc).__name__}: {message} "
              f"(at {culprit[1]}; --debug shows the traceback)", file=sys.stderr)
        return PluginError.exit_code


def plugin_in_traceback(exc: BaseException) -> tuple[str, str] | None:
    """``(plugin name, file:line)`` of the innermost traceback frame in a loaded plugin's code
    (its module or a submodule of it), or None when no plugin's code was running."""
    from abawbench.plugins import loaded_host

    host = loaded_host()
    if host is None:  # no plugin was loaded, so no plugin's code ran (and none is loaded now)
        return None
    modules = {}
    for name, plugin in host.pm.list_name_plugin():
        module = plugin.__name__ if isinstance(plugin, ModuleType) else type(plugin).__module__
        if module.split(".")[0] not in {"abawbench", "builtins", "types"}:  # never the core's own
            modules[module] = name
    found = None
    for frame, line in traceback.walk_tb(exc.__traceback__):
        module = str(frame.f_globals.get("__name__", ""))
        for prefix, name in modules.items():
            if module == prefix or module.startswith(prefix + "."):
                found = (name, f"{frame.f_code.co_filename}:{line}")
    return found


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
