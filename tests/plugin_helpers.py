"""Helpers to make throwaway plugins: in-process modules and real installed distributions."""

from __future__ import annotations

import sys
import textwrap
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Iterator

import pytest


LOSS_PLUGIN = '''
from abawbench.hookspecs import hookimpl
from abawbench.specs import LossSpec

def _build(track, context):
    raise AssertionError("loading or listing plugins must not build losses")

@hookimpl
def abawbench_register_losses(register):
    register(LossSpec(name="{name}", build=_build, description="{description}"))
'''
"""A plugin registering one loss ``{name}`` that must never be built (fill with ``format``)."""


def make_module(name: str, source: str) -> ModuleType:
    """An in-memory module built from ``source`` (dedented)."""
    module = ModuleType(name)
    exec(compile(textwrap.dedent(source), f"<{name}>", "exec"), module.__dict__)
    return module


def install_distribution(
    site: Path, dist_name: str, version: str, entry_points: dict[str, str], modules: dict[str, str]
) -> None:
    """Write a minimal installed distribution (``*.dist-info`` with ``entry_points.txt``) plus
    its modules into ``site``; with ``site`` on ``sys.path`` importlib.metadata finds it exactly
    as it finds a pip-installed package."""
    dist_info = site / f"{dist_name.replace('-', '_')}-{version}.dist-info"
    dist_info.mkdir(parents=True)
    (dist_info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {dist_name}\nVersion: {version}\n", encoding="utf-8"
    )
    lines = ["[abawbench]"] + [f"{name} = {target}" for name, target in entry_points.items()]
    (dist_info / "entry_points.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    for module_name, source in modules.items():
        (site / f"{module_name}.py").write_text(textwrap.dedent(source), encoding="utf-8")


@contextmanager
def site_on_path(folder: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """``folder``, created and first on ``sys.path`` (a stand-in for site-packages); modules
    imported from it are forgotten afterwards, so the next test imports its own versions."""
    folder.mkdir()
    monkeypatch.syspath_prepend(str(folder))
    try:
        yield folder
    finally:
        for name, module in list(sys.modules.items()):
            if Path(getattr(module, "__file__", None) or "/").is_relative_to(folder):
                del sys.modules[name]


def serve_with_plugin(module: ModuleType, plugin_name: str):
    """The built-in plugins (loaded strictly, so a broken built-in fails the test) plus
    ``module`` registered as plugin ``plugin_name``, installed as the host every command uses."""
    from abawbench.plugins import load_plugins, set_host

    host = load_plugins(strict=True)
    host.add_plugin(module, plugin_name)
    set_host(host)
    return host
