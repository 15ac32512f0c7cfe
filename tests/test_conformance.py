"""``abawbench check-plugin``: a broken plugin fails with one clear line per broken promise, a
working one passes, and every built-in plugin passes (so the checks also guard them)."""

from __future__ import annotations

import pytest

from abawbench.cli import main

from plugin_helpers import make_module, serve_with_plugin

TINY_MODEL = '''
import torch
from torch import nn
from abawbench.hookspecs import hookimpl
from abawbench.specs import Backbone, ModelSpec

WIDTH = {width}

def build(options):
    seed = int(options.extra.get("seed", 0))
    torch.manual_seed(seed)
    {before_build}
    size = options.image_size or 32
    module = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    return Backbone(name="tiny", module=module, feature_dim=WIDTH,
                    data_config={{"input_size": [3, size, size], "mean": [0.5] * 3, "std": [0.5] * 3,
                                 "interpolation": "bilinear", "crop_pct": 1.0}},
                    weights_digest=f"random:tiny:seed{{seed}}")

@hookimpl
def abawbench_register_models(register):
    register(ModelSpec(name="tiny", build=build))
'''

NAN_LOSS = '''
import torch
from abawbench.hookspecs import hookimpl
from abawbench.specs import LossSpec

def build(track, context):
    def loss(outputs, targets):
        return sum(output.sum() for output in outputs.values()) * float("nan")
    return loss

@hookimpl
def abawbench_register_losses(register):
    register(LossSpec(name="nan-loss", build=build, task_kinds=("multiclass",)))
'''

READER = '''
from abawbench.errors import DataFormatError
from abawbench.hookspecs import hookimpl
from abawbench.specs import DatasetSpec, ReadOptions
from abawbench_builtins.abaw4.reader import read_split as official
from abawbench_builtins.synthface import generate

def read_split(root, track, split, options):
    {body}

@hookimpl
def abawbench_register_datasets(register):
    register(DatasetSpec(name="sloppy", tracks=("mtl",), read_split=read_split, generate=generate))
'''


def check(capsys, source: str, name: str = "mine", *args: str) -> tuple[int, list[str]]:
    serve_with_plugin(make_module(name, source), name)
    code = main(["check-plugin", name, *args])
    lines = capsys.readouterr().out.splitlines()
    return code, lines


def failures(lines: list[str]) -> list[str]:
    return [line for line in lines if line.startswith("FAIL")]


def test_a_working_tiny_model_passes(capsys):
    code, lines = check(capsys, TINY_MODEL.format(width=8, before_build=""))
    assert code == 0, lines
    assert "PASS model tiny: maps [N, 3, H, W] to [N, feature_dim]" in lines
    assert "PASS model tiny: weights digest follows the weights" in lines
    assert not failures(lines)


def test_output_wider_than_feature_dim_fails_with_one_line(capsys):
    code, lines = check(capsys, TINY_MODEL.format(width=32, before_build=""))
    assert code == 1
    assert failures(lines) == ["FAIL model tiny: maps [N, 3, H, W] to [N, feature_dim]: output shape is "
                               "[2, 8] but feature_dim says [2, 32]"]


def test_model_that_fails_to_build_fails_with_one_line(capsys):
    code, lines = check(capsys, TINY_MODEL.format(width=8, before_build='raise RuntimeError("no GPU here")'))
    assert code == 1
    [line] = failures(lines)
    assert line.startswith("FAIL model tiny: builds: RuntimeError: no GPU here (at <mine>:")
    assert all(line.startswith("SKIP model tiny") for line in lines if "model tiny" in line and "builds" not in line)


def test_digest_that_ignores_the_weights_fails(capsys):
    source = TINY_MODEL.format(width=8, before_build="").replace('f"random:tiny:seed{seed}"', '"tiny"')
    code, lines = check(capsys, source)
    assert code == 1
    [line] = failures(lines)
    assert line.startswith("FAIL model tiny: weights digest follows the weights: seeds 0 and 1 give different weights")


def test_nan_loss_fails_with_one_line_per_track(capsys):
    code, lines = check(capsys, NAN_LOSS)
    assert code == 1
    assert failures(lines) == [
        "FAIL loss nan-loss: returns a finite scalar on track lsd: returned nan on random outputs and labels",
        "FAIL loss nan-loss: returns a finite scalar on track mtl (expr only): returned nan on random "
        "outputs and labels",
    ]
    assert "SKIP loss nan-loss: passes gradients on track lsd: not tried: the loss is not a finite scalar" in lines


def test_loss_that_reads_masked_rows_fails(capsys):
    source = NAN_LOSS.replace('* float("nan")', "")  # sums every row, labelled or not
    code, lines = check(capsys, source)
    assert code == 1
    assert [line[:line.index(": changing")] for line in failures(lines)] == [
        "FAIL loss nan-loss: ignores masked rows on track lsd",
        "FAIL loss nan-loss: ignores masked rows on track mtl (expr only)"]


@pytest.mark.parametrize("body, reason", [
    # a plain ValueError instead of DataFormatError
    ("try:\n        return official(root, track, split, options)\n    except DataFormatError as exc:\n"
     "        raise ValueError('bad row')", "raised ValueError, not DataFormatError"),
    # bad rows silently dropped: a wrong label is never reported
    ("return official(root, track, split, ReadOptions(skip_bad=True))",
     "was read without an error (bad labels must not become 'no label')"),
    # a DataFormatError with a file:line, but not the corrupted row's
    ("try:\n        return official(root, track, split, options)\n    except DataFormatError as exc:\n"
     "        raise DataFormatError('elsewhere.txt:2: bad row')", "does not name "),
    # the right file, the wrong line
    ("try:\n        return official(root, track, split, options)\n    except DataFormatError as exc:\n"
     "        import re\n        raise DataFormatError(re.sub(r':(\\d+)', lambda m: ':' + m.group(1) + '0', str(exc)))",
     "does not name "),
])
def test_dataset_reader_that_hides_bad_rows_fails(capsys, body, reason):
    code, lines = check(capsys, READER.format(body=body))
    assert code == 1
    [line] = failures(lines)
    assert line.startswith("FAIL dataset sloppy: reports a corrupted row as DataFormatError with file:line on track mtl")
    assert reason in line
    assert "PASS dataset sloppy: reads train, validation and test on track mtl" in lines


def test_unknown_plugin_name_is_one_error_with_a_suggestion(capsys):
    assert main(["check-plugin", "builtin.loses"]) == 2
    assert "unknown plugin 'builtin.loses' (did you mean 'builtin.losses'" in capsys.readouterr().err


@pytest.mark.slow
def test_every_builtin_plugin_passes(host, tmp_path):
    """Every built-in plugin, in one process; timm and hust_ant on one small model each (all
    their models: ``abawbench check-plugin builtin.timm``), the datasets that cannot generate a
    tree (abaw4's and hust_ant's) on one synthface generates."""
    from abawbench.conformance.core import run_check
    from abawbench.conformance.plan import ConformanceOptions, plugin_checks

    tree = host.datasets.get("synthface").generate("lsd", tmp_path / "lsd", 12, 0)
    special = {
        "builtin.timm": ConformanceOptions(models=("resnet10t",), workdir=tmp_path / "timm"),
        "builtin.hust_ant": ConformanceOptions(models=("smm-emotionnet:resnet10t",), data=tree, tracks=("lsd",),
                                               workdir=tmp_path / "hust"),
        "builtin.abaw4": ConformanceOptions(data=tree, tracks=("lsd",), workdir=tmp_path / "abaw4"),
    }
    builtins = sorted(name for name, info in host.plugins.items() if info.builtin)
    assert len(builtins) == 9
    outcomes = []
    for plugin in builtins:
        options = special.get(plugin, ConformanceOptions(workdir=tmp_path / plugin))
        outcomes += [run_check(check) for check in plugin_checks(host, plugin, options)]
    assert [o.line() for o in outcomes if o.status == "FAIL"] == []
    passed = {o.check.kind for o in outcomes if o.status == "PASS"}
    assert passed == {"plugin", "model", "loss", "dataset", "ensemble", "track", "augmentation"}
    read = {o.check.name for o in outcomes if o.status == "PASS" and o.check.check.startswith("reads")}
    assert read == {"abaw4", "abaw4-oversampled", "synthface", "synthface-oversampled"}


def test_contributing_reference_is_generated_from_the_code():
    """The types' reference in CONTRIBUTING.md is the one the code renders now; rewrite it with
    ``python -m abawbench.conformance.reference --write CONTRIBUTING.md``."""
    import re
    from pathlib import Path

    from abawbench.conformance.reference import BEGIN, END, render

    text = (Path(__file__).resolve().parents[1] / "CONTRIBUTING.md").read_text(encoding="utf-8")
    committed = re.search(re.escape(BEGIN) + ".*?" + re.escape(END), text, flags=re.S)
    assert committed is not None
    assert committed.group(0) == render(), "run: python -m abawbench.conformance.reference --write CONTRIBUTING.md"


def test_contributing_tutorial_check_output_is_what_check_plugin_prints(tmp_path, monkeypatch, capsys):
    """Step 3 of the tutorial shows check-plugin's output on the tutorial's own module."""
    import re
    import sys
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "CONTRIBUTING.md").read_text(encoding="utf-8")
    files = dict(re.findall(r"```\w+ file=(\S+)\n(.*?)```", text, flags=re.S))
    (tmp_path / "abawbench_tinycnn.py").write_text(files["abawbench_tinycnn.py"], encoding="utf-8")
    shown = re.search(r"```text\n(PASS plugin local:abawbench_tinycnn.*?)```", text, flags=re.S).group(1)
    monkeypatch.chdir(tmp_path)
    try:
        assert main(["--plugin", "abawbench_tinycnn.py", "check-plugin", "local:abawbench_tinycnn"]) == 0
    finally:
        sys.modules.pop("abawbench_tinycnn", None)
    assert capsys.readouterr().out == shown
