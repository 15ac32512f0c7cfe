"""Test-suite wide settings: offline, deterministic, and only abawbench's own plugins.

Third-party plugins installed in the environment are kept out (as datasette does) by limiting
loading to the entry points of the ``abawbench`` distribution itself; a test that wants another
plugin registers it explicitly.
"""

from __future__ import annotations

import os
from importlib.metadata import distribution

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TQDM_DISABLE", "1")

BUILTIN_PLUGINS = sorted(
    ep.name for ep in distribution("abawbench").entry_points if ep.group == "abawbench"
)
os.environ["ABAWBENCH_LOAD_PLUGINS"] = ",".join(BUILTIN_PLUGINS)
os.environ.pop("ABAWBENCH_STRICT_PLUGINS", None)


@pytest.fixture(autouse=True)
def _fresh_plugin_host(tmp_path, monkeypatch):
    """Each test starts with a freshly loaded plugin host and its own cache folder."""
    from abawbench.plugins import set_host

    monkeypatch.setenv("ABAWBENCH_CACHE", str(tmp_path / "abawbench-cache"))
    set_host(None)
    yield
    set_host(None)


@pytest.fixture
def host():
    """The built-in plugins, loaded strictly: a broken built-in fails the test."""
    from abawbench.plugins import load_plugins, set_host

    loaded = load_plugins(strict=True)
    set_host(loaded)
    return loaded
