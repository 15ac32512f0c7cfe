"""Scoring predictions for a result file: official scores, cluster-bootstrap intervals, and the
thresholds of multilabel tasks tuned on the selection split. Pure functions over predictions
and labels; the track does the scoring and names the resampling unit."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from abawbench.labels import LabelSet
from abawbench.metrics import tune_au_thresholds
from abawbench.results import ResamplingRecord, ScoreWithInterval
from abawbench.stats.clusters import dense_groups, resampled_scores
from abawbench.stats.intervals import percentile_interval
from abawbench.tracks import Predictions, Track, TrackScore, absent_tasks


@dataclass
class ScoredPredictions:
    """The official score, its intervals, and what the board needs to pool seeds and pair
    entries: the primary score of every resample and how the resamples were drawn."""

    score: TrackScore
    primary: ScoreWithInterval
    sub_scores: dict[str, ScoreWithInterval]
    primary_resamples: list[float] = field(default_factory=list)
    resampling: ResamplingRecord | None = None


def score_and_resample(track: Track, predictions: Predictions, labels: LabelSet, *, n_resamples: int, seed: int,
                       sample_ids: Sequence[str] | None = None, confidence: float = 0.95) -> ScoredPredictions:
    """The official score plus percentile intervals of the primary and every sub-score, all from
    the same cluster resamples of the track's unit (:meth:`Track.resampling_unit` of
    ``sample_ids``; without ids every row is its own unit)."""
    full = track.score(predictions, labels)
    if n_resamples <= 0:
        return ScoredPredictions(full, ScoreWithInterval(value=full.primary),
                                 {k: ScoreWithInterval(value=v) for k, v in full.sub_scores.items()})
    rows = len(next(iter(labels.values())))
    if sample_ids is None:
        groups, unit = np.arange(rows, dtype=np.int64), "image"
    else:
        groups, unit = track.resampling_unit(list(sample_ids)), track.resampling_unit_name
    resamples = resampled_scores(track, predictions, labels, groups, n_resamples, seed)

    def interval(name: str, value: float) -> ScoreWithInterval:
        low, high = percentile_interval(resamples[name].numpy(), confidence)
        return ScoreWithInterval(value=value, ci_low=low, ci_high=high)

    return ScoredPredictions(
        score=full, primary=interval(track.primary_metric, full.primary),
        sub_scores={name: interval(name, value) for name, value in full.sub_scores.items()},
        primary_resamples=resamples[track.primary_metric].tolist(),
        resampling=ResamplingRecord(unit=unit, groups=dense_groups(groups)[1], resamples=n_resamples, seed=seed),
    )


def tuned_threshold_report(track: Track, predictions: Predictions, labels: LabelSet, *,
                           selection: tuple[Predictions, LabelSet] | None = None) -> dict[str, Any]:
    """For each multilabel task: thresholds tuned on the selection split and the F1 they reach
    on ``predictions`` (the reported split), beside the F1 at the fixed 0.5 threshold.

    ``selection`` holds the selection split's predictions and labels; None means the reported
    split is the selection split, so the tuned F1 is measured where it was tuned (optimistic,
    and said so). Reported, never used in place of the official score."""
    from abawbench.metrics import au_f1

    report: dict[str, Any] = {}
    for task in track.tasks:
        if task.kind != "multilabel" or task.name not in labels or task.name in absent_tasks(predictions):
            continue
        column = labels[task.name]
        if not column.mask.any():
            continue
        tune_on, tune_labels = selection if selection is not None else (predictions, labels)
        tuning = tune_labels[task.name]
        if not tuning.mask.any():
            continue
        tuned = tune_au_thresholds(tune_on[task.name], tuning.values, tuning.mask)
        f1_tuned = au_f1(predictions[task.name], column.values, column.mask, tuned.thresholds)
        f1_fixed = au_f1(predictions[task.name], column.values, column.mask)
        report[task.name] = {
            "thresholds": [round(float(t), 4) for t in tuned.thresholds],
            "f1_mean_tuned": float(f1_tuned.mean()),
            "f1_mean_fixed": float(f1_fixed.mean()),
            "tuned_on": "validation" if selection is None else "train-holdout",
            "note": ("tuned and measured on validation: optimistic; the official score uses 0.5"
                     if selection is None else
                     "tuned on the training holdout, measured on validation; the official score uses 0.5"),
        }
    return report
