"""Per-entry details a report shows beyond the leaderboard row: per-class F1, confusion
matrices, regression scatters, training curves and provenance.

Details are plain JSON values keyed by entry id (:attr:`Leaderboard.details`), so the
leaderboard JSON carries them and a report renders from a committed table without the runs
(:func:`abawbench.boards.inputs.read_leaderboard`). Numbers are summarised over an entry's
completed seeds the way the row is: per-class F1 is the mean over seeds (a class missing from
any seed is left out, never averaged over the seeds that have it), confusion matrices are
summed. The scatter of a regression task is drawn from the first completed seed's saved
predictions, thinned to at most :data:`SCATTER_POINTS` points so the JSON stays small; its CCC
is computed over every labelled row, not over the points drawn.
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any, Iterable, Sequence

from abawbench.data.origin import data_origin, origin_text
from abawbench.errors import AbawbenchError
from abawbench.results import RunResult

SCATTER_POINTS = 250


def with_recorded_origin(located: Iterable[tuple[Path, RunResult]]) -> list[tuple[Path, RunResult]]:
    """(result file, result) pairs, each result with its data origin: one written before
    origins were recorded gets it from its data tree when that tree is still on disk (never
    guessed otherwise)."""
    out = []
    for path, result in located:
        if not result.data_origin and result.data_root and Path(result.data_root).is_dir():
            origin = data_origin(result.data_root)
            if origin:
                result = result.model_copy(update={"data_origin": origin})
        out.append((path, result))
    return out


def collect_details(located: Iterable[tuple[Path, RunResult]], track: Any = None) -> dict[str, dict[str, Any]]:
    """Details of every entry among ``located`` ((result file, result) pairs, all seeds), keyed
    by entry id. ``track`` (a :class:`~abawbench.tracks.Track`) names the regression tasks whose
    scatter is drawn; without it no scatter is read."""
    by_entry: dict[str, list[tuple[Path, RunResult]]] = {}
    for path, result in located:
        by_entry.setdefault(result.entry, []).append((Path(path), result))
    return {entry: entry_details(sorted(group, key=lambda pair: pair[1].seed), track)
            for entry, group in by_entry.items()}


def entry_details(located: Sequence[tuple[Path, RunResult]], track: Any = None) -> dict[str, Any]:
    """One entry's details from all its seeds' (result file, result) pairs."""
    results = [result for _path, result in located]
    done = [pair for pair in located if pair[1].status == "completed"]
    return {
        "label": results[0].label,
        "per_class": _mean_per_class([result for _path, result in done]),
        "confusion": _summed_confusion([result for _path, result in done]),
        "history": {str(r.seed): _history(r) for r in results if _history(r)},
        "scatter": _scatter(*done[0], track) if done and track is not None else {},
        "provenance": _provenance(results),
    }


def _mean_per_class(done: Sequence[RunResult]) -> dict[str, dict[str, float]]:
    if not done:
        return {}
    out: dict[str, dict[str, float]] = {}
    for task, classes in done[0].per_class.items():
        means = {}
        for name in classes:
            values = [r.per_class.get(task, {}).get(name) for r in done]
            if None not in values:
                means[name] = statistics.fmean(values)
        out[task] = means
    return out


def _summed_confusion(done: Sequence[RunResult]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for task, matrix in (done[0].confusion.items() if done else ()):
        matrices = [r.confusion.get(task) for r in done]
        if any(m is None or len(m) != len(matrix) for m in matrices):
            continue  # seeds disagree on the classes: no sum is meaningful
        summed = [[sum(m[i][j] for m in matrices) for j in range(len(matrix[i]))] for i in range(len(matrix))]
        classes = list(done[0].per_class.get(task, {}))
        if len(classes) != len(matrix):
            classes = [str(i) for i in range(len(matrix))]
        out[task] = {"classes": classes, "matrix": summed}
    return out


def _history(result: RunResult) -> list[dict[str, Any]]:
    """The per-epoch record a result keeps (``RunResult.history``), as plain values; results
    written before it was kept have none."""
    records = result.history
    out = []
    for record in records:
        values = record.model_dump() if hasattr(record, "model_dump") else dict(record)
        out.append({"epoch": values.get("epoch"), "train_loss": values.get("train_loss"),
                    "selection_score": values.get("selection_score")})
    return out


def _scatter(path: Path, result: RunResult, track: Any) -> dict[str, dict[str, Any]]:
    """Predicted against true values of each regression output (thinned), with the CCC over
    every labelled row; empty when the predictions file (named relative to the result file
    ``path``) is gone or unreadable."""
    import numpy as np

    from abawbench.metrics import ccc
    from abawbench.results.files import read_prediction_labels, read_predictions

    regression = [spec for spec in track.tasks if spec.kind == "regression"]
    predictions_file = path.parent / result.predictions_file if result.predictions_file else None
    if not regression or predictions_file is None or not predictions_file.is_file():
        return {}
    try:
        found = read_predictions(predictions_file, "validation")
        labels = read_prediction_labels(predictions_file)
    except AbawbenchError:
        return {}
    if found is None:
        return {}
    _ids, predictions = found
    out: dict[str, dict[str, Any]] = {}
    for spec in regression:
        if spec.name not in predictions or spec.name not in labels:
            continue
        mask = np.asarray(labels[spec.name].mask, dtype=bool)
        pred = np.asarray(predictions[spec.name], dtype=np.float64)[mask].reshape(int(mask.sum()), -1)
        true = np.asarray(labels[spec.name].values, dtype=np.float64)[mask].reshape(int(mask.sum()), -1)
        step = max(1, -(-len(pred) // SCATTER_POINTS))  # ceil: at most SCATTER_POINTS points
        for column, name in enumerate(spec.names):
            if column >= pred.shape[1] or not len(pred):
                continue
            value = float(ccc(pred[:, column], true[:, column]))
            out[name] = {"ccc": value, "seed": result.seed,
                         "true": [round(float(v), 4) for v in true[::step, column]],
                         "pred": [round(float(v), 4) for v in pred[::step, column]]}
    return out


def weights_text(result: RunResult) -> str:
    """What the weights were: the pretrained files a backbone shipped with (file, licence, what
    they were trained on), else the run's ``weights`` setting (``random``, a file, a hub tag). A
    model with packaged weights is never shown as ``random``."""
    if "ensemble" in result.provenance:  # an ensemble's supplier is recorded under that role
        return "its members' (see each member's entry)"
    if not result.pretrained:
        return result.spec.weights
    return "; ".join(f"{part}: {record.get('file', '?')} ({record.get('licence', 'licence unknown')}; "
                     f"trained on {record.get('trained_on', 'unknown data')})"
                     for part, record in sorted(result.pretrained.items()))


def _provenance(results: Sequence[RunResult]) -> dict[str, Any]:
    """Where the entry's numbers come from: data, weights, seeds, commits, versions."""
    first = results[0]
    return {
        "dataset": first.dataset,
        "origin": origin_text(first.data_origin) or "as read by the dataset plugin (no generator manifest)",
        "fingerprints": dict(first.dataset_fingerprints),
        "split_sizes": dict(first.split_sizes),
        "model": first.spec.model,
        "weights": weights_text(first),
        "loss": first.spec.loss,
        "protocol": f"{first.spec.protocol.name}/{first.spec.protocol.head}",
        "selection": first.selection,
        "seeds": [r.seed for r in results],
        "failed_seeds": [r.seed for r in results if r.status != "completed"],
        "best_epochs": {str(r.seed): r.best_epoch for r in results if r.best_epoch is not None},
        "commits": sorted({r.git_commit or "unknown" for r in results}),
        "versions": dict(first.versions),
        "created": sorted(r.created_at for r in results),
        "device": first.device,
    }
