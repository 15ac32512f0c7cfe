"""The ``zero-shot`` protocol: a model's own expression classifier, scored without training.

A model trained to recognise expressions (its backbone carries an
:class:`~abawbench.specs.ExpressionHead`) predicts its own classes; they are mapped to the
track's expression classes by name, through :data:`EXPRESSION_SYNONYMS` (``"happy"`` is
``"HAPPINESS"``). A track class no model class names gets no probability mass (``Other`` of
``mtl``); a model class no track class names (``neutral`` for ``lsd``) is dropped and the rest
renormalised, so the prediction is the model's distribution conditioned on the track's classes.
Tasks the model cannot predict (valence/arousal, AUs) are predicted with no columns, which
declares them absent (:func:`abawbench.tracks.absent_tasks`): the track scores them as absent,
never as zero, and the result lists them (``RunResult.absent_tasks``).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Mapping, Sequence

import numpy as np
import torch

from abawbench.errors import ConfigError
from abawbench.labels import TaskSpec
from abawbench.training.loop import Outcome

if TYPE_CHECKING:
    from abawbench.data.index import SampleIndex
    from abawbench.run.features import RunFeatures
    from abawbench.tracks import Track

log = logging.getLogger(__name__)

ZERO_SHOT_KIND = "zero-shot"
"""``kind`` of a zero-shot entry's saved state (the class mapping; nothing was trained)."""

EXPRESSION_SYNONYMS: dict[str, tuple[str, ...]] = {
    "anger": ("anger", "angry"),
    "disgust": ("disgust", "disgusted"),
    "fear": ("fear", "fearful", "afraid", "scared"),
    "happiness": ("happiness", "happy", "joy"),
    "sadness": ("sadness", "sad"),
    "surprise": ("surprise", "surprised"),
    "neutral": ("neutral",),
    "contempt": ("contempt",),
}
"""Names of one expression across datasets (compared case-insensitively)."""


def expression_concept(name: str) -> str:
    """The canonical expression a class name denotes (``"HAPPINESS"``, ``"happy"`` ->
    ``"happiness"``); a name no synonym list holds stands for itself, lower-cased."""
    lowered = name.strip().lower()
    for concept, names in EXPRESSION_SYNONYMS.items():
        if lowered in names:
            return concept
    return lowered


def class_mapping(model_classes: Sequence[str], track_classes: Sequence[str]) -> np.ndarray:
    """``[len(model_classes), len(track_classes)]`` 0/1 matrix: which track class each model
    class is. Refused when no class maps at all (nothing could be scored)."""
    track_concepts = [expression_concept(name) for name in track_classes]
    matrix = np.zeros((len(model_classes), len(track_classes)), dtype=np.float32)
    for row, name in enumerate(model_classes):
        concept = expression_concept(name)
        if concept in track_concepts:
            matrix[row, track_concepts.index(concept)] = 1.0
    if not matrix.any():
        raise ConfigError(f"none of the model's classes {list(model_classes)} names one of the track's "
                          f"expression classes {list(track_classes)}")
    return matrix


def map_probabilities(probabilities: np.ndarray, mapping: np.ndarray) -> torch.Tensor:
    """Model-class probabilities ``[N, M]`` -> track-class probabilities ``[N, T]``: the mass of
    the mapped classes, renormalised to sum to 1 (a row with no mapped mass at all becomes
    uniform over the track classes that have a model class)."""
    mapped = probabilities.astype(np.float64) @ mapping
    totals = mapped.sum(axis=1, keepdims=True)
    covered = mapping.any(axis=0).astype(np.float64)
    uniform = np.broadcast_to(covered / covered.sum(), mapped.shape)
    result = np.where(totals > 0, mapped / np.where(totals > 0, totals, 1.0), uniform)
    return torch.from_numpy(result.astype(np.float32))


def expression_task(track: "Track") -> TaskSpec:
    """The track's one multiclass task (its expressions)."""
    tasks = [spec for spec in track.tasks if spec.kind == "multiclass"]
    if len(tasks) != 1:
        raise ConfigError(f"zero-shot needs a track with exactly one multiclass (expression) task; track "
                          f"{track.name!r} has {len(tasks)}")
    return tasks[0]


def zero_shot_outcome(features: "RunFeatures", model: str, splits: Mapping[str, "SampleIndex"],
                      track: "Track") -> Outcome:
    """Validation (and test) predictions of ``model``'s own expression classifier, mapped to
    ``track``'s expression task; the other tasks are absent from the predictions."""
    task = expression_task(track)
    predictions: dict[str, dict[str, torch.Tensor]] = {}
    mapping = None
    model_classes: tuple[str, ...] = ()
    for split in ("validation", "test"):
        if split not in splits:
            continue
        probabilities, model_classes = features.expression_probabilities(model, split)
        if mapping is None:
            mapping = class_mapping(model_classes, task.names)
            _log_mapping(model, model_classes, task.names, mapping)
        rows = probabilities.shape[0]
        predictions[split] = {other.name: torch.empty(rows, 0) for other in track.tasks}  # absent (no columns)
        predictions[split][task.name] = map_probabilities(probabilities, mapping)
    assert mapping is not None, "a run always has a validation split"
    state = {"kind": ZERO_SHOT_KIND, "model_classes": list(model_classes), "task": task.name,
             "track_classes": list(task.names), "mapping": torch.from_numpy(mapping)}
    return Outcome(validation=predictions["validation"], test=predictions.get("test"),
                   best_epoch=None, epochs_run=0, state=state)  # type: ignore[arg-type]  # nothing trained


def _log_mapping(model: str, model_classes: Sequence[str], track_classes: Sequence[str], mapping: np.ndarray) -> None:
    dropped = [name for name, row in zip(model_classes, mapping) if not row.any()]
    empty = [name for name, column in zip(track_classes, mapping.T) if not column.any()]
    log.info("zero-shot %s: model classes %s dropped (renormalised without them); track classes %s get no mass",
             model, dropped or "none", empty or "none")
