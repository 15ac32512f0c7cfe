"""Device helpers on a CPU-only machine, with CUDA faked where only the decision is tested,
and the GPU check script run end to end on the CPU."""

from __future__ import annotations

import importlib.util
import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from abawbench.device import (
    autocast_context,
    loader_kwargs,
    prepare_batch,
    prepare_module,
    resolve_device,
    seed_everything,
)
from abawbench.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def no_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


@pytest.fixture
def one_fake_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)


def test_auto_is_cpu_without_cuda(no_cuda):
    assert resolve_device("auto") == torch.device("cpu")
    assert resolve_device(" CPU ") == torch.device("cpu")


def test_auto_prefers_cuda_when_present(one_fake_gpu):
    assert resolve_device("auto") == torch.device("cuda")
    assert resolve_device("cuda:0") == torch.device("cuda:0")


@pytest.mark.parametrize("name", ["cuda", "cuda:0"])
def test_cuda_without_cuda_is_a_config_error(no_cuda, name):
    with pytest.raises(ConfigError, match="CUDA is not available"):
        resolve_device(name)


def test_cuda_index_beyond_the_devices_is_a_config_error(one_fake_gpu):
    with pytest.raises(ConfigError, match="only 1 CUDA device"):
        resolve_device("cuda:3")


def test_mps_absent_and_unknown_names_are_config_errors(monkeypatch):
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    with pytest.raises(ConfigError, match="mps"):
        resolve_device("mps")
    with pytest.raises(ConfigError, match="choose one of auto, cpu, cuda"):
        resolve_device("tpu")


def test_cpu_runs_fp32_without_autocast():
    with autocast_context(torch.device("cpu")):
        assert not torch.is_autocast_enabled("cpu")
        out = torch.ones(2, 2) @ torch.ones(2, 2)
    assert out.dtype == torch.float32


@pytest.mark.filterwarnings("ignore:CUDA is not available:UserWarning")
def test_cuda_gets_bf16_autocast():
    context = autocast_context(torch.device("cuda"))
    assert isinstance(context, torch.autocast)
    assert context.fast_dtype == torch.bfloat16 and context.device == "cuda"


def test_prepare_module_and_batch_on_cpu_keep_default_layout():
    conv = torch.nn.Conv2d(3, 4, 3)
    prepared = prepare_module(conv, torch.device("cpu"))
    assert prepared.weight.device.type == "cpu"
    assert prepared.weight.is_contiguous()  # channels_last is for CUDA only
    batch = prepare_batch(torch.randn(2, 3, 8, 8), torch.device("cpu"))
    assert batch.is_contiguous()


def test_pinned_memory_only_for_cuda():
    assert loader_kwargs(torch.device("cpu")) == {"pin_memory": False}
    assert loader_kwargs(torch.device("cuda")) == {"pin_memory": True}


def _draws() -> tuple[float, float, torch.Tensor]:
    return random.random(), float(np.random.rand()), torch.rand(3)


def test_seed_everything_repeats_every_generator():
    assert seed_everything(11) == 11
    first = _draws()
    seed_everything(11)
    again = _draws()
    assert first[:2] == again[:2] and torch.equal(first[2], again[2])
    seed_everything(12)
    assert _draws()[0] != first[0]
    assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark


@pytest.mark.parametrize("seed", [-1, 1.0, "3", True])
def test_bad_seed_is_a_config_error(seed):
    with pytest.raises(ConfigError, match="seed"):
        seed_everything(seed)


def test_gpu_check_script_runs_on_cpu_and_agrees_with_bare_timm(capsys):
    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "scripts" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    argv = ["--device", "cpu", "--arch", "test_resnet", "--image-size", "32", "--batch-size", "2",
            "--batches", "1", "--warmup", "0", "--rounds", "1", "--pool", "1"]
    assert module.main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["device_type"] == "cpu" and report["autocast"] == "off"
    assert set(report["results"]) == {"abawbench_backbone", "timm_bare_matched", "timm_bare_fp32"}
    assert all(r["images_per_s"] > 0 for r in report["results"].values())
    # same weights, same fp32 ops on the CPU: the abawbench path must compute exactly timm's features
    assert report["max_abs_diff_vs_bare_matched"] == 0.0
    assert report["max_rel_diff_vs_fp32"] == 0.0
