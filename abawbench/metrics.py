"""Masked metrics as pure, vectorised torch functions: CCC, confusion and F1, multilabel F1
(named after action units, the multilabel task they were written for) and threshold tuning.
A track combines them into its score; nothing here knows a track.

Every function takes tensors (or anything ``torch.as_tensor`` accepts) and an optional boolean
row mask; rows with ``mask == False`` are ignored, so each term of a score is computed only over
rows where that label is present. Sums run in float64 or int64 so that a score over a million
rows is the same number scikit-learn gives.

Degenerate cases, one rule for all, matching scikit-learn's ``zero_division=0``:

* F1 of a class whose denominator ``2 TP + FP + FN`` is 0 (absent from labels and predictions,
  or no row at all) is 0, and it still counts in the macro average over the track's fixed class
  list (scikit-learn with ``labels=range(C)``: a macro average over all classes).
* CCC whose denominator ``var(x) + var(y) + (mean(x) - mean(y))^2`` is 0 is 0. That happens
  only when predictions and labels are one and the same constant (or there is no row at all);
  CCC is undefined there, and 0 keeps "no information" from scoring as a perfect 1.

Malformed input (shapes that disagree, NaN or infinite predictions, labels outside their range)
raises :class:`abawbench.errors.MetricInputError` naming the argument and the problem.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, NoReturn, Sequence

import numpy as np
import torch

from abawbench.errors import MetricInputError

DEFAULT_THRESHOLD = 0.5
"""Multilabel (AU) decision threshold when none is tuned: ``probability >= 0.5`` is a positive."""

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
    """NaN/inf check. A finite sum proves every element finite (NaN and inf propagate), and a
    sum is one fast pass; only a non-finite sum (or an overflow) pays for the exact check."""
    if not tensor.is_floating_point() or tensor.numel() == 0:
        return
    if bool(torch.isfinite(tensor.sum())):
        return
    bad = int((~torch.isfinite(tensor)).sum())
    if bad:
        raise MetricInputError(f"{name}: {bad} value(s) are NaN or infinite")


def _check_same_rows(a: torch.Tensor, b: torch.Tensor, names: tuple[str, str]) -> None:
    if a.shape[:1] != b.shape[:1]:
        raise MetricInputError(
            f"{names[0]} has {a.shape[0] if a.dim() else 0} rows but {names[1]} has "
            f"{b.shape[0] if b.dim() else 0}"
        )


BLOCK_ROWS = 1 << 15
"""Rows per block in the large-N paths: small enough to stay in cache and to reuse one
buffer, which on CPU beats whole-array temporaries (their page faults cost as much as the
arithmetic)."""


def _blocks(rows: int) -> "list[tuple[int, int]]":
    return [(start, min(rows, start + BLOCK_ROWS)) for start in range(0, rows, BLOCK_ROWS)]


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
    checked = tensor
    # range over all rows first (two cheap reductions); only on failure look at masked rows,
    # where an unlabelled row may legitimately hold anything
    if checked.numel() and (int(checked.min()) < 0 or int(checked.max()) >= num_classes):
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
    columns = (x, y) if x.dim() == 2 else (x.unsqueeze(1), y.unsqueeze(1))
    result = _ccc_columns(*columns, keep)
    return result if x.dim() == 2 else result.squeeze(0)


def _ccc_columns(x: torch.Tensor, y: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """CCC of ``[N, K]`` columns over kept rows.

    Fast path: every raw moment at once from the float64 Gram matrix ``Z^T Z`` of
    ``Z = [x, y, 1]`` with unlabelled rows zeroed, accumulated block by block (BLAS, in
    cache; no row selection, no large temporaries, no reductions down a narrow matrix). Raw moments lose precision when the mean dwarfs the
    spread (``E[x^2] / var(x)`` large); such data, and non-finite values, take the exact
    centred two-pass route on the kept rows.
    """
    k = x.shape[1]
    gram = torch.zeros(2 * k + 1, 2 * k + 1, dtype=torch.float64)
    z = torch.empty(min(x.shape[0], BLOCK_ROWS), 2 * k + 1, dtype=torch.float64)
    for start, stop in _blocks(x.shape[0]):
        block = z[: stop - start]
        block[:, :k] = x[start:stop]
        block[:, k : 2 * k] = y[start:stop]
        block[:, -1] = 1
        # zero unlabelled rows; this also clears whatever they hold (NaN included)
        block.masked_fill_(~keep[start:stop].unsqueeze(1), 0)
        gram.addmm_(block.T, block)
    if not bool(torch.isfinite(gram).all()):
        return _ccc_centred(x[keep], y[keep])  # names the bad values, or survives an overflow
    n = float(gram[-1, -1])
    if n == 0:
        return torch.zeros(k, dtype=torch.float64)
    mx, my = gram[-1, :k] / n, gram[-1, k : 2 * k] / n
    second = gram.diagonal()
    sxx, syy = second[:k] / n, second[k : 2 * k] / n
    sxy = gram[:k, k : 2 * k].diagonal() / n
    vx, vy = sxx - mx * mx, syy - my * my
    ill = (sxx > CONDITION_LIMIT * vx) | (syy > CONDITION_LIMIT * vy)
    if bool(ill.any()):
        return _ccc_centred(x[keep], y[keep])
    return ccc_from_moments(mx, my, vx, vy, sxy - mx * my)


CONDITION_LIMIT = 1e6
"""Above this ``E[x^2] / var(x)`` the raw-moment error (about limit x 1e-16) is no longer
negligible and CCC is recomputed from centred values."""


def _ccc_centred(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Two-pass CCC of ``[n, K]`` rows that are all labelled (exact reference route)."""
    _check_finite(x, "pred")
    _check_finite(y, "target")
    if x.shape[0] == 0:
        return torch.zeros(x.shape[1], dtype=torch.float64)
    x, y = x.double(), y.double()
    mx, my = _bounded_mean(x), _bounded_mean(y)
    dx, dy = x - mx, y - my
    return ccc_from_moments(mx, my, (dx * dx).mean(0), (dy * dy).mean(0), (dx * dy).mean(0))


def _bounded_mean(x: torch.Tensor) -> torch.Tensor:
    """Column means held inside each column's [min, max]. The float mean of n copies of c is
    not always c (0.1 three times sums to 0.30000000000000004); left alone, a constant column
    would get a tiny variance, and CCC of one constant against itself would be 1 instead of the
    documented 0. A true mean never leaves [min, max], so the clamp only undoes rounding."""
    return torch.minimum(torch.maximum(x.mean(0), x.amin(0)), x.amax(0))


def ccc_from_moments(
    mx: torch.Tensor, my: torch.Tensor, vx: torch.Tensor, vy: torch.Tensor, cov: torch.Tensor
) -> torch.Tensor:
    """``2 cov / (vx + vy + (mx - my)^2)``, 0 where the denominator is 0 (zero_division=0)."""
    vx, vy = vx.clamp_min(0), vy.clamp_min(0)  # raw moments may round a zero variance below 0
    denom = vx + vy + (mx - my) ** 2
    safe = torch.where(denom > 0, denom, torch.ones_like(denom))
    return torch.where(denom > 0, 2.0 * cov / safe, torch.zeros_like(denom))


# --------------------------------------------------------------------------- classification


def confusion_matrix(pred: Any, target: Any, num_classes: int, mask: Any = None) -> torch.Tensor:
    """``int64 [C, C]`` counts, rows true class, columns predicted class, over masked rows.

    ``pred`` may be indices ``[N]`` or scores ``[N, C]`` (argmax is taken, block by block).
    """
    t_raw = as_tensor(target, "target")
    if t_raw.dim() != 1:
        raise MetricInputError(f"target: expected [N] class indices, got {tuple(t_raw.shape)}")
    keep = row_mask(mask, t_raw.shape[0])
    y = class_indices(t_raw, num_classes, "target", keep)
    scores = as_tensor(pred, "pred")
    if scores.dim() == 2:
        if scores.shape[1] != num_classes:
            raise MetricInputError(f"pred: {scores.shape[1]} columns, expected {num_classes} classes")
        _check_finite(scores, "pred")
    else:
        scores = class_indices(scores, num_classes, "pred")
    _check_same_rows(scores, y, ("pred", "target"))
    # unlabelled rows go to one extra bin that is dropped: cheaper than selecting rows
    cells = num_classes * num_classes
    counts = torch.zeros(cells + 1, dtype=torch.int64)
    for start, stop in _blocks(y.shape[0]):
        p = scores[start:stop]
        p = p.argmax(1) if p.dim() == 2 else p
        flat = torch.where(keep[start:stop], y[start:stop] * num_classes + p, cells)
        counts += torch.bincount(flat, minlength=cells + 1)
    return counts[:cells].view(num_classes, num_classes)


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
    """Thresholds as float64 ``[width]``, holding exactly the values given. A Python float or
    list goes through float64 (``torch.as_tensor(0.7)`` would round it to float32's
    0.699999988, and a probability of 0.69999999 would pass it); a tensor or array is taken at
    the value it holds, whatever its dtype."""
    if thresholds is None:
        return torch.full((width,), DEFAULT_THRESHOLD, dtype=torch.float64)
    if isinstance(thresholds, torch.Tensor):
        t = thresholds.detach().double()
    else:
        try:
            t = torch.from_numpy(np.asarray(thresholds, dtype=np.float64))
        except (TypeError, ValueError) as exc:
            raise MetricInputError(f"thresholds: not numbers ({exc})") from exc
    if t.dim() == 0:
        t = t.expand(width)
    if t.shape != (width,):
        raise MetricInputError(f"thresholds: shape {tuple(t.shape)}, expected ({width},)")
    _check_finite(t, "thresholds")
    return t


def _probabilities(probs: Any) -> torch.Tensor:
    p = as_tensor(probs, "pred")
    if p.dim() != 2:
        raise MetricInputError(f"pred: expected [N, K] AU probabilities, got {tuple(p.shape)}")
    _check_finite(p, "pred")
    if p.dtype not in (torch.float32, torch.float64):
        p = p.float()  # exact for half, bfloat16 and small integers
    return p


def _thresholds_like(t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Thresholds in ``dtype`` such that ``p >= t_dtype`` equals ``p >= t`` for every ``p`` of
    that dtype: the smallest representable value not below ``t`` (so comparing float32
    probabilities never needs a float64 copy of them)."""
    if dtype == torch.float64:
        return t
    low = t.to(dtype)
    return torch.where(low.double() < t, torch.nextafter(low, torch.full_like(low, float("inf"))), low)


def binarize(probs: Any, thresholds: Any = None) -> torch.Tensor:
    """0/1 decisions ``bool [N, K]``: ``probs >= threshold`` per column (default 0.5)."""
    p = _probabilities(probs)
    return p >= _thresholds_like(_as_thresholds(thresholds, p.shape[1]), p.dtype)


Decide = Callable[[int, int, torch.Tensor], torch.Tensor]
"""``decide(start, stop, out)`` writes 0/1 decisions of rows ``start:stop`` into ``out``."""


def _binary_tallies(
    target: Any, keep: torch.Tensor, width: int, decide: Decide | None = None
) -> tuple[torch.Tensor, ...]:
    """Per-column counts over kept rows, int64 ``[K]``: ``(ones,)`` of the 0/1 labels, and with
    ``decide`` also ``(tp, predicted)``.

    Each count is a matrix-vector product of the 0/1 row mask with a 0/1 float32 block: exact
    (a block's integer sums stay far below 2**24; blocks add up in float64) and, block by block
    in cache, far faster on CPU than reducing a bool matrix down its rows. Labels are checked to
    be exactly 0 or 1 on kept rows by counting both values.
    """
    y = as_tensor(target, "target")
    if y.dim() != 2 or y.shape[1] != width:
        raise MetricInputError(f"target: shape {tuple(y.shape)}, expected [N, {width}]")
    if y.shape[0] != keep.shape[0]:
        raise MetricInputError(f"target has {y.shape[0]} rows but pred has {keep.shape[0]}")
    n = y.shape[0]
    totals = torch.zeros(4, width, dtype=torch.float64)  # zeros, ones, tp, predicted
    labels = torch.empty((min(n, BLOCK_ROWS), width))
    decisions = torch.empty_like(labels)
    for start, stop in _blocks(n):
        k = keep[start:stop].float()
        block, out = y[start:stop], labels[: stop - start]
        totals[0] += k @ torch.eq(block, 0, out=out)
        totals[1] += k @ torch.eq(block, 1, out=out)
        if decide is not None:
            d = decide(start, stop, decisions[: stop - start])
            totals[3] += k @ d
            totals[2] += k @ out.mul_(d)
    if bool((totals[0] + totals[1] != float(keep.sum())).any()):
        raise MetricInputError("target: AU labels must be 0 or 1 where the mask is True")
    counts = totals.round().long()
    return (counts[1],) if decide is None else (counts[1], counts[2], counts[3])


def au_counts(pred: Any, target: Any, mask: Any = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-column ``(TP, FP, FN)`` int64 ``[K]`` of 0/1 (or bool) decisions against 0/1 labels."""
    p = as_tensor(pred, "pred")
    if p.dim() != 2:
        raise MetricInputError(f"pred: expected [N, K] decisions, got {tuple(p.shape)}")
    keep = row_mask(mask, p.shape[0])
    if p.dtype != torch.bool:
        _check_finite(p, "pred")
        if not bool(((p == 0) | (p == 1)).all()):
            raise MetricInputError("pred: AU decisions must be 0/1; use binarize() on probabilities")

    def decide(start: int, stop: int, out: torch.Tensor) -> torch.Tensor:
        return out.copy_(p[start:stop])

    ones, tp, predicted = _binary_tallies(target, keep, p.shape[1], decide)
    return tp, predicted - tp, ones - tp


def per_au_f1(pred: Any, target: Any, mask: Any = None) -> torch.Tensor:
    """Binary F1 of each AU column ``float64 [K]`` from 0/1 decisions (see :func:`binarize`)."""
    return f1_from_counts(*au_counts(pred, target, mask))


def mean_au_f1(pred: Any, target: Any, mask: Any = None) -> torch.Tensor:
    """Mean over the AU columns of their binary F1 (0-d float64), the usual ``F1_AU`` term."""
    return per_au_f1(pred, target, mask).mean()


def au_f1(probs: Any, target: Any, mask: Any = None, thresholds: Any = None) -> torch.Tensor:
    """Per-AU F1 ``float64 [K]`` straight from probabilities at ``thresholds`` (default 0.5).

    Same numbers as ``per_au_f1(binarize(probs, thresholds), ...)`` without a bool matrix.
    """
    p = _probabilities(probs)
    keep = row_mask(mask, p.shape[0])
    t = _thresholds_like(_as_thresholds(thresholds, p.shape[1]), p.dtype)

    def decide(start: int, stop: int, out: torch.Tensor) -> torch.Tensor:
        return torch.ge(p[start:stop], t, out=out)

    ones, tp, predicted = _binary_tallies(target, keep, p.shape[1], decide)
    return f1_from_counts(tp, predicted - tp, ones - tp)


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
    p = _probabilities(probs)
    keep = row_mask(mask, p.shape[0])
    _binary_tallies(target, keep, p.shape[1])  # shape and 0/1 checks
    y = as_tensor(target, "target") == 1
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
    fixed = au_f1(p, y.to(p.dtype))
    return AUThresholds(thresholds=g[pick], f1_tuned=best.squeeze(1), f1_fixed=fixed)


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
    if spec.kind == "multilabel":
        try:
            _binary_tallies(values, mask, spec.width)
        except MetricInputError:
            _raise(f"{name}: values must be 0 or 1 where the mask is True")
        return values, mask
    present = values[mask] if not bool(mask.all()) else values
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
        return _binary_tallies(values, mask, spec.width)[0]
    return None


def _raise(message: str) -> NoReturn:
    raise MetricInputError(message)
