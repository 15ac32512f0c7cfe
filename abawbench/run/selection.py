"""The selection split: where epochs, early stopping and AU thresholds are chosen.

``validation``: on the split that is also reported (what the ABAW4 teams did; optimistic).
``train-holdout``: on a part of the training split that is never trained on, so the reported
validation score decided nothing; in ``lsd`` this keeps every real image out of training
decisions, as the track's premise (learn from synthetic data) requires.

The holdout is drawn once per training split with a fixed seed (:data:`HOLDOUT_SEED`), the same
for every entry and seed, so entries are trained and selected on the same rows. It follows the
track's resampling unit: where every image is its own unit it is stratified by the class of the
track's first multiclass task (each class keeps its share); where images come in groups (the
frames of a video) whole groups are held out, so no video is both trained on and selected on.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import replace

import numpy as np

from abawbench.data.index import SampleIndex
from abawbench.errors import ConfigError
from abawbench.tracks import Track

HOLDOUT_SEED = 0
"""Seed of the holdout draw: fixed, so every entry and seed shares one holdout."""

SELECTION_SPLIT = "selection"
"""Name of the holdout split beside ``train``, ``validation`` and ``test`` while training."""


def holdout_rows(track: Track, train: SampleIndex, fraction: float) -> np.ndarray:
    """Sorted row indices of ``train`` to hold out: about ``fraction`` of its rows, at least one
    row (or group) held out and at least one kept."""
    groups = np.unique(track.resampling_unit(train.paths), return_inverse=True)[1]
    count = int(groups.max()) + 1 if len(groups) else 0
    if count < 2:
        raise ConfigError(f"selection train-holdout: the training split has {count} "
                          f"{track.resampling_unit_name}(s); at least 2 are needed to hold one out")
    rng = np.random.default_rng(HOLDOUT_SEED)
    if count == len(train):
        chosen = _stratified(_strata(track, train), fraction, rng)
    else:
        chosen = _whole_groups(groups, count, fraction, rng)
    return np.sort(chosen)


def _strata(track: Track, train: SampleIndex) -> np.ndarray:
    """Stratum of every row: the class of the first multiclass task (unlabelled rows: -1)."""
    for spec in track.tasks:
        if spec.kind == "multiclass" and spec.name in train.labels:
            column = train.labels[spec.name]
            return np.where(column.mask, column.values, -1).astype(np.int64)
    return np.zeros(len(train), dtype=np.int64)


def _stratified(strata: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    chosen = []
    for stratum in np.unique(strata):
        rows = np.flatnonzero(strata == stratum)
        take = int(round(fraction * len(rows)))
        chosen.append(rng.permutation(rows)[:take])
    picked = np.concatenate(chosen)
    if picked.size == 0:  # every stratum too small to give a row: hold out one row
        picked = rng.permutation(len(strata))[:1]
    if picked.size == len(strata):
        picked = picked[1:]
    return picked


def _whole_groups(groups: np.ndarray, count: int, fraction: float, rng: np.random.Generator) -> np.ndarray:
    sizes = np.bincount(groups, minlength=count)
    order = rng.permutation(count)
    taken = np.cumsum(sizes[order])
    wanted = max(1, min(count - 1, int(np.searchsorted(taken, fraction * len(groups))) + 1))
    return np.flatnonzero(np.isin(groups, order[:wanted]))


def subset(index: SampleIndex, rows: np.ndarray, split: str) -> SampleIndex:
    """The rows ``rows`` of ``index`` as a split of their own, with a fingerprint derived from
    the parent's and the rows (caches keyed by fingerprint never mix the two)."""
    digest = hashlib.sha256(f"{index.fingerprint}/{split}/".encode() + np.asarray(rows, np.int64).tobytes())
    return replace(index, split=split, paths=[index.paths[int(r)] for r in rows],
                   labels={task: column.take(rows) for task, column in index.labels.items()},
                   fingerprint=digest.hexdigest()[:16], notes=[])


def carve_holdout(track: Track, train: SampleIndex, fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """``(rows trained on, rows held out)`` of the training split."""
    held = holdout_rows(track, train, fraction)
    kept = np.setdiff1d(np.arange(len(train)), held, assume_unique=True)
    if not math.isfinite(fraction) or kept.size == 0:
        raise ConfigError(f"selection train-holdout: holdout_fraction {fraction} leaves nothing to train on")
    return kept, held
