"""Bootstrap confidence intervals for any score, reproducible from a seed.

A leaderboard difference of 0.01 means little on 4,670 validation images; an interval says how
much. Rows (images) are resampled with replacement, the score is recomputed on each resample,
and the percentile interval of those scores is reported. Resampling indices come from a seeded
``torch.Generator`` in one vectorised draw per chunk, so two runs with one seed agree exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, TypeVar

import torch

from abawbench.errors import MetricInputError

T = TypeVar("T")


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


def resampled(
    score: Callable[[torch.Tensor], T], rows: int, n_resamples: int, seed: int, chunk_elements: int = 2**24
) -> list[T]:
    """``score(indices)`` on each of ``n_resamples`` row resamples drawn from ``seed``; the
    draws do not depend on ``chunk_elements``, which only bounds the memory of one block."""
    generator = torch.Generator().manual_seed(seed)
    chunk = max(1, chunk_elements // rows)
    return [score(idx) for block in resample_indices(rows, n_resamples, generator, chunk) for idx in block]


def percentile_interval(values: "list[float]", confidence: float) -> tuple[float, float]:
    """The central ``confidence`` percentile interval of bootstrap values."""
    alpha = (1.0 - confidence) / 2
    tensor = torch.tensor(values, dtype=torch.float64)
    low, high = torch.quantile(tensor, torch.tensor([alpha, 1.0 - alpha], dtype=torch.float64))
    return float(low), float(high)


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
    values = resampled(lambda idx: float(score(idx)), rows, n_resamples, seed, chunk_elements)
    low, high = percentile_interval(values, confidence)
    return BootstrapCI(
        estimate=estimate,
        low=low,
        high=high,
        confidence=confidence,
        n_resamples=n_resamples,
        seed=seed,
    )
