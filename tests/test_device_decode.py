"""Decoding and resizing on the device: the pixels stay within a stated tolerance of the CPU
path's (checked on the CPU, where the very same functions run), features of the two paths
never share a cache key, and the choice is made only on CUDA."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from abawbench.data.index import SampleIndex
from abawbench.features.device_decode import DeviceDecoding, choose_device_decoding
from abawbench.features.extract import decoded_batches
from abawbench.features.preprocess import Preprocessing, image_decoder_identity

CONFIG = {"input_size": [3, 48, 48], "mean": [0.5] * 3, "std": [0.5] * 3, "interpolation": "bilinear",
          "crop_pct": 0.875}
MAX_LEVEL_DIFFERENCE = 2  # of 255 at any one pixel: torchvision's antialiased resize rounds otherwise than Pillow's
MEAN_LEVEL_DIFFERENCE = 0.25  # of 255, averaged over an image
CPU = torch.device("cpu")


def split_of(folder, sizes, fmt="JPEG") -> SampleIndex:
    rng = np.random.default_rng(0)
    names = []
    for i, (height, width) in enumerate(sizes):
        steps = rng.integers(-12, 13, size=(height, width, 3))
        face = np.clip(np.cumsum(steps, axis=1) + 128, 0, 255).astype(np.uint8)
        name = f"img{i}.{'jpg' if fmt == 'JPEG' else 'png'}"
        Image.fromarray(face).save(folder / name, format=fmt, **({"quality": 90} if fmt == "JPEG" else {}))
        names.append(name)
    return SampleIndex(root=folder, track="lsd", split="validation", paths=names, labels={}, fingerprint="f")


def both_paths(index: SampleIndex, batch_size: int = 4) -> tuple[np.ndarray, np.ndarray]:
    preprocessing = Preprocessing(CONFIG)
    cpu = torch.cat([images for _, images in decoded_batches(index, preprocessing, CPU, batch_size=batch_size,
                                                             num_workers=0)])
    device = torch.cat([images for _, images in DeviceDecoding(preprocessing, CPU).batches(
        index, batch_size=batch_size, num_workers=0)])
    return cpu.numpy().astype(np.int16), device.numpy().astype(np.int16)


@pytest.mark.parametrize("sizes", [[(48, 48)] * 5, [(112, 112), (90, 70), (64, 128), (200, 160), (31, 47)]])
def test_device_pixels_stay_within_the_stated_tolerance_of_the_cpu_path(tmp_path, sizes):
    cpu, device = both_paths(split_of(tmp_path, sizes))
    assert cpu.shape == device.shape == (len(sizes), 3, 48, 48)
    difference = np.abs(cpu - device)
    assert difference.max() <= MAX_LEVEL_DIFFERENCE
    assert difference.reshape(len(sizes), -1).mean(axis=1).max() <= MEAN_LEVEL_DIFFERENCE


def test_files_that_are_not_jpeg_are_decoded_on_the_cpu_in_the_same_batch(tmp_path):
    index = split_of(tmp_path, [(48, 48), (60, 60)], fmt="PNG")
    cpu, device = both_paths(index)
    assert np.abs(cpu - device).max() <= MAX_LEVEL_DIFFERENCE


def test_device_decoding_has_its_own_cache_key_component():
    decoding = DeviceDecoding(Preprocessing(CONFIG), CPU)
    assert decoding.identity() != image_decoder_identity()


def test_device_decoding_is_chosen_only_on_cuda_and_can_be_switched_off(monkeypatch):
    preprocessing = Preprocessing(CONFIG)
    assert choose_device_decoding(preprocessing, CPU) is None
    assert choose_device_decoding(preprocessing, torch.device("cuda")) is not None
    monkeypatch.setenv("ABAWBENCH_DEVICE_DECODE", "0")
    assert choose_device_decoding(preprocessing, torch.device("cuda")) is None


GPU_MAX_LEVEL_DIFFERENCE = 8  # nvJPEG's IDCT and chroma upsampling are not libjpeg-turbo's
GPU_MEAN_LEVEL_DIFFERENCE = 0.5


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_on_cuda_the_pixels_stay_within_the_gpu_tolerance(tmp_path):
    index = split_of(tmp_path, [(112, 112), (90, 70), (64, 128), (200, 160), (31, 47)])
    preprocessing = Preprocessing(CONFIG)
    cpu = torch.cat([images for _, images in decoded_batches(index, preprocessing, CPU, batch_size=4,
                                                             num_workers=0)]).numpy().astype(np.int16)
    decoding = choose_device_decoding(preprocessing, torch.device("cuda"))
    assert decoding is not None
    gpu = torch.cat([images.cpu() for _, images in decoding.batches(index, batch_size=4, num_workers=0)])
    difference = np.abs(cpu - gpu.numpy().astype(np.int16))
    assert difference.max() <= GPU_MAX_LEVEL_DIFFERENCE
    assert difference.reshape(len(index), -1).mean(axis=1).max() <= GPU_MEAN_LEVEL_DIFFERENCE
