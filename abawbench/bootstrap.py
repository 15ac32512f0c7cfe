"""Bootstrap confidence intervals for any score, reproducible from a seed.

A leaderboard difference of 0.01 means little on 4,670 validation images; an interval says how
much. Rows (images) are resampled with replacement, the score is recomputed on each resample,
and the percentile interval of those scores is reported. Resampling indices come from a seeded
``torch.Generator`` in one vectorised draw per chunk, so two runs with one seed agree exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
import torch

from abawbench.errors import MetricInputError
from abawbench.labels import TaskLabels

if TYPE_CHECKING:
    from abawbench.labels import LabelSet
    from abawbench.tracks import Predictions, Track


@dataclass(frozen=True)
class BootstrapCI:
    """A score on all rows and its percentile interval over ``n_resamples`` resamples."""

    estimate: float
    low: float
    high: float
    confidence: float
    n_resamples: int
    seed: int

    def as_dict(self) -> dict[str, float | int]:
        return {
            "estimate": self.estimate,
            "low": self.low,
            "high": self.high,
            "confidence": self.confidence,
            "n_resamples": self.n_resamples,
            "seed": self.seed,
        }


def resample_indices(
    rows: int, n_resamples: int, generator: torch.Generator, chunk: int
) -> "list[torch.Tensor]":
    """``[b, rows]`` index blocks (b <= chunk) drawn with replacement, in a fixed order."""
    blocks = []
    done = 0
    while done < n_resamples:
        b = min(chunk, n_resamples - done)
        blocks.append(torch.randint(0, rows, (b, rows), generator=generator))
        done += b
    return blocks


def bootstrap_ci(
    score: Callable[[torch.Tensor], float | torch.Tensor],
    rows: int,
    *,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    chunk_elements: int = 2**24,
) -> BootstrapCI:
    """Percentile bootstrap of ``score(indices)``, where ``indices`` selects rows.

    ``score`` receives an ``int64 [rows]`` index tensor (``torch.arange(rows)`` for the point
    estimate) and indexes its own row-aligned data with it; that keeps this function agnostic
    of what the data are (predictions plus masks of several tasks, for instance).
    """
    if rows <= 0:
        raise MetricInputError("bootstrap: no rows to resample")
    if n_resamples < 1:
        raise MetricInputError(f"bootstrap: n_resamples must be >= 1, got {n_resamples}")
    if not 0.0 < confidence < 1.0:
        raise MetricInputError(f"bootstrap: confidence must be in (0, 1), got {confidence}")
    estimate = float(score(torch.arange(rows)))
    generator = torch.Generator().manual_seed(seed)
    chunk = max(1, chunk_elements // rows)  # bounds memory of one index block
    values = torch.empty(n_resamples, dtype=torch.float64)
    i = 0
    for block in resample_indices(rows, n_resamples, generator, chunk):
        for idx in block:
            values[i] = float(score(idx))
            i += 1
    alpha = (1.0 - confidence) / 2
    low, high = torch.quantile(values, torch.tensor([alpha, 1.0 - alpha], dtype=torch.float64))
    return BootstrapCI(
        estimate=estimate,
        low=float(low),
        high=float(high),
        confidence=confidence,
        n_resamples=n_resamples,
        seed=seed,
    )


def bootstrap_track_score(
    track: "Track",
    predictions: "Predictions",
    labels: "LabelSet",
    *,
    key: str | None = None,
    au_thresholds: Any = None,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> BootstrapCI:
    """Interval of a track's primary score (or of ``sub_scores[key]``), resampling images.

    All tasks are resampled with the same row indices: an image is drawn with all its labels,
    as the test set would draw it.
    """
    rows = {len(column) for column in labels.values()} | {
        int(torch.as_tensor(p).shape[0]) for p in predictions.values()
    }
    if len(rows) != 1:
        raise MetricInputError(f"bootstrap: predictions and labels disagree on rows: {sorted(rows)}")
    n = rows.pop()
    preds = {task: torch.as_tensor(p) for task, p in predictions.items()}
    cols = {task: _as_numpy_labels(column) for task, column in labels.items()}

    def score(idx: torch.Tensor) -> float:
        np_idx = idx.numpy()
        result = track.score(
            {task: p[idx] for task, p in preds.items()},
            {task: column.take(np_idx) for task, column in cols.items()},
            au_thresholds=au_thresholds,
        )
        return result.primary if key is None else result.sub_scores[key]

    return bootstrap_ci(score, n, n_resamples=n_resamples, confidence=confidence, seed=seed)


def _as_numpy_labels(column: Any) -> TaskLabels:
    """TaskLabels from TaskLabels or a ``(values, mask)`` pair of tensors/arrays."""
    if isinstance(column, TaskLabels):
        return column
    values, mask = column
    values = values.numpy() if isinstance(values, torch.Tensor) else np.asarray(values)
    mask = mask.numpy() if isinstance(mask, torch.Tensor) else np.asarray(mask)
    return TaskLabels(values=values, mask=mask.astype(bool))
