"""Image preprocessing from a backbone's data config: the one eval transform every path uses.

The data config is what the feature cache is keyed on, so the transform must be a pure
function of it: no randomness, no state, the same tensor for the same image on every call.
Decoded arrays and tensors go through PIL first so that every input kind is resized by the
same code (PIL and tensor resizing differ in their last bits).
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import numpy as np
import torch
from PIL import Image

from abawbench.errors import ConfigError

ImageInput = Any  # PIL.Image.Image | torch.Tensor (uint8 [3,H,W]) | np.ndarray (uint8 [H,W,3])

_REQUIRED = ("input_size", "interpolation", "mean", "std", "crop_pct")


def make_eval_transform(data_config: Mapping[str, Any]) -> Callable[[ImageInput], torch.Tensor]:
    """A deterministic callable: image -> normalised float tensor ``[3, H, W]``."""
    from timm.data import create_transform

    missing = [key for key in _REQUIRED if key not in data_config]
    if missing:
        raise ConfigError(f"data_config lacks {missing}; expected timm's resolved data config")
    inner = create_transform(
        input_size=tuple(data_config["input_size"]),
        interpolation=data_config["interpolation"],
        mean=tuple(data_config["mean"]),
        std=tuple(data_config["std"]),
        crop_pct=data_config["crop_pct"],
        crop_mode=data_config.get("crop_mode", "center"),
        is_training=False,
    )

    def transform(image: ImageInput) -> torch.Tensor:
        return inner(to_pil_rgb(image))

    transform.__doc__ = f"timm eval transform for {dict(data_config)}"
    return transform


def to_pil_rgb(image: ImageInput) -> Image.Image:
    """An RGB PIL image from PIL (any mode), a uint8 CHW tensor or a uint8 HWC array."""
    if isinstance(image, Image.Image):
        return image if image.mode == "RGB" else image.convert("RGB")
    if isinstance(image, torch.Tensor):
        if image.dtype != torch.uint8 or image.dim() != 3 or image.shape[0] not in (1, 3):
            raise ConfigError(
                f"expected a uint8 image tensor [3, H, W], got {image.dtype} {tuple(image.shape)}"
            )
        image = image.expand(3, -1, -1).permute(1, 2, 0).contiguous().numpy()
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ConfigError(
                f"expected a uint8 image array [H, W, 3], got {image.dtype} {image.shape}"
            )
        return Image.fromarray(image, mode="RGB")
    raise ConfigError(f"cannot preprocess an image of type {type(image).__name__}")
