"""``abawbench config schema|show``: the run configuration's JSON Schema, or a resolved config."""

from __future__ import annotations

from pathlib import Path


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "config",
        help="print the configuration JSON Schema or validate a configuration file",
        description="Configuration files are TOML; every field of 'abawbench run' can be set there.",
    )
    actions = parser.add_subparsers(dest="config_action", metavar="ACTION", required=True)
    schema = actions.add_parser("schema", help="print the JSON Schema of a run configuration (for editors)")
    schema.set_defaults(handler=handle_schema)
    show = actions.add_parser("show", help="validate a TOML file and print the resolved configuration")
    show.add_argument("file", type=Path)
    show.set_defaults(handler=handle_show)


def handle_schema(args) -> int:
    from abawbench.config import config_json_schema

    print(config_json_schema())
    return 0


def handle_show(args) -> int:
    from abawbench.config import load_config

    print(load_config(args.file).model_dump_json(indent=2))
    return 0
