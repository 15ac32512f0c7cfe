"""JPEG decoding and resizing on the GPU, for evaluation batches on CUDA.

On a GPU the whole pipeline from JPEG files is bound by decoding and resizing on the CPU
(docs/bench/gpu.md). Here the DataLoader workers only read file bytes; a batch of JPEGs is
decoded on the card by torchvision's batched decoder (nvJPEG) and resized and cropped there by
torchvision's tensor functions, antialiased like Pillow. The pixels are close to the CPU
path's, not equal (another IDCT, another resampling kernel): ``tests/test_device_decode.py``
holds the tolerance on the CPU, where the same functions run. Because they are not equal, this
decoding is a cache-key component of its own (:meth:`DeviceDecoding.identity`), so features of
the two paths never mix.

Chosen automatically on CUDA when the backbone's eval geometry is plain resize and centre
crop; ``ABAWBENCH_DEVICE_DECODE=0`` keeps decoding on the CPU. Files that are not JPEG are
decoded on the CPU as before, within the same batch, and so is a JPEG the device decoder
refuses (a property of the file, so the same file always takes the same path); running out of
device memory is an error, never a reason to switch decoders.
"""

from __future__ import annotations

import os
import warnings
from importlib.metadata import version
from typing import Iterator

import torch
from torch.utils.data import DataLoader, Dataset

from abawbench.data.index import SampleIndex
from abawbench.errors import DataFormatError
from abawbench.features.preprocess import Preprocessing, load_image

JPEG_MAGIC = b"\xff\xd8"
SWITCH = "ABAWBENCH_DEVICE_DECODE"


class FileBytes(Dataset):
    """A split's files as raw bytes (uint8 tensors) with their row numbers: all a worker does."""

    def __init__(self, index: SampleIndex) -> None:
        self.index = index

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, row: int) -> tuple[torch.Tensor, int]:
        path = self.index.absolute_path(row)
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise DataFormatError(f"{path}: cannot read image: {exc.strerror or exc}") from None
        return torch.frombuffer(bytearray(data), dtype=torch.uint8), row


def _as_list(batch: list[tuple[torch.Tensor, int]]) -> tuple[list[torch.Tensor], list[int]]:
    return [data for data, _ in batch], [row for _, row in batch]


class DeviceDecoding:
    """Decode JPEG files and apply a backbone's eval geometry on ``device``."""

    def __init__(self, preprocessing: Preprocessing, device: torch.device) -> None:
        self.preprocessing = preprocessing
        self.device = device

    def identity(self) -> dict[str, str]:
        """The cache key's decoder component for features computed from these pixels."""
        where = "cuda" if self.device.type == "cuda" else self.device.type
        return {"jpeg": f"torchvision.io.decode_jpeg on {where} + torchvision resize (antialias) "
                        f"(torchvision {version('torchvision')})",
                "other": "Pillow, resized on the device"}

    def pixels(self, files: list[torch.Tensor], rows: list[int], index: SampleIndex) -> torch.Tensor:
        """uint8 ``[N, 3, H, W]`` on the device for the raw files of ``rows``."""
        from torchvision.io import ImageReadMode, decode_jpeg

        jpeg = [i for i, data in enumerate(files) if bytes(data[:2].tolist()) == JPEG_MAGIC]
        decoded: dict[int, torch.Tensor] = {}
        if jpeg:
            with warnings.catch_warnings():  # the codecs are deprecated since torchvision 0.29
                warnings.simplefilter("ignore", DeprecationWarning)
                try:
                    images = decode_jpeg([files[i] for i in jpeg], mode=ImageReadMode.RGB, device=self.device)
                except torch.cuda.OutOfMemoryError:
                    raise  # memory pressure must never decide which decoder a file's pixels come from
                except RuntimeError:
                    images = [self._one(files[i], rows[i], index) for i in jpeg]  # find the bad file
            decoded.update(zip(jpeg, images))
        for i in range(len(files)):
            if i not in decoded:
                decoded[i] = self._from_cpu(rows[i], index)
        return torch.stack([self.geometry(decoded[i]) for i in range(len(files))])

    def _one(self, data: torch.Tensor, row: int, index: SampleIndex) -> torch.Tensor:
        from torchvision.io import ImageReadMode, decode_jpeg

        try:
            return decode_jpeg(data, mode=ImageReadMode.RGB, device=self.device)
        except torch.cuda.OutOfMemoryError:
            raise
        except RuntimeError:
            return self._from_cpu(row, index)  # Pillow decodes it, or names the bad file

    def _from_cpu(self, row: int, index: SampleIndex) -> torch.Tensor:
        image = load_image(index.absolute_path(row))
        if not isinstance(image, torch.Tensor):
            import numpy as np

            image = torch.from_numpy(np.ascontiguousarray(np.asarray(image).transpose(2, 0, 1)))
        return image.to(self.device)

    def geometry(self, image: torch.Tensor) -> torch.Tensor:
        """timm's eval geometry steps (resize, centre crop) on a uint8 ``[3, H, W]`` tensor."""
        from torchvision.transforms import CenterCrop, Resize
        from torchvision.transforms.v2 import functional as F

        for step in self.preprocessing.geometry:
            if isinstance(step, Resize):
                image = F.resize(image, step.size, interpolation=step.interpolation, max_size=step.max_size,
                                 antialias=True)
            elif isinstance(step, CenterCrop):
                image = F.center_crop(image, list(step.size))
            else:  # pragma: no cover - choose() refuses other geometry
                raise TypeError(f"no device version of {step!r}")
        return image.contiguous()

    def batches(self, index: SampleIndex, *, batch_size: int, num_workers: int,
                shard: tuple[int, int] = (0, 1)) -> Iterator[tuple[int, torch.Tensor]]:
        """``(start_row, uint8 images [N, 3, H, W] on the device)`` in row order, like
        :func:`abawbench.features.extract.decoded_batches`."""
        from abawbench.features.extract import batch_starts

        starts = batch_starts(len(index), batch_size, shard)
        loader = DataLoader(FileBytes(index), batch_sampler=[range(s, min(s + batch_size, len(index))) for s in starts],
                            collate_fn=_as_list, num_workers=num_workers, persistent_workers=False,
                            generator=torch.Generator().manual_seed(0))
        for files, rows in loader:
            yield rows[0], self.pixels(files, rows, index)


def choose_device_decoding(preprocessing: Preprocessing, device: torch.device) -> DeviceDecoding | None:
    """The device decoding for this backbone on ``device``, or None for the CPU path: only on
    CUDA, only for plain resize / centre-crop geometry, and not when switched off."""
    from torchvision.transforms import CenterCrop, Resize

    if device.type != "cuda" or os.environ.get(SWITCH, "1") == "0":
        return None
    if not all(type(step) in (Resize, CenterCrop) for step in preprocessing.geometry):
        return None
    try:
        from torchvision.io import decode_jpeg  # noqa: F401 - codecs may be missing from a build
    except ImportError:
        return None
    return DeviceDecoding(preprocessing, device)
