"""Configuration validation and the command line's contract (exit codes, one-line errors)."""

from __future__ import annotations

import json

import pytest

from abawbench import __version__, cli
from abawbench.config import RunConfig, load_config
from abawbench.errors import ConfigError


def test_toml_then_flags_override(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text('track = "mtl"\nseeds = [0, 1]\n[protocol]\nepochs = 3\nhead = "mlp"\n')
    config = load_config(path, {"seeds": [5], "protocol": {"epochs": 7, "lr": None}})
    assert config.track == "mtl" and config.seeds == [5]
    assert (config.protocol.epochs, config.protocol.head) == (7, "mlp")


def test_invalid_config_lists_every_bad_field(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text('device = "tpu"\nseeds = [1, 1]\ncolour = "red"\n[protocol]\nepochs = 0\n')
    with pytest.raises(ConfigError) as excinfo:
        load_config(path)
    message = str(excinfo.value)
    assert "4 problem(s)" in message and str(path) in message
    for field in ("device", "seeds", "colour", "protocol.epochs"):
        assert f"  {field}:" in message


def test_bad_toml_names_the_file(tmp_path):
    path = tmp_path / "broken.toml"
    path.write_text("track = \n")
    with pytest.raises(ConfigError, match="broken.toml: not valid TOML"):
        load_config(path)


def test_config_schema_command(capsys):
    assert cli.main(["config", "schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert schema["title"] == "RunConfig" and "protocol" in schema["properties"]


def test_config_show_reports_errors_in_one_line_set(tmp_path, capsys):
    path = tmp_path / "bad.toml"
    path.write_text("seeds = []\n")
    assert cli.main(["config", "show", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("abawbench: error: invalid configuration") and "Traceback" not in err


def test_version(capsys):
    with pytest.raises(SystemExit) as excinfo:
        cli.main(["--version"])
    assert excinfo.value.code == 0
    assert capsys.readouterr().out.strip() == f"abawbench {__version__}"


def test_usage_error_exit_code_2(capsys):
    with pytest.raises(SystemExit) as excinfo:
        cli.main(["list", "widgets"])
    assert excinfo.value.code == 2


def test_missing_config_file_is_one_line_exit_2(tmp_path, capsys):
    assert cli.main(["config", "show", str(tmp_path / "absent.toml")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"abawbench: error: {tmp_path / 'absent.toml'}: configuration file not found"]


def test_default_config_is_valid():
    config = RunConfig()
    assert config.track == "lsd" and config.seeds == [0]
