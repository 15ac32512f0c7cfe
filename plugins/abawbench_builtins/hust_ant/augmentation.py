"""The seed paper's training augmentation for fine-tuning, registered as ``paper``.

HUST-ANT's training transform: a 1.02x resize, a random crop back to the original size, colour
jitter (brightness, contrast, saturation 0.4, hue 0.1) with probability 0.8, and a horizontal
flip. It is applied to training images only; evaluation never gets it (the core guarantees
that for every augmentation).
"""

from __future__ import annotations

from typing import Any, Callable

from abawbench.features.preprocess import to_pil_rgb
from abawbench.specs import AugmentationSpec

ENLARGE = 1.02
JITTER = (0.4, 0.4, 0.4, 0.1)
JITTER_PROBABILITY = 0.8


def paper_augmentation(base: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """The seed paper's random transform of the decoded image, in front of ``base``."""
    from torchvision import transforms as T

    def paper(image: Any) -> Any:
        image = to_pil_rgb(image)
        width, height = image.size
        enlarged = image.resize((round(width * ENLARGE), round(height * ENLARGE)))
        image = T.RandomCrop((height, width))(enlarged)
        image = T.RandomApply([T.ColorJitter(*JITTER)], p=JITTER_PROBABILITY)(image)
        image = T.RandomHorizontalFlip()(image)
        return base(image)

    return paper


SPEC = AugmentationSpec(
    name="paper", build=paper_augmentation,
    description="the seed paper's: 1.02x resize, random crop, colour jitter (0.4, 0.4, 0.4, 0.1) p0.8, flip",
)
