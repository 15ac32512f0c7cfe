"""Image preprocessing from a backbone's data config: the one eval preprocessing every path uses.

The data config is what the feature cache is keyed on, so preprocessing must be a pure function
of it: no randomness, no state, the same tensor for the same image on every call. The values are
exactly those of timm's ``create_transform(..., is_training=False)`` (a test holds this), but
the work is split where it is cheapest:

- :meth:`Preprocessing.pixels`, per image in the DataLoader (its workers, when there are any):
  timm's geometry steps (resize, crop) on uint8 pixels, returning a uint8 ``[3, H, W]`` tensor;
- :meth:`Preprocessing.normalize`, per batch where the model runs: timm's ``ToTensor`` and
  ``Normalize`` (``x / 255``, minus mean, over std). On the CPU as those very float32 ops, in
  place, by NumPy (single-threaded SIMD loops, several times faster than a gather from a
  3 x 256 table, and free of torch's OpenMP passes, which stall when another core is busy);
  they are checked once against the table for all 256 values of each channel, which falls back
  to the table where they would differ. On a GPU as a gather from the table, after copying a
  batch a quarter the size of a float one.

With cheap backbones on few cores, float conversion and normalisation per image cost as much
as the forward pass (docs/bench/protocol.md has the figures); JPEG files are decoded with
``torchvision.io.decode_jpeg`` (libjpeg-turbo, faster than Pillow on small faces) where it
decodes probe images to exactly Pillow's pixels; images go through Pillow only where a geometry
step must resample them.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import torch
from PIL import Image

from abawbench.errors import ConfigError, DataFormatError

ImageInput = Any  # PIL.Image.Image | torch.Tensor (uint8 [3,H,W]) | np.ndarray (uint8 [H,W,3])

_REQUIRED = ("input_size", "interpolation", "mean", "std", "crop_pct")
GREY_WEIGHTS = {"bt601": (0.299, 0.587, 0.114)}
"""``data_config["grey"]``: luma weights of R, G, B for networks trained on grey faces (ITU-R
BT.601, what Pillow's ``convert("L")`` and OpenCV's ``COLOR_*2GRAY`` use)."""
_JPEG_MAGIC = b"\xff\xd8"


class Preprocessing:
    """timm's eval preprocessing for one data config, in two stages (see the module docstring).

    ``preprocessing(image)`` runs both for one image and returns the normalised float tensor
    ``[3, H, W]`` timm's own transform would.

    ``data_config["grey"]`` (optional, a key of :data:`GREY_WEIGHTS`): after normalisation each
    pixel's channels are replaced by their weighted sum (luma), repeated on all three channels.
    With one mean and std for every channel this equals normalising the grey image, so a
    grey-trained network reads any one channel. Being in the data config, it is in every
    feature cache key; the pixels (and pixel packs) stay RGB.
    """

    def __init__(self, data_config: Mapping[str, Any]) -> None:
        from timm.data import create_transform
        from torchvision import transforms as T

        missing = [key for key in _REQUIRED if key not in data_config]
        if missing:
            raise ConfigError(f"data_config lacks {missing}; expected timm's resolved data config")
        self.data_config = dict(data_config)
        inner = create_transform(
            input_size=tuple(data_config["input_size"]),
            interpolation=data_config["interpolation"],
            mean=tuple(data_config["mean"]),
            std=tuple(data_config["std"]),
            crop_pct=data_config["crop_pct"],
            crop_mode=data_config.get("crop_mode", "center"),
            is_training=False,
        )
        *geometry, to_tensor, normalize = inner.transforms
        if not isinstance(to_tensor, T.ToTensor) or not isinstance(normalize, T.Normalize):
            raise ConfigError(f"unexpected timm eval transform (no ToTensor + Normalize at its end): {inner}")
        self.geometry: list[Callable[[Image.Image], Image.Image]] = geometry
        # The same float32 values F.normalize would use (it casts mean/std to the image dtype).
        self.mean = _per_channel(normalize.mean, "mean")
        self.std = _per_channel(normalize.std, "std")
        if bool((self.std == 0).any()):
            raise ConfigError(f"data_config std has a zero: {list(data_config['std'])}")
        self.grey = _grey_weights(data_config)
        # table[c, v] = (v / 255 - mean[c]) / std[c], by the ops ToTensor + Normalize apply.
        levels = torch.arange(256, dtype=torch.uint8).to(torch.float32).div(255).expand(3, 256)
        self._table = levels.sub(self.mean[:, None]).div(self.std[:, None]).numpy().copy()
        self._mean_4d = self.mean.numpy().reshape(1, 3, 1, 1).copy()
        self._std_4d = self.std.numpy().reshape(1, 3, 1, 1).copy()
        self._arithmetic_is_exact = _agrees_with_table(self._normalize_by_arithmetic, self._table)
        # Resize and CenterCrop of torchvision leave an image already at the target size untouched
        # (Pillow returns a copy), so such images can skip Pillow altogether.
        self._plain_geometry = all(type(step) in (T.Resize, T.CenterCrop) for step in geometry)
        self._keeps_size: dict[tuple[int, int], bool] = {}
        self._device_tables: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}

    # -- per image ------------------------------------------------------------------------
    def pixels(self, image: ImageInput) -> torch.Tensor:
        """Resize and crop like timm; a uint8 ``[3, H, W]`` tensor (contiguous)."""
        if isinstance(image, torch.Tensor) and self._is_identity(tuple(image.shape[-2:])):
            return torch.from_numpy(np.ascontiguousarray(_chw_array(image)))
        picture = to_pil_rgb(image)
        for step in self.geometry:
            picture = step(picture)
        return torch.from_numpy(np.ascontiguousarray(np.asarray(picture).transpose(2, 0, 1)))

    def _is_identity(self, height_width: tuple[int, int]) -> bool:
        """Whether the geometry leaves an image of this size untouched: plain Resize/CenterCrop
        steps that keep its size (probed once per size on a blank image)."""
        if not self._plain_geometry:
            return False
        if height_width not in self._keeps_size:
            height, width = height_width
            probe = Image.new("RGB", (width, height))
            keeps = True
            for step in self.geometry:  # every step must keep it: upscale-then-crop does not
                probe = step(probe)
                keeps = keeps and probe.size == (width, height)
            self._keeps_size[height_width] = keeps
        return self._keeps_size[height_width]

    # -- per batch ------------------------------------------------------------------------
    def normalize(self, batch: torch.Tensor) -> torch.Tensor:
        """uint8 ``[N, 3, H, W]`` (on any device) -> normalised float32, on the same device."""
        if batch.dtype != torch.uint8 or batch.dim() != 4 or batch.shape[1] != 3:
            raise ConfigError(f"expected a uint8 image batch [N, 3, H, W], got {batch.dtype} {tuple(batch.shape)}")
        if batch.device.type == "cpu":
            if self._arithmetic_is_exact:
                normalised = self._normalize_by_arithmetic(batch)
            else:
                normalised = self._normalize_by_table(batch)
        else:
            normalised = self._normalize_by_gather(batch)
        return normalised if self.grey is None else _to_grey(normalised, self.grey)

    def _normalize_by_arithmetic(self, batch: torch.Tensor) -> torch.Tensor:
        # ToTensor + Normalize's own float32 ops (divide, subtract, divide), in place.
        out = batch.numpy().astype(np.float32)
        out /= np.float32(255)
        out -= self._mean_4d
        out /= self._std_4d
        return torch.from_numpy(out)

    def _normalize_by_table(self, batch: torch.Tensor) -> torch.Tensor:
        pixels = batch.numpy()
        out = np.empty(pixels.shape, dtype=np.float32)
        for channel in range(3):
            np.take(self._table[channel], pixels[:, channel], out=out[:, channel])
        return torch.from_numpy(out)

    def _normalize_by_gather(self, batch: torch.Tensor) -> torch.Tensor:
        # A gather from the same table, not arithmetic: CUDA divides by a scalar as a multiply by
        # its reciprocal, which differs from the CPU's division in the last bit.
        if batch.device not in self._device_tables:  # uploaded once per device, not per batch
            self._device_tables[batch.device] = (
                torch.from_numpy(self._table).to(batch.device).view(-1),
                torch.arange(0, 3 * 256, 256, device=batch.device).view(1, 3, 1, 1),
            )
        table, offsets = self._device_tables[batch.device]
        return table[batch.long() + offsets]

    def __call__(self, image: ImageInput) -> torch.Tensor:
        return self.normalize(self.pixels(image)[None])[0]

    def __repr__(self) -> str:
        return f"Preprocessing({self.data_config})"


def _grey_weights(data_config: Mapping[str, Any]) -> tuple[float, float, float] | None:
    """The luma weights ``data_config["grey"]`` names, or None; refused where the channels are
    normalised differently (the weighted sum would then not be the normalised grey image)."""
    name = data_config.get("grey")
    if name is None:
        return None
    if name not in GREY_WEIGHTS:
        raise ConfigError(f"data_config grey {name!r} is unknown; known: {', '.join(GREY_WEIGHTS)}")
    if len({float(v) for v in np.ravel(data_config["mean"])}) > 1 or len({float(v) for v in np.ravel(data_config["std"])}) > 1:
        raise ConfigError("data_config grey needs one mean and one std for all channels, got "
                          f"mean {list(data_config['mean'])}, std {list(data_config['std'])}")
    return GREY_WEIGHTS[name]


def _to_grey(batch: torch.Tensor, weights: tuple[float, float, float]) -> torch.Tensor:
    """Each pixel's weighted channel sum on all three channels of a float ``[N, 3, H, W]`` batch."""
    red, green, blue = batch[:, 0:1], batch[:, 1:2], batch[:, 2:3]
    return (red * weights[0] + green * weights[1] + blue * weights[2]).expand_as(batch).contiguous()


def _agrees_with_table(normalize: Callable[[torch.Tensor], torch.Tensor], table: np.ndarray) -> bool:
    """Whether ``normalize`` gives the table's value for every uint8 value of every channel."""
    every_value = torch.arange(256, dtype=torch.uint8).view(1, 1, 16, 16).expand(1, 3, 16, 16).contiguous()
    return bool(np.array_equal(normalize(every_value).numpy().reshape(3, 256), table))


def _per_channel(values: Any, name: str) -> torch.Tensor:
    """Three float32 values (one given value is broadcast, as Normalize would)."""
    tensor = torch.as_tensor(values, dtype=torch.float32).reshape(-1)
    if tensor.numel() not in (1, 3):
        raise ConfigError(f"data_config {name} must have 1 or 3 values for RGB images, got {tensor.tolist()}")
    return tensor.expand(3).clone()


def load_image(path: Path) -> Image.Image | torch.Tensor:
    """Decode an image file into RGB pixels: a uint8 ``[3, H, W]`` tensor for JPEG files, an RGB
    PIL image otherwise. An undecodable file is a :class:`DataFormatError` naming it."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise DataFormatError(f"{path}: cannot read image: {exc.strerror or exc}") from None
    decode_jpeg = _fast_jpeg_decoder() if data[:2] == _JPEG_MAGIC else None
    if decode_jpeg is not None:
        try:
            return decode_jpeg(data)
        except Exception:  # noqa: BLE001 - Pillow decides, and words the error
            pass
    import io

    try:
        with Image.open(io.BytesIO(data)) as image:
            return image.convert("RGB")
    except OSError as exc:
        raise DataFormatError(f"{path}: cannot decode image: {exc}") from None


@lru_cache(maxsize=1)
def _fast_jpeg_decoder() -> Callable[[bytes], torch.Tensor] | None:
    """torchvision's libjpeg-turbo decoder (bytes -> RGB uint8 ``[3, H, W]``), or None.

    None where this torchvision has no image codecs (0.29 deprecated them in favour of
    TorchCodec) or where its libjpeg decodes a probe differently from Pillow's: scores must not
    depend on which decoder a machine has, so the two must agree to the pixel (separately
    bundled libjpeg builds may not). Every file then simply goes through Pillow: the same
    pixels, about half the speed on small faces. The probes cannot cover every JPEG, so the
    choice is still part of every cache key (:func:`image_decoder_identity`).
    """
    import warnings

    try:
        from torchvision.io import ImageReadMode, decode_jpeg
    except ImportError:
        return None

    def decode(data: bytes) -> torch.Tensor:
        with warnings.catch_warnings():  # deprecated since 0.29: one warning per call
            warnings.simplefilter("ignore", DeprecationWarning)
            return decode_jpeg(torch.frombuffer(bytearray(data), dtype=torch.uint8), mode=ImageReadMode.RGB)

    try:
        agrees = all(np.array_equal(decode(probe).permute(1, 2, 0).numpy(), pixels) for probe, pixels in _jpeg_probes())
    except Exception:  # noqa: BLE001 - no working decoder: Pillow it is
        return None
    return decode if agrees else None


def image_decoder_identity() -> dict[str, str]:
    """Which decoders :func:`load_image` uses here, with their versions: ``jpeg`` for JPEG
    files (torchvision's libjpeg-turbo, or Pillow where that is missing or disagrees), ``other``
    for every other file (Pillow). Cached pixels and features are keyed on it: another decoder
    may give other pixels for a file no probe resembles."""
    from importlib.metadata import version

    from PIL import __version__ as pillow_version
    from PIL import features

    turbo = features.version_feature("libjpeg_turbo")
    libjpeg = f"libjpeg-turbo {turbo}" if turbo else f"libjpeg {features.version('jpg')}"
    pillow = f"Pillow {pillow_version} ({libjpeg})"
    if _fast_jpeg_decoder() is None:
        return {"jpeg": pillow, "other": pillow}
    return {"jpeg": f"torchvision.io.decode_jpeg (torchvision {version('torchvision')})", "other": pillow}


def _jpeg_probes() -> list[tuple[bytes, np.ndarray]]:
    """Small JPEGs in the usual encodings (4:2:0, 4:4:4, progressive, grey) and Pillow's pixels."""
    import io

    rng = np.random.default_rng(0)
    smooth = np.clip(np.cumsum(rng.integers(-20, 21, size=(37, 29, 3)), axis=1) + 128, 0, 255).astype(np.uint8)
    probes = []
    for options, mode in (({"subsampling": 2}, "RGB"), ({"subsampling": 0}, "RGB"),
                          ({"progressive": True}, "RGB"), ({}, "L")):
        buffer = io.BytesIO()
        Image.fromarray(smooth).convert(mode).save(buffer, format="JPEG", quality=80, **options)
        with Image.open(io.BytesIO(buffer.getvalue())) as image:
            probes.append((buffer.getvalue(), np.asarray(image.convert("RGB"))))
    return probes


def flip_horizontally(image: Image.Image | torch.Tensor) -> Image.Image | torch.Tensor:
    if isinstance(image, torch.Tensor):
        return torch.from_numpy(np.ascontiguousarray(_chw_array(image)[:, :, ::-1]))
    return image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)


def collate_images(batch: list[tuple[torch.Tensor, int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """DataLoader collate for ``(uint8 image, row)`` items, stacked by NumPy (see _chw_array)."""
    images = np.stack([image.numpy() for image, _ in batch])
    return torch.from_numpy(images), torch.tensor([row for _, row in batch])


def _chw_array(image: torch.Tensor) -> np.ndarray:
    """A uint8 ``[3, H, W]`` NumPy view of a CHW image tensor (grey broadcast to 3 channels).

    Per-image copies go through NumPy, never torch: torch hands copies above 32k elements (one
    112 px image) to its OpenMP pool, whose spin-waiting, when another core is busy, makes such
    a copy hundreds of times slower (docs/bench/protocol.md).
    """
    _check_tensor(image)
    return image.expand(3, -1, -1).numpy()


def _check_tensor(image: torch.Tensor) -> None:
    if image.dtype != torch.uint8 or image.dim() != 3 or image.shape[0] not in (1, 3):
        raise ConfigError(f"expected a uint8 image tensor [3, H, W], got {image.dtype} {tuple(image.shape)}")


def to_pil_rgb(image: ImageInput) -> Image.Image:
    """An RGB PIL image from PIL (any mode), a uint8 CHW tensor or a uint8 HWC array."""
    if isinstance(image, Image.Image):
        return image if image.mode == "RGB" else image.convert("RGB")
    if isinstance(image, torch.Tensor):
        image = np.ascontiguousarray(_chw_array(image).transpose(1, 2, 0))
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ConfigError(
                f"expected a uint8 image array [H, W, 3], got {image.dtype} {image.shape}"
            )
        return Image.fromarray(image, mode="RGB")
    raise ConfigError(f"cannot preprocess an image of type {type(image).__name__}")
