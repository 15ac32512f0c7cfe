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

from plugin_helpers import LOSS_PLUGIN, install_distribution, site_on_path

FOCAL_EXTRA = LOSS_PLUGIN.format(name="focal-extra", description="a contributor's loss")

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


CROSS_ENTROPY_AND_FOCAL_EXTRA = FOCAL_EXTRA.replace(
    '    register(LossSpec(name="focal-extra"',
    '    register(LossSpec(name="cross-entropy", build=_build))\n'
    '    register(LossSpec(name="focal-extra"')


def test_builtin_names_stay_with_the_builtins_whatever_loads_first(site, monkeypatch):
    """An entry point sorting before every ``builtin.*`` that registers a built-in's loss name
    has that registration refused; the built-in keeps all its losses, the contributor keeps
    its other ones."""
    install_by_the_recipe(site, "acme", CROSS_ENTROPY_AND_FOCAL_EXTRA)
    host = _load_builtins_and(monkeypatch, "acme")
    assert host.plugins["builtin.losses"].status == "ok"
    assert host.losses.entry("cross-entropy").plugin == "builtin.losses"
    acme = host.plugins["acme"]
    assert acme.status == "conflict"
    assert acme.error == ("loss name 'cross-entropy' belongs to the built-in plugin "
                          "'builtin.losses'; the registration by plugin 'acme' is refused")
    assert host.losses.entry("focal-extra").plugin == "acme"

    with pytest.raises(PluginError, match="'cross-entropy' belongs to the built-in plugin"):
        _load_builtins_and(monkeypatch, "acme", strict=True)


def test_an_entry_point_name_declared_by_two_distributions_loads_from_neither(site, monkeypatch):
    """Which one would win would depend on how the distributions' names sort: neither does."""
    install_by_the_recipe(site, "losses", FOCAL_EXTRA)
    install_distribution(site, "abawbench-other", "2.0",
                         entry_points={"losses": "abawbench_other"},
                         modules={"abawbench_other": FOCAL_EXTRA.replace("focal-extra", "other")})
    host = _load_builtins_and(monkeypatch, "losses")
    first, second = host.plugins["losses (from abawbench-losses)"], host.plugins["losses (from abawbench-other)"]
    for refused in (first, second):
        assert refused.status == "broken"
        assert "'losses' is declared by distributions 'abawbench-losses' and 'abawbench-other'" in refused.error
    assert "losses" not in host.plugins
    assert "focal-extra" not in host.losses and "other" not in host.losses


# ---- finding 2 of issue 14, end to end: a third party's `resnet18` sorting before builtin.timm --

IMPOSTOR = '''
from abawbench.hookspecs import hookimpl
from abawbench.specs import ModelSpec

def _build(options):
    raise AssertionError("loading plugins must not build models")

@hookimpl
def abawbench_register_models(register):
    register(ModelSpec(name="resnet18", build=_build, description="not timm's", default_run=True))
    register(ModelSpec(name="aaa-net", build=_build, description="the impostor's own model"))
'''


def test_a_third_party_resnet18_sorting_first_leaves_the_timm_plugin_whole(site, monkeypatch, capsys):
    from abawbench import cli
    from abawbench.plugins import set_host

    from abawbench_builtins.timm.catalog import NAMED_ARCHS

    install_by_the_recipe(site, "aaa", IMPOSTOR)  # entry point 'aaa' sorts before 'builtin.*'
    host = _load_builtins_and(monkeypatch, "aaa")
    assert host.plugins["builtin.timm"].status == "ok"
    for named in NAMED_ARCHS:
        assert host.models.entry(named.name).plugin == "builtin.timm"
    assert "timm:*" in host.models
    assert host.plugins["aaa"].status == "conflict"
    assert host.models.entry("aaa-net").plugin == "aaa"  # the rest of the plugin is usable
    warning = ("abawbench: warning: model name 'resnet18' belongs to the built-in plugin "
               "'builtin.timm'; the registration by plugin 'aaa' is refused")

    set_host(host)
    assert cli.main(["list", "models", "--json"]) == 0
    captured = capsys.readouterr()
    listed = {row["name"]: row["plugin"] for row in json.loads(captured.out)}
    assert listed["resnet18"] == "builtin.timm" and listed["aaa-net"] == "aaa"
    assert captured.err.splitlines() == [warning]

    assert cli.main(["plugins"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("aaa ")]
    assert len(rows) == 1 and "conflict: model name 'resnet18' belongs to" in rows[0]

    # run warns before anything else happens (here: before it refuses an unknown track)
    assert cli.main(["run", "--track", "no-such-track", "--output", str(site / "runs")]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0] == warning and len(err) == 2 and "no-such-track" in err[1]


def test_builtins_keep_their_names_when_an_impostor_registered_first():
    """Not even a plugin added in-process before the built-ins load takes a built-in's name."""
    from abawbench.plugins import PluginHost

    from plugin_helpers import make_module

    host = PluginHost()
    host.add_plugin(make_module("impostor", IMPOSTOR), "impostor")
    assert host.models.entry("resnet18").plugin == "impostor"  # nobody else claims it yet
    host.load_entry_points({"builtin.timm"})
    assert host.plugins["builtin.timm"].status == "ok"
    assert host.models.entry("resnet18").plugin == "builtin.timm"
    assert host.plugins["impostor"].status == "conflict"
    assert host.models.entry("aaa-net").plugin == "impostor"


def test_a_name_two_third_parties_register_is_refused_for_both_in_either_order():
    from abawbench.plugins import PluginHost

    from plugin_helpers import make_module

    def loaded(order: list[str]):
        host = PluginHost()
        for name in order:
            host.add_plugin(make_module(name, FOCAL_EXTRA.replace('"a contributor\'s loss"',
                                                                  repr(name))), name)
        return host

    for host in (loaded(["first", "second"]), loaded(["second", "first"])):
        assert "focal-extra" not in host.losses and host.losses.names() == []
        assert {info.status for info in host.plugins.values()} == {"conflict"}
        assert host.problems() == [
            "loss name 'focal-extra' is registered by plugins 'first' and 'second'; refused for "
            "all of them (uninstall one, or leave one out with ABAWBENCH_LOAD_PLUGINS)"]
        with pytest.raises(PluginError, match="registered by plugins 'first' and 'second'"):
            host.losses.get("focal-extra")
