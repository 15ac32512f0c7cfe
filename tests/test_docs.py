"""Meta-tests, as datasette has: every hook is documented with its signature and tested; the
worked plugin example in CONTRIBUTING.md really works; the naming rules it states are the ones
the loader enforces."""

from __future__ import annotations

import inspect
import re
import sys
from pathlib import Path

import pytest

from abawbench import hookspecs
from abawbench.plugins import BUILTIN_ENTRY_POINT_PREFIX, BUILTIN_PACKAGE, HOOK_NAMES, PluginHost
from abawbench.registry import FAMILY_PREFIX_PATTERN, NAME_PATTERN
from abawbench.specs import ModelOptions

ROOT = Path(__file__).resolve().parents[1]
CONTRIBUTING = (ROOT / "CONTRIBUTING.md").read_text(encoding="utf-8")
HOOKS = [name for name, fn in inspect.getmembers(hookspecs, inspect.isfunction)
         if name.startswith("abawbench_")]


def test_hook_list_matches_hookspecs():
    assert sorted(HOOKS) == sorted(HOOK_NAMES)


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_documented_with_signature(hook):
    params = ", ".join(inspect.signature(getattr(hookspecs, hook)).parameters)
    assert f"{hook}({params})" in CONTRIBUTING


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_has_a_test(hook):
    import test_plugins

    assert hasattr(test_plugins, f"test_hook_{hook}"), f"add test_hook_{hook} to tests/test_plugins.py"


def _example_files() -> dict[str, str]:
    blocks = re.findall(r"```\w+ file=(\S+)\n(.*?)```", CONTRIBUTING, flags=re.S)
    return {name: body for name, body in blocks}


def test_contributing_example_plugin_works(tmp_path, monkeypatch):
    files = _example_files()
    assert {"pyproject.toml", "abawbench_tinycnn.py"} <= set(files)
    (tmp_path / "abawbench_tinycnn.py").write_text(files["abawbench_tinycnn.py"], encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("abawbench_tinycnn", None)
    import abawbench_tinycnn  # noqa: F401  (the file written from the docs)

    # the example follows the naming recipe: abawbench-<name>, abawbench_<name>, <name>
    assert 'name = "abawbench-tinycnn"' in files["pyproject.toml"]
    assert 'tinycnn = "abawbench_tinycnn"' in files["pyproject.toml"]
    host = PluginHost(strict=True)
    host.add_plugin(abawbench_tinycnn, "tinycnn")
    backbone = host.models.get("tinycnn").build(ModelOptions(image_size=32))
    import torch

    assert backbone.module(torch.zeros(2, 3, 32, 32)).shape == (2, backbone.feature_dim)
    sys.modules.pop("abawbench_tinycnn", None)


def test_naming_rules_in_contributing_are_the_ones_enforced():
    assert f"`{NAME_PATTERN.pattern}`" in CONTRIBUTING
    for good in ("my-net", "cross-entropy-smooth", "resnet18", "vit_base_patch16_224", "net.v2"):
        assert f"`{good}`" in CONTRIBUTING and NAME_PATTERN.fullmatch(good), good
    for bad in ("My_Net", "my net", "a/b", "../x", "net-"):
        assert f"`{bad}`" in CONTRIBUTING and not NAME_PATTERN.fullmatch(bad), bad
    for prefix in ("timm:", "dln:"):
        assert f"`{prefix}`" in CONTRIBUTING and FAMILY_PREFIX_PATTERN.fullmatch(prefix)
    assert f"`{BUILTIN_ENTRY_POINT_PREFIX}`" in CONTRIBUTING
    assert f"`{BUILTIN_PACKAGE}`" in CONTRIBUTING
