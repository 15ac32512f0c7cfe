"""How each registered loss is built from a track and a :class:`LossContext`.

A *task builder* makes the loss of one task from its options; a registered single-kind loss
applies it to the track's task of that kind, ``multitask`` combines one per task.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import torch
from torch import nn

from abawbench.errors import ConfigError
from abawbench.labels import TaskSpec
from abawbench.specs import LossContext, LossSpec
from abawbench.tracks import Track

from abawbench_builtins.losses.modules import BCELoss, CCCLoss, CrossEntropyLoss, FocalLoss, TrackLoss
from abawbench_builtins.losses.options import choice, choice_or_numbers, mapping, number, read_options
from abawbench_builtins.losses.weights import class_weights, counts_of, explicit_class_weights, pos_weights

TaskBuilder = Callable[[str, TaskSpec, LossContext, Mapping[str, Any]], nn.Module]

WEIGHTING = {
    "class_weights": (choice_or_numbers("none", "inverse", "effective"), "none"),
    "beta": (number(0.0, 1.0, high_open=True), 0.999),
}


def _weights(name: str, spec: TaskSpec, context: LossContext, opts: Mapping[str, Any]) -> torch.Tensor | None:
    if opts["class_weights"] == "none":
        return None
    if isinstance(opts["class_weights"], list):
        return explicit_class_weights(name, spec.name, opts["class_weights"], spec.width)
    counts = counts_of(context, spec.name, name, spec.width)
    return class_weights(opts["class_weights"], counts, opts["beta"]).float()


def ccc_task(name: str, spec: TaskSpec, context: LossContext, fixed: Mapping[str, Any]) -> nn.Module:
    opts = read_options(name, context.options, {"reduction": (choice("sum", "mean"), "sum")}, fixed)
    return CCCLoss(opts["reduction"])


def cross_entropy_task(name: str, spec: TaskSpec, context: LossContext, fixed: Mapping[str, Any]) -> nn.Module:
    schema = {**WEIGHTING, "label_smoothing": (number(0.0, 1.0, high_open=True), 0.0)}
    opts = read_options(name, context.options, schema, fixed)
    return CrossEntropyLoss(_weights(name, spec, context, opts), opts["label_smoothing"])


def focal_task(name: str, spec: TaskSpec, context: LossContext, fixed: Mapping[str, Any]) -> nn.Module:
    schema = {**WEIGHTING, "gamma": (number(0.0, 10.0), 2.0)}
    opts = read_options(name, context.options, schema, fixed)
    return FocalLoss(opts["gamma"], _weights(name, spec, context, opts))


def bce_task(name: str, spec: TaskSpec, context: LossContext, fixed: Mapping[str, Any]) -> nn.Module:
    opts = read_options(name, context.options, {"pos_weight": (choice("balanced", "none"), "balanced")}, fixed)
    if opts["pos_weight"] == "none":
        return BCELoss(None)
    positives = counts_of(context, spec.name, name, spec.width)
    if spec.name not in context.label_counts:
        raise ConfigError(f"loss {name!r} needs the labelled-row count of task {spec.name!r} (LossContext.label_counts)")
    return BCELoss(pos_weights(positives, int(context.label_counts[spec.name])).float())


@dataclass(frozen=True)
class TaskLossKind:
    """A registered single-kind loss: which task kind it serves, how, and what its name fixes."""

    name: str
    kind: str
    build: TaskBuilder
    description: str
    fixed: Mapping[str, Any] = field(default_factory=dict)


TASK_LOSSES = {
    item.name: item
    for item in (
        TaskLossKind("ccc", "regression", ccc_task,
                     "1 - CCC per regression column, summed (VA: 1-CCC_V + 1-CCC_A as HUST-ANT); "
                     "option reduction=sum|mean"),
        TaskLossKind("cross-entropy", "multiclass", cross_entropy_task,
                     "masked cross-entropy; options class_weights=none|inverse|effective|[w per class], beta, label_smoothing"),
        TaskLossKind("cross-entropy-smooth", "multiclass", cross_entropy_task,
                     "cross-entropy with label smoothing 0.2 (HUST-ANT's LSD loss)", {"label_smoothing": 0.2}),
        TaskLossKind("cross-entropy-balanced", "multiclass", cross_entropy_task,
                     "cross-entropy with inverse-frequency class weights", {"class_weights": "inverse"}),
        TaskLossKind("focal", "multiclass", focal_task,
                     "focal loss (Lin et al. 2017); options gamma (2), class_weights (as cross-entropy), beta"),
        TaskLossKind("bce", "multilabel", bce_task,
                     "masked BCE with logits, per-label pos_weight = negatives/positives; option pos_weight=balanced|none"),
    )
}

DEFAULT_FOR_KIND = {"regression": "ccc", "multiclass": "cross-entropy", "multilabel": "bce"}


def single_kind_spec(item: TaskLossKind) -> LossSpec:
    """The LossSpec of a one-kind loss: it refuses a track with tasks of another kind, since
    those heads would silently go untrained (use ``multitask``)."""

    def build(track: Track, context: LossContext) -> nn.Module:
        others = [spec.name for spec in track.tasks if spec.kind != item.kind]
        if others or not track.tasks:
            raise ConfigError(
                f"loss {item.name!r} serves {item.kind} tasks only; track {track.name!r} also has "
                f"{others}: use 'multitask'"
            )
        losses = {spec.name: item.build(item.name, spec, context, item.fixed) for spec in track.tasks}
        return TrackLoss(losses, {task: 1.0 for task in losses})

    return LossSpec(name=item.name, build=build, description=item.description, task_kinds=(item.kind,))


MULTITASK_SCHEMA = {
    "weights": (mapping(), {"va": 1.0, "expr": 1.0, "au": 1.0}),
    "losses": (mapping(), {}),
    "options": (mapping(), {}),
}


def build_multitask(track: Track, context: LossContext) -> nn.Module:
    """Weighted sum of one loss per task of ``track``; tasks named in ``weights`` that the track
    lacks are skipped, a weight of 0 drops a task. ``losses`` picks a task's loss by name
    (default: ccc / cross-entropy / bce by kind), ``options[task]`` are that loss's options."""
    opts = read_options("multitask", context.options, MULTITASK_SCHEMA)
    names = set(track.task_names)
    weights = {"va": 1.0, "expr": 1.0, "au": 1.0, **opts["weights"]}
    for key in ("losses", "options"):
        stray = sorted(set(opts[key]) - names)
        if stray:
            raise ConfigError(f"loss 'multitask' option {key!r}: track {track.name!r} has no task(s) {stray}")
    losses: dict[str, nn.Module] = {}
    used: dict[str, float] = {}
    for spec in track.tasks:
        weight = number(0.0, 1e6)(f"loss 'multitask' weight of {spec.name!r}", weights.get(spec.name, 1.0))
        if weight == 0:
            continue
        loss_name = opts["losses"].get(spec.name, DEFAULT_FOR_KIND[spec.kind])
        item = TASK_LOSSES.get(loss_name)
        if item is None or item.kind != spec.kind:
            fitting = [n for n, i in TASK_LOSSES.items() if i.kind == spec.kind]
            raise ConfigError(f"loss 'multitask': task {spec.name!r} ({spec.kind}) cannot use {loss_name!r}; choose from {fitting}")
        sub = LossContext(context.class_counts, context.label_counts, opts["options"].get(spec.name, {}))
        losses[spec.name] = item.build(item.name, spec, sub, item.fixed)
        used[spec.name] = weight
    if not losses:
        raise ConfigError(f"loss 'multitask': every task of track {track.name!r} has weight 0")
    return TrackLoss(losses, used)


def loss_specs() -> list[LossSpec]:
    """Every loss this plugin registers."""
    specs = [single_kind_spec(item) for item in TASK_LOSSES.values()]
    specs.append(
        LossSpec(
            name="multitask",
            build=build_multitask,
            description=(
                "masked weighted sum over the track's tasks (default ccc + cross-entropy + bce, "
                "weights 1); options weights, losses, options"
            ),
        )
    )
    return specs
