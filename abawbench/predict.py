"""Official submission files from a trained entry.

The run already stored test-split probabilities beside the result when the data had a test
split; otherwise the trained weights are reloaded and applied to the test split of ``--data``.
Decisions follow the challenge: expression = argmax, AU = probability >= threshold (0.5 unless
the entry's validation-tuned thresholds are asked for), VA clipped to [-1, 1].
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from abawbench.config import RunConfig
from abawbench.device import prepare_module
from abawbench.errors import ConfigError, DataFormatError
from abawbench.heads import BackboneWithHeads, TaskHeads, build_heads, to_probabilities
from abawbench.results import RunResult, read_predictions, read_result

SUBMISSION_WRITERS = {"lsd", "mtl"}


def recompute_predictions(result: RunResult, result_dir: Path, data: Path, split: str) -> tuple[list[str], dict[str, np.ndarray]]:
    """Rebuild the trained entry and predict ``split`` of the dataset at ``data``."""
    from abawbench.protocol import Runner, decoded_batches, eval_transform, predict_images, prepare_data

    if result.weights_file is None:
        raise ConfigError(f"{result_dir}: entry {result.entry!r} has no trained weights (an ensemble?); "
                          "predict from its stored test predictions, i.e. without --data")
    try:
        config = RunConfig.model_validate(result.config | {"data": str(data), "seeds": [result.seed]})
    except ValueError as exc:
        raise ConfigError(f"{result_dir}: the result's configuration cannot be rebuilt: {exc}") from None
    runner = Runner(config, progress=False)
    runner.data = prepare_data(runner.host, config, runner.track, runner.cache_root)
    if split not in runner.data.splits:
        raise DataFormatError(f"{data}: no {split} split found (release list and images)")
    state = torch.load(result_dir / result.weights_file, map_location="cpu", weights_only=True)
    tasks = runner.track.tasks
    spec = result.spec
    if state["kind"] == "linear-probe":
        features = runner.features(spec.model, split)
        normalised = (torch.from_numpy(features) - state["feature_mean"]) / state["feature_std"]
        heads = TaskHeads(normalised.shape[1], tasks, kind=spec.protocol.head)
        heads.load_state_dict(state["heads"])
        heads.eval()
        with torch.no_grad():
            preds = to_probabilities(tasks, heads(normalised.float()))
    else:
        from abawbench.specs import ModelOptions

        backbone = runner.host.models.get(spec.model).build(
            ModelOptions(weights=spec.weights, image_size=spec.protocol.image_size, extra={"seed": 0}))
        heads = build_heads(backbone, tasks, spec.protocol.head)
        network = BackboneWithHeads(backbone.module, heads)
        network.load_state_dict(state["network"])
        network = prepare_module(network, runner.device)
        preprocessing = eval_transform(backbone.data_config)
        batches = decoded_batches(runner.data.splits[split], preprocessing, runner.device,
                                  batch_size=spec.protocol.batch_size, num_workers=0)
        preds = predict_images(network, batches, runner.device, tasks, preprocessing.normalize)
    ids = list(runner.data.splits[split].paths)
    return ids, {task: value.numpy() for task, value in preds.items()}


def write_submission(track: str, path: Path, names: list[str], preds: dict[str, np.ndarray],
                     au_thresholds: np.ndarray | None = None) -> None:
    """The official submission file of ``track``: the track writes its own."""
    from abawbench.plugins import get_host

    get_host().tracks.get(track).write_submission(path, names, preds, au_thresholds=au_thresholds)


def predict_entry(result_file: Path, out: Path, data: Path | None = None, tuned_thresholds: bool = False,
                  split: str = "test") -> int:
    """Write the submission for one (entry, seed) result; returns the number of rows written."""
    result = read_result(result_file)
    if result.status != "completed":
        raise ConfigError(f"{result_file}: the run failed ({result.error}); nothing to predict with")
    stored = None
    if data is None and result.predictions_file:
        try:
            stored = read_predictions(result_file.parent / result.predictions_file, split)
        except OSError as exc:
            raise DataFormatError(f"{result_file}: cannot read its predictions file: {exc}") from None
    if stored is None:
        if data is None:
            raise ConfigError(f"{result_file}: no stored {split} predictions; pass --data with a {split} split")
        stored = recompute_predictions(result, result_file.parent, data, split)
    names, preds = stored
    thresholds = None
    if tuned_thresholds:
        tuned = result.tuned.get("au")
        if not tuned:
            raise ConfigError(f"{result_file}: no tuned AU thresholds recorded (track {result.track})")
        thresholds = np.asarray(tuned["thresholds"])
    # Test names are written as the release lists them: relative to the image folder.
    write_submission(result.track, out, [_release_name(n) for n in names], preds, thresholds)
    return len(names)


def _release_name(path: str) -> str:
    for prefix in ("cropped_aligned/", "test_set_images/"):
        if path.startswith(prefix):
            return path[len(prefix):]
    return path
