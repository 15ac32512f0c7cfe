"""``abawbench plugins``: which plugins loaded, their versions, hooks and status.

Also home of :func:`warn_about_plugins`, the one-line warnings ``run`` and ``list`` print, so
that a broken plugin, one that registered nothing or a refused duplicate name is never noticed
only by its absence.
"""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING

from tabulate import tabulate

if TYPE_CHECKING:
    from abawbench.plugins import PluginHost


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "plugins",
        help="list installed plugins with version, hooks and status",
        description="List every plugin found through the 'abawbench' entry-point group with its "
                    "status: ok; broken (left out: it failed to load, or its entry point uses a "
                    "built-in's reserved name or a name another distribution declares too, "
                    "listed as '<name> (from <distribution>)'); empty (it registered nothing, "
                    "e.g. hooks without @hookimpl); conflict (a name it registered is a "
                    "built-in's or another plugin's too, and was refused).",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.set_defaults(handler=handle)


def warn_about_plugins(host: PluginHost | None = None) -> None:
    """Print each of the host's plugin problems as one warning line on stderr."""
    if host is None:
        from abawbench.plugins import get_host

        host = get_host()
    for line in host.problems():
        print(f"abawbench: warning: {line}", file=sys.stderr)


def handle(args) -> int:
    from abawbench.plugins import get_host

    infos = sorted(get_host().plugins.values(), key=lambda info: info.name)
    if args.json:
        print(json.dumps([info.as_dict() for info in infos], indent=2))
        return 0
    rows = [
        [info.name, info.version or "", ", ".join(h.removeprefix("abawbench_") for h in info.hooks),
         info.status if info.status == "ok" else f"{info.status}: {info.error}"]
        for info in infos
    ]
    print(tabulate(rows, headers=["plugin", "version", "hooks", "status"]))
    return 0
