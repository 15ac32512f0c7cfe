"""The one training loop, for the linear probe and for fine-tuning alike.

Both protocols train the same way: epochs of mini-batches under the configured learning-rate
schedule, a loss that must stay finite, a score on the selection split (validation, or a
holdout of the training split: :mod:`abawbench.run.selection`) after every epoch, early
stopping, and the best epoch's weights kept. They differ only in what a batch
is and how a split is predicted, which a :class:`TrainingFeed` supplies: cached feature rows
for the probe (:mod:`abawbench.training.probe`), decoded and augmented images for fine-tuning
(:mod:`abawbench.training.finetune`). One loop means a fix to selection or stopping reaches
both protocols at once.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Mapping, Protocol

import numpy as np
import torch
from torch import nn

from abawbench.errors import RunFailedError
from abawbench.labels import TaskLabels
from abawbench.specs import LossContext, LossFunction
from abawbench.tracks import Track

if TYPE_CHECKING:
    from abawbench.config import ProtocolConfig
    from abawbench.data.index import SampleIndex

Targets = dict[str, tuple[torch.Tensor, torch.Tensor]]
"""Per task, ``(values, mask)`` of a batch's rows, as losses take them."""

MakeLoss = Callable[[], LossFunction]
"""Builds the entry's loss. Trainers call it after building their heads, so that a loss that
draws random numbers when built draws them at the same point of the seeded stream every time."""


@dataclass
class Outcome:
    """What training leaves: the selected epoch's validation predictions, the test predictions
    of its weights (None without a test split), and those weights (``state``)."""

    validation: dict[str, torch.Tensor]
    test: dict[str, torch.Tensor] | None
    best_epoch: int
    epochs_run: int
    state: Any = None
    selection: dict[str, torch.Tensor] | None = None
    """The selected weights' predictions on the selection split, when it is not validation."""
    history: list[dict[str, Any]] = field(default_factory=list)
    """Per epoch: ``epoch``, mean ``train_loss`` and ``selection_score`` (the selection split's
    primary score), as results record it. Under torchrun the training loss is rank 0's, the mean
    over its share of the epoch's batches; the selection score is over the whole split."""


class TrainingFeed(Protocol):
    """What one protocol gives the loop: its training batches and its way to predict a split."""

    splits: Mapping[str, "SampleIndex"]

    def training_batches(self, epoch: int) -> Iterable[tuple[Any, Targets]]:
        """One epoch's ``(inputs, targets)`` batches, in the order they are trained on."""

    def outputs(self, network: nn.Module, inputs: Any) -> dict[str, torch.Tensor]:
        """Raw float outputs per task (what the loss takes) of ``network`` on a training batch."""

    def predict(self, network: nn.Module, split: str) -> dict[str, torch.Tensor]:
        """Probabilities per task of ``network`` (in eval mode) on every row of ``split``."""


def labels_as_tensors(labels: Mapping[str, TaskLabels]) -> Targets:
    """The ``(values, mask)`` tensors of every task's labels, for indexing batches out of."""
    return {
        task: (torch.from_numpy(np.ascontiguousarray(column.values)),
               torch.from_numpy(np.ascontiguousarray(column.mask)))
        for task, column in labels.items()
    }


def loss_context(track: Track, labels: Mapping[str, TaskLabels], options: Mapping[str, Any]) -> LossContext:
    """Per-task class (or positive-label) counts on the training split, for class weights."""
    return LossContext(class_counts=track.class_counts(labels), label_counts=track.label_counts(labels),
                       options=options)


def make_optimizer(parameters: Iterable[nn.Parameter], protocol: "ProtocolConfig") -> torch.optim.Optimizer:
    """The configured optimiser over the trainable parameters (frozen ones are left out, so a
    partly frozen network, e.g. DLN's reference copy, stays frozen)."""
    params = [p for p in parameters if p.requires_grad]
    if protocol.optimizer == "sgd":
        return torch.optim.SGD(params, lr=protocol.lr, momentum=0.9, weight_decay=protocol.weight_decay)
    if protocol.optimizer == "adam":
        return torch.optim.Adam(params, lr=protocol.lr, weight_decay=protocol.weight_decay)
    return torch.optim.AdamW(params, lr=protocol.lr, weight_decay=protocol.weight_decay)


class EarlyStopping:
    """Keeps the best state on the selection split and its predictions there (so they need not
    be computed again); says stop after ``patience`` epochs without progress."""

    def __init__(self, higher_is_better: bool, patience: int | None) -> None:
        self.sign = 1 if higher_is_better else -1
        self.patience = patience
        self.best_score = -math.inf
        self.best_epoch = 0
        self.best_state: Any = None
        self.best_predictions: dict[str, torch.Tensor] = {}

    def update(self, score: float, epoch: int, module: nn.Module, predictions: dict[str, torch.Tensor]) -> bool:
        """Record the epoch's score; True when training should stop."""
        if self.sign * score > self.best_score:
            self.best_score, self.best_epoch = self.sign * score, epoch
            self.best_state = copy.deepcopy(module.state_dict())
            self.best_predictions = predictions
        return self.patience is not None and epoch - self.best_epoch >= self.patience


def train_network(network: nn.Module, feed: TrainingFeed, track: Track, loss_fn: LossFunction,
                  protocol: "ProtocolConfig", *, progress: bool = True, desc: str = "train",
                  select_on: str = "validation") -> Outcome:
    """Train ``network`` on ``feed``'s batches for up to ``protocol.epochs`` epochs, select the
    epoch (and stop early) on the official score of the split ``select_on`` (``validation``, or
    a holdout of the training split that ``feed.splits`` holds under that name), and predict
    validation and test (when there is one) with the selected weights, which ``network`` holds
    afterwards."""
    from tqdm.auto import tqdm

    optimiser = make_optimizer(network.parameters(), protocol)
    schedule = LearningRateSchedule(optimiser, protocol, getattr(feed, "batches_per_epoch", None))
    stopper = EarlyStopping(track.higher_is_better, protocol.patience)
    selection_labels = feed.splits[select_on].labels
    history: list[dict[str, Any]] = []
    epoch = 0
    updated = False
    for epoch in tqdm(range(1, protocol.epochs + 1), desc=desc, disable=not progress, leave=False):
        set_training_mode(network, freeze_batchnorm=protocol.freeze_batchnorm)
        loss_sum, batches = torch.zeros(()), 0  # summed on the loss's device: no sync per batch
        for inputs, targets in feed.training_batches(epoch):
            loss = _batch_loss(feed, network, loss_fn, inputs, targets)
            _check_loss(loss, epoch, updated)
            updated = True
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            loss_sum, batches = loss_sum.to(loss.device) + loss.detach().float(), batches + 1
            schedule.after_step()
        schedule.after_epoch()
        predictions = feed.predict(network, select_on)
        score = track.score(predictions, selection_labels).primary
        history.append({"epoch": epoch, "train_loss": float(loss_sum) / max(batches, 1), "selection_score": score})
        if stopper.update(score, epoch, network, predictions):
            break
    network.load_state_dict(stopper.best_state)
    selected = stopper.best_predictions
    validation = selected if select_on == "validation" else feed.predict(network, "validation")
    test = feed.predict(network, "test") if "test" in feed.splits else None
    return Outcome(validation=validation, test=test, best_epoch=stopper.best_epoch, epochs_run=epoch,
                   state=stopper.best_state, selection=None if select_on == "validation" else selected,
                   history=history)


class TaskParts(list):
    """One training step made of several forward passes: ``[(inputs, targets), ...]``, one per
    part (per-task batching: one batch per task, each with only that task's labels). The step's
    loss is the sum of the parts' losses, as when each task's batch is its own forward pass."""


def _batch_loss(feed: TrainingFeed, network: nn.Module, loss_fn: LossFunction, inputs: Any,
                targets: Targets | None) -> torch.Tensor:
    if isinstance(inputs, TaskParts):
        losses = [loss_fn(feed.outputs(network, x), t) for x, t in inputs]
        return sum(losses[1:], losses[0])
    assert targets is not None
    return loss_fn(feed.outputs(network, inputs), targets)


def set_training_mode(network: nn.Module, *, freeze_batchnorm: bool) -> None:
    """``network.train()``; with ``freeze_batchnorm`` every BatchNorm layer is put back in eval
    mode, so its running statistics never move and it normalises with them (the seed paper's
    DLN trains both copies this way). Its affine weights still train unless frozen otherwise."""
    network.train()
    if freeze_batchnorm:
        for module in network.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.eval()


class LearningRateSchedule:
    """The configured learning-rate schedule: constant, or cosine annealing over
    ``schedule_period`` schedule steps, advanced once per epoch or once per optimiser step.

    Per step, an unset period is the whole run (epochs x batches per epoch). A period shorter than
    the run continues the cosine past its minimum, so the rate rises again (torch's
    CosineAnnealingLR; a method trained that way, e.g. a fixed step count, is reproduced as is)."""

    def __init__(self, optimiser: torch.optim.Optimizer, protocol: "ProtocolConfig",
                 batches_per_epoch: int | None) -> None:
        self.per_step = protocol.schedule_step == "step"
        self.scheduler: torch.optim.lr_scheduler.LRScheduler | None = None
        if protocol.lr_schedule == "constant":
            return
        period = protocol.schedule_period
        if period is None:
            period = protocol.epochs * max(1, batches_per_epoch or 1) if self.per_step else protocol.epochs
        self.scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=period)

    def after_step(self) -> None:
        if self.scheduler is not None and self.per_step:
            self.scheduler.step()

    def after_epoch(self) -> None:
        if self.scheduler is not None and not self.per_step:
            self.scheduler.step()


def _check_loss(loss: Any, epoch: int, updated: bool) -> None:
    """A loss must be a finite scalar tensor. Which error names the culprit: a non-finite loss
    before any weight was updated comes from the loss (or its options and the labels), not from
    the learning rate."""
    if not isinstance(loss, torch.Tensor) or loss.dim() != 0:
        shape = tuple(loss.shape) if isinstance(loss, torch.Tensor) else type(loss).__name__
        raise RunFailedError(f"the loss returned {shape} instead of a scalar tensor "
                             "(a loss plugin must reduce over the batch)")
    if torch.isfinite(loss):
        return
    if not updated:
        raise RunFailedError(f"the loss returned {float(loss.detach())} on the first batch, before any update: "
                             "the loss plugin (or its options) produced it, not the learning rate")
    raise RunFailedError(f"loss became {float(loss.detach())} at epoch {epoch}; lower the learning rate")


def batches_of_rows(order: torch.Tensor, batch_size: int) -> Iterator[torch.Tensor]:
    """Consecutive slices of ``order`` of ``batch_size`` rows (the last one may be shorter)."""
    for start in range(0, len(order), batch_size):
        yield order[start:start + batch_size]
