"""The timm plugin as users meet it: names, lazy registration, weights, preprocessing.

Tiny timm test models (``test_resnet``, ``test_vit``) at 32-64 px keep each test well under a
second on a 2-core CPU. Everything is offline (HF_HUB_OFFLINE=1 is set in conftest).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from PIL import Image
from safetensors.torch import save_file

from abawbench.errors import ConfigError, UnknownNameError
from abawbench.specs import ModelFamily, ModelOptions, ModelSpec

SMALL = 48  # px: enough for the tiny test nets, cheap everywhere


def _build(host, name: str, **options):
    return host.models.get(name).build(ModelOptions(**options))


def _state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in module.state_dict().items()}


def _assert_same_state(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


# --------------------------------------------------------------------------- names


def test_family_resolves_any_timm_architecture(host):
    spec = host.models.get("timm:test_resnet")
    assert isinstance(spec, ModelSpec) and spec.name == "timm:test_resnet"
    backbone = spec.build(ModelOptions(image_size=SMALL))
    features = backbone.module(torch.randn(2, 3, SMALL, SMALL))
    assert features.shape == (2, backbone.feature_dim)
    assert backbone.name == "timm:test_resnet"


def test_family_accepts_a_pretrained_tag(host):
    assert host.models.get("timm:test_resnet.r160_in1k").name == "timm:test_resnet.r160_in1k"


def test_typo_in_architecture_suggests_close_timm_names(host):
    with pytest.raises(UnknownNameError) as info:
        host.models.get("timm:test_resnnet")
    assert "did you mean 'timm:test_resnet'" in str(info.value)  # a full name to paste


def test_family_is_registered_with_timm_names_for_suggestions(host):
    families = [e for e in host.models.entries() if isinstance(e.item, ModelFamily)]
    timm_family = [e for e in families if e.item.prefix == "timm:"]
    assert [e.plugin for e in timm_family] == ["builtin.timm"]
    assert "resnet50" in timm_family[0].item.known_names()
    assert timm_family[0].item.resolve("resnet50").name == "timm:resnet50"


def test_named_models_and_default_run_choice(host):
    for name in ("resnet18", "resnet50", "efficientnet_b0", "vit_base_patch16_224", "inception_v3"):
        assert name in host.models
    defaults = sorted(e.name for e in host.models.entries()
                      if e.plugin == "builtin.timm" and getattr(e.item, "default_run", False))
    assert defaults == ["mobilenetv3_small_100"]


def test_listing_and_lookup_build_nothing(host, monkeypatch, capsys):
    def refuse(*args, **kwargs):
        raise AssertionError("a model was built while listing")

    monkeypatch.setattr(timm, "create_model", refuse)
    from abawbench.cli import main

    assert main(["list", "models", "--json"]) == 0
    names = {row["name"] for row in json.loads(capsys.readouterr().out)}
    assert {"resnet50", "resnet10t", "timm:*"} <= names
    host.models.get("timm:vit_base_patch16_224")  # resolving is a lookup, not a build
    with pytest.raises(AssertionError, match="built while listing"):
        _build(host, "resnet18", image_size=SMALL)


def test_registering_the_plugin_imports_neither_timm_nor_torch():
    code = (
        "import sys\n"
        "from abawbench.plugins import load_plugins\n"
        "host = load_plugins(strict=True, allowed=['builtin.timm'])\n"
        "assert 'resnet50' in host.models\n"
        "print(sorted(m for m in ('timm', 'torch') if m in sys.modules))\n"
    )
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.strip() == "[]"


# --------------------------------------------------------------------------- random weights


def test_random_init_is_deterministic_per_seed(host):
    first = _build(host, "timm:test_resnet", image_size=SMALL, extra={"seed": 7})
    again = _build(host, "timm:test_resnet", image_size=SMALL, extra={"seed": 7})
    other = _build(host, "timm:test_resnet", image_size=SMALL, extra={"seed": 8})
    _assert_same_state(_state(first.module), _state(again.module))
    assert any(not torch.equal(a, b) for a, b in zip(first.module.parameters(), other.module.parameters()))
    assert first.weights_digest == "random:test_resnet:seed7"
    assert other.weights_digest == "random:test_resnet:seed8"


def test_building_leaves_the_callers_random_state_alone(host):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    _build(host, "timm:test_resnet", image_size=SMALL)
    assert torch.equal(torch.rand(3), expected)


@pytest.mark.parametrize("seed", [-1, "0", 1.5, True])
def test_bad_seed_is_a_config_error(host, seed):
    with pytest.raises(ConfigError, match="seed"):
        _build(host, "timm:test_resnet", extra={"seed": seed})


# --------------------------------------------------------------------------- local files


def _trained_with_head(num_classes: int = 10) -> torch.nn.Module:
    """A model as someone's training script would save it: with its own classifier."""
    torch.manual_seed(99)
    return timm.create_model("test_resnet", num_classes=num_classes)


def test_local_safetensors_file_loads_and_is_digested(host, tmp_path):
    source = _trained_with_head()
    state = {k: v for k, v in source.state_dict().items() if not k.startswith("fc.")}
    path = tmp_path / "weights.safetensors"
    save_file(state, str(path))

    backbone = _build(host, "timm:test_resnet", weights=str(path), image_size=SMALL)
    _assert_same_state(_state(backbone.module), state)
    assert backbone.weights_digest == "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()


def test_local_pth_checkpoint_with_wrapper_and_other_head_loads(host, tmp_path):
    source = _trained_with_head(num_classes=7)  # a head the backbone does not have: dropped
    path = tmp_path / "checkpoint.pth"
    torch.save({"epoch": 3, "state_dict": source.state_dict()}, path)

    backbone = _build(host, "timm:test_resnet", weights=str(path), image_size=SMALL)
    expected = {k: v for k, v in source.state_dict().items() if not k.startswith("fc.")}
    _assert_same_state(_state(backbone.module), expected)
    x = torch.randn(2, 3, SMALL, SMALL)
    source.eval()
    torch.testing.assert_close(backbone.module(x), source.forward_head(source.forward_features(x), pre_logits=True))


def test_ddp_module_prefix_is_stripped(tmp_path):
    from abawbench.weights import load_state_dict_file

    path = tmp_path / "ddp.pt"
    torch.save({"module.a": torch.ones(2), "module.b.c": torch.zeros(1)}, path)
    assert sorted(load_state_dict_file(path)) == ["a", "b.c"]


class _RunsCode:
    """A pickle payload that would create a file when unpickled unsafely."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_pickle_with_code_is_refused_not_run(host, tmp_path):
    marker = tmp_path / "executed"
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": {"conv1.0.weight": torch.zeros(1)}, "payload": _RunsCode(marker)}, path)
    with pytest.raises(ConfigError, match="refused") as info:
        _build(host, "timm:test_resnet", weights=str(path))
    assert str(path) in str(info.value)
    assert not marker.exists()


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_unreadable_file_is_a_config_error_naming_it(host, tmp_path, suffix):
    path = tmp_path / f"broken{suffix}"
    path.write_bytes(b"this is not a checkpoint")
    with pytest.raises(ConfigError) as info:
        _build(host, "timm:test_resnet", weights=str(path))
    assert str(path) in str(info.value)


def test_weights_of_another_architecture_are_refused_with_keys(host, tmp_path):
    path = tmp_path / "vit.safetensors"
    save_file(timm.create_model("test_vit", num_classes=0).state_dict(), str(path))
    with pytest.raises(ConfigError, match="missing keys") as info:
        _build(host, "timm:test_resnet", weights=str(path))
    assert str(path) in str(info.value) and "unexpected keys" in str(info.value)


def test_shape_mismatch_is_reported(tmp_path):
    from abawbench.weights import load_into_module

    module = torch.nn.Linear(3, 2)
    with pytest.raises(ConfigError, match=r"shape mismatches .*weight \(file \(2, 4\), model \(2, 3\)\)"):
        load_into_module(module, {"weight": torch.zeros(2, 4), "bias": torch.zeros(2)}, "x.pt")


def test_vit_file_at_native_size_loads_at_another_image_size(host, tmp_path):
    """Position embeddings are resampled the way timm does for its own downloads."""
    path = tmp_path / "vit.safetensors"
    save_file(timm.create_model("test_vit", num_classes=0).state_dict(), str(path))
    backbone = _build(host, "timm:test_vit", weights=str(path), image_size=64)
    assert backbone.module(torch.randn(1, 3, 64, 64)).shape == (1, backbone.feature_dim)


def test_missing_file_or_unknown_weights_word(host, tmp_path):
    with pytest.raises(ConfigError, match="'random', 'hub' or a path"):
        _build(host, "timm:test_resnet", weights=str(tmp_path / "nope.safetensors"))


def test_file_digest_is_streamed_sha256(tmp_path):
    from abawbench.weights import file_digest

    path = tmp_path / "blob"
    data = os.urandom(3 * (1 << 20) + 17)  # spans several read chunks
    path.write_bytes(data)
    assert file_digest(path) == hashlib.sha256(data).hexdigest()
    with pytest.raises(ConfigError, match="cannot read"):
        file_digest(tmp_path / "absent")


# --------------------------------------------------------------------------- hub


def test_hub_offline_is_a_config_error_that_names_weights_flag(host, tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty-hub-cache"))
    with pytest.raises(ConfigError, match="--weights /path/to/file.safetensors"):
        _build(host, "timm:test_resnet", weights="hub")


# --------------------------------------------------------------------------- preprocessing


def test_data_config_honours_image_size_and_is_json(host):
    native = _build(host, "timm:test_resnet")
    small = _build(host, "timm:test_resnet", image_size=SMALL)
    assert native.data_config["input_size"] == [3, 160, 160]
    assert small.data_config["input_size"] == [3, SMALL, SMALL]
    assert json.loads(json.dumps(small.data_config)) == small.data_config
    assert {"mean", "std", "interpolation", "crop_pct"} <= small.data_config.keys()


def test_image_size_of_fixed_size_models_builds_matching_network(host):
    backbone = _build(host, "timm:test_vit", image_size=64)
    assert backbone.data_config["input_size"] == [3, 64, 64]
    assert backbone.module(torch.randn(1, 3, 64, 64)).shape == (1, backbone.feature_dim)


def test_feature_dim_counts_post_pool_head_layers(host):
    backbone = _build(host, "mobilenetv3_small_100", image_size=32)
    assert backbone.module(torch.randn(1, 3, 32, 32)).shape == (1, backbone.feature_dim) == (1, 1024)


def test_eval_transform_is_deterministic_and_input_kind_agnostic(host):
    from abawbench.features.preprocess import Preprocessing

    config = _build(host, "timm:test_resnet", image_size=SMALL).data_config
    transform = Preprocessing(config)
    pixels = np.random.default_rng(0).integers(0, 256, size=(70, 60, 3), dtype=np.uint8)
    from_pil = transform(Image.fromarray(pixels))
    assert from_pil.shape == (3, SMALL, SMALL) and from_pil.dtype == torch.float32
    assert torch.equal(transform(Image.fromarray(pixels)), from_pil)
    assert torch.equal(Preprocessing(config)(pixels), from_pil)
    assert torch.equal(transform(torch.from_numpy(pixels).permute(2, 0, 1)), from_pil)
    with pytest.raises(ConfigError, match="uint8"):
        transform(torch.zeros(3, 8, 8))
