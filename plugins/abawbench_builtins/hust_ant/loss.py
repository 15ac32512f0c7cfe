"""The ``hust-ant-mtl`` loss: the seed paper's multi-task loss, composed from the losses plugin.

Summed with equal weights, each term over the rows where its label is present:

- AU: BCE with logits, ``pos_weight = negatives / positives`` per AU (training counts);
- expression: cross-entropy with class weights ``count(Other) / count(class)`` (the losses
  plugin's ``inverse`` weights: the same up to scale);
- VA: ``1 - CCC_V + 1 - CCC_A``.

Each term is built by ``abawbench_builtins.losses``' task builders, so the masking rules (a batch
without a labelled row gives an exact 0) are the same as every other loss's.
"""

from __future__ import annotations

from torch import nn

from abawbench.errors import ConfigError
from abawbench.labels import TaskSpec
from abawbench.specs import LossContext, LossSpec
from abawbench.tracks import Track

NAME = "hust-ant-mtl"

# The paper's term per task kind, as the losses plugin's task builders with their options fixed.
# Its expression weights count(Other) / count(c) are the "inverse" class weights up to a constant
# factor, which a weighted mean cancels.
PAPER_TERMS = {
    "regression": ("ccc", {"reduction": "sum"}),
    "multiclass": ("cross-entropy", {"class_weights": "inverse", "label_smoothing": 0.0}),
    "multilabel": ("bce", {"pos_weight": "balanced"}),
}


def _task_loss(spec: TaskSpec, context: LossContext) -> nn.Module:
    from abawbench_builtins.losses.builders import TASK_LOSSES

    builder, fixed = PAPER_TERMS[spec.kind]
    return TASK_LOSSES[builder].build(NAME, spec, context, fixed)


def build(track: Track, context: LossContext) -> nn.Module:
    """One term per task of ``track`` (any track: ``lsd`` gets the weighted cross-entropy)."""
    from abawbench_builtins.losses.modules import TrackLoss

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
