"""The cluster bootstrap of a track's scores, a thousand resamples in one vectorised pass.

A resample draws the validation split's groups (the track's resampling unit: a video for
``mtl``, an image for ``lsd``) with replacement and takes all their rows, so rows that are not
independent of each other (frames of one video) move together and the interval is not too
narrow. Each resample is then nothing but a count per group: how many times it was drawn.

Why vectorised this way: every score of the built-in tracks is a function of sums over rows
(confusion counts for macro F1; true positives, predictions and positives per AU for AU F1;
the moments ``n, Σx, Σy, Σx², Σy², Σxy`` for CCC). Those sums are computed once per group,
``S [G, D]``; a block of resamples is a count matrix ``W [b, G]`` and its sums are one product
``W @ S``. Nothing gathers rows, so the cost hardly depends on the number of rows.

Draws depend only on the number of groups, the number of resamples and the seed (blocks of
:data:`DRAW_BLOCK` resamples, a fixed size), so two results on the same validation data with
the same seed drew the same resamples: their stored resampled scores are paired.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np
import torch

from abawbench import metrics
from abawbench.errors import MetricInputError
from abawbench.labels import LabelSet, TaskSpec
from abawbench.tracks import Predictions, Track, absent_tasks

DRAW_BLOCK = 64
"""Resamples drawn (and scored) per block: bounds memory (``[64, G]`` counts), never the draws."""


def dense_groups(groups: np.ndarray) -> tuple[np.ndarray, int]:
    """Group ids renumbered ``0..G-1`` (in order of first sorted id) and ``G``."""
    ids = np.asarray(groups)
    if ids.ndim != 1:
        raise MetricInputError(f"groups: expected one id per row, got shape {ids.shape}")
    unique, inverse = np.unique(ids, return_inverse=True)
    return inverse.astype(np.int64), len(unique)


ONE = torch.ones(1, 1, dtype=torch.float64)


def group_counts(groups: int, n_resamples: int, seed: int) -> Iterator[torch.Tensor]:
    """Blocks ``float64 [b, G]`` of how many times each group is drawn in each resample (each
    resample draws ``G`` groups with replacement), from a generator of ``seed``."""
    generator = torch.Generator().manual_seed(seed)
    for start in range(0, n_resamples, DRAW_BLOCK):
        b = min(DRAW_BLOCK, n_resamples - start)
        # int32 draws and a scatter of ones: several times faster than int64 draws and a bincount
        draws = torch.randint(0, groups, (b, groups), generator=generator, dtype=torch.int32)
        counts = torch.zeros(b, groups, dtype=torch.float64)
        yield counts.scatter_add_(1, draws.long(), ONE.expand(b, groups))


# --------------------------------------------------------------------------- per-group sums


def _sum_by_group(values: torch.Tensor, group: torch.Tensor, groups: int) -> torch.Tensor:
    """``float64 [G, D]`` sums of the rows ``values [N, D]`` of each group."""
    out = torch.zeros(groups, values.shape[1], dtype=torch.float64)
    return out.index_add_(0, group, values.double())


def _multiclass_sums(spec: TaskSpec, pred: torch.Tensor, values: torch.Tensor, mask: torch.Tensor,
                     group: torch.Tensor, groups: int) -> torch.Tensor:
    """Per group, its confusion counts ``[G, C*C]`` (rows true, columns predicted)."""
    c = spec.width
    y = metrics.class_indices(values, c, "target", mask)
    p = metrics.class_indices(pred, c, "pred")
    cell = y * c + p
    flat = torch.where(mask, group * (c * c) + cell, groups * c * c)  # unlabelled rows: a dropped bin
    counts = torch.bincount(flat, minlength=groups * c * c + 1)[:-1]
    return counts.view(groups, c * c).double()


def _multiclass_scores(spec: TaskSpec, sums: torch.Tensor) -> torch.Tensor:
    """Macro F1 ``[b]`` from confusion counts ``[b, C*C]``."""
    c = spec.width
    confusion = sums.view(-1, c, c)
    tp = confusion.diagonal(dim1=1, dim2=2)
    return metrics.f1_from_counts(tp, confusion.sum(1) - tp, confusion.sum(2) - tp).mean(1)


def _multilabel_sums(spec: TaskSpec, pred: torch.Tensor, values: torch.Tensor, mask: torch.Tensor,
                     group: torch.Tensor, groups: int) -> torch.Tensor:
    """Per group and label: true positives, predicted positives, positives ``[G, 3K]``, at the
    fixed threshold the official score uses."""
    decided = metrics.binarize(pred).double()
    truth = (values == 1).double()
    keep = mask.double().unsqueeze(1)
    rows = torch.cat([decided * truth * keep, decided * keep, truth * keep], dim=1)
    return _sum_by_group(rows, group, groups)


def _multilabel_scores(spec: TaskSpec, sums: torch.Tensor) -> torch.Tensor:
    """Mean F1 over the labels ``[b]`` from ``[b, 3K]`` sums."""
    tp, predicted, ones = sums.split(spec.width, dim=1)
    return metrics.f1_from_counts(tp, predicted - tp, ones - tp).mean(1)


def _regression_sums(spec: TaskSpec, pred: torch.Tensor, values: torch.Tensor, mask: torch.Tensor,
                     group: torch.Tensor, groups: int) -> torch.Tensor:
    """Per group and column: ``n, Σx, Σy, Σx², Σy², Σxy`` ``[G, 6K]``. Both series are first
    shifted by the labels' mean (CCC does not change when both move alike), which keeps raw
    moments well conditioned."""
    keep = mask.unsqueeze(1)
    x, y = pred.double(), values.double()
    shift = (y * keep).sum(0) / keep.sum().clamp_min(1)
    x, y = (x - shift) * keep, (y - shift) * keep
    n = keep.double().expand_as(x)
    return _sum_by_group(torch.cat([n, x, y, x * x, y * y, x * y], dim=1), group, groups)


def _regression_scores(spec: TaskSpec, sums: torch.Tensor) -> torch.Tensor:
    """CCC per column ``[b, K]`` from ``[b, 6K]`` sums (0 where undefined, as :func:`metrics.ccc`)."""
    n, sx, sy, sxx, syy, sxy = sums.split(spec.width, dim=1)
    safe = n.clamp_min(1)
    mx, my = sx / safe, sy / safe
    ccc = metrics.ccc_from_moments(mx, my, sxx / safe - mx * mx, syy / safe - my * my, sxy / safe - mx * my)
    return torch.where(n > 0, ccc, torch.zeros_like(ccc))


TASK_SUMS = {"multiclass": (_multiclass_sums, _multiclass_scores),
             "multilabel": (_multilabel_sums, _multilabel_scores),
             "regression": (_regression_sums, _regression_scores)}


# --------------------------------------------------------------------------- resampled scores


def resampled_scores(track: Track, predictions: Predictions, labels: LabelSet, groups: np.ndarray,
                     n_resamples: int, seed: int) -> dict[str, torch.Tensor]:
    """The track's primary score and sub-scores on each of ``n_resamples`` cluster resamples
    ``float64 [B]`` by name (the primary under ``track.primary_metric``).

    ``groups`` holds each validation row's group id (:meth:`Track.resampling_unit`). The labels
    and predictions are checked by the caller's ``track.score`` first. A track whose score is
    not a combination of task scores (:meth:`Track.combine_task_scores` gives None) is scored
    resample by resample on the gathered rows instead: the same draws, slower."""
    if n_resamples < 1:
        raise MetricInputError(f"bootstrap: n_resamples must be >= 1, got {n_resamples}")
    group, count = dense_groups(groups)
    rows = len(next(iter(labels.values())))
    if group.shape[0] != rows:
        raise MetricInputError(f"groups: {group.shape[0]} ids for {rows} rows")
    if absent_tasks(predictions):  # a partial score: the track leaves those terms out itself
        return _scored_one_by_one(track, predictions, labels, group, count, n_resamples, seed)
    group_t = torch.from_numpy(group)
    columns = track.validate_labels(labels)
    sums, widths = [], []
    for spec in track.tasks:
        values, mask = columns[spec.name]
        task_sums = TASK_SUMS[spec.kind][0](spec, metrics.as_tensor(predictions[spec.name], spec.name),
                                            values, mask, group_t, count)
        sums.append(task_sums)
        widths.append(task_sums.shape[1])
    stacked = torch.cat(sums, dim=1)
    blocks: dict[str, list[torch.Tensor]] = {}
    for weights in group_counts(count, n_resamples, seed):
        combined = track.combine_task_scores(_task_scores(track, weights @ stacked, widths))
        if combined is None:  # known at the first block: nothing was kept yet
            return _scored_one_by_one(track, predictions, labels, group, count, n_resamples, seed)
        for name, value in combined.items():
            blocks.setdefault(name, []).append(value)
    if track.primary_metric not in blocks:
        raise MetricInputError(f"track {track.name!r}: combine_task_scores gave no {track.primary_metric!r}")
    return {name: torch.cat(values) for name, values in blocks.items()}


def _task_scores(track: Track, sums: torch.Tensor, widths: list[int]) -> dict[str, torch.Tensor]:
    return {spec.name: TASK_SUMS[spec.kind][1](spec, part)
            for spec, part in zip(track.tasks, sums.split(widths, dim=1))}


def _scored_one_by_one(track: Track, predictions: Predictions, labels: LabelSet, group: np.ndarray,
                       count: int, n_resamples: int, seed: int) -> dict[str, torch.Tensor]:
    """The fallback: each resample's rows gathered (every row of a group as often as the group
    was drawn) and scored by the track itself."""
    from abawbench.labels import take_labels

    values: dict[str, list[float]] = {}
    for weights in group_counts(count, n_resamples, seed):
        for row_weights in weights[:, group].long():
            idx = torch.repeat_interleave(torch.arange(group.shape[0]), row_weights)
            score = track.score({t: metrics.as_tensor(p, t)[idx] for t, p in predictions.items()},
                                take_labels(labels, idx.numpy()))
            for name, value in {track.primary_metric: score.primary, **score.sub_scores}.items():
                values.setdefault(name, []).append(value)
    return {name: torch.tensor(v, dtype=torch.float64) for name, v in values.items()}
