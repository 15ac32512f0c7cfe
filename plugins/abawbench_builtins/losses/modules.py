"""Loss modules: one per task (``TaskLoss``) and their weighted sum over a track's tasks.

Weights and class weights are buffers, so ``loss.to(device)`` moves them with the model.
"""

from __future__ import annotations

from typing import Mapping

import torch
from torch import nn

from abawbench.errors import MetricInputError

from abawbench_builtins.losses import functional as LF


class CCCLoss(nn.Module):
    """``sum`` (the paper: ``1 - CCC_V + 1 - CCC_A``) or ``mean`` of ``1 - CCC`` per column."""

    def __init__(self, reduction: str = "sum") -> None:
        super().__init__()
        self.reduction = reduction

    def forward(self, output: torch.Tensor, values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        per_column = LF.masked_ccc_loss(output, values, mask)
        return per_column.sum() if self.reduction == "sum" else per_column.mean()


class CrossEntropyLoss(nn.Module):
    def __init__(self, weight: torch.Tensor | None, label_smoothing: float) -> None:
        super().__init__()
        self.register_buffer("weight", weight)
        self.label_smoothing = label_smoothing

    def forward(self, output: torch.Tensor, values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return LF.masked_cross_entropy(output, values, mask, self.weight, self.label_smoothing)


class FocalLoss(nn.Module):
    def __init__(self, gamma: float, weight: torch.Tensor | None) -> None:
        super().__init__()
        self.gamma = gamma
        self.register_buffer("weight", weight)

    def forward(self, output: torch.Tensor, values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return LF.masked_focal_loss(output, values, mask, self.gamma, self.weight)


class BCELoss(nn.Module):
    def __init__(self, pos_weight: torch.Tensor | None) -> None:
        super().__init__()
        self.register_buffer("pos_weight", pos_weight)

    def forward(self, output: torch.Tensor, values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return LF.masked_bce(output, values, mask, self.pos_weight)


class TrackLoss(nn.Module):
    """``sum_t weight_t * loss_t(outputs[t], values_t, mask_t)`` over the configured tasks."""

    def __init__(self, losses: Mapping[str, nn.Module], weights: Mapping[str, float]) -> None:
        super().__init__()
        self.losses = nn.ModuleDict(dict(losses))
        self.weights = dict(weights)

    def forward(
        self,
        outputs: Mapping[str, torch.Tensor],
        targets: Mapping[str, tuple[torch.Tensor, torch.Tensor]],
    ) -> torch.Tensor:
        total: torch.Tensor | None = None
        for task, loss in self.losses.items():
            if task not in outputs or task not in targets:
                raise MetricInputError(
                    f"loss needs task {task!r}: outputs have {sorted(outputs)}, targets {sorted(targets)}"
                )
            values, mask = targets[task]
            term = self.weights[task] * loss(outputs[task], values, mask.bool())
            total = term if total is None else total + term
        assert total is not None, "a TrackLoss is never built without tasks"
        return total

    def extra_repr(self) -> str:
        return f"weights={self.weights}"
