"""Validation of a loss's options: unknown names and bad values are a ConfigError that names
the loss, the option and what it accepts, before any training starts."""

from __future__ import annotations

from typing import Any, Callable, Mapping

from abawbench.errors import ConfigError
from abawbench.registry import suggest

Check = Callable[[str, Any], Any]
"""``check(where, value)`` returns the converted value or raises ConfigError naming ``where``."""


def read_options(
    loss: str,
    given: Mapping[str, Any],
    schema: Mapping[str, tuple[Check, Any]],
    fixed: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Checked options with defaults filled in.

    ``schema`` maps option name to ``(check, default)``. ``fixed`` options belong to a preset's
    name (``cross-entropy-smooth`` *is* label smoothing 0.2): giving another value is an error,
    so a leaderboard entry's loss name never lies about what ran.
    """
    if not isinstance(given, Mapping):
        raise ConfigError(f"loss {loss!r}: options must be a mapping, got {type(given).__name__}")
    fixed = dict(fixed or {})
    unknown = [name for name in given if name not in schema]
    if unknown:
        name = unknown[0]
        raise ConfigError(
            f"loss {loss!r}: unknown option {name!r}{suggest(name, list(schema))}; "
            f"options: {sorted(schema)}"
        )
    out = {}
    for name, (check, default) in schema.items():
        if name in fixed:
            value = check(f"loss {loss!r} option {name!r}", fixed[name])
            if name in given and check(f"loss {loss!r} option {name!r}", given[name]) != value:
                raise ConfigError(
                    f"loss {loss!r} fixes {name}={fixed[name]!r}; use the base loss to change it"
                )
            out[name] = value
        else:
            out[name] = check(f"loss {loss!r} option {name!r}", given.get(name, default))
    return out


def number(low: float, high: float, *, low_open: bool = False, high_open: bool = False) -> Check:
    """A real number in ``[low, high]`` (ends open where asked)."""

    def check(where: str, value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        v = float(value)
        below = v <= low if low_open else v < low
        above = v >= high if high_open else v > high
        if below or above:
            lo, hi = "(" if low_open else "[", ")" if high_open else "]"
            raise ConfigError(f"{where}: {v:g} is outside {lo}{low:g}, {high:g}{hi}")
        return v

    return check


def choice(*allowed: str) -> Check:
    """One of the ``allowed`` strings."""

    def check(where: str, value: Any) -> str:
        if value not in allowed:
            raise ConfigError(f"{where}: {value!r} is not one of {list(allowed)}")
        return value

    return check


def mapping() -> Check:
    """A mapping (nested options), copied into a plain dict."""

    def check(where: str, value: Any) -> dict[str, Any]:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)

    return check


def choice_or_numbers(*allowed: str) -> Check:
    """One of the ``allowed`` strings, or a list of numbers >= 0 (explicit per-class weights,
    e.g. ``[1, 3, 5, 1, 1, 1]``); the list's length is checked where the task is known."""
    named = choice(*allowed)

    def check(where: str, value: Any) -> str | list[float]:
        if isinstance(value, str):
            return named(where, value)
        if not isinstance(value, (list, tuple)) or not value:
            raise ConfigError(f"{where}: expected one of {list(allowed)} or a list of numbers, got {value!r}")
        weights = [number(0.0, 1e6)(f"{where} item {k}", item) for k, item in enumerate(value)]
        if not any(weights):
            raise ConfigError(f"{where}: every weight is 0")
        return weights

    return check
