"""Pixel packs: a split's decoded eval pixels, stored once per geometry and reused by every
backbone that shares it (``abawbench run --pixel-cache``).

Extracting features means decoding every JPEG and resizing it the way timm's eval transform
does; for a cheap backbone on a CPU, or any backbone on a GPU, that decoding costs as much as
the forward pass (docs/bench/protocol.md). A pack keeps the result, the uint8 ``[3, H, W]``
pixels of each image in row order, in the cache's entry format (chunk digests, atomic writes,
a lock per key) but in a store of its own (``<cache root>/pixel-packs/``), under a key of its
own kind, so that a pack is never listed, cleared or read as a backbone's features. The key
holds what decides the pixels: the geometry part of the data config (input size,
interpolation, crop), the image decoder, the dataset fingerprint and the split. Mean and std are not in it:
normalisation happens per batch where the model runs, so backbones that differ only there
share a pack. The first extraction of a split writes the pack while it extracts (one decode);
later ones read it and decode nothing.

The pixels are the same bytes the image files give (:mod:`abawbench.features.preprocess`
decodes with Pillow, or with a decoder probed to match it), so features, feature-cache keys
and scores do not depend on whether a pack was used. The price is disk: 3*H*W bytes per image,
several times the JPEG; ``abawbench cache ls`` lists packs and ``abawbench cache clear
--pixel-packs`` removes them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import PurePath
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

import numpy as np
import torch

from abawbench.errors import CacheError, StorageError
from abawbench.features.cached import CachedRows
from abawbench.features.entry import EntryWriter
from abawbench.features.key import FORMAT_VERSION, DigestKey, require_fields, safe_name
from abawbench.features.preprocess import image_decoder_identity
from abawbench.features.store import EntryStore

log = logging.getLogger(__name__)

PACK_KIND = "pixel-pack"
GEOMETRY_KEYS = ("input_size", "interpolation", "crop_pct", "crop_mode")
"""The data-config fields that decide an image's eval pixels (timm's Resize and CenterCrop)."""

Batches = Iterable[tuple[int, torch.Tensor]]
"""``(start_row, uint8 images [N, 3, H, W])`` in row order."""


@dataclass(frozen=True, eq=False)
class PixelPackKey(DigestKey):
    """Everything that decides a split's eval pixels; ``kind`` is part of the digested fields,
    so no pack key ever equals, or names the file of, a features key."""

    kind = PACK_KIND
    geometry: Mapping[str, Any]
    dataset_fingerprint: str
    split: str
    decoder: Mapping[str, Any]
    format_version: int = FORMAT_VERSION

    def image_shape(self) -> tuple[int, int, int]:
        """``(3, H, W)`` of the images a pack holds (pixels are RGB whatever ``input_size[0]`` says)."""
        _, height, width = (int(n) for n in self.geometry["input_size"])
        return 3, height, width

    def summary(self) -> str:
        """Which geometry a pack holds, at a glance (its folder, and ``cache ls``)."""
        geometry = self.canonical()["geometry"]
        _, height, width = geometry.get("input_size", (0, 0, 0))
        return (f"{height}x{width}-{geometry.get('interpolation')}-crop{geometry.get('crop_pct')}"
                f"-{geometry.get('crop_mode')}")

    def relative_path(self) -> PurePath:
        return PurePath(safe_name(self.summary()), f"{safe_name(self.split)}-{self.digest()[:24]}.h5")

    @classmethod
    def from_canonical(cls, fields: Mapping[str, Any]) -> PixelPackKey:
        if fields.get("kind") != PACK_KIND:
            raise CacheError("stored key is not a pixel-pack key")
        require_fields(cls, fields)
        try:
            return cls(geometry=dict(fields["geometry"]), dataset_fingerprint=str(fields["dataset_fingerprint"]),
                       split=str(fields["split"]), decoder=dict(fields["decoder"]),
                       format_version=int(fields["format_version"]))
        except (KeyError, ValueError, TypeError) as exc:
            raise CacheError(f"stored key is incomplete or unreadable ({exc!r})") from exc


class PixelPackStore(EntryStore[PixelPackKey, CachedRows]):
    """Pixel packs under ``root/pixel-packs``: uint8 rows of ``3*H*W`` pixels per image."""

    namespace = "pixel-packs"
    kind = PACK_KIND
    label = "pixel pack"
    row_dtype = "uint8"
    key_type = PixelPackKey


def pack_key(data_config: Mapping[str, Any], dataset_fingerprint: str, split: str) -> PixelPackKey:
    """The key of a split's pack for a backbone's resolved data config, decoded here."""
    geometry = {name: data_config[name] for name in GEOMETRY_KEYS if name in data_config}
    geometry.setdefault("crop_mode", "center")  # timm's default: a config that omits it is the same geometry
    return PixelPackKey(geometry=geometry, dataset_fingerprint=dataset_fingerprint, split=split,
                        decoder=image_decoder_identity())


class _PackAbandoned(Exception):
    """Raised out of the pack writer's ``produce`` so that the half-written pack is discarded,
    after every batch has reached the consumer (the pack is optional; the work is not)."""


def with_pixel_pack(
    store: PixelPackStore,
    key: PixelPackKey,
    sample_ids: Sequence[str],
    decode: Callable[[int], Batches],
    consume: Callable[[Batches], None],
    *,
    batch_size: int,
) -> bool:
    """Call ``consume`` once with the split's pixel batches: read from the pack of ``key``, or,
    on a miss, from ``decode(0)`` while the same batches are written into a new pack (one
    decode: the pack is stored only if ``consume`` gets through every batch). ``decode(row)``
    gives the batches from ``row`` on.

    A pack is read once: its structure is checked up front and each chunk as it streams by. A
    chunk that fails its digest is never handed out: the pack is removed (the next extraction
    rebuilds it) and the rest of the split comes from ``decode``, so a damaged pack costs a
    decode, never a wrong feature or a failed entry. Likewise a pack that cannot be written
    (a full disk, an unwritable cache folder) is logged and skipped: the batches still reach
    ``consume``. Errors of ``consume`` itself propagate. If another process writes the pack
    while this one waits for its lock, this one reads it. Returns False when the pack could
    not be had (the batches were decoded instead), True otherwise.
    """
    image_shape = key.image_shape()
    decoded_here = consumed = False

    def produce(writer: EntryWriter) -> None:
        nonlocal decoded_here, consumed
        decoded_here = True
        tee = _Tee(writer, image_shape)
        consume(tee.batches(decode(0)))
        consumed = True
        if tee.failure is not None:
            raise _PackAbandoned(tee.failure)

    try:
        found = store.get_or_create(key, sample_ids, int(np.prod(image_shape)), produce)
    except _PackAbandoned as exc:
        log.warning("pixel pack %s not stored: %s", key.digest()[:12], exc)
        return False
    except Exception as exc:
        if decoded_here and not consumed:
            raise  # consume failed: its error, not the pack's
        if not consumed and not isinstance(exc, (CacheError, StorageError, OSError)):
            raise  # not a storage problem: a bug, shown as one
        # Storage trouble before anything was decoded (a lock timeout, an unreadable or
        # unwritable folder) or after everything was consumed (finishing, fsync, rename).
        log.warning("pixel pack %s not %s: %s", key.digest()[:12], "stored" if consumed else "usable", exc)
        if not decoded_here:
            consume(decode(0))
        return False
    if not decoded_here:  # a hit, or a pack another process wrote while this one waited
        consume(_pack_then_files(found, decode, image_shape, batch_size))
    return True


class _Tee:
    """Passes batches on while writing them into a pack; a failure to write (or a batch of
    another shape) stops the writing, never the batches."""

    def __init__(self, writer: EntryWriter, image_shape: tuple[int, int, int]) -> None:
        self.writer = writer
        self.image_shape = image_shape
        self.failure: str | None = None

    def batches(self, batches: Batches) -> Iterator[tuple[int, torch.Tensor]]:
        for start, images in batches:
            if self.failure is None:
                self._write(start, images)
            yield start, images

    def _write(self, start: int, images: torch.Tensor) -> None:
        if tuple(images.shape[1:]) != self.image_shape:
            self.failure = (f"pixel batch at row {start} has images of shape {tuple(images.shape[1:])}; "
                            f"the pack expects {self.image_shape}")
            return
        try:
            self.writer.write(start, images.cpu().numpy().reshape(len(images), -1))
        except (CacheError, StorageError, OSError) as exc:
            self.failure = f"writing rows from {start} failed: {exc}"


def _pack_then_files(pack: CachedRows, decode: Callable[[int], Batches], image_shape: tuple[int, int, int],
                     batch_size: int) -> Iterator[tuple[int, torch.Tensor]]:
    next_row = 0
    try:
        for start, batch in pack.iter_batches(batch_size):
            yield start, torch.from_numpy(batch.reshape(len(batch), *image_shape))
            next_row = start + len(batch)
    except CacheError as exc:  # the pack was removed: the next extraction rebuilds it
        log.warning("pixel pack: %s; decoding the images from row %d on instead", exc, next_row)
        yield from decode(next_row)
