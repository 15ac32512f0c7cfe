"""Track ``lsd``: learning from synthetic data, 6 expressions, scored by macro F1."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import torch

from abawbench.labels import LabelSet, TaskSpec
from abawbench.tracks import Predictions, Track, TrackScore

from abawbench_builtins.tracks.scoring import score_tasks

LSD_CLASSES = ("ANGER", "DISGUST", "FEAR", "HAPPINESS", "SADNESS", "SURPRISE")


class LSDTrack(Track):
    name = "lsd"
    description = (
        "ABAW4 Learning from Synthetic Data: train on synthetic faces, classify 6 expressions "
        "on real ones; macro F1 over the 6 classes"
    )
    tasks = (TaskSpec(name="expr", kind="multiclass", names=LSD_CLASSES),)
    primary_metric = "macro_f1"
    default_loss = "cross-entropy"
    # The track's premise is learning from synthetic data: no real image may decide training,
    # so epochs are chosen on a held-out part of the synthetic training split.
    default_selection = "train-holdout"

    def combine_task_scores(self, tasks: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Macro F1 per resample, as :meth:`score` gives it."""
        return {"macro_f1": tasks["expr"]}

    def score_ranges(self) -> Mapping[str, tuple[float, float]]:
        """Macro F1 is a mean of per-class F1s, each in [0, 1]."""
        return {"macro_f1": (0.0, 1.0)}

    def score(
        self,
        predictions: Predictions,
        labels: LabelSet,
        *,
        au_thresholds: torch.Tensor | None = None,
    ) -> TrackScore:
        """Macro F1 over all 6 classes (a class never seen nor predicted scores 0)."""
        result = score_tasks(self, predictions, labels)["expr"]
        return TrackScore(
            primary=result.value,
            sub_scores={"macro_f1": result.value},
            per_class={"expr": result.per_class},
            confusion={"expr": result.confusion or []},
        )

    def write_submission(self, path: Path, sample_ids: Sequence[str], predictions: Mapping[str, np.ndarray],
                         *, au_thresholds: np.ndarray | None = None) -> None:
        """The LSD submission file: the expression by argmax, images named as the test release
        list names them. The track has no AUs: ``au_thresholds`` is ignored."""
        from abawbench_builtins.abaw4.layout import release_name
        from abawbench_builtins.abaw4.submission import write_lsd_submission

        names = [release_name(sample) for sample in sample_ids]
        write_lsd_submission(path, names, np.asarray(predictions["expr"]).argmax(axis=1))
