"""``abawbench list KIND``: what the plugins registered, without building anything."""

from __future__ import annotations

import json

from tabulate import tabulate

from abawbench.registry import KINDS


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "list",
        help=f"list registered {', '.join(KINDS[:-1])} or {KINDS[-1]}",
        description="List what plugins registered. Nothing is built: listing models loads no weights.",
    )
    parser.add_argument("kind", choices=KINDS)
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.set_defaults(handler=handle)


def handle(args) -> int:
    from abawbench.commands.plugins import warn_about_plugins
    from abawbench.plugins import get_host

    host = get_host()
    warn_about_plugins(host)  # on stderr: --json output stays parseable
    registry = host.registries[args.kind]
    rows = [
        {"name": entry.name, "plugin": entry.plugin, "description": getattr(entry.item, "description", "")}
        for entry in registry.entries()
    ]
    if args.json:
        print(json.dumps(rows, indent=2))
    elif rows:
        print(tabulate([[r["name"], r["plugin"], r["description"]] for r in rows],
                       headers=["name", "plugin", "description"]))
    else:
        print(f"no {args.kind} registered")
    return 0
