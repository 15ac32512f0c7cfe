"""Fine-tuning's training augmentation, chosen by name.

Two are generic and always there: ``none`` (the backbone's own preprocessing) and ``flip`` (a
horizontal flip with probability 0.5). Any other name is an augmentation a plugin registered
through ``abawbench_register_augmentations`` (e.g. the seed paper's ``paper``, in the hust_ant
plugin). The configuration holds a plain name; it is checked here when a run starts, so a typo
fails before any training with the names that exist.
"""

from __future__ import annotations

from typing import Any, Callable

import torch

from abawbench.errors import UnknownNameError
from abawbench.features.preprocess import flip_horizontally
from abawbench.registry import Registry, suggest
from abawbench.specs import AugmentationSpec

Pixels = Callable[[Any], torch.Tensor]
"""A decoded image -> uint8 pixels ``[3, H, W]``."""


def no_augmentation(base: Pixels) -> Pixels:
    return base


def random_flip(base: Pixels) -> Pixels:
    """Flip the decoded image with probability 0.5 (one draw from torch's random stream, which
    the run seeds, per image) before ``base``."""

    def flipped(image: Any) -> torch.Tensor:
        if torch.rand(()) < 0.5:
            image = flip_horizontally(image)
        return base(image)

    return flipped


GENERIC_AUGMENTATIONS: dict[str, Callable[[Pixels], Pixels]] = {"none": no_augmentation, "flip": random_flip}


def augmentation_names(registered: Registry[AugmentationSpec]) -> list[str]:
    """Every name ``protocol.augmentation`` may take."""
    return sorted(GENERIC_AUGMENTATIONS) + [name for name in registered.names() if name not in GENERIC_AUGMENTATIONS]


def resolve_augmentation(name: str, registered: Registry[AugmentationSpec]) -> Callable[[Pixels], Pixels]:
    """The ``build(base)`` of augmentation ``name``; :class:`UnknownNameError` with close
    names when neither generic nor registered."""
    if name in GENERIC_AUGMENTATIONS:
        return GENERIC_AUGMENTATIONS[name]
    if name in registered:
        return registered.get(name).build
    known = augmentation_names(registered)
    raise UnknownNameError(f"unknown augmentation {name!r}{suggest(name, known)}; known: {', '.join(known)}")
