"""The fixed protocol end to end on tiny generated data: results, cache reuse, determinism,
resume after interruption, failure isolation, predict."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from abawbench import cli
from abawbench.config import load_config
from abawbench.plugins import load_plugins
from abawbench.features.extract import extract_features
from abawbench.run.plan import prepare_data
from abawbench.run.runner import Runner
from abawbench.results import read_result

from plugin_helpers import make_module, serve_with_plugin

TINY_MODELS = '''
import torch
from torch import nn
from abawbench.hookspecs import hookimpl
from abawbench.specs import Backbone, ModelSpec

CONFIG = {"input_size": [3, 32, 32], "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5],
          "interpolation": "bilinear", "crop_pct": 1.0}

FORWARD_PASSES = [0]

def count_forward(module, inputs):
    FORWARD_PASSES[0] += 1

def build_tiny(options):
    torch.manual_seed(int(options.extra.get("seed", 0)))
    module = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU(),
                           nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU(),
                           nn.AdaptiveAvgPool2d(2), nn.Flatten())
    module.register_forward_pre_hook(count_forward)
    return Backbone(name="tiny", module=module, feature_dim=64, data_config=dict(CONFIG),
                    weights_digest="random:tiny:seed0")

class NaNNet(nn.Module):
    def forward(self, x):
        return torch.full((x.shape[0], 4), float("nan"))

def build_nan(options):
    return Backbone(name="nan-net", module=NaNNet(), feature_dim=4, data_config=dict(CONFIG),
                    weights_digest="nan")

@hookimpl
def abawbench_register_models(register):
    register(ModelSpec(name="tiny", build=build_tiny))
    register(ModelSpec(name="nan-net", build=build_nan))
'''


@pytest.fixture(scope="module")
def lsd_tree(tmp_path_factory) -> Path:
    host = load_plugins(strict=True)
    out = tmp_path_factory.mktemp("lsd") / "tree"
    return host.datasets.get("synthface").generate("lsd", out, 90, 3)


@pytest.fixture(scope="module")
def mtl_tree(tmp_path_factory) -> Path:
    host = load_plugins(strict=True)
    out = tmp_path_factory.mktemp("mtl") / "tree"
    return host.datasets.get("synthface").generate("mtl", out, 90, 3)


@pytest.fixture
def tiny_host():
    return serve_with_plugin(make_module("tiny_models", TINY_MODELS), "tiny-models")


def train_split(tmp_path, data, host, **over):
    """The training split of ``data`` as the protocol reads it (index, fingerprint, labels)."""
    config = _config(tmp_path, data, **over)
    runner = Runner(config, host=host, progress=False)
    return prepare_data(host, config, runner.track, runner.cache_root).splits["train"]


def extract_into_sink(backbone, index, device=None, **kwargs) -> np.ndarray:
    """``extract_features`` of ``index`` into one array (NaN where a row was never written)."""
    import torch

    sink = np.full((len(index), backbone.feature_dim), np.nan, dtype=np.float32)
    extract_features(backbone, index, device or torch.device("cpu"),
                     lambda start, rows: sink.__setitem__(slice(start, start + len(rows)), rows),
                     progress=False, **kwargs)
    return sink


def _config(tmp_path, data, **over):
    values = {"track": "lsd", "data": data, "models": ["tiny"], "output": tmp_path / "runs",
              "cache_dir": tmp_path / "cache", "protocol": {"epochs": 3, "batch_size": 16, "bootstrap": 20}}
    values.update(over)
    return load_config(None, values)


def test_linear_probe_writes_complete_result(tmp_path, lsd_tree, tiny_host):
    summary = Runner(_config(tmp_path, lsd_tree), host=tiny_host, progress=False).run()
    [result] = summary.results
    assert result.status == "completed", result.error
    assert result.primary_metric == "macro_f1" and 0 <= result.primary.value <= 1
    assert result.primary.ci_low <= result.primary.value <= result.primary.ci_high
    assert set(result.per_class["expr"]) == {"ANGER", "DISGUST", "FEAR", "HAPPINESS", "SADNESS", "SURPRISE"}
    assert np.asarray(result.confusion["expr"]).shape == (6, 6)
    assert set(result.cache_keys) >= {"train", "validation"}
    from importlib.metadata import version

    assert result.versions["torch"] == version("torch") and result.versions["abawbench"]
    assert result.dataset_fingerprints["train"] and result.timings["total_s"] > 0
    on_disk = read_result(tmp_path / "runs" / "lsd" / result.entry / "seed0.json")
    assert on_disk == result


def test_second_run_hits_cache_and_is_identical(tmp_path, lsd_tree, tiny_host):
    first = Runner(_config(tmp_path, lsd_tree, output=tmp_path / "a"), host=tiny_host, progress=False).run()
    counter = tiny_host.pm.get_plugin("tiny-models").FORWARD_PASSES  # the tiny backbone's forward passes
    before = counter[0]
    second = Runner(_config(tmp_path, lsd_tree, output=tmp_path / "b"), host=tiny_host, progress=False).run()
    assert counter[0] == before, "features should come from the cache, not from the backbone"
    a, b = first.results[0], second.results[0]
    assert b.status == "completed", b.error
    assert a.primary == b.primary and a.per_class == b.per_class and a.cache_keys == b.cache_keys


def test_resume_skips_completed_entries(tmp_path, lsd_tree, tiny_host, monkeypatch):
    config = _config(tmp_path, lsd_tree, seeds=[0, 1])
    real = Runner.run_entry
    calls = []

    def crash_on_second(self, entry, seed):
        calls.append(seed)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(self, entry, seed)

    monkeypatch.setattr(Runner, "run_entry", crash_on_second)
    with pytest.raises(KeyboardInterrupt):
        Runner(config, host=tiny_host, progress=False).run()
    monkeypatch.setattr(Runner, "run_entry", real)
    summary = Runner(config, host=tiny_host, progress=False).run()
    assert summary.skipped == [f"{summary.results[0].entry} seed 0"]
    assert [r.seed for r in summary.results] == [1]


def test_completed_result_on_other_data_is_not_reused(tmp_path, lsd_tree, tiny_host):
    import shutil

    first = Runner(_config(tmp_path, lsd_tree), host=tiny_host, progress=False).run()
    other = tmp_path / "other-tree"
    shutil.copytree(lsd_tree, other)
    victim = next((other / "validation_set_real_images").rglob("*.jpg"))
    victim.write_bytes(victim.read_bytes() + b"\0")  # same names, other content
    again = Runner(_config(tmp_path, lsd_tree), host=tiny_host, progress=False).run()
    assert again.results == [] and len(again.skipped) == 1
    moved = Runner(_config(tmp_path, other), host=tiny_host, progress=False).run()
    assert len(moved.results) == 1 and moved.skipped == []
    assert moved.results[0].dataset_fingerprints != first.results[0].dataset_fingerprints


def test_entry_ids_differ_when_any_setting_differs(tmp_path, lsd_tree, tiny_host):
    a = Runner(_config(tmp_path, lsd_tree), host=tiny_host, progress=False).entries()[0]
    b = Runner(_config(tmp_path, lsd_tree, protocol={"epochs": 3, "batch_size": 16, "bootstrap": 20, "lr": 0.01}),
               host=tiny_host, progress=False).entries()[0]
    c = Runner(_config(tmp_path, lsd_tree, protocol={"epochs": 3, "batch_size": 16, "bootstrap": 5}),
               host=tiny_host, progress=False).entries()[0]
    assert a.entry_id != b.entry_id and a.entry_id.startswith("tiny__linear-probe-linear__cross-entropy__")
    assert a.entry_id == c.entry_id  # the bootstrap size does not change the scores


def test_failing_entry_is_recorded_and_others_go_on(tmp_path, lsd_tree, tiny_host, capsys):
    code = cli.main(["run", "--track", "lsd", "--data", str(lsd_tree), "--models", "nan-net,tiny",
                     "--epochs", "2", "--bootstrap", "0", "--output", str(tmp_path / "runs"),
                     "--cache-dir", str(tmp_path / "cache"), "--no-progress"])
    assert code == 1
    results = {p.parent.name: json.loads(p.read_text()) for p in (tmp_path / "runs" / "lsd").rglob("seed0.json")}
    failed = [r for r in results.values() if r["status"] == "failed"]
    done = [r for r in results.values() if r["status"] == "completed"]
    assert len(failed) == 1 and "nan" in failed[0]["error"].lower()
    assert len(done) == 1 and done[0]["spec"]["model"] == "tiny"
    assert "failed" in capsys.readouterr().out


def test_mtl_linear_probe_and_predict_submission(tmp_path, mtl_tree, tiny_host):
    config = _config(tmp_path, mtl_tree, track="mtl")
    [result] = Runner(config, host=tiny_host, progress=False).run().results
    assert result.status == "completed", result.error
    assert set(result.sub_scores) >= {"ccc_valence", "ccc_arousal", "f1_expr", "f1_au"}
    total = result.sub_scores["ccc_mean"].value + result.sub_scores["f1_expr"].value + result.sub_scores["f1_au"].value
    assert result.primary.value == pytest.approx(total)
    assert "au" in result.tuned and len(result.tuned["au"]["thresholds"]) == 12

    out = tmp_path / "submission.txt"
    result_file = tmp_path / "runs" / "mtl" / result.entry / "seed0.json"
    assert cli.main(["predict", str(result_file), "--out", str(out)]) == 0
    lines = out.read_text().splitlines()
    assert lines[0] == "image,valence,arousal,expression,aus"
    release = (mtl_tree / "MTL_Challenge_test_set_release.txt").read_text().split()
    assert len(lines) - 1 == len(release) - 1
    first = lines[1].split(",")
    assert len(first) == 16 and first[0] == release[1]


def test_finetune_runs_and_is_deterministic(tmp_path, lsd_tree, tiny_host):
    runs = []
    for name in ("a", "b"):
        config = _config(tmp_path, lsd_tree, output=tmp_path / name,
                         protocol={"name": "finetune", "epochs": 2, "batch_size": 16, "bootstrap": 0})
        [result] = Runner(config, host=tiny_host, progress=False).run().results
        assert result.status == "completed", result.error
        runs.append(result)
    assert runs[0].primary == runs[1].primary and runs[0].confusion == runs[1].confusion


def test_fused_feature_ensemble_concatenates_cached_features(tmp_path, lsd_tree, tiny_host):
    from abawbench.results import read_weights

    config = _config(tmp_path, lsd_tree, models=["tiny+tiny"], protocol={"epochs": 2, "bootstrap": 0})
    [result] = Runner(config, host=tiny_host, progress=False).run().results
    assert result.status == "completed", result.error
    state = read_weights(tmp_path / "runs" / "lsd" / result.entry / result.weights_file)
    assert state["feature_mean"].shape[1] == 128  # one head on both backbones' 64 features
    assert {"train:tiny", "validation:tiny"} <= set(result.cache_keys)


def test_unknown_model_is_a_usage_error_with_suggestion(tmp_path, lsd_tree, tiny_host, capsys):
    code = cli.main(["run", "--data", str(lsd_tree), "--models", "tinyy", "--output", str(tmp_path)])
    assert code == 2
    assert "did you mean 'tiny'" in capsys.readouterr().err


def test_extraction_with_loader_workers_equals_in_process(lsd_tree, tiny_host, tmp_path):
    """uint8 batches collated by NumPy in DataLoader worker processes give the very features of
    the in-process loader (same order, same values)."""
    from abawbench.specs import ModelOptions

    train = train_split(tmp_path, lsd_tree, tiny_host)
    backbone = tiny_host.models.get("tiny").build(ModelOptions(extra={"seed": 0}))
    features = [extract_into_sink(backbone, train, batch_size=16, num_workers=workers) for workers in (0, 2)]
    assert np.isfinite(features[0]).all() and np.array_equal(features[0], features[1])


def test_unknown_augmentation_fails_before_training_with_suggestion(tmp_path, lsd_tree, tiny_host, capsys):
    config = tmp_path / "run.toml"
    config.write_text('[protocol]\nname = "finetune"\naugmentation = "papr"\n')
    code = cli.main(["run", "--config", str(config), "--data", str(lsd_tree), "--models", "tiny",
                     "--output", str(tmp_path / "runs"), "--no-progress"])
    assert code == 2
    assert "did you mean 'paper'" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()  # refused before any entry ran
