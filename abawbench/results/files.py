"""Result and prediction files: where they live under the output folder, and reading and
writing them.

Layout under the output folder::

    <output>/<track>/<entry>/seed<k>.json              RunResult (:mod:`abawbench.results.schema`)
    <output>/<track>/<entry>/seed<k>.predictions.npz   validation (and test) probabilities
    <output>/<track>/<entry>/seed<k>.head.pt           trained weights, for ``abawbench predict``

Every file is written through :mod:`abawbench.atomic`, so a crash never leaves a result that
looks complete. Tables (leaderboards) are views of these files.
"""

from __future__ import annotations

import io
import json
import zipfile
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Mapping, Sequence

from pydantic import ValidationError

from abawbench.atomic import atomic_write_bytes
from abawbench.errors import DataFormatError
from abawbench.results.schema import RunResult

if TYPE_CHECKING:
    import numpy as np

    from abawbench.labels import TaskLabels


def entry_dir(output: Path, track: str, entry_id: str) -> Path:
    return Path(output) / track / entry_id


def result_path(output: Path, track: str, entry_id: str, seed: int) -> Path:
    return entry_dir(output, track, entry_id) / f"seed{seed}.json"


def write_result(path: Path, result: RunResult) -> None:
    atomic_write_bytes(path, result.model_dump_json(indent=2).encode("utf-8"))


def read_result(path: Path) -> RunResult:
    """Parse one result file; a malformed file is a DataFormatError naming it."""
    try:
        return RunResult.model_validate_json(Path(path).read_bytes())
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()[:5]
        )
        raise DataFormatError(f"{path}: not a valid result file: {problems}") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise DataFormatError(f"{path}: cannot read result file: {exc}") from None


def iter_results(folder: Path, track: str | None = None) -> Iterator[tuple[Path, RunResult]]:
    """Every result file below ``folder`` (optionally only one track), in a stable order."""
    for path in sorted(Path(folder).rglob("seed*.json")):
        result = read_result(path)
        if track is None or result.track == track:
            yield path, result


def write_weights(path: Path, state: Mapping[str, Any]) -> None:
    """Store a trained entry's state (tensors and plain values, see :mod:`abawbench.training`)."""
    import torch

    buffer = io.BytesIO()
    torch.save(dict(state), buffer)
    atomic_write_bytes(path, buffer.getvalue())


def read_weights(path: Path) -> dict[str, Any]:
    """A state written by :func:`write_weights`; tensors and plain values only, so loading runs no code."""
    import torch

    return torch.load(path, map_location="cpu", weights_only=True)


# --------------------------------------------------------------------------- predictions files
#
# ``seed<k>.predictions.npz`` layout, written by the runner and by ensembles alike:
#   <split>/ids                      sample ids (image paths relative to the data root), per split
#   <split>/<task>                   probabilities (multiclass, multilabel) or values (regression)
#   validation/labels/<task>/values  validation labels, so ensembles fit and score without data
#   validation/labels/<task>/mask
#   selection/...                    with selection train-holdout: the holdout's ids, predictions
#   selection/labels/<task>/...      and labels, so ensemble weights are fitted where the
#                                    members were selected, never on validation


def write_predictions(
    path: Path,
    ids: Mapping[str, Sequence[str]],
    predictions: Mapping[str, Mapping[str, Any]],
    labels: Mapping[str, "TaskLabels"],
    split_labels: Mapping[str, Mapping[str, "TaskLabels"]] | None = None,
) -> None:
    """Store per-split predictions (numpy arrays or tensors) and validation labels atomically;
    ``split_labels`` adds the labels of other splits (the selection holdout's)."""
    import numpy as np

    arrays: dict[str, np.ndarray] = {}
    for split, split_predictions in predictions.items():
        arrays[f"{split}/ids"] = np.asarray(list(ids[split]))
        for task, values in split_predictions.items():
            array = values.detach().cpu().numpy() if hasattr(values, "detach") else np.asarray(values)
            arrays[f"{split}/{task}"] = array
    for split, split_columns in {"validation": labels, **(split_labels or {})}.items():
        for task, column in split_columns.items():
            arrays[f"{split}/labels/{task}/values"] = column.values
            arrays[f"{split}/labels/{task}/mask"] = column.mask
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    atomic_write_bytes(path, buffer.getvalue())


@contextmanager
def _open_predictions(path: Path) -> Iterator[Any]:
    """The archive at ``path``; a truncated, overwritten or foreign file is a DataFormatError
    naming it, so ``predict`` and ``ensemble`` say which file to regenerate instead of failing
    deep inside numpy."""
    import numpy as np

    try:
        archive = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise DataFormatError(f"{path}: predictions file is missing") from None
    except OSError as exc:
        raise DataFormatError(f"{path}: cannot read the predictions file: {exc.strerror or exc}") from None
    except (ValueError, EOFError, zipfile.BadZipFile):
        # numpy's own words here ("pickled data") mislead: the file is simply not an archive
        raise DataFormatError(f"{path}: not a readable predictions archive (.npz); "
                              "rerun the entry to write it again") from None
    if not hasattr(archive, "files"):  # a bare .npy array, not the archive the runner writes
        raise DataFormatError(f"{path}: not a predictions archive (.npz); rerun the entry to write it again")
    with archive:
        try:
            yield archive
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
            raise DataFormatError(f"{path}: a member of the predictions file is unreadable ({exc}); "
                                  "rerun the entry to write it again") from None


def read_predictions(path: Path, split: str) -> tuple[list[str], dict[str, "np.ndarray"]] | None:
    """``(ids, task -> array)`` of one split, or None when the file holds no such split."""
    with _open_predictions(path) as archive:
        if f"{split}/ids" not in archive.files:
            return None
        ids = [str(name) for name in archive[f"{split}/ids"]]
        preds = {key.split("/", 1)[1]: archive[key] for key in archive.files
                 if key.startswith(f"{split}/") and key.count("/") == 1 and not key.endswith("/ids")}
    return ids, preds


def read_prediction_labels(path: Path, split: str = "validation") -> dict[str, "TaskLabels"]:
    """Labels of ``split`` stored beside the predictions (empty when none are stored)."""
    from abawbench.labels import TaskLabels

    with _open_predictions(path) as archive:
        tasks = sorted({key.split("/")[2] for key in archive.files if key.startswith(f"{split}/labels/")})
        try:
            return {
                task: TaskLabels(values=archive[f"{split}/labels/{task}/values"],
                                 mask=archive[f"{split}/labels/{task}/mask"].astype(bool))
                for task in tasks
            }
        except KeyError as exc:
            raise DataFormatError(f"{path}: incomplete stored labels: {exc}") from None
