"""The built-in ensemble methods: probability averaging, cross-fitted weights, majority vote.

Every method works task by task from the track's task specs, so the same code serves ``lsd``
(one multiclass task) and ``mtl`` (regression, multiclass, multilabel). Members are lists of
``task -> tensor`` probabilities (regression: values) with the same rows in the same order;
the core (:mod:`abawbench.ensembling`) checks that before a method sees them.

Outputs stay probabilities (``Predictions``), not decisions, so an ensemble's output can be
scored, bootstrapped, thresholded and ensembled again like any model's.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import torch

from abawbench.errors import ConfigError, MetricInputError
from abawbench.labels import TaskLabels, TaskSpec
from abawbench.metrics import DEFAULT_THRESHOLD
from abawbench.tracks import Predictions, Track


def stack_task(members: Sequence[Predictions], task: str) -> torch.Tensor:
    """``[M, N, ...]`` float64 stack of one task over members, shapes checked.

    float64 so that sums of many members' probabilities do not flip a close argmax.
    """
    if not members:
        raise MetricInputError("an ensemble needs at least one member")
    tensors = []
    for position, member in enumerate(members):
        if task not in member:
            raise MetricInputError(f"ensemble member {position} has no predictions for task {task!r}")
        tensors.append(torch.as_tensor(member[task]).double())
    shapes = {tuple(t.shape) for t in tensors}
    if len(shapes) != 1:
        raise MetricInputError(f"ensemble members disagree on the shape of task {task!r}: {sorted(shapes)}")
    return torch.stack(tensors)


def check_options(method: str, options: Mapping[str, Any], allowed: set[str]) -> None:
    """Unknown options are refused by name, so a typo never silently changes nothing."""
    unknown = sorted(set(options) - allowed)
    if unknown:
        known = ", ".join(sorted(allowed)) or "none"
        raise ConfigError(f"ensemble {method!r}: unknown option(s) {unknown}; known: {known}")


# --------------------------------------------------------------------------- mean-prob


class MeanProbability:
    """Averages every task's member outputs. For expressions this has the argmax of the seed
    paper's LSD ensemble (sum of softmax outputs, then argmax): a sum and a mean differ only by
    the factor M. Nothing is fitted."""

    def __init__(self, options: Mapping[str, Any]) -> None:
        check_options("mean-prob", options, set())

    def fit(self, members: list[Predictions], labels: Mapping[str, TaskLabels], track: Track) -> None:
        return None

    def combine(self, members: list[Predictions], track: Track) -> Predictions:
        return {spec.name: stack_task(members, spec.name).mean(dim=0).float() for spec in track.tasks}


# --------------------------------------------------------------------------- weighted-prob


class WeightedProbability:
    """A convex combination of members per task, weights fitted on labelled validation rows.

    Weights live on the simplex (softmax of free parameters) and minimise the proper loss of
    the combined output: negative log-likelihood of the mixed class probabilities (multiclass),
    binary cross-entropy of the mixed AU probabilities (multilabel), 1 - CCC per column
    (regression, the metric itself). A smooth loss rather than the F1 itself because F1 is
    piecewise constant in the weights. Fitting and scoring on the same rows would reward the fit
    with its own optimism; :func:`abawbench.ensembling.cross_fit` therefore scores the
    validation split out of fold. Options: ``weights`` (a list, one per member: fixed, not
    fitted), ``steps`` (optimiser steps, default 200), ``lr`` (default 0.1).
    """

    def __init__(self, options: Mapping[str, Any]) -> None:
        check_options("weighted-prob", options, {"weights", "steps", "lr"})
        fixed = options.get("weights")
        if fixed is not None:
            weights = torch.as_tensor([float(w) for w in fixed], dtype=torch.float64)
            if weights.numel() == 0 or bool((weights < 0).any()) or float(weights.sum()) <= 0:
                raise ConfigError(f"ensemble 'weighted-prob': weights must be >= 0 and not all 0, got {fixed}")
            fixed = weights / weights.sum()
        self.fixed: torch.Tensor | None = fixed
        self.steps = int(options.get("steps", 200))
        self.lr = float(options.get("lr", 0.1))
        if self.steps < 0 or self.lr <= 0:
            raise ConfigError("ensemble 'weighted-prob': steps must be >= 0 and lr > 0")
        self.weights: dict[str, torch.Tensor] = {}

    def fit(self, members: list[Predictions], labels: Mapping[str, TaskLabels], track: Track) -> None:
        self.weights = {}
        for spec in track.tasks:
            stacked = stack_task(members, spec.name)
            if self.fixed is not None:
                if self.fixed.numel() != stacked.shape[0]:
                    raise ConfigError(
                        f"ensemble 'weighted-prob': {self.fixed.numel()} weights for {stacked.shape[0]} members"
                    )
                self.weights[spec.name] = self.fixed
                continue
            column = labels.get(spec.name)
            self.weights[spec.name] = fit_simplex_weights(spec, stacked, column, self.steps, self.lr)

    def combine(self, members: list[Predictions], track: Track) -> Predictions:
        out = {}
        for spec in track.tasks:
            stacked = stack_task(members, spec.name)
            weights = self.weights.get(spec.name)
            if weights is None:
                if self.fixed is None:
                    raise MetricInputError("ensemble 'weighted-prob': combine() called before fit()")
                weights = self.fixed
            if weights.numel() != stacked.shape[0]:
                raise MetricInputError(
                    f"ensemble 'weighted-prob': fitted for {weights.numel()} members, given {stacked.shape[0]}"
                )
            out[spec.name] = weighted_sum(stacked, weights).float()
        return out


def weighted_sum(stacked: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """``sum_m w_m * stacked[m]`` for a stack of any trailing shape."""
    shape = (-1,) + (1,) * (stacked.dim() - 1)
    return (stacked * weights.to(stacked.dtype).reshape(shape)).sum(dim=0)


def _task_loss(spec: TaskSpec, mixed: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    eps = 1e-7
    if spec.kind == "multiclass":
        picked = mixed.gather(1, values.long().reshape(-1, 1)).squeeze(1)
        return -torch.log(picked.clamp_min(eps)).mean()
    if spec.kind == "multilabel":
        p = mixed.clamp(eps, 1 - eps)
        return -(values * torch.log(p) + (1 - values) * torch.log(1 - p)).mean()
    centred_p = mixed - mixed.mean(dim=0)
    centred_t = values - values.mean(dim=0)
    cov = (centred_p * centred_t).mean(dim=0)
    denom = centred_p.pow(2).mean(dim=0) + centred_t.pow(2).mean(dim=0) + (mixed.mean(0) - values.mean(0)).pow(2)
    return (1 - 2 * cov / denom.clamp_min(eps)).mean()


def fit_simplex_weights(
    spec: TaskSpec, stacked: torch.Tensor, column: TaskLabels | None, steps: int, lr: float
) -> torch.Tensor:
    """Simplex weights ``[M]`` minimising the task's loss on its labelled rows.

    Starts from equal weights (so zero steps, or no labelled rows, means plain averaging) and
    runs a fixed number of Adam steps: deterministic, no tolerance-dependent stopping.
    """
    members = stacked.shape[0]
    equal = torch.full((members,), 1.0 / members, dtype=torch.float64)
    if column is None or steps == 0 or members == 1:
        return equal
    mask = torch.as_tensor(column.mask, dtype=torch.bool)
    if not bool(mask.any()):
        return equal
    rows = stacked[:, mask]
    values = torch.as_tensor(column.values)[mask].double()
    logits = torch.zeros(members, dtype=torch.float64, requires_grad=True)
    optimiser = torch.optim.Adam([logits], lr=lr)
    for _ in range(steps):
        optimiser.zero_grad()
        loss = _task_loss(spec, weighted_sum(rows, torch.softmax(logits, dim=0)), values)
        loss.backward()
        optimiser.step()
    return torch.softmax(logits.detach(), dim=0)


# --------------------------------------------------------------------------- majority-vote


class MajorityVote:
    """One vote per member and decision, nothing fitted.

    - multiclass: each member votes for its argmax class; the class with most votes wins and a
      tie is broken by the summed probability of the tied classes. Output
      ``(votes + mean probability) / (M + 1)``: a distribution whose argmax is exactly that
      winner (the mean probability adds < 1, so it can only separate tied vote counts).
    - multilabel: each member votes 0/1 per AU (``probability >= 0.5``, the official default);
      output is the share of members voting 1, and on an exact tie (even M) the members' mean
      probability, so thresholding at 0.5 reproduces the majority (tie: mean probability >= 0.5).
    - regression: the element-wise median (the mean of the two middle values for even M).
    """

    def __init__(self, options: Mapping[str, Any]) -> None:
        check_options("majority-vote", options, set())

    def fit(self, members: list[Predictions], labels: Mapping[str, TaskLabels], track: Track) -> None:
        return None

    def combine(self, members: list[Predictions], track: Track) -> Predictions:
        out = {}
        for spec in track.tasks:
            stacked = stack_task(members, spec.name)
            if spec.kind == "multiclass":
                out[spec.name] = vote_classes(stacked).float()
            elif spec.kind == "multilabel":
                out[spec.name] = vote_labels(stacked).float()
            else:
                out[spec.name] = torch.quantile(stacked, 0.5, dim=0).float()
        return out


def vote_classes(stacked: torch.Tensor) -> torch.Tensor:
    """``[M, N, C]`` probabilities -> ``[N, C]`` vote distribution (see :class:`MajorityVote`)."""
    members, _rows, classes = stacked.shape
    votes = torch.nn.functional.one_hot(stacked.argmax(dim=2), classes).sum(dim=0).double()
    return (votes + stacked.mean(dim=0)) / (members + 1)


def vote_labels(stacked: torch.Tensor) -> torch.Tensor:
    """``[M, N, K]`` probabilities -> ``[N, K]`` share of positive votes, ties by mean probability."""
    share = (stacked >= DEFAULT_THRESHOLD).double().mean(dim=0)
    return torch.where(share == 0.5, stacked.mean(dim=0), share)
