"""The ABAW4 scores as pure, vectorised torch functions with explicit masks.

Every function takes tensors (or anything ``torch.as_tensor`` accepts) and an optional boolean
row mask; rows with ``mask == False`` are ignored, as the challenge computes each term only over
rows where that label is present. Sums run in float64 or int64 so that a score over a million
rows is the same number scikit-learn gives.

Degenerate cases, one rule for all, matching scikit-learn's ``zero_division=0``:

* F1 of a class whose denominator ``2 TP + FP + FN`` is 0 (absent from labels and predictions,
  or no row at all) is 0, and it still counts in the macro average over the track's fixed class
  list (scikit-learn with ``labels=range(C)``; the challenge averages over all classes).
* CCC whose denominator ``var(x) + var(y) + (mean(x) - mean(y))^2`` is 0 is 0. That happens
  only when predictions and labels are one and the same constant (or there is no row at all);
  CCC is undefined there, and 0 keeps "no information" from scoring as a perfect 1.

Malformed input (shapes that disagree, NaN or infinite predictions, labels outside their range)
raises :class:`abawbench.errors.MetricInputError` naming the argument and the problem.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NoReturn, Sequence

import torch

from abawbench.errors import MetricInputError

DEFAULT_THRESHOLD = 0.5
"""AU decision threshold used when none is tuned: ``probability >= 0.5`` is a positive."""

DEFAULT_GRID = tuple(round(0.01 * i, 2) for i in range(1, 100))
"""Thresholds tried by :func:`tune_au_thresholds`: 0.01, 0.02, ..., 0.99."""


# --------------------------------------------------------------------------- input checks


def as_tensor(value: Any, name: str) -> torch.Tensor:
    """A tensor view of ``value`` (numpy arrays are shared, not copied)."""
    if isinstance(value, torch.Tensor):
        return value.detach()
    try:
        return torch.as_tensor(value)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise MetricInputError(f"{name}: cannot be read as a tensor ({exc})") from exc


def row_mask(mask: Any, rows: int, name: str = "mask") -> torch.Tensor:
    """A bool ``[rows]`` mask; None means every row is present."""
    if mask is None:
        return torch.ones(rows, dtype=torch.bool)
    tensor = as_tensor(mask, name)
    if tensor.dtype != torch.bool:
        raise MetricInputError(f"{name}: must be bool, got {tensor.dtype}")
    if tensor.shape != (rows,):
        raise MetricInputError(f"{name}: shape {tuple(tensor.shape)}, expected ({rows},)")
    return tensor


def _check_finite(tensor: torch.Tensor, name: str) -> None:
    if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
        bad = int((~torch.isfinite(tensor)).sum())
        raise MetricInputError(f"{name}: {bad} value(s) are NaN or infinite")


def _check_same_rows(a: torch.Tensor, b: torch.Tensor, names: tuple[str, str]) -> None:
    if a.shape[:1] != b.shape[:1]:
        raise MetricInputError(
            f"{names[0]} has {a.shape[0] if a.dim() else 0} rows but {names[1]} has "
            f"{b.shape[0] if b.dim() else 0}"
        )


def class_indices(value: Any, num_classes: int, name: str, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Class indices ``int64 [N]`` from indices ``[N]`` or scores/probabilities ``[N, C]`` (argmax).

    Indices are range-checked only where ``mask`` is True: values under a False mask are
    meaningless by contract (readers store 0 there).
    """
    tensor = as_tensor(value, name)
    if tensor.dim() == 2:
        if tensor.shape[1] != num_classes:
            raise MetricInputError(
                f"{name}: {tensor.shape[1]} columns, expected {num_classes} classes"
            )
        _check_finite(tensor, name)
        return tensor.argmax(dim=1)
    if tensor.dim() != 1:
        raise MetricInputError(f"{name}: expected [N] indices or [N, C] scores, got {tuple(tensor.shape)}")
    if tensor.is_floating_point():
        _check_finite(tensor, name)
        if not bool((tensor == tensor.round()).all()):
            raise MetricInputError(f"{name}: class indices must be whole numbers")
    elif tensor.dtype == torch.bool:
        raise MetricInputError(f"{name}: class indices must be integers, got bool")
    tensor = tensor.long()
    checked = tensor if mask is None else tensor[mask]
    if checked.numel() and (int(checked.min()) < 0 or int(checked.max()) >= num_classes):
        raise MetricInputError(
            f"{name}: class index out of range 0..{num_classes - 1} "
            f"(found {int(checked.min())}..{int(checked.max())})"
        )
    return tensor


# --------------------------------------------------------------------------- regression


def ccc(pred: Any, target: Any, mask: Any = None) -> torch.Tensor:
    """Concordance correlation coefficient with population moments, per column.

    ``pred``/``target`` are ``[N]`` (returns a 0-d tensor) or ``[N, K]`` (returns ``[K]``),
    float64. See the module docstring for the zero-denominator rule.
    """
    x = as_tensor(pred, "pred")
    y = as_tensor(target, "target")
    if x.shape != y.shape:
        raise MetricInputError(f"pred shape {tuple(x.shape)} != target shape {tuple(y.shape)}")
    if x.dim() not in (1, 2):
        raise MetricInputError(f"pred: expected [N] or [N, K], got {tuple(x.shape)}")
    keep = row_mask(mask, x.shape[0])
    x = x[keep].double()
    y = y[keep].double()
    _check_finite(x, "pred")
    _check_finite(y, "target")
    n = x.shape[0]
    if n == 0:
        return torch.zeros(x.shape[1:], dtype=torch.float64)
    mx, my = x.mean(0), y.mean(0)
    dx, dy = x - mx, y - my
    vx = (dx * dx).mean(0)
    vy = (dy * dy).mean(0)
    cov = (dx * dy).mean(0)
    denom = vx + vy + (mx - my) ** 2
    safe = torch.where(denom > 0, denom, torch.ones_like(denom))
    return torch.where(denom > 0, 2.0 * cov / safe, torch.zeros_like(denom))


# --------------------------------------------------------------------------- classification


def confusion_matrix(pred: Any, target: Any, num_classes: int, mask: Any = None) -> torch.Tensor:
    """``int64 [C, C]`` counts, rows true class, columns predicted class, over masked rows.

    ``pred`` may be indices ``[N]`` or scores ``[N, C]`` (argmax is taken).
    """
    t_raw = as_tensor(target, "target")
    if t_raw.dim() != 1:
        raise MetricInputError(f"target: expected [N] class indices, got {tuple(t_raw.shape)}")
    keep = row_mask(mask, t_raw.shape[0])
    y = class_indices(t_raw, num_classes, "target", keep)
    p = class_indices(pred, num_classes, "pred")
    _check_same_rows(p, y, ("pred", "target"))
    flat = y[keep] * num_classes + p[keep]
    return torch.bincount(flat, minlength=num_classes * num_classes).view(num_classes, num_classes)


def f1_from_counts(tp: torch.Tensor, fp: torch.Tensor, fn: torch.Tensor) -> torch.Tensor:
    """``2 TP / (2 TP + FP + FN)`` in float64, 0 where the denominator is 0 (zero_division=0)."""
    tp, fp, fn = tp.double(), fp.double(), fn.double()
    denom = 2 * tp + fp + fn
    return torch.where(denom > 0, 2 * tp / denom.clamp_min(1), torch.zeros_like(denom))


def f1_from_confusion(confusion: torch.Tensor) -> torch.Tensor:
    """Per-class F1 ``float64 [C]`` from a confusion matrix (rows true, columns predicted)."""
    tp = confusion.diagonal()
    return f1_from_counts(tp, confusion.sum(0) - tp, confusion.sum(1) - tp)


def per_class_f1(pred: Any, target: Any, num_classes: int, mask: Any = None) -> torch.Tensor:
    """One-vs-rest F1 of every class ``float64 [C]``, as ``f1_score(average=None)``."""
    return f1_from_confusion(confusion_matrix(pred, target, num_classes, mask))


def macro_f1(pred: Any, target: Any, num_classes: int, mask: Any = None) -> torch.Tensor:
    """Unweighted mean of :func:`per_class_f1` over all ``num_classes`` classes (0-d float64)."""
    return per_class_f1(pred, target, num_classes, mask).mean()


# --------------------------------------------------------------------------- action units


def _as_thresholds(thresholds: Any, width: int) -> torch.Tensor:
    if thresholds is None:
        return torch.full((width,), DEFAULT_THRESHOLD, dtype=torch.float64)
    t = as_tensor(thresholds, "thresholds").double()
    if t.dim() == 0:
        t = t.expand(width)
    if t.shape != (width,):
        raise MetricInputError(f"thresholds: shape {tuple(t.shape)}, expected ({width},)")
    _check_finite(t, "thresholds")
    return t


def binarize(probs: Any, thresholds: Any = None) -> torch.Tensor:
    """0/1 decisions ``bool [N, K]``: ``probs >= threshold`` per column (default 0.5)."""
    p = as_tensor(probs, "pred")
    if p.dim() != 2:
        raise MetricInputError(f"pred: expected [N, K] AU probabilities, got {tuple(p.shape)}")
    _check_finite(p, "pred")
    return p.double() >= _as_thresholds(thresholds, p.shape[1])


def _binary_target(target: Any, keep: torch.Tensor, width: int) -> torch.Tensor:
    y = as_tensor(target, "target")
    if y.dim() != 2 or y.shape[1] != width:
        raise MetricInputError(f"target: shape {tuple(y.shape)}, expected [N, {width}]")
    present = y[keep]
    if present.is_floating_point():
        _check_finite(present, "target")
    if present.numel() and not bool(((present == 0) | (present == 1)).all()):
        raise MetricInputError("target: AU labels must be 0 or 1 where the mask is True")
    return y.bool() if y.dtype == torch.bool else y == 1


def au_counts(pred: Any, target: Any, mask: Any = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-column ``(TP, FP, FN)`` int64 ``[K]`` of 0/1 (or bool) decisions against 0/1 labels."""
    p = as_tensor(pred, "pred")
    if p.dim() != 2:
        raise MetricInputError(f"pred: expected [N, K] decisions, got {tuple(p.shape)}")
    keep = row_mask(mask, p.shape[0])
    y = _binary_target(target, keep, p.shape[1])
    _check_same_rows(p, y, ("pred", "target"))
    if p.dtype != torch.bool:
        if p.is_floating_point():
            _check_finite(p, "pred")
        if not bool(((p == 0) | (p == 1)).all()):
            raise MetricInputError("pred: AU decisions must be 0/1; use binarize() on probabilities")
        p = p == 1
    p, y = p[keep], y[keep]
    tp = (p & y).sum(0)
    fp = (p & ~y).sum(0)
    fn = (~p & y).sum(0)
    return tp, fp, fn


def per_au_f1(pred: Any, target: Any, mask: Any = None) -> torch.Tensor:
    """Binary F1 of each AU column ``float64 [K]`` from 0/1 decisions (see :func:`binarize`)."""
    return f1_from_counts(*au_counts(pred, target, mask))


def mean_au_f1(pred: Any, target: Any, mask: Any = None) -> torch.Tensor:
    """Mean over the AU columns of their binary F1 (the challenge's ``F1_AU``, 0-d float64)."""
    return per_au_f1(pred, target, mask).mean()


@dataclass(frozen=True)
class AUThresholds:
    """Per-AU thresholds tuned on validation, kept beside the fixed-threshold result.

    ``f1_fixed`` is F1 at :data:`DEFAULT_THRESHOLD`; ``f1_tuned`` at ``thresholds``. Tuned
    numbers on the data they were tuned on are optimistic; the caller decides where to use them.
    """

    thresholds: torch.Tensor
    f1_tuned: torch.Tensor
    f1_fixed: torch.Tensor

    @property
    def mean_tuned(self) -> float:
        return float(self.f1_tuned.mean())

    @property
    def mean_fixed(self) -> float:
        return float(self.f1_fixed.mean())


def tune_au_thresholds(
    probs: Any, target: Any, mask: Any = None, grid: Sequence[float] = DEFAULT_GRID
) -> AUThresholds:
    """Grid-search one threshold per AU that maximises its F1 on the given (validation) rows.

    Exact and O(N K + G K): each probability is bucketed once against the sorted grid, and
    true/false positive counts at every grid value come from one reverse cumulative sum. Ties
    go to the threshold closest to 0.5, so a flat F1 curve leaves the default in place.
    """
    p = as_tensor(probs, "pred")
    if p.dim() != 2:
        raise MetricInputError(f"pred: expected [N, K] AU probabilities, got {tuple(p.shape)}")
    _check_finite(p, "pred")
    keep = row_mask(mask, p.shape[0])
    y = _binary_target(target, keep, p.shape[1])
    _check_same_rows(p, y, ("pred", "target"))
    g = torch.as_tensor(sorted(float(v) for v in grid), dtype=torch.float64)
    if g.numel() == 0:
        raise MetricInputError("grid: at least one threshold is needed")
    p, y = p[keep].double(), y[keep]
    k, gn = p.shape[1], g.numel()
    # bucket b = number of grid values <= p: the row is predicted positive at grid[j] iff j < b
    bucket = torch.searchsorted(g, p.contiguous(), right=True)  # [n, K] in 0..G
    column = torch.arange(k).expand_as(bucket)
    flat = column * (gn + 1) + bucket
    pos = torch.bincount(flat[y], minlength=k * (gn + 1)).view(k, gn + 1)
    neg = torch.bincount(flat[~y], minlength=k * (gn + 1)).view(k, gn + 1)
    # predicted positive at grid[j] <=> bucket > j: reverse cumsum over buckets j+1..G
    tp = pos.flip(1).cumsum(1).flip(1)[:, 1:]  # [K, G]
    fp = neg.flip(1).cumsum(1).flip(1)[:, 1:]
    fn = pos.sum(1, keepdim=True) - tp
    f1 = f1_from_counts(tp, fp, fn)
    best = f1.max(1, keepdim=True).values
    distance = (g - DEFAULT_THRESHOLD).abs().expand_as(f1)
    pick = torch.where(f1 == best, distance, torch.full_like(distance, float("inf"))).argmin(1)
    fixed = f1_from_counts(*au_counts(p >= DEFAULT_THRESHOLD, y))
    return AUThresholds(thresholds=g[pick], f1_tuned=best.squeeze(1), f1_fixed=fixed)


# --------------------------------------------------------------------------- track scores


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
    va = ccc(va_pred, va_target, va_mask)
    if va.shape != (2,):
        raise MetricInputError(f"va: expected [N, 2] valence/arousal, got {tuple(va.shape)} columns")
    return MTLTerms(
        ccc_valence=float(va[0]),
        ccc_arousal=float(va[1]),
        f1_expr=float(macro_f1(expr_pred, expr_target, expr_classes, expr_mask)),
        f1_au=float(mean_au_f1(binarize(au_probs, au_thresholds), au_target, au_mask)),
    )


def lsd_score(pred: Any, target: Any, mask: Any = None, num_classes: int = 6) -> float:
    """The LSD track score: macro F1 over the 6 expression classes."""
    return float(macro_f1(pred, target, num_classes, mask))


# --------------------------------------------------------------------------- labels of a task


def label_tensors(column: Any, task: str = "labels") -> tuple[torch.Tensor, torch.Tensor]:
    """``(values, mask)`` tensors from a :class:`~abawbench.labels.TaskLabels` or a pair.

    Numpy arrays are shared with the tensors, not copied.
    """
    if hasattr(column, "values") and hasattr(column, "mask"):
        values, mask = column.values, column.mask
    else:
        try:
            values, mask = column
        except (TypeError, ValueError) as exc:
            raise MetricInputError(
                f"{task}: expected TaskLabels or a (values, mask) pair, got {type(column).__name__}"
            ) from exc
    v = as_tensor(values, f"{task} values")
    m = as_tensor(mask, f"{task} mask")
    if m.dtype != torch.bool:
        raise MetricInputError(f"{task} mask: must be bool, got {m.dtype}")
    if v.dim() == 0 or m.shape != (v.shape[0],):
        raise MetricInputError(
            f"{task}: values shape {tuple(v.shape)} and mask shape {tuple(m.shape)} disagree"
        )
    return v, m


def validate_task_labels(spec: Any, column: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Check one task's labels against its :class:`~abawbench.labels.TaskSpec`; return tensors.

    Multiclass: ``[N]`` whole numbers in ``0..C-1``; multilabel: ``[N, K]`` 0/1; regression:
    ``[N, K]`` finite and inside ``value_range``. Only rows with ``mask == True`` are checked.
    """
    values, mask = label_tensors(column, spec.name)
    name = f"labels of task {spec.name!r}"
    if spec.kind == "multiclass":
        if values.dim() != 1:
            _raise(f"{name}: expected [N] class indices, got {tuple(values.shape)}")
        class_indices(values, spec.width, name, mask)  # range and integrality checks
        return values, mask
    if values.dim() != 2 or values.shape[1] != spec.width:
        _raise(f"{name}: shape {tuple(values.shape)}, expected [N, {spec.width}]")
    present = values[mask]
    if spec.kind == "multilabel":
        if present.numel() and not bool(((present == 0) | (present == 1)).all()):
            _raise(f"{name}: values must be 0 or 1 where the mask is True")
        return values, mask
    _check_finite(present, name)
    if spec.value_range is not None and present.numel():
        low, high = spec.value_range
        if float(present.min()) < low or float(present.max()) > high:
            _raise(
                f"{name}: values {float(present.min()):g}..{float(present.max()):g} outside "
                f"[{low:g}, {high:g}]"
            )
    return values, mask


def task_class_counts(spec: Any, column: Any) -> "torch.Tensor | None":
    """Per-class counts (multiclass) or per-label positives (multilabel) ``int64``, over masked
    rows; None for regression. What :class:`~abawbench.specs.LossContext` needs for weights."""
    values, mask = validate_task_labels(spec, column)
    if spec.kind == "multiclass":
        return torch.bincount(values[mask].long(), minlength=spec.width)
    if spec.kind == "multilabel":
        return (values[mask] == 1).sum(0).long()
    return None


def _raise(message: str) -> NoReturn:
    raise MetricInputError(message)
