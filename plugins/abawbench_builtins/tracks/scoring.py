"""Per-task scoring shared by the built-in tracks, and the ABAW4 track scores (docs/abaw4.md).

A track's score is a combination of task results (P_MTL adds three, LSD takes one), so each
task is scored once here, with its per-class numbers and confusion matrix, and the tracks only
combine. :func:`p_mtl` and :func:`lsd_score` are the same scores as plain functions of arrays,
for callers that hold no label set.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from abawbench import metrics
from abawbench.errors import MetricInputError
from abawbench.labels import LabelSet, TaskSpec
from abawbench.tracks import Predictions, Track, absent_tasks


@dataclass
class TaskResult:
    """``value``: macro F1 (multiclass), mean AU F1 (multilabel) or per-column CCC (regression,
    in ``columns``); ``per_class`` F1 by class name; ``confusion`` for multiclass tasks."""

    value: float
    columns: dict[str, float] = field(default_factory=dict)
    per_class: dict[str, float] = field(default_factory=dict)
    confusion: list[list[int]] | None = None


def prediction(predictions: Predictions, spec: TaskSpec, rows: int) -> torch.Tensor:
    """The prediction tensor of one task, checked against the labels' row count and width."""
    if spec.name not in predictions:
        raise MetricInputError(
            f"predictions lack task {spec.name!r}; got {sorted(predictions)}"
        )
    pred = metrics.as_tensor(predictions[spec.name], f"predictions[{spec.name!r}]")
    if pred.dim() == 0 or pred.shape[0] != rows:
        raise MetricInputError(
            f"predictions[{spec.name!r}]: {pred.shape[0] if pred.dim() else 0} rows, "
            f"labels have {rows}"
        )
    expected = (rows, spec.width)
    if spec.kind != "multiclass" and tuple(pred.shape) != expected:
        raise MetricInputError(
            f"predictions[{spec.name!r}]: shape {tuple(pred.shape)}, expected {expected}"
        )
    return pred


def score_task(
    spec: TaskSpec,
    pred: torch.Tensor,
    values: torch.Tensor,
    mask: torch.Tensor,
    au_thresholds: Any = None,
) -> TaskResult:
    """Score one task over the rows whose label is present."""
    if spec.kind == "multiclass":
        confusion = metrics.confusion_matrix(pred, values, spec.width, mask)
        f1 = metrics.f1_from_confusion(confusion)
        return TaskResult(
            value=float(f1.mean()),
            per_class=dict(zip(spec.names, f1.tolist())),
            confusion=confusion.tolist(),
        )
    if spec.kind == "multilabel":
        f1 = metrics.au_f1(pred, values, mask, au_thresholds)
        return TaskResult(value=float(f1.mean()), per_class=dict(zip(spec.names, f1.tolist())))
    columns = metrics.ccc(pred, values, mask)
    return TaskResult(value=float(columns.mean()), columns=dict(zip(spec.names, columns.tolist())))


def score_tasks(
    track: Track, predictions: Predictions, labels: LabelSet, au_thresholds: Any = None, *,
    allow_absent: bool = False,
) -> dict[str, TaskResult]:
    """Every task of ``track`` scored over its labelled rows, labels checked first.
    ``allow_absent``: tasks the predictions declare absent (zero columns, :func:`absent_tasks`)
    are left out of the results (at least one task must be present) instead of refused."""
    columns = track.validate_labels(labels)
    results = {}
    absent = absent_tasks(predictions) if allow_absent else []
    if absent and all(spec.name in absent for spec in track.tasks):
        raise MetricInputError(f"predictions declare every task absent ({', '.join(absent)}); nothing to score")
    for spec in track.tasks:
        if spec.name in absent:
            continue
        values, mask = columns[spec.name]
        pred = prediction(predictions, spec, values.shape[0])
        results[spec.name] = score_task(spec, pred, values, mask, au_thresholds)
    return results


@dataclass(frozen=True)
class MTLTerms:
    """The terms of P_MTL, each over the rows where its label is present."""

    ccc_valence: float
    ccc_arousal: float
    f1_expr: float
    f1_au: float

    @property
    def ccc_mean(self) -> float:
        return (self.ccc_valence + self.ccc_arousal) / 2

    @property
    def p_mtl(self) -> float:
        return self.ccc_mean + self.f1_expr + self.f1_au


def p_mtl(
    va_pred: Any,
    va_target: Any,
    expr_pred: Any,
    expr_target: Any,
    au_probs: Any,
    au_target: Any,
    *,
    va_mask: Any = None,
    expr_mask: Any = None,
    au_mask: Any = None,
    au_thresholds: Any = None,
    expr_classes: int = 8,
) -> MTLTerms:
    """``P_MTL = (CCC_V + CCC_A) / 2 + F1_expr + F1_AU`` (maximum 3).

    ``va_*`` ``[N, 2]`` (valence, arousal); ``expr_pred`` probabilities ``[N, 8]`` or indices;
    ``au_probs`` ``[N, 12]`` probabilities thresholded at ``au_thresholds`` (default 0.5).
    """
    va = metrics.ccc(va_pred, va_target, va_mask)
    if va.shape != (2,):
        raise MetricInputError(f"va: expected [N, 2] valence/arousal, got {tuple(va.shape)} columns")
    return MTLTerms(
        ccc_valence=float(va[0]),
        ccc_arousal=float(va[1]),
        f1_expr=float(metrics.macro_f1(expr_pred, expr_target, expr_classes, expr_mask)),
        f1_au=float(metrics.au_f1(au_probs, au_target, au_mask, au_thresholds).mean()),
    )


def lsd_score(pred: Any, target: Any, mask: Any = None, num_classes: int = 6) -> float:
    """The LSD track score: macro F1 over the 6 expression classes."""
    return float(metrics.macro_f1(pred, target, num_classes, mask))
