"""Configuration validation and the command line's contract (exit codes, one-line errors, flags
generated from the configuration model)."""

from __future__ import annotations

import argparse
import json
import re
import shlex
from pathlib import Path
from typing import Literal

import pytest
from pydantic import BaseModel, Field

from abawbench import __version__, cli
from abawbench.commands import run as run_command
from abawbench.commands.config_flags import add_config_flags, config_flags, overrides_from_args
from abawbench.config import ProtocolConfig, RunConfig, load_config
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


# --------------------------------------------------------------------------- the generated flags


def _help(argv: list[str], capsys) -> str:
    with pytest.raises(SystemExit) as excinfo:
        cli.main([*argv, "--help"])
    assert excinfo.value.code == 0
    return capsys.readouterr().out


def _flag_help(help_text: str, flag: str) -> str:
    """The help of one flag, on one line: from its option line to the next option or group."""
    lines = help_text.splitlines()
    start = next(i for i, line in enumerate(lines) if re.match(rf"  {re.escape(flag)}[ ,]|  {re.escape(flag)}$", line))
    block = [lines[start]]
    for line in lines[start + 1:]:
        if not line.startswith("    ") or line.lstrip().startswith("-"):
            break
        block.append(line)
    return " ".join(" ".join(block).split())


def _leaf_fields(model, prefix=()):
    for name, field in model.model_fields.items():
        if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
            yield from _leaf_fields(field.annotation, (*prefix, name))
        else:
            yield (*prefix, name), field


def _run_config(argv: list[str]) -> RunConfig:
    return run_command.config_from_args(cli.build_parser().parse_args(["run", *argv]))


def test_run_help_shows_the_models_real_defaults(capsys):
    text = _help(["run"], capsys)
    assert "(default: None)" not in text
    defaults = ProtocolConfig()
    assert f"(default: {defaults.epochs})" in _flag_help(text, "--epochs")
    assert f"(default: {defaults.batch_size})" in _flag_help(text, "--batch-size")
    assert f"(default: {defaults.lr})" in _flag_help(text, "--lr")
    assert "(default: runs)" in _flag_help(text, "--output")
    assert "(default: off)" in _flag_help(text, "--pixel-cache")
    # An optional field without a default says what leaving it unset does.
    assert "unset: the embedded default (default: unset)" in _flag_help(text, "--data")


def test_every_config_field_is_a_flag_with_its_description(capsys):
    text = _help(["run"], capsys)
    flags = {flag.path: flag.flag for flag in run_command.RUN_FLAGS}
    for path, field in _leaf_fields(RunConfig):
        assert path in flags, f"{'.'.join(path)} has no flag"
        assert field.description, f"{'.'.join(path)} needs a description: it is the flag's help"
        assert " ".join(field.description.split()) in _flag_help(text, flags[path])
    # Flags users already type keep their names.
    for flag in ("--models", "--losses", "--seeds", "--data", "--output", "--protocol", "--workers",
                 "--pixel-cache", "--epochs", "--batch-size", "--lr", "--weight-decay", "--optimizer",
                 "--augmentation", "--patience", "--config", "--no-progress"):
        assert f"  {flag}" in text


def test_a_field_added_to_the_model_is_a_flag_with_no_cli_edit():
    class Extra(ProtocolConfig):
        warmup: int = Field(5, ge=0, description="warm-up epochs")

    class Extended(RunConfig):
        protocol: Extra = Field(default_factory=Extra)
        colour_space: Literal["rgb", "lab"] = Field("rgb", description="input colour space")
        mixup: bool = Field(False, description="mix training images")
        margin: float | None = Field(None, description="margin; unset: none")

    parser = argparse.ArgumentParser(prog="x")
    flags = config_flags(Extended)
    add_config_flags(parser, Extended, flags, title="the file")
    text = " ".join(parser.format_help().split())
    assert "--warmup INT warm-up epochs (default: 5)" in text
    assert "--colour-space {rgb,lab} input colour space (default: rgb)" in text
    assert "--mixup, --no-mixup mix training images (default: off)" in text
    assert "--margin FLOAT|none margin; unset: none (default: unset)" in text
    args = parser.parse_args(["--warmup", "2", "--colour-space", "lab", "--mixup", "--margin", "0.5"])
    assert overrides_from_args(args, flags) == {
        "protocol": {"warmup": 2}, "colour_space": "lab", "mixup": True, "margin": 0.5}
    with pytest.raises(SystemExit):
        parser.parse_args(["--warmup", "-1"])


def test_flag_beats_toml_beats_default(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text('seeds = [0, 1]\n[protocol]\nepochs = 3\nhead = "mlp"\npixel_cache = true\nimage_size = 64\n')
    config = _run_config(["--config", str(path), "--epochs", "7", "--no-pixel-cache", "--weight-decay", "0.01"])
    assert config.protocol.epochs == 7 and config.protocol.pixel_cache is False  # flags
    assert config.protocol.weight_decay == 0.01
    assert (config.seeds, config.protocol.head, config.protocol.image_size) == ([0, 1], "mlp", 64)  # TOML
    assert (config.track, config.protocol.lr) == (RunConfig().track, ProtocolConfig().lr)  # defaults


def test_flags_parse_lists_choices_tables_and_none():
    config = _run_config(["--models", "resnet18,timm:convnext_atto", "--seeds", "0,1,2", "--protocol", "finetune",
                          "--workers", "2", "--image-size", "none", "--optimizer", "sgd",
                          "--loss-options", "{cross-entropy = {label_smoothing = 0.1}}"])
    assert config.models == ["resnet18", "timm:convnext_atto"] and config.seeds == [0, 1, 2]
    assert (config.protocol.name, config.protocol.num_workers, config.protocol.optimizer) == ("finetune", 2, "sgd")
    assert config.protocol.image_size is None  # the model's native size, which TOML cannot say
    assert config.loss_options == {"cross-entropy": {"label_smoothing": 0.1}}


@pytest.mark.parametrize("argv, flag", [
    (["--epochs", "0"], "--epochs"),
    (["--lr", "fast"], "--lr"),
    (["--seeds", "0,x"], "--seeds"),
    (["--head", "deep"], "--head"),
    (["--models", ","], "--models"),
])
def test_bad_flag_value_is_a_usage_error_naming_the_flag(argv, flag, capsys):
    with pytest.raises(SystemExit) as excinfo:
        cli.main(["run", *argv])
    assert excinfo.value.code == 2
    assert f"argument {flag}" in capsys.readouterr().err


# --------------------------------------------------------------------------- config validate


def test_config_validate_good_file(tmp_path, capsys):
    path = tmp_path / "run.toml"
    path.write_text('track = "mtl"\n[protocol]\nepochs = 3\n')
    assert cli.main(["config", "validate", str(path)]) == 0
    first, rest = capsys.readouterr().out.split("\n", 1)
    assert first == f"ok: {path}"
    assert RunConfig.model_validate_json(rest) == load_config(path)


def test_config_validate_bad_file_is_one_line_naming_file_and_field(tmp_path, capsys):
    path = tmp_path / "bad.toml"
    path.write_text('[protocol]\nepochs = 0\n')
    assert cli.main(["config", "validate", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(path) in err[0] and "protocol.epochs" in err[0]


def test_config_validate_suggests_the_key_meant(tmp_path, capsys):
    path = tmp_path / "typo.toml"
    path.write_text('[protocol]\nbatchsize = 8\n')
    assert cli.main(["config", "validate", str(path)]) == 2
    assert "protocol.batchsize: unknown key (did you mean 'batch_size'" in capsys.readouterr().err


def test_top_level_help_lists_existing_commands_each_described(capsys):
    section = _help([], capsys).split("positional arguments:\n")[1].split("\noptions:")[0]
    described: dict[str, str] = {}
    for line in section.splitlines()[1:]:  # after the "COMMAND" line: name, help (wrapped)
        if re.match(r"    \S", line):
            name, _, description = line.strip().partition(" ")
            described[name] = description.strip()
        else:
            described[name] += " " + line.strip()
    assert len(described) == len(cli.COMMAND_MODULES)
    for name, description in described.items():
        assert len(description) > 10, name
        _help([name], capsys)  # it exists: its own --help works
    assert "validate" in _help(["config"], capsys)


def test_readme_commands_parse():
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    commands = re.findall(r"^abawbench (.*?)(?:\s+#.*)?$", readme, flags=re.M)
    assert len(commands) > 10
    parser = cli.build_parser()
    for command in commands:
        argv = shlex.split(command)
        if argv == ["--help"]:
            continue
        parser.parse_args(argv)  # exits 2 on a flag or command that no longer exists


@pytest.mark.parametrize("command", ["predict", "ensemble", "leaderboard", "compare", "data check",
                                     "data synth", "data preview", "cache ls", "cache clear"])
def test_no_command_help_promises_a_default_of_none(command, capsys):
    text = _help(command.split(), capsys)
    assert "(default: None)" not in text
