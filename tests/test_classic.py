"""The weight-free HOG backbone: shape, determinism, what it responds to, key honesty."""

from __future__ import annotations

import math

import pytest
import torch

from abawbench.errors import ConfigError
from abawbench.specs import ModelOptions


def _stripes(angle: float, size: int = 32) -> torch.Tensor:
    ys, xs = torch.meshgrid(torch.arange(size, dtype=torch.float32), torch.arange(size, dtype=torch.float32), indexing="ij")
    wave = torch.sin((xs * math.cos(angle) + ys * math.sin(angle)) * 0.8)
    return wave.expand(1, 3, size, size).clone()


def test_hog_shape_and_determinism(host):
    backbone = host.models.get("hog").build(ModelOptions(image_size=32))
    images = torch.rand(4, 3, 32, 32)
    features = backbone.module(images)
    assert features.shape == (4, backbone.feature_dim) == (4, 9 * 4 * 4)
    assert torch.equal(features, backbone.module(images))
    assert backbone.data_config["input_size"] == [3, 32, 32]


def test_hog_sees_orientation_not_brightness(host):
    module = host.models.get("hog").build(ModelOptions(image_size=32)).module
    vertical, horizontal = module(_stripes(0.0)), module(_stripes(math.pi / 2))
    brighter = module(_stripes(0.0) * 1.7 + 0.3)
    assert torch.allclose(vertical, brighter, atol=1e-4)  # contrast and offset normalised away
    assert (vertical - horizontal).abs().sum() > 1.0  # orientation is what it encodes


def test_hog_rejects_weights_and_bad_sizes(host):
    with pytest.raises(ConfigError, match="has no weights"):
        host.models.get("hog").build(ModelOptions(weights="/tmp/w.safetensors"))
    with pytest.raises(ConfigError, match="multiple of the cell size"):
        host.models.get("hog").build(ModelOptions(image_size=36))


def test_hog_digest_names_its_settings(host):
    digest = host.models.get("hog").build(ModelOptions(image_size=32)).weights_digest
    assert digest.startswith("hog:v") and "cell8" in digest


def test_hog_is_float32_inside_bf16_autocast(host):
    """A GPU run extracts under bf16 autocast; HOG must give its float32 features there (it
    once failed with a dtype error in the histogram scatter on CUDA). CPU autocast casts the
    same ops, so this runs everywhere."""
    backbone = host.models.get("hog").build(ModelOptions(image_size=32))
    images = torch.rand(2, 3, 32, 32)
    expected = backbone.module(images)
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        features = backbone.module(images)
    assert features.dtype == torch.float32 and torch.equal(features, expected)
