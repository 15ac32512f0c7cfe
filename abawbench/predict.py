"""Submission files from a trained entry.

The run already stored test-split probabilities beside the result when the data had a test
split; otherwise the trained weights are reloaded and applied to the test split of ``--data``.
The track writes the file (:meth:`abawbench.tracks.Track.write_submission`): it knows the
challenge's format and decision rules; this module only gathers the predictions. It reads
results, never the runner, so predicting cannot start a training run.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from abawbench.config import RunConfig
from abawbench.device import resolve_device
from abawbench.errors import ConfigError, DataFormatError
from abawbench.plugins import get_host
from abawbench.results import RunResult, read_predictions, read_result, read_weights
from abawbench.run.features import RunFeatures, build_backbone
from abawbench.run.plan import cache_root_of, prepare_data
from abawbench.tracks import Track
from abawbench.training.finetune import predict_with_network
from abawbench.training.probe import PROBE_KIND, predict_with_probe
from abawbench.training.zero_shot import ZERO_SHOT_KIND, map_probabilities


def recompute_predictions(result: RunResult, result_dir: Path, data: Path,
                          split: str) -> tuple[list[str], dict[str, np.ndarray]]:
    """Rebuild the trained entry and predict ``split`` of the dataset at ``data``."""
    if result.weights_file is None:
        raise ConfigError(f"{result_dir}: entry {result.entry!r} has no trained weights (an ensemble?); "
                          "predict from its stored test predictions, i.e. without --data")
    try:
        config = RunConfig.model_validate(result.config | {"data": str(data), "seeds": [result.seed]})
    except ValueError as exc:
        raise ConfigError(f"{result_dir}: the result's configuration cannot be rebuilt: {exc}") from None
    host = get_host()
    track = host.tracks.get(config.track)
    device = resolve_device(config.device)
    cache_root = cache_root_of(config)
    prepared = prepare_data(host, config, track, cache_root)
    if split not in prepared.splits:
        raise DataFormatError(f"{data}: no {split} split found")
    state = read_weights(result_dir / result.weights_file)
    spec, protocol = result.spec, config.protocol
    index = prepared.splits[split]
    if state["kind"] == ZERO_SHOT_KIND:  # nothing trained: the model's classifier, mapped again
        features = RunFeatures(host, config, prepared.splits, device, cache_root, progress=False)
        probabilities, _ = features.expression_probabilities(spec.model, split)
        preds = {state["task"]: map_probabilities(probabilities, state["mapping"].numpy())}
    elif state["kind"] == PROBE_KIND:
        features = RunFeatures(host, config, prepared.splits, device, cache_root, progress=False)
        preds = predict_with_probe(state, features.features(spec.model, split), track.tasks, protocol.head)
    else:
        backbone = build_backbone(host, spec.model, spec.weights, protocol.image_size)
        preds = predict_with_network(state, backbone, track.tasks, protocol.head, index, device,
                                     batch_size=protocol.batch_size)
    return list(index.paths), {task: value.numpy() for task, value in preds.items()}


def validation_tuned_thresholds(result: RunResult, track: Track, where: Path) -> np.ndarray:
    """The thresholds tuned on validation for the track's one multilabel task."""
    multilabel = [task.name for task in track.tasks if task.kind == "multilabel"]
    if len(multilabel) != 1:
        raise ConfigError(f"track {track.name!r} has {len(multilabel)} multilabel tasks; "
                          "tuned thresholds need exactly one")
    tuned = result.tuned.get(multilabel[0])
    if not tuned:
        raise ConfigError(f"{where}: no tuned {multilabel[0]} thresholds recorded (track {result.track})")
    return np.asarray(tuned["thresholds"])


def predict_entry(result_file: Path, out: Path, data: Path | None = None, tuned_thresholds: bool = False,
                  split: str = "test") -> int:
    """Write the submission for one (entry, seed) result; returns the number of rows written."""
    result = read_result(result_file)
    if result.status != "completed":
        raise ConfigError(f"{result_file}: the run failed ({result.error}); nothing to predict with")
    track = get_host().tracks.get(result.track)
    if result.absent_tasks:
        raise ConfigError(f"{result_file}: the entry predicts no {', '.join(result.absent_tasks)} (a zero-shot "
                          f"expression model), which a {track.name} submission needs")
    stored = None
    if data is None and result.predictions_file:
        stored = read_predictions(result_file.parent / result.predictions_file, split)  # names a bad file itself
    if stored is None:
        if data is None:
            raise ConfigError(f"{result_file}: no stored {split} predictions; pass --data with a {split} split")
        stored = recompute_predictions(result, result_file.parent, data, split)
    sample_ids, preds = stored
    thresholds = validation_tuned_thresholds(result, track, result_file) if tuned_thresholds else None
    track.write_submission(out, sample_ids, preds, au_thresholds=thresholds)
    return len(sample_ids)
