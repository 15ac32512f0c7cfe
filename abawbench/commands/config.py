"""``abawbench config schema|validate|show``: the run configuration's JSON Schema, or a TOML
run configuration checked before a long run is started with it."""

from __future__ import annotations

from pathlib import Path


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "config",
        help="print the configuration JSON Schema, or validate a TOML run configuration",
        description=(
            "Run configurations are TOML files; every flag of 'abawbench run' (see its --help) is a key "
            "there, the protocol flags under [protocol]. A flag given to 'abawbench run' overrides the file."
        ),
    )
    actions = parser.add_subparsers(dest="config_action", metavar="ACTION", required=True)
    schema = actions.add_parser("schema", help="print the JSON Schema of a run configuration (for editors)")
    schema.set_defaults(handler=handle_schema)
    validate = actions.add_parser(
        "validate", help="check a TOML run configuration: 'ok' and the resolved configuration, or what is wrong",
        description="Exit 0 and print 'ok: FILE' and the resolved configuration (defaults filled in) as JSON; "
                    "exit 2 with one line per bad field, naming the file, when it is not valid.")
    validate.add_argument("file", type=Path, metavar="FILE")
    validate.set_defaults(handler=handle_validate)
    show = actions.add_parser("show", help="print the resolved configuration of a TOML file as JSON (no 'ok' line)")
    show.add_argument("file", type=Path, metavar="FILE")
    show.set_defaults(handler=handle_show)


def handle_schema(args) -> int:
    from abawbench.config import config_json_schema

    print(config_json_schema())
    return 0


def handle_validate(args) -> int:
    from abawbench.config import load_config

    config = load_config(args.file)
    print(f"ok: {args.file}")
    print(config.model_dump_json(indent=2))
    return 0


def handle_show(args) -> int:
    from abawbench.config import load_config

    print(load_config(args.file).model_dump_json(indent=2))
    return 0
