"""Scoring predictions for a result file: official scores, bootstrap intervals, thresholds of
multilabel tasks tuned on validation. Pure functions over predictions and labels; the track
does the scoring."""

from __future__ import annotations

from typing import Any

from abawbench.bootstrap import percentile_interval, resampled
from abawbench.labels import LabelSet, take_labels
from abawbench.metrics import tune_au_thresholds
from abawbench.results import ScoreWithInterval
from abawbench.tracks import Predictions, Track, TrackScore, absent_tasks


def score_with_intervals(
    track: Track,
    predictions: Predictions,
    labels: LabelSet,
    *,
    n_resamples: int,
    seed: int,
    confidence: float = 0.95,
) -> tuple[TrackScore, ScoreWithInterval, dict[str, ScoreWithInterval]]:
    """The official score plus percentile bootstrap intervals of the primary and every
    sub-score, all from the same resamples (an image is drawn with all its labels)."""
    full = track.score(predictions, labels)
    if n_resamples <= 0:
        return (full, ScoreWithInterval(value=full.primary),
                {k: ScoreWithInterval(value=v) for k, v in full.sub_scores.items()})
    rows = len(next(iter(labels.values())))
    resamples = resampled(
        lambda idx: track.score({t: p[idx] for t, p in predictions.items()}, take_labels(labels, idx.numpy())),
        rows, n_resamples, seed,
    )

    def interval(value: float, values: list[float]) -> ScoreWithInterval:
        low, high = percentile_interval(values, confidence)
        return ScoreWithInterval(value=value, ci_low=low, ci_high=high)

    primary = interval(full.primary, [r.primary for r in resamples])
    subs = {key: interval(value, [r.sub_scores[key] for r in resamples]) for key, value in full.sub_scores.items()}
    return full, primary, subs


def tuned_threshold_report(track: Track, predictions: Predictions, labels: LabelSet) -> dict[str, Any]:
    """For each multilabel task: thresholds tuned on these rows and the F1 they reach, beside
    the F1 at the fixed 0.5 threshold. Reported, never used in place of the official score."""
    report: dict[str, Any] = {}
    for task in track.tasks:
        if task.kind != "multilabel" or task.name not in labels or task.name in absent_tasks(predictions):
            continue
        column = labels[task.name]
        if not column.mask.any():
            continue
        tuned = tune_au_thresholds(predictions[task.name], column.values, column.mask)
        report[task.name] = {
            "thresholds": [round(float(t), 4) for t in tuned.thresholds],
            "f1_mean_tuned": tuned.mean_tuned,
            "f1_mean_fixed": tuned.mean_fixed,
            "note": "tuned and measured on validation: optimistic; the official score uses 0.5",
        }
    return report
