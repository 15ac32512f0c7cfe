"""Track ``mtl``: valence/arousal, 8 expressions and 12 AUs on s-Aff-Wild2, scored by P_MTL."""

from __future__ import annotations

import posixpath
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from abawbench.labels import LabelSet, TaskSpec
from abawbench.metrics import DEFAULT_THRESHOLD
from abawbench.tracks import Predictions, Track, TrackScore, absent_tasks

from abawbench_builtins.tracks.scoring import MTLTerms, score_tasks

MTL_EXPRESSIONS = (
    "Neutral", "Anger", "Disgust", "Fear", "Happiness", "Sadness", "Surprise", "Other",
)
MTL_AUS = (
    "AU1", "AU2", "AU4", "AU6", "AU7", "AU10", "AU12", "AU15", "AU23", "AU24", "AU25", "AU26",
)


class MTLTrack(Track):
    name = "mtl"
    description = (
        "ABAW4 Multi-Task Learning on s-Aff-Wild2: valence/arousal (CCC), 8 expressions "
        "(macro F1), 12 AUs (mean F1); P_MTL = mean CCC + F1_expr + F1_AU, maximum 3"
    )
    tasks = (
        TaskSpec(name="va", kind="regression", names=("valence", "arousal"), value_range=(-1.0, 1.0)),
        TaskSpec(name="expr", kind="multiclass", names=MTL_EXPRESSIONS),
        TaskSpec(name="au", kind="multilabel", names=MTL_AUS),
    )
    primary_metric = "p_mtl"
    default_loss = "multitask"
    # The challenge's teams selected on validation; tables mark it as selected on the reported split.
    default_selection = "validation"
    resampling_unit_name = "video"

    def resampling_unit(self, sample_ids: Sequence[str]) -> np.ndarray:
        """One group per video: the folder part of the image name (frames of one video are
        strongly correlated, so resampling frames would make intervals too narrow)."""
        folders = [posixpath.dirname(sample) for sample in sample_ids]
        return np.unique(np.asarray(folders, dtype=object), return_inverse=True)[1].astype(np.int64)

    def combine_task_scores(self, tasks: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """P_MTL and its terms, per resample, exactly as :meth:`score` combines them."""
        valence, arousal = tasks["va"][:, 0], tasks["va"][:, 1]
        ccc_mean = (valence + arousal) / 2
        return {"p_mtl": ccc_mean + tasks["expr"] + tasks["au"], "ccc_valence": valence,
                "ccc_arousal": arousal, "ccc_mean": ccc_mean, "f1_expr": tasks["expr"], "f1_au": tasks["au"]}

    def score_ranges(self) -> Mapping[str, tuple[float, float]]:
        """Each CCC lies in [-1, 1] and each F1 in [0, 1] (docs/abaw4.md), so P_MTL, their mean
        CCC plus both F1s, lies in [-1, 3]."""
        ccc, f1 = (-1.0, 1.0), (0.0, 1.0)
        return {"p_mtl": (-1.0, 3.0), "ccc_valence": ccc, "ccc_arousal": ccc, "ccc_mean": ccc,
                "f1_expr": f1, "f1_au": f1}

    def score(
        self,
        predictions: Predictions,
        labels: LabelSet,
        *,
        au_thresholds: torch.Tensor | None = None,
    ) -> TrackScore:
        """P_MTL, each term over the rows where its label is present. AU probabilities are
        thresholded at 0.5 unless ``au_thresholds`` (one per AU, tuned elsewhere) are given.

        A task the predictions declare absent (zero columns: a zero-shot expression model has no
        VA or AUs) has its terms left out of the sub-scores, P_MTL is the sum of the present
        terms and ``absent`` names those tasks, so the score reads as partial, never as zeros. A
        task missing from ``predictions`` is refused, as ever."""
        absent = [task for task in self.task_names if task in absent_tasks(predictions)]
        if absent:
            return self._partial_score(score_tasks(self, predictions, labels, au_thresholds, allow_absent=True),
                                       absent)
        results = score_tasks(self, predictions, labels, au_thresholds)
        terms = MTLTerms(
            ccc_valence=results["va"].columns["valence"],
            ccc_arousal=results["va"].columns["arousal"],
            f1_expr=results["expr"].value,
            f1_au=results["au"].value,
        )
        return TrackScore(
            primary=terms.p_mtl,
            sub_scores={
                "ccc_valence": terms.ccc_valence,
                "ccc_arousal": terms.ccc_arousal,
                "ccc_mean": terms.ccc_mean,
                "f1_expr": terms.f1_expr,
                "f1_au": terms.f1_au,
            },
            per_class={"expr": results["expr"].per_class, "au": results["au"].per_class},
            confusion={"expr": results["expr"].confusion or []},
        )

    @staticmethod
    def _partial_score(results: Mapping[str, Any], absent: list[str]) -> TrackScore:
        """P_MTL over the tasks present in ``results`` (the others are listed in ``absent``)."""
        subs: dict[str, float] = {}
        if "va" in results:
            columns = results["va"].columns
            subs |= {"ccc_valence": columns["valence"], "ccc_arousal": columns["arousal"],
                     "ccc_mean": (columns["valence"] + columns["arousal"]) / 2}
        if "expr" in results:
            subs["f1_expr"] = results["expr"].value
        if "au" in results:
            subs["f1_au"] = results["au"].value
        primary = sum(value for name, value in subs.items() if name in ("ccc_mean", "f1_expr", "f1_au"))
        return TrackScore(
            primary=primary, sub_scores=subs,
            per_class={task: results[task].per_class for task in ("expr", "au") if task in results},
            confusion={"expr": results["expr"].confusion or []} if "expr" in results else {},
            absent=absent,
        )

    def write_submission(self, path: Path, sample_ids: Sequence[str], predictions: Mapping[str, np.ndarray],
                         *, au_thresholds: np.ndarray | None = None) -> None:
        """The MTL submission file: VA clipped to [-1, 1], expression by argmax, an AU is
        present when its probability reaches its threshold (0.5 unless ``au_thresholds``, one
        per AU, are given). Images are named as the test release list names them."""
        from abawbench_builtins.abaw4.layout import release_name
        from abawbench_builtins.abaw4.submission import write_mtl_submission

        thresholds = DEFAULT_THRESHOLD if au_thresholds is None else np.asarray(au_thresholds)[None, :]
        va, expr, au = (np.asarray(predictions[task]) for task in ("va", "expr", "au"))
        write_mtl_submission(
            path, [release_name(sample) for sample in sample_ids],
            np.clip(va, -1.0, 1.0), expr.argmax(axis=1), (au >= thresholds).astype(np.int64),
        )
