"""``abawbench plugins``: which plugins loaded, their versions, hooks and status."""

from __future__ import annotations

import json

from tabulate import tabulate


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "plugins",
        help="list installed plugins with version, hooks and status",
        description="List every plugin found through the 'abawbench' entry-point group. An entry "
                    "point that may not load (one using a built-in's reserved name, or a name "
                    "another distribution already took) is listed as broken under "
                    "'<name> (from <distribution>)'.",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.set_defaults(handler=handle)


def handle(args) -> int:
    from abawbench.plugins import get_host

    infos = sorted(get_host().plugins.values(), key=lambda info: info.name)
    if args.json:
        print(json.dumps([info.as_dict() for info in infos], indent=2))
        return 0
    rows = [
        [info.name, info.version or "", ", ".join(h.removeprefix("abawbench_") for h in info.hooks),
         info.status if info.status == "ok" else f"broken: {info.error}"]
        for info in infos
    ]
    print(tabulate(rows, headers=["plugin", "version", "hooks", "status"]))
    return 0
