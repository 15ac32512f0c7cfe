"""The split preprocessing (uint8 pixels per image, normalisation per batch) gives exactly the
values of timm's own eval transform, and the fast JPEG decode gives exactly Pillow's pixels:
the feature cache is keyed on the data config, so any drift would silently mix features."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from timm.data import create_transform

from abawbench.errors import ConfigError, DataFormatError
from abawbench.features.preprocess import Preprocessing, flip_horizontally, load_image, to_pil_rgb

CONFIGS = {
    "timm-default-bicubic": {"input_size": [3, 40, 40], "interpolation": "bicubic", "crop_pct": 0.875,
                             "crop_mode": "center", "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]},
    "identity-bilinear": {"input_size": [3, 40, 40], "interpolation": "bilinear", "crop_pct": 1.0,
                          "crop_mode": "center", "mean": [0, 0, 0], "std": [1, 1, 1]},
    "squash": {"input_size": [3, 32, 48], "interpolation": "bilinear", "crop_pct": 0.9, "crop_mode": "squash",
               "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]},
    "one-value-mean-std": {"input_size": [3, 40, 40], "interpolation": "bilinear", "crop_pct": 1.0,
                           "crop_mode": "center", "mean": [0.5], "std": [0.25]},
    "border": {"input_size": [3, 40, 40], "interpolation": "bicubic", "crop_pct": 0.95, "crop_mode": "border",
               "mean": [0.481, 0.458, 0.408], "std": [0.269, 0.261, 0.276]},
}


def timm_reference(config: dict, image: Image.Image) -> torch.Tensor:
    return create_transform(input_size=tuple(config["input_size"]), interpolation=config["interpolation"],
                            mean=tuple(config["mean"]), std=tuple(config["std"]), crop_pct=config["crop_pct"],
                            crop_mode=config["crop_mode"], is_training=False)(image)


def random_pixels(height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(height, width, 3), dtype=np.uint8)


@pytest.mark.parametrize("name", sorted(CONFIGS))
@pytest.mark.parametrize("size", [(40, 40), (57, 43), (120, 90)], ids=["at-size", "odd", "larger"])
def test_split_preprocessing_equals_timm_bit_for_bit(name, size):
    config = CONFIGS[name]
    preprocessing = Preprocessing(config)
    pixels = random_pixels(*size)
    expected = timm_reference(config, Image.fromarray(pixels))
    for image in (Image.fromarray(pixels), pixels, torch.from_numpy(pixels).permute(2, 0, 1).contiguous()):
        assert torch.equal(preprocessing(image), expected)
    # and through the two stages the loader uses, batched
    batch = torch.stack([preprocessing.pixels(Image.fromarray(pixels))] * 2)
    assert batch.dtype == torch.uint8 and batch.shape == (2, *expected.shape)
    assert torch.equal(preprocessing.normalize(batch)[1], expected)


def test_normalize_paths_equal_timms_arithmetic():
    """The CPU's NumPy arithmetic, its table fallback and the accelerator path (a torch gather,
    run here on the CPU by calling it directly) give the values of timm's float ops on the CPU."""
    preprocessing = Preprocessing(CONFIGS["timm-default-bicubic"])
    assert preprocessing._arithmetic_is_exact  # checked over all 256 values of each channel
    batch = torch.from_numpy(random_pixels(8, 8).transpose(2, 0, 1).copy())[None].repeat(3, 1, 1, 1)
    by_ops = batch.to(torch.float32).div_(255).sub_(preprocessing.mean.view(1, 3, 1, 1)).div_(
        preprocessing.std.view(1, 3, 1, 1))
    assert torch.equal(preprocessing.normalize(batch), by_ops)
    assert torch.equal(preprocessing._normalize_by_table(batch), by_ops)
    assert torch.equal(preprocessing._normalize_by_gather(batch), by_ops)


def test_normalize_falls_back_to_the_table_where_arithmetic_would_differ(monkeypatch):
    """A platform whose arithmetic rounded differently would be caught by the construction-time
    check and served by the table (simulated by nudging one value the check sees)."""
    real = Preprocessing._normalize_by_arithmetic

    def off_by_one_ulp(self, batch):
        out = real(self, batch)
        flat = out.numpy().reshape(-1)
        flat[7] = np.nextafter(flat[7], np.float32(1e9))
        return out

    monkeypatch.setattr(Preprocessing, "_normalize_by_arithmetic", off_by_one_ulp)
    preprocessing = Preprocessing(CONFIGS["timm-default-bicubic"])
    assert not preprocessing._arithmetic_is_exact
    batch = torch.from_numpy(random_pixels(8, 8).transpose(2, 0, 1).copy())[None]
    assert torch.equal(preprocessing.normalize(batch), preprocessing._normalize_by_table(batch))


def test_identity_geometry_skips_pillow_but_not_when_it_resamples(monkeypatch):
    identity = Preprocessing(CONFIGS["identity-bilinear"])
    tensor = torch.from_numpy(random_pixels(40, 40).transpose(2, 0, 1).copy())
    assert identity._is_identity((40, 40)) and not identity._is_identity((41, 40))
    # resize-up-then-crop back to the input size is not the identity
    assert not Preprocessing(CONFIGS["timm-default-bicubic"])._is_identity((40, 40))

    def no_pillow(image):
        raise AssertionError("an image the geometry keeps must not go through Pillow")

    monkeypatch.setattr("abawbench.features.preprocess.to_pil_rgb", no_pillow)
    assert torch.equal(identity.pixels(tensor), tensor)
    with pytest.raises(AssertionError, match="must not go through Pillow"):
        identity.pixels(tensor[:, :, :39].contiguous())  # another size does


def test_bad_inputs_are_config_errors():
    preprocessing = Preprocessing(CONFIGS["identity-bilinear"])
    with pytest.raises(ConfigError, match="uint8"):
        preprocessing.pixels(torch.zeros(3, 40, 40))
    with pytest.raises(ConfigError, match=r"uint8 image batch \[N, 3, H, W\]"):
        preprocessing.normalize(torch.zeros(2, 3, 4, 4))
    with pytest.raises(ConfigError, match="lacks"):
        Preprocessing({"input_size": [3, 8, 8]})
    with pytest.raises(ConfigError, match="zero"):
        Preprocessing({**CONFIGS["identity-bilinear"], "std": [1, 0, 1]})


def _write_jpeg(path: Path, pixels: np.ndarray, mode: str = "RGB", quality: int = 80) -> None:
    Image.fromarray(pixels).convert(mode).save(path, quality=quality)


@pytest.mark.parametrize("decoder", ["torchvision", "pillow-only"])
@pytest.mark.parametrize("mode", ["RGB", "L", "CMYK"])
def test_load_image_decodes_jpeg_like_pillow(tmp_path, monkeypatch, mode, decoder):
    if decoder == "pillow-only":  # a torchvision without image codecs (deprecated since 0.29)
        monkeypatch.setattr("abawbench.features.preprocess._fast_jpeg_decoder", lambda: None)
    path = tmp_path / "face.jpg"
    _write_jpeg(path, random_pixels(37, 29, seed=3), mode=mode)
    decoded = load_image(path)
    with Image.open(path) as reference:
        expected = np.asarray(reference.convert("RGB"))
    assert np.array_equal(np.asarray(to_pil_rgb(decoded)), expected)


def test_load_image_reads_png_and_names_bad_files(tmp_path):
    png = tmp_path / "face.png"
    pixels = random_pixels(9, 7)
    Image.fromarray(pixels).save(png)
    assert np.array_equal(np.asarray(load_image(png)), pixels)

    broken = tmp_path / "broken.jpg"
    buffer = io.BytesIO()
    Image.fromarray(random_pixels(32, 32)).save(buffer, format="JPEG")
    broken.write_bytes(buffer.getvalue()[:60])  # a truncated JPEG
    with pytest.raises(DataFormatError, match="broken.jpg"):
        load_image(broken)
    (tmp_path / "text.jpg").write_text("not an image")
    with pytest.raises(DataFormatError, match="text.jpg: cannot decode"):
        load_image(tmp_path / "text.jpg")
    with pytest.raises(DataFormatError, match="missing.jpg: cannot read"):
        load_image(tmp_path / "missing.jpg")


def test_flip_is_the_same_for_tensors_and_pillow():
    pixels = random_pixels(5, 6)
    flipped_tensor = flip_horizontally(torch.from_numpy(pixels).permute(2, 0, 1))
    flipped_pil = flip_horizontally(Image.fromarray(pixels))
    assert np.array_equal(flipped_tensor.permute(1, 2, 0).numpy(), np.asarray(flipped_pil))


def test_fast_decoder_is_used_only_where_it_agrees_with_pillow(monkeypatch):
    from abawbench.features import preprocess

    preprocess._fast_jpeg_decoder.cache_clear()
    try:
        assert preprocess._fast_jpeg_decoder() is not None  # this environment's builds agree
        preprocess._fast_jpeg_decoder.cache_clear()
        real = preprocess._jpeg_probes()
        monkeypatch.setattr(preprocess, "_jpeg_probes", lambda: [(data, pixels ^ 1) for data, pixels in real])
        assert preprocess._fast_jpeg_decoder() is None  # a libjpeg that decodes otherwise: Pillow only
    finally:
        preprocess._fast_jpeg_decoder.cache_clear()


def test_jpeg_decoding_survives_deprecation_warnings_as_errors(tmp_path):
    import warnings

    path = tmp_path / "face.jpg"
    _write_jpeg(path, random_pixels(16, 16))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # as under python -W error
        assert isinstance(load_image(path), torch.Tensor)
