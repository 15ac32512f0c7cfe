"""HUST-ANT as its code did it: each element of the seed's training as an option (schedule,
frozen BatchNorm, per-task batches, warm start, explicit class weights, the synthetic-statistics
normalisation, SMM-EmotionNet's structure), and every small configuration run end to end."""

from __future__ import annotations

import copy
import hashlib
import tomllib
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from abawbench.config import load_config
from abawbench.errors import ConfigError
from abawbench.labels import TaskLabels, TaskSpec
from abawbench.run.runner import Runner
from abawbench.specs import LossContext, ModelOptions
from abawbench.training.heads import BackboneWithHeads, TaskHeads
from abawbench.training.loop import LearningRateSchedule, TaskParts, set_training_mode
from abawbench.training.warm_start import apply_warm_start, read_warm_start
from test_hust_ant import FOLDERS, PACKAGE, _tiny_lsd_tree, _tiny_mtl_tree


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _protocol(**values):
    return load_config(None, {"protocol": values}).protocol


# --------------------------------------------------------------------------- schedule


def _rates(protocol, batches_per_epoch: int) -> list[float]:
    """The learning rate of every optimiser step of a run, as the loop drives the schedule."""
    optimiser = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=protocol.lr)
    schedule = LearningRateSchedule(optimiser, protocol, batches_per_epoch)
    rates = []
    for _epoch in range(protocol.epochs):
        for _step in range(batches_per_epoch):
            rates.append(optimiser.param_groups[0]["lr"])
            optimiser.step()
            schedule.after_step()
        schedule.after_epoch()
    return rates


def test_constant_schedule_keeps_the_learning_rate():
    assert _rates(_protocol(lr=0.1, epochs=3, lr_schedule="constant"), 4) == [0.1] * 12


def test_cosine_per_epoch_changes_only_between_epochs():
    rates = _rates(_protocol(lr=0.1, epochs=3), 4)
    assert rates[:4] == [0.1] * 4 and len(set(rates[4:8])) == 1 and rates[8] < rates[4] < 0.1


def test_cosine_per_step_follows_its_period():
    rates = _rates(_protocol(lr=0.1, epochs=2, schedule_step="step", schedule_period=8), 4)
    expected = [0.05 * (1 + np.cos(np.pi * k / 8)) for k in range(8)]
    np.testing.assert_allclose(rates, expected, rtol=1e-6)
    # unset period, per step: the whole run (epochs x batches per epoch)
    assert _rates(_protocol(lr=0.1, epochs=2, schedule_step="step"), 4) == pytest.approx(expected)
    # a period shorter than the run: past the minimum the rate rises again, as the seed's did
    short = _rates(_protocol(lr=0.1, epochs=2, schedule_step="step", schedule_period=4), 4)
    assert short[4] == pytest.approx(0.0, abs=1e-9) and short[4] < short[5] < short[6]


# --------------------------------------------------------------------------- frozen BatchNorm


def test_freeze_batchnorm_keeps_running_statistics_and_trains_the_rest():
    torch.manual_seed(0)
    network = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Dropout(0.5), nn.Linear(8, 2))
    before = copy.deepcopy(network.state_dict())
    set_training_mode(network, freeze_batchnorm=True)
    assert not network[1].training and network[2].training  # dropout still trains
    optimiser = torch.optim.SGD(network.parameters(), lr=0.1)
    network(torch.randn(16, 4) * 3 + 1).sum().backward()
    optimiser.step()
    after = network.state_dict()
    for key in ("1.running_mean", "1.running_var", "1.num_batches_tracked"):
        assert torch.equal(after[key], before[key]), key
    assert not torch.equal(after["1.weight"], before["1.weight"])  # affine weights still learn
    set_training_mode(network, freeze_batchnorm=False)
    network(torch.randn(16, 4) * 3 + 1)
    assert not torch.equal(network.state_dict()["1.running_mean"], before["1.running_mean"])


# --------------------------------------------------------------------------- per-task batches


def test_per_task_batches_train_each_task_on_its_own_rows(host, tmp_path):
    from abawbench.features.extract import eval_transform
    from abawbench.training.finetune import ImageFeed

    track = host.tracks.get("mtl")
    tree = _tiny_mtl_tree(tmp_path / "mtl", rows=16)
    splits = {s: host.datasets.get("abaw4").read_split(tree, track, s, _read_options()) for s in ("train", "validation")}
    labelled = {t: int(column.mask.sum()) for t, column in splits["train"].labels.items()}
    backbone = host.models.get("resnet10t").build(ModelOptions(image_size=32))
    protocol = _protocol(name="finetune", batch_size=4, task_batching="per-task")
    feed = ImageFeed(splits, eval_transform(backbone.data_config), lambda pixels: pixels, track.tasks, protocol,
                     0, torch.device("cpu"), pixel_cache=None, progress=False, desc="t")
    assert feed.batches_per_epoch == max(n // 4 for n in labelled.values())
    steps = list(feed.training_batches(1))
    assert len(steps) == feed.batches_per_epoch
    seen: dict[str, int] = {t: 0 for t in labelled}
    for parts, targets in steps:
        assert isinstance(parts, TaskParts) and targets is None and len(parts) == len(labelled)
        for (images, part_targets), task in zip(parts, labelled):
            assert images.shape[0] == 4
            masks = {t: bool(m.any()) for t, (_, m) in part_targets.items()}
            assert masks == {t: t == task for t in labelled}  # only its own task's labels count
            assert bool(part_targets[task][1].all())  # every row of a task's batch is labelled for it
            seen[task] += 1
    assert set(seen.values()) == {feed.batches_per_epoch}  # shorter tasks repeated to the longest


def _read_options():
    from abawbench.specs import ReadOptions

    return ReadOptions()


# --------------------------------------------------------------------------- warm start


def test_probe_warm_start_predicts_what_the_probe_did():
    from abawbench.training.probe import standardisation

    tasks = (TaskSpec("expr", "multiclass", tuple("abcdef")),
             TaskSpec("va", "regression", ("valence", "arousal"), (-1.0, 1.0)))
    g = torch.Generator().manual_seed(0)
    features = (torch.randn(20, 8, generator=g) * 5 + 2).numpy()
    mean, std = standardisation(features)
    for kind in ("linear", "mlp"):
        torch.manual_seed(1)
        probe = TaskHeads(8, tasks, kind=kind).eval()
        state = {"kind": "linear-probe", "heads": probe.state_dict(), "feature_mean": torch.from_numpy(mean),
                 "feature_std": torch.from_numpy(std)}
        network = BackboneWithHeads(nn.Identity(), TaskHeads(8, tasks, kind=kind)).eval()
        apply_warm_start(network, state)
        expected = probe(torch.from_numpy((features - mean) / std).float())
        got = network(torch.from_numpy(features))
        for task in expected:
            torch.testing.assert_close(got[task], expected[task], rtol=1e-4, atol=1e-5)


def test_dln_warm_start_loads_a_plain_network_into_both_copies(host):
    plain = host.models.get("resnet10t").build(ModelOptions(image_size=32, extra={"seed": 7}))
    tasks = host.tracks.get("lsd").tasks
    saved = BackboneWithHeads(plain.module, TaskHeads(plain.feature_dim, tasks)).state_dict()
    dln = host.models.get("dln:resnet10t").build(ModelOptions(image_size=32))
    network = BackboneWithHeads(dln.module, TaskHeads(dln.feature_dim, tasks))
    apply_warm_start(network, {"kind": "finetune", "network": saved, "source": "x"})
    for copy_ in (dln.module.trained, dln.module.frozen):
        for key, value in plain.module.state_dict().items():
            assert torch.equal(copy_.state_dict()[key], value), key
    assert not any(p.requires_grad for p in dln.module.frozen.parameters())
    with pytest.raises(ConfigError, match="do not fit"):
        apply_warm_start(BackboneWithHeads(dln.module, TaskHeads(7, tasks)),
                         {"kind": "finetune", "network": saved, "source": "x"})


def test_warm_start_from_a_missing_entry_is_one_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="no result for entry 'nothing-here' seed 0"):
        read_warm_start(tmp_path, "lsd", "nothing-here", 0, selection="train-holdout", holdout_fraction=0.1)


def test_warm_start_from_an_entry_selected_on_validation_is_refused_for_a_holdout_entry(tmp_path):
    from abawbench.results import write_result
    from test_leaderboard import make_result

    source = make_result("probe", 0.5).model_copy(update={"selection": "validation", "weights_file": "seed0.head.pt"})
    write_result(tmp_path / "lsd" / "probe" / "seed0.json", source)
    with pytest.raises(ConfigError, match="selected on validation .* this entry on train-holdout"):
        read_warm_start(tmp_path, "lsd", "probe", 0, selection="train-holdout", holdout_fraction=0.1)


def test_finetune_only_settings_are_refused_for_the_linear_probe():
    with pytest.raises(ConfigError, match="warm_start: only for protocol name 'finetune'"):
        _protocol(name="linear-probe", warm_start="x")
    with pytest.raises(ConfigError, match="task_batching: only for"):
        _protocol(task_batching="per-task")


# --------------------------------------------------------------------------- loss and normalisation


def test_explicit_class_weights_are_used_as_given(host):
    track = host.tracks.get("lsd")
    context = LossContext(class_counts={"expr": np.array([5, 5, 5, 5, 5, 5])},
                          options={"label_smoothing": 0.2, "class_weights": [1, 3, 5, 1, 1, 1]})
    loss = host.losses.get("cross-entropy").build(track, context)
    g = torch.Generator().manual_seed(0)
    logits, labels = torch.randn(12, 6, generator=g), torch.arange(12) % 6
    expected = F.cross_entropy(logits, labels, weight=torch.tensor([1., 3, 5, 1, 1, 1]), label_smoothing=0.2)
    got = loss({"expr": logits}, {"expr": (labels, torch.ones(12, dtype=torch.bool))})
    torch.testing.assert_close(got, expected)
    for bad, message in (([1, 2, 3], "has 3 values, task 'expr' has 6"), ([0] * 6, "every weight is 0"),
                         ("inverted", "not one of")):
        with pytest.raises(ConfigError, match=message):
            host.losses.get("cross-entropy").build(track, LossContext(class_counts=context.class_counts,
                                                                      options={"class_weights": bad}))


def test_synthstats_models_normalise_by_the_synthetic_statistics(host):
    from abawbench_builtins.hust_ant.normalisation import SYNTHETIC_MEAN, SYNTHETIC_STD

    plain = host.models.get("resnet10t").build(ModelOptions(image_size=32))
    wrapped = host.models.get("synthstats:resnet10t").build(ModelOptions(image_size=32))
    assert tuple(wrapped.data_config["mean"]) == SYNTHETIC_MEAN and tuple(wrapped.data_config["std"]) == SYNTHETIC_STD
    assert {k: v for k, v in wrapped.data_config.items() if k not in ("mean", "std")} == \
        {k: v for k, v in plain.data_config.items() if k not in ("mean", "std")}
    assert host.models.get("synthstats:dln:resnet10t").build(ModelOptions(image_size=32)).module.frozen is not None
    from abawbench.errors import UnknownNameError

    with pytest.raises(UnknownNameError, match="resnet10t"):
        host.models.get("synthstats:resnet10")


# --------------------------------------------------------------------------- SMM-EmotionNet


def test_smm_emotionnet_has_the_seed_codes_structure(host):
    backbone = host.models.get("smm-emotionnet").build(ModelOptions(image_size=299))
    heads = backbone.make_heads(host.tracks.get("mtl").tasks, "linear")
    first, second = heads.attention.convs
    assert (first[0].in_channels, first[0].out_channels, first[0].kernel_size) == (768, 68, (3, 3))
    assert (second[0].out_channels, second[0].kernel_size) == (17, (1, 1))
    assert isinstance(first[1], nn.BatchNorm2d) and isinstance(second[2], nn.ReLU)
    assert (heads.attention.maps.in_channels, heads.attention.maps.out_channels) == (17, 17)
    token = heads.tokens[0]
    assert token.conv3[0].out_channels == 16 and token.conv1[0].out_channels == 16 and token.embed.out_features == 16
    assert heads.position_dropout.p == 0.3 and heads.transformer.dropout.p == 0.1
    assert len(heads.emotion_maps.maps) == 17 and all(m.bias is None for m in heads.emotion_maps.maps)


def test_smm_va_is_unbounded_in_training_and_clipped_when_predicting():
    from abawbench_builtins.hust_ant.smm import SMMHeads

    tasks = (TaskSpec("va", "regression", ("valence", "arousal"), (-1.0, 1.0)),)
    torch.manual_seed(0)
    heads = SMMHeads(8, tasks)
    with torch.no_grad():
        heads.outputs["va"].bias.fill_(5.0)
    x = torch.randn(3, 8, 2, 2)
    assert bool((heads.train()(x)["va"] > 1).all())
    assert torch.equal(heads.eval()(x)["va"], torch.ones(3, 2))


# --------------------------------------------------------------------------- small configurations


SMALL = sorted((PACKAGE / "configs" / "small").glob("*.toml"))


def _tiny_data(config_path: Path, tmp_path: Path) -> dict:
    """Tiny official-layout data for a configuration, read by the dataset its file names (the
    embedded synthface datasets map to their official-layout counterparts)."""
    raw = tomllib.loads(config_path.read_text(encoding="utf-8"))
    if raw["track"] == "mtl":
        return {"data": str(_tiny_mtl_tree(tmp_path / "mtl", rows=24)), "dataset": "abaw4"}
    tree = _tiny_lsd_tree(tmp_path / "lsd", [6, 3, 3, 8, 5, 3], FOLDERS)
    oversampled = raw.get("dataset", "").endswith("-oversampled")
    return {"data": str(tree), "dataset": "abaw4-oversampled" if oversampled else "abaw4"}


@pytest.mark.parametrize("path", SMALL, ids=lambda p: p.name)
def test_small_configuration_runs_end_to_end(host, tmp_path, monkeypatch, path):
    """Each small configuration with its own settings (schedule, batching, frozen BatchNorm,
    class weights, warm start, normalisation), on tiny data, one epoch, one seed."""
    monkeypatch.setenv("ABAWBENCH_CACHE", str(tmp_path / "cache"))
    overrides = {**_tiny_data(path, tmp_path), "output": str(tmp_path / "runs"), "cache_dir": str(tmp_path / "cache"),
                 "device": "cpu", "seeds": [0],
                 "protocol": {"epochs": 1, "batch_size": 4, "image_size": 32, "num_workers": 0}}
    config = load_config(path, overrides)
    if config.protocol.warm_start:  # the entry it starts from, run first into the same output
        source = load_config(PACKAGE / "configs" / "small" / "lsd_linear_probe.toml",
                             {**overrides, "losses": ["cross-entropy-smooth"]})
        (probe,) = Runner(source, progress=False).run().results
        assert probe.status == "completed", probe.error
    results = Runner(config, progress=False).run().results
    assert results and [r.error for r in results if r.status != "completed"] == []
    for result in results:
        assert result.config["protocol"] == config.protocol.model_dump(mode="json")
        assert result.primary is not None and np.isfinite(result.primary.value)


def test_a_warm_started_entry_is_redone_when_its_source_entry_changes(host, tmp_path, monkeypatch):
    """The result records the source's weights digest; once the source is rerun (other weights),
    the warm-started entry is not reused."""
    monkeypatch.setenv("ABAWBENCH_CACHE", str(tmp_path / "cache"))
    path = PACKAGE / "configs" / "small" / "lsd_dln_warm_start.toml"
    overrides = {**_tiny_data(path, tmp_path), "output": str(tmp_path / "runs"), "cache_dir": str(tmp_path / "cache"),
                 "device": "cpu", "seeds": [0],
                 "protocol": {"epochs": 1, "batch_size": 4, "image_size": 32, "num_workers": 0}}
    source = load_config(PACKAGE / "configs" / "small" / "lsd_linear_probe.toml",
                         {**overrides, "losses": ["cross-entropy-smooth"]})
    (probe,) = Runner(source, progress=False).run().results
    config = load_config(path, overrides)
    (first,) = Runner(config, progress=False).run().results
    assert first.status == "completed", first.error
    weights = tmp_path / "runs" / "lsd" / probe.entry / probe.weights_file
    assert first.warm_start["sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()
    assert Runner(config, progress=False).run().results == []  # same source: reused
    weights.write_bytes(weights.read_bytes() + b"\0")  # the source's weights are not those any more
    (again,) = Runner(config, progress=False).run().results
    assert again.warm_start["sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()
