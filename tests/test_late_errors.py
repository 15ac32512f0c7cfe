"""Errors that used to come late or blame the wrong thing: each is now early, or names its cause.

A misspelt loss option fails before any feature is extracted; a non-finite learning rate is
refused by the configuration; a loss that returns NaN before any update, or no scalar at all,
says so instead of blaming the learning rate or raising a raw torch error; a model whose
features have the wrong shape is named, not reported as a cache problem.
"""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from abawbench.config import ProtocolConfig
from abawbench.errors import ConfigError
from abawbench.run.runner import Runner

from plugin_helpers import make_module, serve_with_plugin
from test_protocol import TINY_MODELS, _config, lsd_tree  # noqa: F401 (fixture)

ODD_PLUGIN = TINY_MODELS.replace("def abawbench_register_models(register):", '''def abawbench_register_models(register):
    register(ModelSpec(name="wrong-width", build=build_wrong_width))''') + '''

def build_wrong_width(options):
    backbone = build_tiny(options)
    backbone.name = "wrong-width"
    backbone.feature_dim = 65  # the module gives 64
    return backbone

from abawbench.specs import LossSpec

def nan_loss(outputs, targets):
    return outputs["expr"].sum() * float("nan")

def per_row_loss(outputs, targets):
    return outputs["expr"].sum(dim=1)

@hookimpl
def abawbench_register_losses(register):
    register(LossSpec(name="nan-loss", build=lambda track, context: nan_loss))
    register(LossSpec(name="per-row-loss", build=lambda track, context: per_row_loss))
'''


@pytest.fixture
def odd_host():
    return serve_with_plugin(make_module("odd_plugin", ODD_PLUGIN), "odd")


def _forward_passes(host) -> int:
    return host.models.get("tiny").build.__globals__["FORWARD_PASSES"][0]


def test_a_misspelt_loss_option_fails_before_any_extraction(tmp_path, lsd_tree, odd_host):
    config = _config(tmp_path, lsd_tree, losses=["cross-entropy"], loss_options={"cross-entropy": {"label_smoothingg": 0.2}})
    before = _forward_passes(odd_host)
    with pytest.raises(ConfigError, match="smoothingg"):
        Runner(config, host=odd_host, progress=False).run()
    assert _forward_passes(odd_host) == before  # nothing was extracted
    assert not (tmp_path / "runs").exists() or not list((tmp_path / "runs").rglob("*.json"))


@pytest.mark.parametrize("value", [float("inf"), float("nan")])
def test_a_non_finite_learning_rate_is_refused(value):
    with pytest.raises(ValidationError):
        ProtocolConfig(lr=value)
    with pytest.raises(ValidationError):
        ProtocolConfig(weight_decay=value)


def test_a_loss_returning_nan_at_once_is_blamed_not_the_learning_rate(tmp_path, lsd_tree, odd_host):
    [result] = Runner(_config(tmp_path, lsd_tree, losses=["nan-loss"]), host=odd_host, progress=False).run().results
    assert result.status == "failed"
    assert "before any update" in result.error and "learning rate" in result.error
    assert "lower the learning rate" not in result.error


def test_a_loss_that_is_not_a_scalar_says_so(tmp_path, lsd_tree, odd_host):
    [result] = Runner(_config(tmp_path, lsd_tree, losses=["per-row-loss"]), host=odd_host,
                      progress=False).run().results
    assert result.status == "failed" and "instead of a scalar tensor" in result.error


def test_a_model_with_features_of_the_wrong_shape_is_named(tmp_path, lsd_tree, odd_host):
    [result] = Runner(_config(tmp_path, lsd_tree, models=["wrong-width"]), host=odd_host,
                      progress=False).run().results
    assert result.status == "failed"
    assert "model 'wrong-width'" in result.error and "[N, 65]" in result.error
    assert "cache" not in result.error.lower()
