"""The README's gate on a fresh machine: a run, then ``compare`` against the committed board.

The baseline board is built here the way ``leaderboards/regenerate.sh`` builds the committed one
(a run of more entries than the README's, then ``leaderboard --format json``); the candidate is
a fresh run (its own cache folder) of fewer entries. The same compare passes, and fails with a
clear line once a model really got worse.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from abawbench import cli
from abawbench.plugins import load_plugins

from plugin_helpers import make_module, serve_with_plugin

# A model whose features are pooled pixels; ``DEGRADED`` stands for a change that broke it.
POOLED_PIXELS = '''
import torch
from torch import nn
from abawbench.hookspecs import hookimpl
from abawbench.specs import Backbone, ModelSpec

DEGRADED = False

class PooledPixels(nn.Module):
    def forward(self, x):
        features = nn.functional.adaptive_avg_pool2d(x, 4).flatten(1)
        return torch.zeros_like(features) if DEGRADED else features

def build(options):
    config = {"input_size": [3, 32, 32], "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5],
              "interpolation": "bilinear", "crop_pct": 1.0}
    return Backbone(name="pixels", module=PooledPixels(), feature_dim=48, data_config=config,
                    weights_digest="pooled-pixels")

@hookimpl
def abawbench_register_models(register):
    register(ModelSpec(name="pixels", build=build))
'''


@pytest.fixture(scope="module")
def lsd_tree(tmp_path_factory) -> Path:
    host = load_plugins(strict=True)
    return host.datasets.get("synthface").generate("lsd", tmp_path_factory.mktemp("lsd") / "tree", 90, 3)


@pytest.fixture
def pixels():
    module = make_module("pooled_pixels", POOLED_PIXELS)
    serve_with_plugin(module, "pooled-pixels")
    return module


def run(tmp_path, tree, name: str, models: str, losses: str = "cross-entropy") -> Path:
    """``abawbench run --track lsd`` into its own runs and cache folders (a fresh machine)."""
    runs = tmp_path / name
    assert cli.main(["run", "--track", "lsd", "--data", str(tree), "--models", models, "--losses", losses,
                     "--epochs", "10", "--bootstrap", "20", "--output", str(runs),
                     "--cache-dir", str(tmp_path / f"{name}-cache"), "--no-progress"]) == 0
    return runs


def test_the_readme_compare_passes_after_the_readme_run_and_fails_after_a_regression(
        tmp_path, lsd_tree, pixels, capsys):
    committed = tmp_path / "lsd.json"
    baseline = run(tmp_path, lsd_tree, "baseline", "pixels", "cross-entropy,focal")
    assert cli.main(["leaderboard", "--track", "lsd", "--runs", str(baseline), "--format", "json",
                     "--output", str(committed)]) == 0

    fresh = run(tmp_path, lsd_tree, "fresh", "pixels")
    capsys.readouterr()
    assert cli.main(["compare", str(committed), str(fresh), "--tolerance", "0.01"]) == 0
    out = capsys.readouterr().out
    assert "unchanged" in out and "disappeared" in out  # focal is only in the table: listed, not gated

    pixels.DEGRADED = True
    broken = run(tmp_path, lsd_tree, "broken", "pixels")
    capsys.readouterr()
    assert cli.main(["compare", str(committed), str(broken), "--tolerance", "0.01"]) == 1
    out = capsys.readouterr().out
    [failed] = [line for line in out.splitlines() if "FAIL" in line]
    assert "pixels__linear-probe-linear__cross-entropy" in failed and "regressed" in failed
    assert out.rstrip().splitlines()[-1].startswith("1 regression(s) beyond tolerance 0.01")
