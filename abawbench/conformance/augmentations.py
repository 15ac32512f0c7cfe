"""Conformance of a training augmentation: ``build(base)`` wraps the deterministic
preprocessing and still returns what it returns (uint8 pixels ``[3, H, W]``), drawing its
randomness from torch's seeded stream so that a run can be repeated."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from abawbench.conformance.core import Check, expect, once

if TYPE_CHECKING:
    from abawbench.specs import AugmentationSpec

SIZE = 48


def _base(image: Any) -> "torch.Tensor":
    """Stands in for a backbone's preprocessing: a decoded image -> uint8 ``[3, SIZE, SIZE]``."""
    import numpy as np
    import torch

    pixels = np.asarray(image.convert("RGB").resize((SIZE, SIZE)), dtype=np.uint8)
    return torch.from_numpy(pixels.copy()).permute(2, 0, 1).contiguous()


def augmentation_checks(spec: "AugmentationSpec") -> list[Check]:
    wrapped = once(lambda: spec.build(_base), "not tried: the augmentation did not build")

    def builds() -> None:
        expect(callable(wrapped()), "build(base) returned something that cannot be called")

    def keeps_pixels() -> None:
        import torch

        output = wrapped()(_image())
        expect(isinstance(output, torch.Tensor) and output.dtype == torch.uint8
               and tuple(output.shape) == (3, SIZE, SIZE),
               f"returned {_describe(output)}, not what base returns (uint8 [3, {SIZE}, {SIZE}])")

    def reproducible() -> None:
        import torch

        outputs = []
        for _ in range(2):
            torch.manual_seed(0)
            outputs.append(wrapped()(_image()))
        expect(torch.equal(outputs[0], outputs[1]),
               "two calls after torch.manual_seed(0) differ: draw randomness from torch's stream")

    return [
        Check("augmentation", spec.name, "builds around the preprocessing", builds),
        Check("augmentation", spec.name, "returns uint8 [3, H, W] pixels", keeps_pixels),
        Check("augmentation", spec.name, "is reproducible under torch.manual_seed", reproducible),
    ]


def _image() -> Any:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 256, size=(64, 64, 3), dtype=np.uint8))


def _describe(output: Any) -> str:
    shape = getattr(output, "shape", None)
    return f"{type(output).__name__} {getattr(output, 'dtype', '')} {list(shape) if shape is not None else ''}".strip()
