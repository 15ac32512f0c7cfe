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

# The modules under abawbench/commands/, in the order --help lists their commands.
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
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(f"abawbench.commands.{name}").add_parser(subparsers)
    return parser


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
