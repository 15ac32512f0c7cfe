"""The ``hust-ant-mtl`` loss: the seed paper's multi-task loss, composed from the losses plugin.

Summed with equal weights, each term over the rows where its label is present:

- AU: BCE with logits, ``pos_weight = negatives / positives`` per AU (training counts);
- expression: cross-entropy with class weights ``count(Other) / count(class)``;
- VA: ``1 - CCC_V + 1 - CCC_A``.

The masked functions and modules come from ``abawbench_losses`` so the masking rules (a batch
without a labelled row gives an exact 0) are the same as every other loss's.
"""

from __future__ import annotations

import torch
from torch import nn

from abawbench.errors import ConfigError
from abawbench.labels import TaskSpec
from abawbench.specs import LossContext, LossSpec
from abawbench.tracks import Track

NAME = "hust-ant-mtl"
REFERENCE_CLASS = "Other"


def reference_weights(counts: torch.Tensor, class_names: tuple[str, ...]) -> torch.Tensor:
    """``count(reference) / count(class)``: the paper's expression weights. The reference is the
    ``Other`` class when the task has one, else the largest class (the paper's ``Other`` is the
    largest mtl class). A class absent from training gets the largest weight of the others: it
    never occurs as a target, so its weight only has to be finite."""
    counts = counts.to(torch.float64)
    if not bool((counts > 0).any()):
        raise ConfigError(f"loss {NAME!r}: every expression class count is 0")
    names = [n.lower() for n in class_names]
    reference = counts[names.index(REFERENCE_CLASS.lower())] if REFERENCE_CLASS.lower() in names else counts.max()
    if reference <= 0:
        reference = counts.max()
    raw = reference / counts.clamp_min(1)
    return torch.where(counts > 0, raw, raw[counts > 0].max()).float()


def _task_loss(spec: TaskSpec, context: LossContext) -> nn.Module:
    from abawbench_losses.modules import BCELoss, CCCLoss, CrossEntropyLoss
    from abawbench_losses.weights import counts_of, pos_weights

    if spec.kind == "regression":
        return CCCLoss("sum")
    counts = counts_of(context, spec.name, NAME, spec.width)
    if spec.kind == "multiclass":
        return CrossEntropyLoss(reference_weights(counts, spec.names), label_smoothing=0.0)
    if spec.name not in context.label_counts:
        raise ConfigError(f"loss {NAME!r} needs the labelled-row count of task {spec.name!r}")
    return BCELoss(pos_weights(counts, int(context.label_counts[spec.name])).float())


def build(track: Track, context: LossContext) -> nn.Module:
    """One term per task of ``track`` (any track: ``lsd`` gets the weighted cross-entropy)."""
    from abawbench_losses.modules import TrackLoss

    if context.options:
        raise ConfigError(f"loss {NAME!r} takes no options (it is the paper's loss as published); "
                          f"got {sorted(context.options)}; use 'multitask' to vary it")
    losses = {spec.name: _task_loss(spec, context) for spec in track.tasks}
    return TrackLoss(losses, {task: 1.0 for task in losses})


SPEC = LossSpec(
    name=NAME, build=build,
    description="HUST-ANT's mtl loss: AU BCE pos_weight neg/pos + expression CE weights "
                "count(Other)/count(c) + (1-CCC_V) + (1-CCC_A), equal weights",
)
