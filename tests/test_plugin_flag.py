"""``--plugin MODULE``: a module that is not installed is loaded as plugin ``local:<module>``,
before or after the command, with the same validation as an installed plugin."""

from __future__ import annotations

import json
import sys
import textwrap

import pytest

from abawbench.cli import main

from plugin_helpers import LOSS_PLUGIN

@pytest.fixture
def folder(tmp_path, monkeypatch):
    """A folder with plugin modules, made the current folder; its modules are forgotten after."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    before = set(sys.modules)
    yield tmp_path
    for name in set(sys.modules) - before:
        if name.startswith("flagplug"):
            del sys.modules[name]


def loss_plugin(name: str) -> str:
    return LOSS_PLUGIN.format(name=name, description="tried before packaging")


def write(folder, name, source):
    (folder / f"{name}.py").write_text(textwrap.dedent(source), encoding="utf-8")


def listed_losses(capsys) -> dict[str, str]:
    return {row["name"]: row["plugin"] for row in json.loads(capsys.readouterr().out)}


@pytest.mark.parametrize("where", ["before", "after"])
def test_a_py_file_is_loaded_as_local_plugin(folder, capsys, where):
    write(folder, "flagplug_a", loss_plugin("tried-loss"))
    argv = ["list", "losses", "--json"]
    argv = ["--plugin", "flagplug_a.py", *argv] if where == "before" else [*argv, "--plugin", "flagplug_a.py"]
    assert main(argv) == 0
    losses = listed_losses(capsys)
    assert losses["tried-loss"] == "local:flagplug_a"
    assert losses["cross-entropy"] == "builtin.losses"  # the installed plugins are still there


def test_dotted_modules_repeatable_and_shown_by_plugins(folder, capsys):
    (folder / "flagplug_pkg").mkdir()
    (folder / "flagplug_pkg" / "__init__.py").write_text("", encoding="utf-8")
    write(folder / "flagplug_pkg", "losses", loss_plugin("pkg-loss"))
    write(folder, "flagplug_b", loss_plugin("b-loss"))
    assert main(["--plugin", "flagplug_pkg.losses", "plugins", "--json", "--plugin", "flagplug_b"]) == 0
    infos = {info["name"]: info for info in json.loads(capsys.readouterr().out)}
    assert infos["local:flagplug_pkg.losses"]["status"] == "ok"
    assert infos["local:flagplug_b"]["hooks"] == ["abawbench_register_losses"]


def test_nested_actions_accept_it(folder, capsys):
    write(folder, "flagplug_c", loss_plugin("c-loss"))
    # 'data check' parses --plugin after its action; the path holds no data, so the check fails
    assert main(["data", "check", str(folder), "--track", "lsd", "--plugin", "flagplug_c.py"]) == 2
    assert "--plugin" not in capsys.readouterr().err


def test_missing_module_and_file_are_one_line_errors(folder, capsys):
    assert main(["--plugin", "flagplug_none.py", "list", "losses"]) == 2
    assert capsys.readouterr().err.strip() == "abawbench: error: --plugin flagplug_none.py: no such file"
    assert main(["--plugin", "flagplug_none", "list", "losses"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("abawbench: error: --plugin flagplug_none: no module 'flagplug_none' importable from")
    assert "\n" not in err


def test_a_plugin_registering_the_wrong_type_is_refused_with_its_name(folder, capsys):
    write(folder, "flagplug_d", loss_plugin("d-loss").replace(
        'register(LossSpec(name="d-loss", build=_build, description="tried before packaging"))',
        'register("d-loss")'))
    assert main(["--plugin", "flagplug_d.py", "list", "losses"]) == 2
    err = capsys.readouterr().err
    assert "plugin 'local:flagplug_d' is broken" in err and "registered a str through abawbench_register_losses" in err


def test_a_builtin_name_stays_the_builtins(folder, capsys):
    write(folder, "flagplug_e", loss_plugin("cross-entropy"))
    assert main(["--plugin", "flagplug_e.py", "list", "losses", "--json"]) == 0
    captured = capsys.readouterr()
    assert {row["name"]: row["plugin"] for row in json.loads(captured.out)}["cross-entropy"] == "builtin.losses"
    assert "the registration by plugin 'local:flagplug_e' is refused" in captured.err


def counting_plugin(folder, name: str) -> None:
    """A loss plugin that appends a line to ``<name>.imported`` each time its module runs."""
    write(folder, name, f"open({str(folder / (name + '.imported'))!r}, 'a').write('run\\n')\n"
          + textwrap.dedent(loss_plugin(f"{name}-loss")))


def times_imported(folder, name: str) -> int:
    marker = folder / f"{name}.imported"
    return len(marker.read_text().splitlines()) if marker.exists() else 0


@pytest.mark.parametrize("argv", [
    ["cache", "--plugin", "flagplug_f.py", "ls"],  # between a group and its action
    ["cache", "ls", "--plugin", "flagplug_f.py"],
    ["data", "--plugin", "flagplug_f.py", "check", "{folder}", "--track", "lsd"],
    ["data", "check", "{folder}", "--track", "lsd", "--plugin", "flagplug_f.py"],
])
def test_plugin_after_a_command_group_is_loaded_in_either_order(folder, capsys, monkeypatch, argv):
    monkeypatch.setenv("ABAWBENCH_CACHE", str(folder / "cache"))  # 'cache ls' reads no real cache
    counting_plugin(folder, "flagplug_f")
    main([arg.format(folder=folder) for arg in argv])
    assert times_imported(folder, "flagplug_f") == 1


def test_plugin_at_every_level_is_loaded(folder, capsys):
    for name in ("flagplug_g1", "flagplug_g2", "flagplug_g3"):
        counting_plugin(folder, name)
    main(["--plugin", "flagplug_g1.py", "data", "--plugin", "flagplug_g2.py", "check", str(folder),
          "--track", "lsd", "--plugin", "flagplug_g3.py"])
    assert [times_imported(folder, n) for n in ("flagplug_g1", "flagplug_g2", "flagplug_g3")] == [1, 1, 1]


@pytest.mark.parametrize("argv", [
    ["--plugin", "flagplug_h.py", "list", "losses", "--json", "--plugin", "flagplug_h.py"],
    ["--plugin", "./flagplug_h.py", "--plugin", "flagplug_h", "list", "losses", "--json"],
    ["--plugin", "flagplug_h", "list", "losses", "--json", "--plugin", "{folder}/flagplug_h.py"],
])
def test_the_same_module_named_twice_is_loaded_once(folder, capsys, argv):
    counting_plugin(folder, "flagplug_h")
    assert main([arg.format(folder=folder) for arg in argv]) == 0
    assert listed_losses(capsys)["flagplug_h-loss"] == "local:flagplug_h"
    assert times_imported(folder, "flagplug_h") == 1


def test_two_different_modules_with_one_name_are_one_line_error(folder, capsys):
    counting_plugin(folder, "flagplug_i")
    (folder / "other").mkdir()
    counting_plugin(folder / "other", "flagplug_i")
    assert main(["--plugin", "flagplug_i.py", "--plugin", "other/flagplug_i.py", "list", "losses"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("abawbench: error: --plugin other/flagplug_i.py: another module named 'flagplug_i'")
    assert "\n" not in err
