"""Speed of the pipeline's hot paths: feature-cache reads, feature extraction, head training.

Self-contained (tiny synthetic images, a small conv net, random features) so the same file runs
against an older checkout for comparison; see benchmarks/README.md.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

CACHE_ROWS, CACHE_DIM = 20_000, 512


@pytest.fixture(scope="module")
def host():
    from abawbench.plugins import load_plugins

    return load_plugins(strict=True, allowed={"builtin.tracks", "builtin.losses"})


# --------------------------------------------------------------------------- cache read


@pytest.fixture(scope="module")
def cached(tmp_path_factory):
    from abawbench.features.key import CacheKey
    from abawbench.features.store import FeatureCache

    cache = FeatureCache(tmp_path_factory.mktemp("cache"))
    key = CacheKey(backbone="bench", weights_digest="random-0", preprocessing={"input_size": [3, 64, 64]},
                   dataset_fingerprint="bench", split="validation", model_code={}, decoder={})
    ids = [f"{i}.jpg" for i in range(CACHE_ROWS)]
    features = np.random.default_rng(0).normal(size=(CACHE_ROWS, CACHE_DIM)).astype(np.float32)

    def produce(writer):
        for start in range(0, CACHE_ROWS, 1000):
            writer.write(start, features[start:start + 1000])

    cache.get_or_create(key, ids, CACHE_DIM, produce)
    return cache, key, ids


def test_cache_read_20k_x_512(benchmark, cached):
    cache, key, ids = cached

    def never(_writer):
        raise AssertionError("the entry exists; reading must not recompute it")

    def read():
        return cache.get_or_create(key, ids, CACHE_DIM, never).read()

    array = benchmark(read)
    assert array.shape == (CACHE_ROWS, CACHE_DIM)


# --------------------------------------------------------------------------- extraction


class SmallNet(nn.Module):
    """A few convolutions: enough compute to weigh the loop's decode and transform overheads."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 16, 3, 2, 1), nn.ReLU(), nn.Conv2d(16, 32, 3, 2, 1), nn.ReLU(),
                                  nn.AdaptiveAvgPool2d(1), nn.Flatten())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


@pytest.fixture(scope="module")
def image_index(tmp_path_factory):
    from PIL import Image

    from abawbench.data.index import SampleIndex

    root = Path(tmp_path_factory.mktemp("images"))
    gen = np.random.default_rng(0)
    paths = []
    for i in range(256):
        Image.fromarray(gen.integers(0, 255, (72, 72, 3), dtype=np.uint8)).save(root / f"{i}.jpg")
        paths.append(f"{i}.jpg")
    return SampleIndex(root=root, track="lsd", split="validation", paths=paths, labels={}, fingerprint="bench")


def test_extract_256_images_64px(benchmark, image_index):
    from abawbench.features.extract import extract_features
    from abawbench.specs import Backbone

    torch.manual_seed(0)
    backbone = Backbone(name="small", module=SmallNet(), feature_dim=32, weights_digest="random-0",
                        data_config={"input_size": (3, 64, 64), "mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5),
                                     "interpolation": "bilinear", "crop_pct": 1.0})
    out = np.zeros((len(image_index), 32), np.float32)

    def write(start, batch):
        out[start:start + len(batch)] = batch

    benchmark.pedantic(extract_features, args=(backbone, image_index, torch.device("cpu"), write),
                       kwargs={"batch_size": 64, "progress": False}, rounds=3, iterations=1)
    assert np.abs(out).sum() > 0


# --------------------------------------------------------------------------- head training


def test_train_linear_heads_lsd_2k(benchmark, host):
    from abawbench.config import ProtocolConfig
    from abawbench.data.index import SampleIndex
    from abawbench.labels import TaskLabels
    from abawbench.training.heads import TaskHeads
    from abawbench.training.loop import loss_context, train_network
    from abawbench.training.probe import FeatureFeed

    lsd = host.tracks.get("lsd")
    gen = np.random.default_rng(0)
    splits, features = {}, {}
    for split, rows in (("train", 2000), ("validation", 500)):
        classes = gen.integers(0, 6, rows)
        x = gen.normal(size=(rows, 128)).astype(np.float32)
        x[np.arange(rows), classes] += 3.0  # learnable signal
        features[split] = torch.from_numpy(x)
        splits[split] = SampleIndex(root=Path("."), track="lsd", split=split, paths=[f"{i}" for i in range(rows)],
                                    labels={"expr": TaskLabels(classes.astype(np.int64), np.ones(rows, bool))},
                                    fingerprint=split)
    protocol = ProtocolConfig(epochs=3, batch_size=128, lr=1e-2, bootstrap=0)
    loss = host.losses.get("cross-entropy").build(lsd, loss_context(lsd, splits["train"].labels, {}))

    def train():
        torch.manual_seed(0)
        heads = TaskHeads(128, lsd.tasks, kind="linear")
        feed = FeatureFeed(features, splits, lsd.tasks, protocol.batch_size, seed=0)
        return train_network(heads, feed, lsd, loss, protocol, progress=False)

    outcome = benchmark.pedantic(train, rounds=3, iterations=1)
    assert lsd.score(outcome.validation, splits["validation"].labels).primary > 0.6
