"""A contributor's plugin can never shadow or break a built-in one.

CONTRIBUTING.md tells a contributor to publish ``abawbench-<name>`` with module
``abawbench_<name>`` and entry point ``<name>``. These tests follow that recipe with the names a
contributor is most likely to pick (the kinds abawbench itself provides: ``losses``, ...) and
check that the built-ins still load, and that entry points using the built-ins' reserved names
are refused, reported and never loaded.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import abawbench
import abawbench_builtins
from abawbench.errors import PluginError
from abawbench.plugins import load_plugins

from plugin_helpers import install_distribution, site_on_path

FOCAL_EXTRA = '''
from abawbench.hookspecs import hookimpl
from abawbench.specs import LossSpec

def _build(track, context):
    raise AssertionError("loading plugins must not build losses")

@hookimpl
def abawbench_register_losses(register):
    register(LossSpec(name="focal-extra", build=_build, description="a contributor's loss"))
'''

LOAD_AND_REPORT = '''
import json
from abawbench.plugins import load_plugins
host = load_plugins()
print(json.dumps({
    "losses": {entry.name: entry.plugin for entry in host.losses.entries()},
    "broken": {info.name: info.error for info in host.broken()},
}))
'''


def install_by_the_recipe(site: Path, name: str, source: str, version: str = "0.1.0") -> None:
    """A package named as CONTRIBUTING.md recommends: distribution ``abawbench-<name>``,
    module ``abawbench_<name>``, entry point ``<name>``."""
    install_distribution(site, f"abawbench-{name}", version,
                         entry_points={name: f"abawbench_{name}"},
                         modules={f"abawbench_{name}": source})


def test_contributor_package_named_after_a_builtin_kind_loads_beside_it(tmp_path):
    """End to end, as a user gets it: the package installed, every plugin loaded."""
    install_by_the_recipe(tmp_path, "losses", FOCAL_EXTRA)
    assert (tmp_path / "abawbench_losses-0.1.0.dist-info" / "entry_points.txt").read_text() == (
        "[abawbench]\nlosses = abawbench_losses\n"
    )
    # The contributor's folder comes first on the path, so any module it shares a name with
    # would win; abawbench itself is found where this test run imports it from.
    code_roots = [str(Path(package.__file__).resolve().parents[1])
                  for package in (abawbench, abawbench_builtins)]
    env = {key: value for key, value in os.environ.items()
           if key not in {"ABAWBENCH_LOAD_PLUGINS", "ABAWBENCH_STRICT_PLUGINS"}}
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), *code_roots])
    done = subprocess.run([sys.executable, "-c", LOAD_AND_REPORT], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["broken"] == {}
    assert report["losses"]["cross-entropy"] == "builtin.losses"
    assert report["losses"]["focal-extra"] == "losses"


@pytest.fixture
def site(tmp_path, monkeypatch):
    with site_on_path(tmp_path / "site", monkeypatch) as folder:
        yield folder


def _load_builtins_and(monkeypatch, *names: str, strict: bool = False):
    builtins = os.environ["ABAWBENCH_LOAD_PLUGINS"]
    monkeypatch.setenv("ABAWBENCH_LOAD_PLUGINS", ",".join([builtins, *names]))
    return load_plugins(strict=strict)


def test_third_party_entry_point_with_a_builtin_name_is_refused(site, monkeypatch):
    install_distribution(site, "abawbench-losses", "0.1.0",
                         entry_points={"builtin.losses": "abawbench_losses"},
                         modules={"abawbench_losses": FOCAL_EXTRA})
    host = _load_builtins_and(monkeypatch)
    refused = host.plugins["builtin.losses (from abawbench-losses)"]
    assert refused.status == "broken" and "reserved" in refused.error
    assert host.plugins["builtin.losses"].status == "ok"
    assert host.losses.entry("cross-entropy").plugin == "builtin.losses"
    assert "focal-extra" not in host.losses and "abawbench_losses" not in sys.modules

    with pytest.raises(PluginError, match="reserved"):
        _load_builtins_and(monkeypatch, strict=True)


def test_third_party_entry_point_into_the_builtin_package_is_refused(site, monkeypatch):
    install_distribution(site, "abawbench-sneaky", "0.1.0",
                         entry_points={"sneaky": "abawbench_builtins.losses"}, modules={})
    host = _load_builtins_and(monkeypatch, "sneaky")
    refused = host.plugins["sneaky (from abawbench-sneaky)"]
    assert refused.status == "broken" and "abawbench_builtins" in refused.error
    assert "sneaky" not in host.plugins
    assert [info.name for info in host.broken()] == [refused.name]


def test_builtin_names_stay_with_the_builtins_whatever_loads_first(site, monkeypatch):
    """An entry point sorting before every ``builtin.*`` that registers a built-in's loss name
    is the one refused; the built-in plugin keeps all its losses."""
    install_by_the_recipe(site, "acme", FOCAL_EXTRA.replace('"focal-extra"', '"cross-entropy"'))
    host = _load_builtins_and(monkeypatch, "acme")
    assert host.plugins["builtin.losses"].status == "ok"
    assert host.losses.entry("cross-entropy").plugin == "builtin.losses"
    acme = host.plugins["acme"]
    assert acme.status == "broken" and "duplicate loss name 'cross-entropy'" in acme.error


def test_an_entry_point_name_taken_by_one_distribution_is_refused_for_another(site, monkeypatch):
    install_by_the_recipe(site, "losses", FOCAL_EXTRA)
    install_distribution(site, "abawbench-other", "2.0",
                         entry_points={"losses": "abawbench_other"},
                         modules={"abawbench_other": FOCAL_EXTRA.replace("focal-extra", "other")})
    host = _load_builtins_and(monkeypatch, "losses")
    first, second = host.plugins["losses"], host.plugins["losses (from abawbench-other)"]
    assert (first.distribution, first.status) == ("abawbench-losses", "ok")
    assert second.status == "broken" and "already taken by distribution" in second.error
    assert "focal-extra" in host.losses and "other" not in host.losses
