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
from typing import Sequence

from abawbench import __version__
from abawbench.errors import AbawbenchError

# Order is the order in --help.
COMMAND_MODULES = (
    "run",
    "predict",
    "ensemble",
    "leaderboard",
    "compare",
    "data",
    "cache",
    "plugins",
    "listing",
    "config",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="abawbench",
        description=(
            "Benchmark models on the ABAW4 tracks: mtl (valence/arousal, 8 expressions, 12 AUs; "
            "scored by P_MTL) and lsd (train on synthetic faces, 6 expressions on real ones; "
            "macro F1). With no --data, runs use the embedded synthetic-face default."
        ),
    )
    parser.add_argument("--version", action="version", version=f"abawbench {__version__}")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    parser.add_argument(
        "--strict",
        action="store_true",
        help="fail when any plugin is broken (also: ABAWBENCH_STRICT_PLUGINS=1)",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        module = _command_module(name)
        if module is not None:
            module.add_parser(subparsers)
    return parser


def _command_module(name: str):
    try:
        return importlib.import_module(f"abawbench.commands.{name}")
    except ModuleNotFoundError as exc:
        if exc.name == f"abawbench.commands.{name}":
            return None  # command not built yet in this checkout
        raise


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        if args.strict:
            from abawbench.plugins import load_plugins, set_host

            set_host(load_plugins(strict=True))
        return int(args.handler(args) or 0)
    except AbawbenchError as exc:
        if args.debug:
            raise
        print(f"abawbench: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("abawbench: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
