"""Image batches in, features out: the evaluation side of every backbone.

Extraction (linear probe) and prediction (fine-tuning's validation and test passes, and
``abawbench predict``: :func:`abawbench.training.finetune.predict_images`) read a split the
same way: decoded, resized uint8 images in row order, from the image files or from a pixel
pack (:mod:`abawbench.features.pixel_packs`), normalised per batch on the device the model runs on. Never
augmented: evaluation sees exactly timm's eval transform. Where the time goes, and the
contract extraction is held to: docs/bench/protocol.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Iterable

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from abawbench.data.index import SampleIndex
from abawbench.device import autocast_context, loader_kwargs, prepare_batch, prepare_module
from abawbench.errors import RunFailedError
from abawbench.features.pixel_packs import PixelPackStore, pack_key, with_pixel_pack
from abawbench.features.preprocess import Preprocessing, collate_images, load_image
from abawbench.specs import Backbone

if TYPE_CHECKING:
    from abawbench.features.device_decode import DeviceDecoding

Batches = Iterable[tuple[int, torch.Tensor]]
"""``(start_row, uint8 images [N, 3, H, W])`` in row order."""


class ImageDataset(Dataset):
    """Decoded, resized uint8 images ``[3, H, W]`` of a split with their row numbers.

    ``pixels`` turns a decoded image into those pixels: the backbone's deterministic
    preprocessing, or (training) an augmentation wrapped around it. Normalisation happens per
    batch, where the model runs (:meth:`Preprocessing.normalize`); each worker opens its own files."""

    def __init__(self, index: SampleIndex, pixels: Callable[[Any], torch.Tensor]) -> None:
        self.index = index
        self.pixels = pixels

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, row: int) -> tuple[torch.Tensor, int]:
        return self.pixels(load_image(self.index.absolute_path(row))), row


def eval_transform(data_config: dict[str, Any]) -> Preprocessing:
    """The backbone's exact preprocessing (timm's resolved data config), no augmentation: a
    deterministic callable image -> normalised float tensor ``[3, H, W]`` (timm's values)."""
    return Preprocessing(data_config)


def precision_of(device: torch.device) -> str:
    """The numeric precision extraction runs in on ``device`` (see ``autocast_context``); part
    of a feature cache key, since bf16 features are not fp32 features."""
    return "bf16-autocast" if device.type == "cuda" else "fp32"


@torch.inference_mode()
def extract_features(
    backbone: Backbone,
    index: SampleIndex,
    device: torch.device,
    write: Callable[[int, np.ndarray], None],
    *,
    batch_size: int = 64,
    num_workers: int = 0,
    progress: bool = True,
    desc: str = "extract",
    pixel_pack: tuple[PixelPackStore, str] | None = None,
    shard: tuple[int, int] = (0, 1),
    device_decoding: "DeviceDecoding | None" = None,
) -> None:
    """Stream features of every image of ``index`` to ``write(start_row, batch)``, in order:
    memory stays flat however large the split is.

    ``pixel_pack=(cache, split)`` reads the split's decoded pixels from a pixel pack in
    ``cache`` (:mod:`abawbench.features.pixel_packs`), writing the pack on the first extraction of this
    geometry; the features are the same either way.

    ``shard=(rank, world_size)`` computes only batches ``rank, rank + world_size, ...`` of the
    split (:mod:`abawbench.parallel.sharded`): the batches are the ones a single process forms,
    so every row's features are the ones it computes. Sharded extraction decodes from the
    image files (a pixel pack is written by one process reading every image).

    ``device_decoding`` decodes and resizes the JPEG files on the model's device
    (:mod:`abawbench.features.device_decode`); its pixels belong to their own cache key.
    """
    from tqdm.auto import tqdm

    module = prepare_module(backbone.module, device).eval()
    preprocessing = eval_transform(backbone.data_config)

    def forward(batches: Batches) -> None:
        with tqdm(total=shard_rows(len(index), batch_size, shard), desc=desc, unit="img", disable=not progress, leave=False) as bar:
            for start, images in batches:
                with autocast_context(device):
                    out = module(prepare_batch(images, device, preprocessing.normalize))
                expected = (images.shape[0], backbone.feature_dim)
                if not isinstance(out, torch.Tensor) or tuple(out.shape) != expected:
                    got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
                    raise RunFailedError(f"model {backbone.name!r} returned features {got} for {expected[0]} "
                                         f"images; its Backbone promises [N, {backbone.feature_dim}]")
                write(start, out.float().cpu().numpy())
                bar.update(out.shape[0])

    if device_decoding is not None:
        forward(device_decoding.batches(index, batch_size=batch_size, num_workers=num_workers, shard=shard))
        return
    if shard != (0, 1):
        forward(decoded_batches(index, preprocessing, device, batch_size=batch_size, num_workers=num_workers,
                                shard=shard))
        return
    cache, split = pixel_pack if pixel_pack is not None else (None, "")
    consume_eval_batches(index, split, preprocessing, device, forward, batch_size=batch_size,
                         num_workers=num_workers, pixel_cache=cache)


def consume_eval_batches(index: SampleIndex, split: str, preprocessing: Preprocessing, device: torch.device,
                         consume: Callable[[Batches], None], *, batch_size: int,
                         num_workers: int, pixel_cache: PixelPackStore | None = None) -> bool:
    """Call ``consume`` once with the eval batches ``(start_row, uint8 images)`` of a split:
    from its pixel pack in ``pixel_cache`` when given (written on first use: :mod:`abawbench.features.pixel_packs`),
    else decoded from the image files. False when a pack was wanted but could not be written
    (the caller may stop asking for one)."""

    def decode(first_row: int = 0) -> Batches:
        return decoded_batches(index, preprocessing, device, batch_size=batch_size, num_workers=num_workers,
                               first_row=first_row)

    if pixel_cache is None:
        consume(decode())
        return True
    return with_pixel_pack(pixel_cache, pack_key(preprocessing.data_config, index.fingerprint, split), index.paths,
                           decode, consume, batch_size=batch_size)


def batch_starts(rows: int, batch_size: int, shard: tuple[int, int] = (0, 1), first_row: int = 0) -> range:
    """First rows of the batches a split of ``rows`` is read in, from ``first_row`` on; with
    ``shard=(rank, world_size)``, only every ``world_size``-th batch from the ``rank``-th."""
    rank, world_size = shard
    return range(first_row + rank * batch_size, rows, batch_size * world_size)


def shard_rows(rows: int, batch_size: int, shard: tuple[int, int]) -> int:
    """How many rows the batches of ``shard`` hold."""
    return sum(min(batch_size, rows - start) for start in batch_starts(rows, batch_size, shard))


def decoded_batches(index: SampleIndex, preprocessing: Preprocessing, device: torch.device, *,
                    batch_size: int, num_workers: int, first_row: int = 0,
                    shard: tuple[int, int] = (0, 1)) -> Batches:
    """``(start_row, uint8 images [N, 3, H, W])`` of a split in row order from ``first_row`` on,
    decoded and resized from its image files (by ``num_workers`` DataLoader workers, if any).

    The loader has a generator of its own: iterating a DataLoader draws a number from its
    generator (worker seeds), by default torch's global one, and an eval pass must not move
    the random stream that fine-tuning's augmentation and dropout draw from (else a run would
    depend on whether its validation came from files or from a pixel pack)."""
    batches = [range(start, min(start + batch_size, len(index)))
               for start in batch_starts(len(index), batch_size, shard, first_row)]
    loader = DataLoader(ImageDataset(index, preprocessing.pixels), batch_sampler=batches, collate_fn=collate_images,
                        num_workers=num_workers, **loader_kwargs(device),
                        persistent_workers=False, generator=torch.Generator().manual_seed(0))
    for images, rows in loader:
        yield int(rows[0]), images
