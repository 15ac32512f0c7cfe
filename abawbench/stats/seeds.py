"""Intervals over seeds and the paired test of a row against its section's best, from the
resampled primary scores each result stores (:attr:`RunResult.primary_resamples`).

A multi-seed row's interval pools every seed's resamples and takes percentiles of the pool, so
it holds the variation from seed to seed as well as the one from the data (averaging each
seed's endpoints would leave the first out).

Two results on the same validation data whose resamples were drawn alike (equal
:class:`~abawbench.results.ResamplingRecord`: unit, number of groups, resamples, seed) scored
the very same resamples, so resample ``i`` of one and resample ``i`` of the other form a pair:
their difference, resample by resample, is a paired bootstrap of the difference of the two
entries, with nothing to read again. Entries are paired seed by seed (seed ``s`` of one with
seed ``s`` of the other) and the differences of all shared seeds pooled.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from abawbench.results import RunResult
from abawbench.stats.intervals import percentile_interval

SIGNIFICANCE_LEVEL = 0.05
"""One-sided level of the test "significantly worse than the best"."""


def _usable(result: RunResult) -> bool:
    return (result.status == "completed" and result.resampling is not None
            and len(result.primary_resamples) == result.resampling.resamples > 0)


def pooled_interval(results: Sequence[RunResult], confidence: float = 0.95) -> tuple[float, float] | None:
    """The central ``confidence`` percentile interval of every seed's resampled primary scores
    pooled; None unless every result has them (an older result stored none)."""
    if not results or not all(_usable(r) for r in results):
        return None
    return percentile_interval(np.concatenate([np.asarray(r.primary_resamples, dtype=np.float64)
                                               for r in results]), confidence)


def paired_differences(best: Sequence[RunResult], other: Sequence[RunResult]) -> np.ndarray | None:
    """``best - other`` per paired resample, pooled over the seeds both have with resamples drawn
    alike; None when no seed pairs."""
    by_seed = {r.seed: r for r in other if _usable(r)}
    parts = []
    for mine in best:
        theirs = by_seed.get(mine.seed)
        if theirs is None or not _usable(mine) or mine.resampling != theirs.resampling:
            continue
        parts.append(np.asarray(mine.primary_resamples, np.float64) - np.asarray(theirs.primary_resamples, np.float64))
    return np.concatenate(parts) if parts else None


def not_worse_than_best(best: Sequence[RunResult], other: Sequence[RunResult], higher_is_better: bool,
                        level: float = SIGNIFICANCE_LEVEL) -> bool | None:
    """True when the paired bootstrap cannot tell ``other`` from ``best``: the one-sided
    ``1 - level`` interval of how much better the best is, ``[q_level, inf)``, includes 0. False:
    significantly worse. None: no paired resamples (older results, other draws)."""
    differences = paired_differences(best, other)
    if differences is None:
        return None
    advantage = differences if higher_is_better else -differences
    return bool(np.quantile(advantage, level) <= 0.0)
