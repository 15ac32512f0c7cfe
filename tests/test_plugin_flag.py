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
