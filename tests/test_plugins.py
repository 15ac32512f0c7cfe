"""Plugin discovery, isolation and validation; one test per hook (see test_docs.py)."""

from __future__ import annotations

import json

import pytest

from abawbench import cli
from abawbench.errors import PluginError, UnknownNameError
from abawbench.plugins import PluginHost, load_plugins, set_host
from abawbench.specs import EnsembleSpec, ModelFamily, ModelOptions, ModelSpec

from plugin_helpers import install_distribution, site_on_path, make_module

THIRD_PARTY = '''
from abawbench.hookspecs import hookimpl
from abawbench.specs import ModelSpec

def _build(options):
    raise AssertionError("listing must not build models")

@hookimpl
def abawbench_register_models(register):
    register(ModelSpec(name="thirdparty-net", build=_build, description="from a separate package"))
'''


@pytest.fixture
def site(tmp_path, monkeypatch):
    with site_on_path(tmp_path / "site", monkeypatch) as folder:
        yield folder


def test_third_party_distribution_discovered_through_entry_points(site, monkeypatch, capsys):
    install_distribution(
        site, "abawbench-thirdparty", "1.2.3",
        entry_points={"thirdparty": "thirdparty_plugin"},
        modules={"thirdparty_plugin": THIRD_PARTY},
    )
    monkeypatch.delenv("ABAWBENCH_LOAD_PLUGINS")
    host = load_plugins(strict=True)
    info = host.plugins["thirdparty"]
    assert (info.version, info.distribution, info.status) == ("1.2.3", "abawbench-thirdparty", "ok")
    assert info.hooks == ["abawbench_register_models"]
    assert host.models.entry("thirdparty-net").plugin == "thirdparty"

    set_host(host)
    assert cli.main(["list", "models", "--json"]) == 0
    listed = {row["name"]: row for row in json.loads(capsys.readouterr().out)}
    assert listed["thirdparty-net"]["plugin"] == "thirdparty"


def test_load_env_variable_limits_plugins(site, monkeypatch):
    install_distribution(site, "abawbench-thirdparty", "1.0", {"thirdparty": "thirdparty_plugin"},
                         {"thirdparty_plugin": THIRD_PARTY})
    monkeypatch.setenv("ABAWBENCH_LOAD_PLUGINS", "thirdparty")
    assert set(load_plugins().plugins) == {"thirdparty"}
    monkeypatch.setenv("ABAWBENCH_LOAD_PLUGINS", "")
    assert load_plugins().plugins == {}


def test_broken_plugin_is_isolated_and_reported(site, monkeypatch, capsys):
    install_distribution(
        site, "abawbench-broken", "0.1",
        entry_points={"broken": "broken_plugin", "thirdparty": "thirdparty_plugin"},
        modules={"broken_plugin": "raise RuntimeError('boom at import')\n",
                 "thirdparty_plugin": THIRD_PARTY},
    )
    monkeypatch.setenv("ABAWBENCH_LOAD_PLUGINS", "broken,thirdparty")
    host = load_plugins(strict=False)
    assert host.plugins["broken"].status == "broken"
    assert "boom at import" in host.plugins["broken"].error
    assert "thirdparty-net" in host.models  # the healthy plugin still registered

    set_host(host)
    assert cli.main(["plugins", "--json"]) == 0
    report = {row["name"]: row for row in json.loads(capsys.readouterr().out)}
    assert report["broken"]["status"] == "broken"
    assert report["thirdparty"]["status"] == "ok"

    with pytest.raises(PluginError, match="broken"):
        load_plugins(strict=True)
    monkeypatch.setenv("ABAWBENCH_STRICT_PLUGINS", "1")
    with pytest.raises(PluginError, match="boom at import"):
        load_plugins()


def test_broken_plugin_is_warned_about_in_one_line_by_list_and_run(site, monkeypatch, capsys):
    install_distribution(site, "abawbench-broken", "0.1", {"broken": "broken_plugin"},
                         {"broken_plugin": "raise RuntimeError('boom at import')\n"})
    monkeypatch.setenv("ABAWBENCH_LOAD_PLUGINS", "broken")
    assert cli.main(["list", "losses"]) == 0
    captured = capsys.readouterr()
    assert captured.out.strip() == "no losses registered"
    [warning] = captured.err.splitlines()
    assert warning.startswith("abawbench: warning: plugin 'broken' is broken and was left out: ")
    assert "boom at import" in warning

    assert cli.main(["run", "--track", "lsd", "--output", str(site / "runs")]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0] == warning  # before the run refuses to start without a track


def test_strict_flag_on_command_line_fails_with_one_line(site, monkeypatch, capsys):
    install_distribution(site, "abawbench-broken", "0.1", {"broken": "broken_plugin"},
                         {"broken_plugin": "raise RuntimeError('boom at import')\n"})
    monkeypatch.setenv("ABAWBENCH_LOAD_PLUGINS", "broken")
    assert cli.main(["--strict", "list", "models"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "boom at import" in err[0]


def test_plugin_failing_inside_a_hook_registers_nothing():
    module = make_module("halfway", '''
        from abawbench.hookspecs import hookimpl
        from abawbench.specs import ModelSpec
        @hookimpl
        def abawbench_register_models(register):
            register(ModelSpec(name="first", build=None))
            raise ValueError("second model failed")
    ''')
    host = PluginHost()
    info = host.add_plugin(module, "halfway")
    assert info.status == "broken" and "second model failed" in info.error
    assert "first" not in host.models


def test_misspelled_hook_is_rejected_with_its_name():
    module = make_module("typo", '''
        from abawbench.hookspecs import hookimpl
        @hookimpl
        def abawbench_register_model(register):
            pass
    ''')
    host = PluginHost()
    info = host.add_plugin(module, "typo")
    assert info.status == "broken"
    assert "abawbench_register_model" in info.error and "typo" in info.error
    assert "did you mean 'abawbench_register_models'" in info.error
    with pytest.raises(PluginError, match="unknown hook 'abawbench_register_model'"):
        PluginHost(strict=True).add_plugin(module, "typo")


FORGOT_HOOKIMPL = '''
from abawbench.specs import ModelSpec

def abawbench_register_models(register):
    register(ModelSpec(name="never-seen", build=None))
'''


def test_plugin_that_forgot_hookimpl_is_reported_empty(site, monkeypatch, capsys):
    install_distribution(site, "abawbench-forgetful", "0.1", {"forgetful": "forgetful_plugin"},
                         {"forgetful_plugin": FORGOT_HOOKIMPL})
    monkeypatch.setenv("ABAWBENCH_LOAD_PLUGINS", "forgetful")
    host = load_plugins()
    info = host.plugins["forgetful"]
    assert info.status == "empty" and len(host.models) == 0
    assert info.error == ("abawbench_register_models is not decorated with @hookimpl "
                          "(from abawbench.hookspecs import hookimpl)")
    set_host(host)
    assert cli.main(["plugins", "--json"]) == 0
    captured = capsys.readouterr()
    [row] = json.loads(captured.out)
    assert (row["name"], row["status"], row["hooks"]) == ("forgetful", "empty", [])
    assert captured.err == ""  # the table is the report: no warnings on top of it
    assert cli.main(["list", "models"]) == 0
    assert capsys.readouterr().err.splitlines() == [
        f"abawbench: warning: plugin 'forgetful' registered nothing: {info.error}"]
    with pytest.raises(PluginError, match="'forgetful' registered nothing"):
        load_plugins(strict=True)


def test_plugin_whose_hooks_register_nothing_or_that_has_none_is_empty():
    hooks_only = make_module("quiet", '''
        from abawbench.hookspecs import hookimpl
        @hookimpl
        def abawbench_register_models(register):
            pass
    ''')
    assert PluginHost().add_plugin(hooks_only, "quiet").error == (
        "its hooks (abawbench_register_models) called register() for nothing")
    nothing = make_module("nothing", "x = 1\n")
    info = PluginHost().add_plugin(nothing, "nothing")
    assert (info.status, info.error) == ("empty", "it implements no abawbench hook")


def test_duplicate_name_names_both_plugins():
    source = '''
        from abawbench.hookspecs import hookimpl
        from abawbench.specs import ModelSpec
        @hookimpl
        def abawbench_register_models(register):
            register(ModelSpec(name="same-net", build=None))
    '''
    host = PluginHost(strict=True)
    host.add_plugin(make_module("one", source), "plugin-one")
    with pytest.raises(PluginError) as excinfo:
        host.add_plugin(make_module("two", source), "plugin-two")
    message = str(excinfo.value)
    assert "same-net" in message and "plugin-one" in message and "plugin-two" in message


def test_a_family_prefix_two_plugins_register_resolves_for_neither():
    source = '''
        from abawbench.hookspecs import hookimpl
        from abawbench.specs import ModelFamily, ModelSpec
        @hookimpl
        def abawbench_register_models(register):
            register(ModelFamily(prefix="fam:", resolve=lambda arch: ModelSpec(name="fam:" + arch,
                                 build=None), known_names=list))
    '''
    host = PluginHost()
    host.add_plugin(make_module("one", source), "plugin-one")
    assert host.models.get("fam:x").name == "fam:x"
    host.add_plugin(make_module("two", source), "plugin-two")
    with pytest.raises(PluginError, match="'fam:\\*' is registered by plugins 'plugin-one' and 'plugin-two'"):
        host.models.get("fam:x")
    assert "fam:*" not in host.models


def test_a_plugin_registering_one_name_twice_is_broken():
    module = _registering("ModelSpec(name='twice', build=None)); register(ModelSpec(name='twice', build=None)")
    info = PluginHost().add_plugin(module, "stutter")
    assert info.status == "broken" and "registered the model name 'twice' twice" in info.error


def test_unknown_name_suggests_close_matches(host):
    with pytest.raises(UnknownNameError, match="did you mean 'lsd'"):
        host.tracks.get("lsdd")


# ---- typed registration and names: refused when the plugin loads, with the plugin named ----


def _registering(item_source: str, hook: str = "abawbench_register_models"):
    return make_module("registers", f'''
        from abawbench.hookspecs import hookimpl
        from abawbench.specs import LossSpec, ModelFamily, ModelSpec
        from abawbench.tracks import Track
        @hookimpl
        def {hook}(register):
            register({item_source})
    ''')


@pytest.mark.parametrize("hook, item, wrong, takes", [
    ("abawbench_register_losses", "ModelSpec(name='net', build=None)", "a ModelSpec", "LossSpec"),
    ("abawbench_register_models", "LossSpec(name='loss', build=None)", "a LossSpec",
     "ModelSpec or ModelFamily"),
    ("abawbench_register_tracks", "Track", "the class Track", "Track"),
    ("abawbench_register_datasets", "'abaw4'", "a str", "DatasetSpec"),
])
def test_registering_through_the_wrong_hook_is_refused_at_load_time(hook, item, wrong, takes):
    module = _registering(item, hook)
    info = PluginHost().add_plugin(module, "mixed-up")
    assert info.status == "broken"
    expected = f"plugin 'mixed-up' registered {wrong} through {hook}, which takes only {takes}"
    assert expected in info.error
    with pytest.raises(PluginError, match="mixed-up"):
        PluginHost(strict=True).add_plugin(module, "mixed-up")


@pytest.mark.parametrize("name", ["My_Net", "../x", "a/b", "", "my net", "net-", ".hidden", "a--b",
                                  "timm:resnet18", "net*"])
def test_bad_names_are_refused_at_load_time(name):
    host = PluginHost()
    info = host.add_plugin(_registering(f"ModelSpec(name={name!r}, build=None)"), "badly-named")
    assert info.status == "broken" and "badly-named" in info.error
    assert len(host.models) == 0


@pytest.mark.parametrize("name", ["my-net", "resnet18", "vit_base_patch16_224", "net.v2", "3d-cnn"])
def test_good_names_are_accepted(name):
    host = PluginHost(strict=True)
    host.add_plugin(_registering(f"ModelSpec(name={name!r}, build=None)"), "well-named")
    assert host.models.entry(name).plugin == "well-named"


@pytest.mark.parametrize("prefix, ok", [("my-family:", True), ("timm", False), ("Timm:", False),
                                        ("a/b:", False), (":", False)])
def test_family_prefix_is_a_name_and_a_colon(prefix, ok):
    host = PluginHost()
    item = f"ModelFamily(prefix={prefix!r}, resolve=None, known_names=list)"
    info = host.add_plugin(_registering(item), "family")
    assert (info.status == "ok") is ok
    assert ((prefix + "*") in host.models) is ok


def test_family_lookup_suggests_full_names_from_known_names_only_when_it_fails():
    calls = []

    def resolve(arch):
        if arch not in ("resnet18", "resnet50"):
            raise UnknownNameError(f"no such architecture {arch!r}")
        return ModelSpec(name="fam:" + arch, build=None)

    def known_names():
        calls.append(1)
        return ["resnet18", "resnet50", "vit_tiny"]

    host = PluginHost(strict=True)
    host.models.add(ModelFamily(prefix="fam:", resolve=resolve, known_names=known_names), "fam")
    assert host.models.get("fam:resnet18").name == "fam:resnet18"
    assert calls == []
    with pytest.raises(UnknownNameError, match=r"did you mean 'fam:resnet18'"):
        host.models.get("fam:resnt18")
    with pytest.raises(UnknownNameError, match="no such architecture 'zzz'"):
        host.models.get("fam:zzz")  # nothing close: the family's own reason stands


def test_unknown_plain_name_suggests_a_family_member_from_known_names():
    def resolve(arch):
        raise UnknownNameError(f"no such architecture {arch!r}")

    host = PluginHost(strict=True)
    host.models.add(ModelFamily(prefix="fam:", resolve=resolve, known_names=lambda: ["convnext_tiny"]), "fam")
    host.models.add(ModelFamily(prefix="bad:", resolve=resolve, known_names=lambda: 1 / 0), "bad")
    with pytest.raises(UnknownNameError, match=r"unknown model 'convnext_tiny' \(did you mean 'fam:convnext_tiny'\?\)"):
        host.models.get("convnext_tiny")
    with pytest.raises(UnknownNameError, match=r"did you mean 'fam:convnext_tiny'"):
        host.models.get("convnext_tiy")


# ---- one test per hook: each hook is called and what it registers is usable ---------------


def _one_hook_plugin(hook: str, item_source: str):
    return make_module(f"hook_{hook}", f'''
        from abawbench.hookspecs import hookimpl
        @hookimpl
        def {hook}(register):
            register({item_source})
    ''')


def test_hook_abawbench_register_models():
    host = PluginHost(strict=True)
    module = make_module("m", '''
        from torch import nn
        from abawbench.hookspecs import hookimpl
        from abawbench.specs import Backbone, ModelSpec
        def build(options):
            return Backbone(name="flat", module=nn.Flatten(), feature_dim=12,
                            data_config={"input_size": [3, 2, 2]}, weights_digest="none")
        @hookimpl
        def abawbench_register_models(register):
            register(ModelSpec(name="flat", build=build))
    ''')
    host.add_plugin(module, "m")
    backbone = host.models.get("flat").build(ModelOptions())
    assert backbone.feature_dim == 12


def test_hook_abawbench_register_datasets(host):
    assert len(host.datasets) >= 1
    spec = next(entry.item for entry in host.datasets.entries())
    assert callable(spec.read_split) and spec.tracks


def test_hook_abawbench_register_losses(host):
    assert "cross-entropy" in host.losses


def test_hook_abawbench_register_ensembles():
    host = PluginHost(strict=True)
    host.add_plugin(_one_hook_plugin(
        "abawbench_register_ensembles",
        "__import__('abawbench.specs').specs.EnsembleSpec(name='first-member', build=lambda o: None)",
    ), "e")
    assert isinstance(host.ensembles.get("first-member"), EnsembleSpec)


def test_hook_abawbench_register_augmentations():
    host = PluginHost(strict=True)
    host.add_plugin(_one_hook_plugin(
        "abawbench_register_augmentations",
        "__import__('abawbench.specs').specs.AugmentationSpec(name='twice', build=lambda base: lambda im: 2 * base(im))",
    ), "a")
    augment = host.augmentations.get("twice").build(lambda image: image + 1)
    assert augment(1) == 4


def test_hook_abawbench_register_tracks(host):
    assert {"lsd", "mtl"} <= set(host.tracks.names())


def test_builtin_plugins_load_cleanly(host, capsys):
    assert host.broken() == []
    set_host(host)
    assert cli.main(["plugins", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {"builtin.tracks", "builtin.losses", "builtin.abaw4", "builtin.synthface", "builtin.timm", "builtin.ensembles"} <= {r["name"] for r in rows}
    for row in rows:
        assert set(row) == {"name", "version", "distribution", "hooks", "status", "error"}
        assert row["status"] == "ok" and row["hooks"]
