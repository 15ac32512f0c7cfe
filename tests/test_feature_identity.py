"""Cached features are reused only by the code, weights and decoder that made them.

A plugin's own weights digest says what it believes about itself: a reinstalled plugin can build
another network under the same model name, seed and weights file. These tests change exactly
that (the architecture behind a random init, the plugin's version for file weights, the image
decoder) and check that ``abawbench run``'s feature step extracts anew instead of reusing what
another model computed.
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import h5py
import numpy as np
import pytest
import torch

from abawbench import cli
from abawbench.config import load_config
from abawbench.features.entry import META
from abawbench.features.key import fields_digest
from abawbench.features.store import FeatureCache
from abawbench.plugins import PluginInfo, allowed_from_env, load_plugins
from abawbench.run.features import RunFeatures
from abawbench.run.plan import prepare_data
from abawbench.specs import ModelOptions

from plugin_helpers import install_distribution, make_module, site_on_path

DRIFT = '''
import torch
from torch import nn
from abawbench.hookspecs import hookimpl
from abawbench.specs import Backbone, ModelSpec

KERNEL = {kernel}
POOL = nn.{pool}
CONFIG = {{"input_size": [3, 32, 32], "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5],
           "interpolation": "bilinear", "crop_pct": 1.0}}
FORWARD_PASSES = [0]

def count_forward(module, inputs):
    FORWARD_PASSES[0] += 1

def build(options):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        module = nn.Sequential(nn.Conv2d(3, 8, KERNEL, stride=4, padding=KERNEL // 2), nn.ReLU(),
                               POOL(2), nn.Flatten())
    digest = "random:drift:seed0"
    if options.weights != "random":
        module.load_state_dict(torch.load(options.weights))
        digest = "sha256:the-same-file"
    module.register_forward_pre_hook(count_forward)
    return Backbone(name="drift", module=module, feature_dim=32, data_config=dict(CONFIG),
                    weights_digest=digest)

@hookimpl
def abawbench_register_models(register):
    register(ModelSpec(name="drift", build=build))
'''


def drift_source(kernel: int = 3, pool: str = "AdaptiveAvgPool2d") -> str:
    return DRIFT.format(kernel=kernel, pool=pool)


@pytest.fixture(scope="module")
def lsd_tree(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("lsd") / "tree"
    return load_plugins(strict=True).datasets.get("synthface").generate("lsd", out, 40, 5)


class Extraction:
    """What one run's feature step gave for the drift model's training split."""

    def __init__(self, host, tree: Path, cache: Path, weights: str = "random") -> None:
        config = load_config(None, {"track": "lsd", "data": tree, "models": ["drift"], "weights": weights,
                                    "cache_dir": cache, "protocol": {"batch_size": 16}})
        splits = prepare_data(host, config, host.tracks.get("lsd"), cache).splits
        passes = host.pm.get_plugin("drift").FORWARD_PASSES
        before = passes[0]
        features = RunFeatures(host, config, splits, torch.device("cpu"), cache, progress=False)
        self.features = features.features("drift", "train")
        self.cache_key = features.cache_keys("drift")["train"]
        self.extracted = passes[0] > before


def host_with_drift(source: str, version: str = "1.0"):
    host = load_plugins(strict=True)
    info = PluginInfo(name="drift", version=version, distribution="abawbench-drift")
    host.add_plugin(make_module("abawbench_drift", source), "drift", info=info)
    return host


def test_another_architecture_under_the_same_seed_is_extracted_anew(tmp_path, lsd_tree):
    """Finding 3: a random init is keyed on its tensors, not on the seed the plugin names."""
    first = Extraction(host_with_drift(drift_source(kernel=3)), lsd_tree, tmp_path / "cache")
    again = Extraction(host_with_drift(drift_source(kernel=3)), lsd_tree, tmp_path / "cache")
    assert first.extracted and not again.extracted and again.cache_key == first.cache_key
    changed = Extraction(host_with_drift(drift_source(kernel=5)), lsd_tree, tmp_path / "cache")
    assert changed.extracted and changed.cache_key != first.cache_key
    assert not np.array_equal(changed.features, first.features)


def test_upgraded_plugin_with_the_same_weights_file_is_extracted_anew(tmp_path, lsd_tree, monkeypatch):
    """Finding 3: the supplying plugin's version is in the key for file weights too; the upgrade
    is installed as a user installs it (an ``abawbench-drift`` distribution, version bumped)."""
    weights = tmp_path / "drift.pt"
    weights_source = host_with_drift(drift_source()).models.get("drift")
    torch.save(weights_source.build(ModelOptions()).module.state_dict(), weights)

    def installed(version: str, source: str) -> Extraction:
        with monkeypatch.context() as patch, site_on_path(tmp_path / f"site-{version}", patch) as site:
            install_distribution(site, "abawbench-drift", version, {"drift": "abawbench_drift"},
                                 {"abawbench_drift": source})
            host = load_plugins(strict=True, allowed=allowed_from_env() | {"drift"})  # the built-ins and it
            assert host.plugins["drift"].version == version
            return Extraction(host, lsd_tree, tmp_path / "cache", weights=str(weights))

    first = installed("1.0", drift_source(pool="AdaptiveAvgPool2d"))
    upgraded = installed("2.0", drift_source(pool="AdaptiveMaxPool2d"))  # same tensors, other forward
    assert first.extracted and upgraded.extracted
    assert upgraded.cache_key != first.cache_key
    assert not np.array_equal(upgraded.features, first.features)


@contextmanager
def torchvision_without_image_codecs(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """An environment whose torchvision has no JPEG decoder (0.29 deprecated its image codecs),
    so that JPEG files go through Pillow; the decoder choice is probed again on entry and exit."""
    from abawbench.features import preprocess

    preprocess._fast_jpeg_decoder.cache_clear()
    try:
        with monkeypatch.context() as patch:
            patch.delattr("torchvision.io.decode_jpeg")
            yield
    finally:
        preprocess._fast_jpeg_decoder.cache_clear()


def test_another_jpeg_decoder_is_extracted_anew(tmp_path, lsd_tree, monkeypatch):
    """Finding 3: the decoder chosen at run time is in the key."""
    fast = Extraction(host_with_drift(drift_source()), lsd_tree, tmp_path / "cache")
    with torchvision_without_image_codecs(monkeypatch):
        pillow = Extraction(host_with_drift(drift_source()), lsd_tree, tmp_path / "cache")
    assert fast.extracted and pillow.extracted and pillow.cache_key != fast.cache_key
    np.testing.assert_array_equal(pillow.features, fast.features)  # the probe-checked decoders agree


def test_feature_files_name_the_code_and_decoder_they_came_from(tmp_path, lsd_tree):
    first = Extraction(host_with_drift(drift_source(), version="1.0"), lsd_tree, tmp_path / "cache")
    [entry] = [e for e in FeatureCache(tmp_path / "cache").entries() if e.key.split == "train"]
    assert entry.key.digest() == first.cache_key
    assert entry.key.model_code["plugin"] == {"plugin": "drift", "distribution": "abawbench-drift", "version": "1.0"}
    assert entry.key.model_code["torch"] and entry.key.model_code["timm"]
    assert entry.key.weights_digest.startswith("random:drift:seed0|init:sha256:")
    assert set(entry.key.decoder) == {"jpeg", "other"}


def test_file_of_an_older_key_is_never_hit_and_cleared_as_bad(tmp_path, lsd_tree, capsys):
    """A file written before the key covered the code and decoder is not read again: ``cache ls``
    says why, ``cache clear --bad`` removes it."""
    Extraction(host_with_drift(drift_source()), lsd_tree, tmp_path / "cache")
    [path] = [e.path for e in FeatureCache(tmp_path / "cache").entries() if e.key.split == "train"]
    _drop_key_fields(path, "model_code", "decoder")
    assert cli.main(["cache", "ls", "--cache-dir", str(tmp_path / "cache"), "--json"]) == 0
    [listed] = [e for e in json.loads(capsys.readouterr().out) if e["path"] == str(path)]
    assert "lacks model_code, decoder" in listed["problem"]
    assert cli.main(["cache", "clear", "--bad", "--yes", "--cache-dir", str(tmp_path / "cache")]) == 0
    assert not path.exists()


def _drop_key_fields(path: Path, *names: str) -> None:
    """Rewrite a file's stored key as an abawbench without ``names`` wrote it."""
    with h5py.File(path, "r+") as f:
        meta = json.loads(f.attrs[META])
        for name in names:
            del meta["key"][name]
        meta["key_digest"] = fields_digest(meta["key"])
        f.attrs[META] = json.dumps(meta, sort_keys=True)


@pytest.mark.parametrize("model", ["timm:resnet18", "resnet18", "hog"])
def test_builtin_models_are_keyed_on_the_builtin_plugin_that_supplies_them(host, model):
    """A family member (``timm:<arch>``) is the family's plugin's; every model names torch and timm."""
    from importlib.metadata import version

    from abawbench.run.features import model_code_identity

    code = model_code_identity(host, model)
    supplier = "builtin.classic" if model == "hog" else "builtin.timm"
    assert code["plugin"] == {"plugin": supplier, "distribution": "abawbench", "version": version("abawbench")}
    assert code["torch"] == version("torch") and code["timm"] == version("timm")
