"""Command-line flags generated from a pydantic configuration model.

A command line kept in step with a configuration model by hand drifts: fields without a flag,
help that shows ``None`` where the model has a real default. Here every field of the model
(fields of nested models included) becomes one flag whose help is the field's description and
whose shown default is the model's own, so a field added to the model is a flag with no edit
to the command line.

How a field's type becomes a flag:

- ``bool``: ``--x`` / ``--no-x``;
- ``Literal[...]``: its values as choices;
- ``list[...]``: comma-separated items (``--seeds 0,1,2``);
- ``int``, ``float``, ``str``, ``Path``: one value;
- anything else (``dict``, ...): a TOML value (``--loss-options '{cross-entropy = {...}}'``);
- ``X | None``: also takes the word ``none``, which unsets the field.

Values are checked against the field's type and constraints as they are parsed, so a bad value
is a usage error naming its flag. Flags the user did not give stay out of the parsed arguments
entirely (``argparse.SUPPRESS``): :func:`overrides_from_args` returns only what was given, so
a flag left out never overrides a configuration file.
"""

from __future__ import annotations

import argparse
import json
import re
import tomllib
import types
import typing
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any, Callable, Collection, Literal, Mapping, Union

from pydantic import BaseModel, TypeAdapter, ValidationError
from pydantic.fields import FieldInfo

FieldPath = tuple[str, ...]

NONE_WORD = "none"
_DEST_PREFIX = "config_field:"  # keeps generated dests apart from the command's own (config, ...)


@dataclass(frozen=True)
class ConfigFlag:
    """One configuration field and the flag that sets it."""

    path: FieldPath  # the field's place in the model, e.g. ("protocol", "epochs")
    flag: str  # e.g. "--epochs"
    field: FieldInfo
    group: str  # the enclosing model's field path, "" for top-level fields

    @property
    def dest(self) -> str:
        return _DEST_PREFIX + ".".join(self.path)


def config_flags(model: type[BaseModel], *, renames: Mapping[FieldPath, str] | None = None,
                 reserved: Collection[str] = ()) -> list[ConfigFlag]:
    """Every leaf field of ``model`` with its flag, in the model's field order.

    A field's flag is its name in kebab case; ``renames`` gives a field another flag name
    (flags users already type). Top-level fields own their names; a nested field whose name is
    taken (by one of them, or by a ``reserved`` flag such as the command's own ``--config``) gets
    its parents' names as a prefix (``--protocol-device``). A collision that remains is a
    programming error, raised when the parser is built (and so by the test suite)."""
    renames = dict(renames or {})
    leaves = list(_leaf_fields(model, ()))
    taken = {name.lstrip("-") for name in reserved}
    names: dict[FieldPath, list[str]] = {}
    for path, field in sorted(leaves, key=lambda leaf: len(leaf[0])):  # top-level fields first
        candidates = _flag_names(path, field, renames.get(path))
        if taken & set(candidates) and len(path) > 1:
            candidates = _flag_names(path, field, renames.get(path), prefixed=True)
        if taken & set(candidates):
            raise ValueError(f"configuration field {'.'.join(path)}: flag --{candidates[0]} is already taken")
        taken.update(candidates)
        names[path] = candidates
    return [ConfigFlag(path=path, flag=f"--{names[path][0]}", field=field, group=".".join(path[:-1]))
            for path, field in leaves]


def add_config_flags(parser: argparse.ArgumentParser, model: type[BaseModel], flags: list[ConfigFlag],
                     *, title: str) -> None:
    """Add ``flags`` to ``parser`` in groups that mirror a configuration file (``title``, e.g.
    "the --config file"): top-level keys, then a group per nested model's table, described by
    the model's docstring."""
    groups: dict[str, Any] = {}
    for flag in flags:
        if flag.group not in groups:
            if flag.group:
                nested = _nested_model(model, tuple(flag.group.split(".")))
                groups[flag.group] = parser.add_argument_group(
                    f"{flag.group} (the [{flag.group}] table of {title})", _first_line(nested.__doc__))
            else:
                groups[flag.group] = parser.add_argument_group(f"configuration (top-level keys of {title})")
        groups[flag.group].add_argument(flag.flag, **_argument_options(flag))


def overrides_from_args(args: argparse.Namespace, flags: list[ConfigFlag]) -> dict[str, Any]:
    """The given flags as a nested mapping shaped like the model (``{"protocol": {"epochs": 7}}``);
    flags not given are absent, a ``none`` given is None."""
    overrides: dict[str, Any] = {}
    for flag in flags:
        if hasattr(args, flag.dest):
            node = overrides
            for part in flag.path[:-1]:
                node = node.setdefault(part, {})
            node[flag.path[-1]] = getattr(args, flag.dest)
    return overrides


def shown_default(field: FieldInfo) -> str:
    """The field's default as a user would type it (``0,1``, ``off``, ``unset``)."""
    if field.is_required():
        return "required"
    value = field.get_default(call_default_factory=True)
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, (list, tuple, set, frozenset, dict)) and not value:
        return "empty"
    if isinstance(value, (list, tuple, set, frozenset)):
        return ",".join(str(item) for item in value)
    if isinstance(value, Enum):
        return str(value.value)
    if isinstance(value, dict):
        return _toml_inline(value)
    return str(value)


# --------------------------------------------------------------------------- field types


def _leaf_fields(model: type[BaseModel], prefix: FieldPath):
    for name, field in model.model_fields.items():
        if _is_model(field.annotation):
            yield from _leaf_fields(field.annotation, (*prefix, name))
        else:
            yield (*prefix, name), field


def _flag_names(path: FieldPath, field: FieldInfo, rename: str | None, prefixed: bool = False) -> list[str]:
    """The flag names (without dashes) a field takes: ``x``, plus ``no-x`` for booleans."""
    name = rename or _kebab(path[-1])
    if prefixed:
        name = "-".join(_kebab(part) for part in path[:-1]) + "-" + name
    return [name, f"no-{name}"] if _unwrap_optional(field.annotation)[0] is bool else [name]


def _kebab(name: str) -> str:
    return name.replace("_", "-")


def _argument_options(flag: ConfigFlag) -> dict[str, Any]:
    field = flag.field
    inner, optional = _unwrap_optional(field.annotation)
    help_text = f"{field.description or flag.path[-1].replace('_', ' ')} (default: {shown_default(field)}"
    if flag.flag[2:] != _kebab(flag.path[-1]):  # say which key a renamed flag sets
        help_text += f"; key {'.'.join(flag.path)}"
    help_text += ")"
    options: dict[str, Any] = {"dest": flag.dest, "default": argparse.SUPPRESS,
                               "help": help_text.replace("%", "%%")}
    if inner is bool:
        return {**options, "action": argparse.BooleanOptionalAction}
    options["type"] = _value_parser(field, optional, _split_value(inner))
    options["metavar"] = _metavar(inner) + (f"|{NONE_WORD}" if optional else "")
    return options


def _choices(annotation: Any) -> list[str]:
    """The values a Literal or Enum field takes, as typed; empty for other fields."""
    if typing.get_origin(annotation) is Literal:
        return [str(choice) for choice in typing.get_args(annotation)]
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        return [str(member.value) for member in annotation]
    return []


def _value_parser(field: FieldInfo, optional: bool, split: Callable[[str], Any]) -> Callable[[str], Any]:
    """Parse one flag value and check it against the field's type and constraints."""
    adapter = TypeAdapter(_constrained(field))

    def parse(text: str) -> Any:
        if optional and text.strip().lower() == NONE_WORD:
            return None
        try:
            return adapter.validate_python(split(text))
        except ValidationError as exc:
            raise argparse.ArgumentTypeError(_one_line(exc, text)) from None
    return parse


def _split_value(annotation: Any) -> Callable[[str], Any]:
    """How the text of one flag becomes the raw value pydantic validates."""
    if typing.get_origin(annotation) in (list, tuple, set, frozenset):
        return _comma_list
    if typing.get_origin(annotation) is Literal or _is_scalar_type(annotation):
        return lambda text: text
    return _toml_value


def _comma_list(text: str) -> list[str]:
    items = [part.strip() for part in text.split(",") if part.strip()]
    if not items:
        raise argparse.ArgumentTypeError("expected a comma-separated list")
    return items


def _toml_value(text: str) -> Any:
    try:
        return tomllib.loads(f"value = {text}")["value"]
    except tomllib.TOMLDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not a TOML value ({exc}): {text!r}") from None


def _metavar(annotation: Any) -> str:
    if _choices(annotation):
        return "{" + ",".join(_choices(annotation)) + "}"
    if typing.get_origin(annotation) in (list, tuple, set, frozenset):
        item = (typing.get_args(annotation) or (str,))[0]
        return f"{_metavar(item)},..."
    return {int: "INT", float: "FLOAT", str: "TEXT", Path: "PATH"}.get(annotation, "TOML")


def _constrained(field: FieldInfo) -> Any:
    """The field's type with its constraints (``ge=1``, ``min_length=1``) attached."""
    if not field.metadata:
        return field.annotation
    return typing.Annotated[(field.annotation, *field.metadata)]


def _unwrap_optional(annotation: Any) -> tuple[Any, bool]:
    """``(X, True)`` for ``X | None``, else ``(annotation, False)``."""
    members = typing.get_args(annotation)
    if typing.get_origin(annotation) in (Union, types.UnionType) and type(None) in members:
        others = [member for member in members if member is not type(None)]
        if len(others) == 1:
            return others[0], True
    return annotation, False


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _is_scalar_type(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, (str, int, float, Path, Enum))


def _nested_model(model: type[BaseModel], path: FieldPath) -> type[BaseModel]:
    for name in path:
        model = model.model_fields[name].annotation
    return model


def _first_line(text: str | None) -> str | None:
    return text.strip().splitlines()[0] if text and text.strip() else None


def _one_line(error: ValidationError, text: str) -> str:
    """The problems with one flag's value; an item of a list is named by its own text."""
    problems = [f"{item['input']!r}: {item['msg']}" if item["loc"] else f"{item['msg']} (got {text!r})"
                for item in error.errors()]
    return "; ".join(problems)


def _toml_inline(value: Any) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_toml_key(str(key))} = {_toml_inline(item)}" for key, item in value.items()) + "}"
    if isinstance(value, str):
        return json.dumps(value)  # a TOML basic string escapes as JSON does
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_inline(item) for item in value) + "]"
    return str(value)


def _toml_key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else json.dumps(key)
