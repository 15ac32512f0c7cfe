"""The percentile interval of bootstrap values: one definition for a single run's interval
(:mod:`abawbench.evaluation`) and for the interval pooled over seeds (:mod:`.seeds`)."""

from __future__ import annotations

from typing import Sequence

import numpy as np


def percentile_interval(values: Sequence[float] | np.ndarray, confidence: float) -> tuple[float, float]:
    """The central ``confidence`` percentile interval of ``values`` (linear interpolation)."""
    alpha = (1.0 - confidence) / 2
    low, high = np.quantile(np.asarray(values, dtype=np.float64), [alpha, 1.0 - alpha])
    return float(low), float(high)
