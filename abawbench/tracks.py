"""The track contract: label spaces and scoring, one source of truth per challenge track.

A concrete track is a plugin registered through ``abawbench_register_tracks`` (the built-in
ones are ABAW4's, docs/abaw4.md). Everything that needs class names, orders, value ranges, the
score or the submission file of a track asks the :class:`Track` object, never hard-codes them
and never compares a track's name.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Mapping, Sequence

import torch

from abawbench.labels import LabelSet, TaskSpec

if TYPE_CHECKING:
    import numpy as np


@dataclass
class TrackScore:
    """The outcome of scoring one set of predictions.

    ``primary`` is the official score of the track; ``sub_scores`` hold the terms it is made of
    (e.g. ``ccc_valence``, ``f1_expr``); ``per_class`` maps a task to per-class (or per-AU) F1;
    ``confusion`` maps a multiclass task to its confusion matrix (rows: true, cols: predicted).
    """

    primary: float
    sub_scores: dict[str, float] = field(default_factory=dict)
    per_class: dict[str, dict[str, float]] = field(default_factory=dict)
    confusion: dict[str, list[list[int]]] = field(default_factory=dict)
    absent: list[str] = field(default_factory=list)
    """Tasks the predictions declared absent (:func:`absent_tasks`; a zero-shot model predicts
    expressions only): their terms are missing from ``sub_scores``, not zero, and ``primary``
    is partial, over the present terms only. Empty for a complete score."""


ROUNDING_SLACK = 1e-6
"""How far a score may stray outside its range by floating-point rounding alone (a perfect CCC
computed from float32 moments can land a hair above 1) before :meth:`Track.check_score` fails it."""


Predictions = Mapping[str, torch.Tensor]
"""Model outputs keyed by task: regression values ``[N, K]``, class probabilities ``[N, C]``,
multilabel probabilities ``[N, K]``. Probabilities (not logits) so ensembles can average them.
A task predicted as ``[N, 0]`` (no columns) is declared absent: the model cannot predict it
(:func:`absent_tasks`); a task missing from the mapping is an error, as ever."""


def absent_tasks(predictions: Predictions) -> list[str]:
    """The tasks ``predictions`` declare absent (zero columns), in mapping order. A track that
    can score without them leaves their terms out (``TrackScore.absent``), never scores them 0."""
    return [task for task, value in predictions.items()
            if getattr(value, "ndim", 0) == 2 and value.shape[1] == 0]


class Track(ABC):
    """A challenge track. Subclasses set the class attributes and implement :meth:`score`."""

    name: str
    description: str
    tasks: tuple[TaskSpec, ...]
    primary_metric: str
    higher_is_better: bool = True
    default_loss: str
    """Name of the loss plugin a run uses when the configuration names none."""
    default_selection: str = "validation"
    """Where a run selects epochs and thresholds when the configuration does not say:
    ``train-holdout`` (a part of the training split) or ``validation`` (docs/statistics.md)."""
    resampling_unit_name: str = "image"
    """What one bootstrap draw takes (see :meth:`resampling_unit`), as results record it."""

    def resampling_unit(self, sample_ids: Sequence[str]) -> "np.ndarray":
        """Group id ``int64 [N]`` of every row: rows that are not independent of each other
        (the frames of one video) share a group, and the bootstrap draws whole groups. By
        default every image is its own group; a track whose images come in correlated groups
        overrides this and :attr:`resampling_unit_name`."""
        import numpy as np

        return np.arange(len(sample_ids), dtype=np.int64)

    def combine_task_scores(self, tasks: Mapping[str, torch.Tensor]) -> "dict[str, torch.Tensor] | None":
        """The primary score and sub-scores (keys: :attr:`primary_metric` and the sub-score
        names of :meth:`score`) from per-task scores of many resamples at once: multiclass
        macro F1 ``[B]``, multilabel mean F1 ``[B]``, regression CCC per column ``[B, K]``.

        Lets the bootstrap score a thousand resamples in one vectorised pass
        (:mod:`abawbench.stats.clusters`). None (the default) means the track's score is not
        such a combination, and each resample is scored by :meth:`score` instead (slower)."""
        return None

    def task(self, name: str) -> TaskSpec:
        """The task called ``name`` (KeyError with the known names otherwise)."""
        for spec in self.tasks:
            if spec.name == name:
                return spec
        raise KeyError(f"track {self.name!r} has no task {name!r}; tasks: {self.task_names}")

    @property
    def task_names(self) -> tuple[str, ...]:
        return tuple(spec.name for spec in self.tasks)

    def validate_labels(self, labels: LabelSet) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """Check every task's labels against its spec; ``(values, mask)`` tensors per task.

        Raises :class:`abawbench.errors.MetricInputError` for a missing task, bad shape or a
        value outside the task's label space (only rows whose mask is True are checked).
        """
        from abawbench.errors import MetricInputError
        from abawbench.metrics import validate_task_labels

        missing = [spec.name for spec in self.tasks if spec.name not in labels]
        if missing:
            raise MetricInputError(f"track {self.name!r}: labels lack task(s) {missing}")
        return {spec.name: validate_task_labels(spec, labels[spec.name]) for spec in self.tasks}

    def class_counts(self, labels: LabelSet) -> dict[str, "np.ndarray"]:
        """Per-class (multiclass) or per-label positive (multilabel) counts of labelled rows,
        for :class:`abawbench.specs.LossContext`; regression tasks are left out."""
        from abawbench.metrics import task_class_counts

        counts = {}
        for spec in self.tasks:
            if spec.name in labels:
                tensor = task_class_counts(spec, labels[spec.name])
                if tensor is not None:
                    counts[spec.name] = tensor.numpy()
        return counts

    def label_counts(self, labels: LabelSet) -> dict[str, int]:
        """Rows whose label is present, per task (``LossContext.label_counts``)."""
        from abawbench.metrics import label_tensors

        return {
            spec.name: int(label_tensors(labels[spec.name], spec.name)[1].sum())
            for spec in self.tasks
            if spec.name in labels
        }

    def score_ranges(self) -> Mapping[str, tuple[float, float]]:
        """The closed interval each score can take, by name (the primary metric and the
        sub-scores); a score not named here must only be finite.

        A score outside its interval is a bug in the scoring, not a result: the run fails the
        entry (:meth:`check_score`) rather than rank it. A track overrides this with the bounds
        its scores have by construction (e.g. an F1 in [0, 1])."""
        return {}

    def check_score(self, score: TrackScore) -> None:
        """Raise :class:`abawbench.errors.MetricInputError` naming every score of ``score``
        that is not finite or lies outside :meth:`score_ranges`.

        Why here and not in the metrics: a NaN or impossible score that reached a result file
        would rank (NaN sorts anywhere) and pass ``compare``; the track knows the bounds."""
        from abawbench.errors import MetricInputError

        ranges = self.score_ranges()
        problems = []
        for name, value in {self.primary_metric: score.primary, **score.sub_scores}.items():
            low, high = ranges.get(name, (-math.inf, math.inf))
            if not math.isfinite(value):
                problems.append(f"{name} = {value} is not finite")
            elif not low - ROUNDING_SLACK <= value <= high + ROUNDING_SLACK:
                problems.append(f"{name} = {value} is outside [{low}, {high}]")
        if problems:
            raise MetricInputError(f"track {self.name!r}: invalid score: {'; '.join(problems)}")

    def write_submission(
        self,
        path: Path,
        sample_ids: Sequence[str],
        predictions: Mapping[str, "np.ndarray"],
        *,
        au_thresholds: "np.ndarray | None" = None,
    ) -> None:
        """Write the challenge's submission file for ``predictions`` (probabilities per task,
        rows in ``sample_ids`` order; ids as the dataset reader stored them) to ``path``.

        A track with an official submission format overrides this; the default refuses.
        """
        from abawbench.errors import ConfigError

        raise ConfigError(f"track {self.name!r} defines no submission file format")

    @abstractmethod
    def score(
        self,
        predictions: Predictions,
        labels: LabelSet,
        *,
        au_thresholds: torch.Tensor | None = None,
    ) -> TrackScore:
        """Score predictions exactly as the challenge does, over rows whose label is present."""
