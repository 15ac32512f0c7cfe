"""Class and positive-label weights from training counts (``LossContext``)."""

from __future__ import annotations

from typing import Any

import torch

from abawbench.errors import ConfigError
from abawbench.specs import LossContext


def counts_of(context: LossContext, task: str, loss: str, width: int) -> torch.Tensor:
    """The training counts of ``task`` as float64 ``[width]``, or a ConfigError saying why not."""
    raw: Any = context.class_counts.get(task)
    if raw is None:
        raise ConfigError(
            f"loss {loss!r} needs training class counts of task {task!r} (LossContext.class_counts)"
        )
    counts = torch.as_tensor(raw, dtype=torch.float64).reshape(-1)
    if counts.numel() != width or bool((counts < 0).any()):
        raise ConfigError(f"loss {loss!r}: class counts of task {task!r} are {raw!r}, expected {width} counts >= 0")
    return counts


def class_weights(kind: str, counts: torch.Tensor, beta: float) -> torch.Tensor | None:
    """Per-class weights, normalised to mean 1 (the scale cancels in a weighted mean anyway).

    ``inverse``: ``1 / n_c`` -- the same weights as the seed paper's ``count(Other) / n_c`` up
    to scale. ``effective``: ``(1 - beta) / (1 - beta^n_c)`` (Cui et al. 2019), between none
    (beta 0) and inverse (beta -> 1). A class with no training row gets the largest weight of
    the others rather than infinity: it cannot occur in a target anyway.
    """
    if kind == "none":
        return None
    present = counts > 0
    if not bool(present.any()):
        raise ConfigError("class weights: every class count is 0")
    if kind == "inverse":
        raw = 1.0 / counts.clamp_min(1)
    else:
        raw = (1.0 - beta) / (1.0 - beta ** counts.clamp_min(1))
    raw = torch.where(present, raw, raw[present].max())
    return raw / raw.mean()


def explicit_class_weights(loss: str, task: str, weights: list[float], width: int) -> torch.Tensor:
    """Weights given per class in the loss options, used as given (the seed paper's DLN:
    ``[1, 3, 5, 1, 1, 1]``); the count must be the task's class count."""
    if len(weights) != width:
        raise ConfigError(f"loss {loss!r}: class_weights has {len(weights)} values, task {task!r} has {width} classes")
    return torch.tensor(weights, dtype=torch.float32)


def pos_weights(positives: torch.Tensor, labelled: int) -> torch.Tensor:
    """``negatives / positives`` per label (BCE ``pos_weight``); 1 where a label has no positive
    or no negative, since there is nothing to balance."""
    negatives = float(labelled) - positives
    if bool((negatives < 0).any()):
        raise ConfigError(f"bce: positives {positives.tolist()} exceed the {labelled} labelled rows")
    ratio = negatives / positives.clamp_min(1)
    return torch.where((positives > 0) & (negatives > 0), ratio, torch.ones_like(ratio))
