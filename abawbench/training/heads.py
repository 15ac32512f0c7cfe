"""Task heads: map backbone features to every task of a track, whatever the track is.

Heads are built from the track's ``TaskSpec`` list, so a new track needs no new head code.
Raw outputs (logits; bounded regression values) feed the losses; :func:`to_probabilities`
turns them into the predictions that are scored and ensembled.
"""

from __future__ import annotations

from typing import Mapping

import torch
from torch import nn

from abawbench.labels import TaskSpec


class TaskHeads(nn.Module):
    """One shared trunk (identity for ``linear``, a hidden layer for ``mlp``), one output block
    per task. Regression outputs pass through tanh scaled to the task's value range."""

    def __init__(self, feature_dim: int, tasks: tuple[TaskSpec, ...], kind: str = "linear",
                 hidden: int = 256, dropout: float = 0.2) -> None:
        super().__init__()
        if kind == "linear":
            self.trunk: nn.Module = nn.Identity()
            width = feature_dim
        elif kind == "mlp":
            self.trunk = nn.Sequential(nn.Linear(feature_dim, hidden), nn.GELU(), nn.Dropout(dropout))
            width = hidden
        else:
            raise ValueError(f"unknown head kind {kind!r}")
        self.tasks = tasks
        self.outputs = nn.ModuleDict({task.name: nn.Linear(width, task.width) for task in tasks})

    def forward(self, features: torch.Tensor) -> dict[str, torch.Tensor]:
        shared = self.trunk(features)
        raw: dict[str, torch.Tensor] = {}
        for task in self.tasks:
            out = self.outputs[task.name](shared)
            if task.kind == "regression":
                low, high = task.value_range or (-1.0, 1.0)
                out = low + (torch.tanh(out) + 1) * (high - low) / 2
            raw[task.name] = out
        return raw


def build_heads(backbone, tasks: tuple[TaskSpec, ...], kind: str) -> nn.Module:
    """The backbone's own heads when it brings them (``Backbone.make_heads``), else generic ones."""
    if backbone.make_heads is not None:
        return backbone.make_heads(tasks, kind)
    return TaskHeads(backbone.feature_dim, tasks, kind=kind)


class BackboneWithHeads(nn.Module):
    """Backbone and heads as one network, for end-to-end fine-tuning."""

    def __init__(self, backbone: nn.Module, heads: TaskHeads) -> None:
        super().__init__()
        self.backbone = backbone
        self.heads = heads

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.heads(self.backbone(images))


def to_probabilities(tasks: tuple[TaskSpec, ...], raw: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Softmax for multiclass, sigmoid for multilabel, values as they are for regression."""
    probabilities: dict[str, torch.Tensor] = {}
    for task in tasks:
        out = raw[task.name].float()
        if task.kind == "multiclass":
            probabilities[task.name] = torch.softmax(out, dim=-1)
        elif task.kind == "multilabel":
            probabilities[task.name] = torch.sigmoid(out)
        else:
            probabilities[task.name] = out
    return probabilities
