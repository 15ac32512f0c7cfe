"""Histograms of oriented gradients as a torch module, batched and differentiable.

Per image: grey level, Sobel gradients, unsigned orientation softly binned into ``bins``
histograms weighted by gradient magnitude, averaged over ``cell`` x ``cell`` cells, each cell
normalised by the energy of its 2x2-cell neighbourhood and clipped at 0.2 (Lowe-style
clipping against a few dominant edges). The output is ``bins * (H / cell) * (W / cell)`` wide.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from abawbench.errors import ConfigError
from abawbench.specs import Backbone, ModelOptions

HOG_VERSION = 1  # bump when the features change: it is part of every cache key
DEFAULT_SIZE = 112


class HOG(nn.Module):
    def __init__(self, cell: int = 8, bins: int = 9, clip: float = 0.2) -> None:
        super().__init__()
        self.cell, self.bins, self.clip = cell, bins, clip
        sobel = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])
        self.register_buffer("kernels", torch.stack([sobel, sobel.t()]).unsqueeze(1), persistent=False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        # Always float32, also inside the bf16 autocast a GPU run uses: the features are a fixed
        # computation whose cache key names no precision-dependent weights, and bf16 Sobel
        # gradients would both change them and break the float32 histogram scatter.
        if images.device.type not in ("cpu", "cuda"):  # no autocast there (MPS before torch 2.5)
            return self._features(images.float())
        with torch.autocast(device_type=images.device.type, enabled=False):
            return self._features(images.float())

    def _features(self, images: torch.Tensor) -> torch.Tensor:
        grey = images.mean(dim=1, keepdim=True)
        gradients = F.conv2d(F.pad(grey, (1, 1, 1, 1), mode="replicate"), self.kernels)
        gx, gy = gradients[:, :1], gradients[:, 1:]
        magnitude = torch.sqrt(gx * gx + gy * gy + 1e-12)
        position = torch.remainder(torch.atan2(gy, gx), math.pi) * (self.bins / math.pi)
        lower = position.floor()
        upper_weight = position - lower
        lower_bin = lower.long() % self.bins
        histogram = torch.zeros(images.shape[0], self.bins, *images.shape[2:], device=images.device)
        histogram.scatter_add_(1, lower_bin, magnitude * (1 - upper_weight))
        histogram.scatter_add_(1, (lower_bin + 1) % self.bins, magnitude * upper_weight)
        cells = F.avg_pool2d(histogram, self.cell)
        energy = F.avg_pool2d(cells.pow(2).sum(1, keepdim=True), 2, stride=1, padding=1,
                              count_include_pad=False)[..., : cells.shape[2], : cells.shape[3]]
        normalised = cells / torch.sqrt(energy * self.bins + 1e-6)
        return normalised.clamp(max=self.clip).flatten(1)


def build_hog(options: ModelOptions) -> Backbone:
    if options.weights not in ("random", "", None):
        raise ConfigError(f"model 'hog' has no weights; got --weights {options.weights!r} (use 'random' or omit it)")
    size = options.image_size or DEFAULT_SIZE
    cell = int(options.extra.get("cell", 8))
    if size % cell:
        raise ConfigError(f"model 'hog': image size {size} must be a multiple of the cell size {cell}")
    module = HOG(cell=cell).eval()
    return Backbone(
        name="hog",
        module=module,
        feature_dim=module.bins * (size // cell) ** 2,
        data_config={"input_size": [3, size, size], "mean": [0.0, 0.0, 0.0], "std": [1.0, 1.0, 1.0],
                     "interpolation": "bilinear", "crop_pct": 1.0, "crop_mode": "center"},
        weights_digest=f"hog:v{HOG_VERSION}:cell{cell}:bins{module.bins}:clip{module.clip}",
    )
