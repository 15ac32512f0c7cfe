"""Tiny random data in a track's own shapes: labels, raw outputs and probabilities.

Conformance checks feed plugins this instead of a real dataset, so they run in seconds and
offline. Every task gets some masked rows (labels absent) and, for classification, every class
present, so class counts (a loss's weights) are never zero.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

from abawbench.labels import TaskLabels, TaskSpec

if TYPE_CHECKING:
    from abawbench.tracks import Predictions, Track

ROWS = 24
"""Rows of every generated batch: enough for each class of a track's largest task (8
expressions) to appear, and for an ensemble's cross-fitting to split."""


def random_labels(track: "Track", seed: int = 0, rows: int = ROWS) -> dict[str, TaskLabels]:
    """Labels for every task of ``track``; one row in four masked out."""
    rng = np.random.default_rng(seed)
    labels = {}
    for spec in track.tasks:
        mask = np.ones(rows, dtype=bool)
        mask[rng.permutation(rows)[: rows // 4]] = False
        labels[spec.name] = TaskLabels(values=_label_values(spec, rng, rows), mask=mask)
    return labels


def _label_values(spec: TaskSpec, rng: np.random.Generator, rows: int) -> np.ndarray:
    if spec.kind == "multiclass":
        return (np.arange(rows) % spec.width).astype(np.int64)[rng.permutation(rows)]
    if spec.kind == "multilabel":
        values = (rng.random((rows, spec.width)) < 0.5).astype(np.float32)
        values[0], values[1] = 1.0, 0.0  # every label has a positive and a negative
        return values
    low, high = spec.value_range or (-1.0, 1.0)
    return rng.uniform(low, high, size=(rows, spec.width)).astype(np.float32)


def random_outputs(track: "Track", seed: int = 0, rows: int = ROWS) -> dict[str, torch.Tensor]:
    """Raw model outputs (logits; regression values) ``[rows, width]`` per task."""
    generator = torch.Generator().manual_seed(seed)
    return {spec.name: torch.randn(rows, spec.width, generator=generator) for spec in track.tasks}


def random_predictions(track: "Track", seed: int = 0, rows: int = ROWS) -> "Predictions":
    """Predictions as a model hands them to scoring and ensembles: class probabilities,
    label probabilities, regression values inside the task's range."""
    predictions = {}
    for spec, raw in zip(track.tasks, random_outputs(track, seed, rows).values()):
        if spec.kind == "multiclass":
            predictions[spec.name] = raw.softmax(dim=1)
        elif spec.kind == "multilabel":
            predictions[spec.name] = raw.sigmoid()
        else:
            low, high = spec.value_range or (-1.0, 1.0)
            predictions[spec.name] = low + (high - low) * raw.sigmoid()
    return predictions

