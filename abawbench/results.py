"""Result files: what one (entry, seed) run measured, as pydantic models serialised to JSON.

Layout under the output folder::

    <output>/<track>/<entry>/seed<k>.json              RunResult (this schema)
    <output>/<track>/<entry>/seed<k>.predictions.npz   validation (and test) probabilities
    <output>/<track>/<entry>/seed<k>.head.pt           trained weights, for ``abawbench predict``

Every file is written under a temporary name and renamed, so a crash never leaves a result
that looks complete. Tables (leaderboards) are views of these files.
"""

from __future__ import annotations

import io
import json
import os
import re
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Literal, Mapping, Sequence

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from abawbench.config import ProtocolConfig
from abawbench.errors import DataFormatError

if TYPE_CHECKING:
    import numpy as np

    from abawbench.labels import TaskLabels

RESULT_SCHEMA_VERSION = 1


class ScoreWithInterval(BaseModel):
    """A score and its bootstrap confidence interval (None when bootstrapping was off)."""

    value: float
    ci_low: float | None = None
    ci_high: float | None = None


NO_EFFECT_SETTINGS = ("num_workers", "pixel_cache")
"""Protocol settings about how images are loaded, which change neither a score nor an interval,
with one exception: fine-tuning's augmentation draws its random numbers in the DataLoader
workers when there are any, so there the worker count matters (:meth:`EntrySpecModel.same_run_as`)."""


class EntrySpecModel(BaseModel):
    """What defines an entry on a leaderboard: the same entry across seeds shares this."""

    model_config = ConfigDict(extra="forbid")

    model: str
    loss: str
    protocol: ProtocolConfig
    weights: str = "random"
    loss_options: dict[str, Any] = Field(default_factory=dict)

    @property
    def settings_digest(self) -> str:
        """A short digest of the settings that make an entry (not the worker count, the
        bootstrap size or the pixel cache: entries that differ only there share a leaderboard
        row), so two configurations never share an entry."""
        import hashlib

        settings = self.model_dump(mode="json")
        for setting in (*NO_EFFECT_SETTINGS, "bootstrap"):
            settings["protocol"].pop(setting, None)
        canonical = json.dumps(settings, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:8]

    def same_run_as(self, other: "EntrySpecModel") -> bool:
        """Whether ``other`` gives the same result file, so that a completed run is reused:
        equal but for :data:`NO_EFFECT_SETTINGS` (the worker count only outside fine-tuning,
        whose augmentation draws its random numbers in the workers when there are any)."""
        return self._settings_that_matter() == other._settings_that_matter()

    def _settings_that_matter(self) -> dict[str, Any]:
        settings = self.model_dump(mode="json")
        for setting in NO_EFFECT_SETTINGS:
            if setting == "num_workers" and self.protocol.name == "finetune":
                continue
            settings["protocol"].pop(setting, None)
        return settings

    @property
    def entry_id(self) -> str:
        """Folder-safe and readable (model, protocol, head, loss), made unique per
        configuration by the settings digest."""
        raw = f"{self.model}__{self.protocol.name}-{self.protocol.head}__{self.loss}__{self.settings_digest}"
        return re.sub(r"[^A-Za-z0-9_.+-]", "-", raw)


class RunResult(BaseModel):
    """One (entry, seed) run: its scores, provenance and timings."""

    schema_version: int = RESULT_SCHEMA_VERSION
    status: Literal["completed", "failed"]
    error: str | None = None
    track: str
    entry: str
    spec: EntrySpecModel
    seed: int
    primary_metric: str
    primary: ScoreWithInterval | None = None
    sub_scores: dict[str, ScoreWithInterval] = Field(default_factory=dict)
    per_class: dict[str, dict[str, float]] = Field(default_factory=dict)
    confusion: dict[str, list[list[int]]] = Field(default_factory=dict)
    tuned: dict[str, Any] = Field(
        default_factory=dict,
        description="scores at thresholds tuned on validation, reported beside the fixed ones",
    )
    best_epoch: int | None = None
    epochs_run: int | None = None
    dataset: str
    data_root: str
    dataset_fingerprints: dict[str, str] = Field(default_factory=dict)
    split_sizes: dict[str, int] = Field(default_factory=dict)
    cache_keys: dict[str, str] = Field(default_factory=dict)
    config: dict[str, Any] = Field(default_factory=dict)
    versions: dict[str, str] = Field(default_factory=dict)
    git_commit: str | None = None
    device: str = "cpu"
    timings: dict[str, float] = Field(default_factory=dict)
    created_at: str = Field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))
    predictions_file: str | None = None
    weights_file: str | None = None


def without_settings_digest(entry_id: str) -> str:
    """The readable part of an entry id (``model__protocol-head__loss``); in an ensemble's
    name, every member's digest goes."""
    return re.sub(r"__[0-9a-f]{8}(?![0-9A-Za-z_])", "", entry_id)


def entry_dir(output: Path, track: str, entry_id: str) -> Path:
    return Path(output) / track / entry_id


def result_path(output: Path, track: str, entry_id: str, seed: int) -> Path:
    return entry_dir(output, track, entry_id) / f"seed{seed}.json"


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file in the same folder and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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


# --------------------------------------------------------------------------- predictions files
#
# ``seed<k>.predictions.npz`` layout, written by the protocol and by ensembles alike:
#   <split>/ids                      image paths (relative to the data root), per split
#   <split>/<task>                   probabilities (multiclass, multilabel) or values (regression)
#   validation/labels/<task>/values  validation labels, so ensembles fit and score without data
#   validation/labels/<task>/mask


def write_predictions(
    path: Path,
    ids: Mapping[str, Sequence[str]],
    predictions: Mapping[str, Mapping[str, Any]],
    labels: Mapping[str, "TaskLabels"],
) -> None:
    """Store per-split predictions (numpy arrays or tensors) and validation labels atomically."""
    import numpy as np

    arrays: dict[str, np.ndarray] = {}
    for split, split_predictions in predictions.items():
        arrays[f"{split}/ids"] = np.asarray(list(ids[split]))
        for task, values in split_predictions.items():
            array = values.detach().cpu().numpy() if hasattr(values, "detach") else np.asarray(values)
            arrays[f"{split}/{task}"] = array
    for task, column in labels.items():
        arrays[f"validation/labels/{task}/values"] = column.values
        arrays[f"validation/labels/{task}/mask"] = column.mask
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    atomic_write_bytes(path, buffer.getvalue())


def read_predictions(path: Path, split: str) -> tuple[list[str], dict[str, "np.ndarray"]] | None:
    """``(ids, task -> array)`` of one split, or None when the file holds no such split."""
    import numpy as np

    with np.load(path, allow_pickle=False) as archive:
        if f"{split}/ids" not in archive.files:
            return None
        ids = [str(name) for name in archive[f"{split}/ids"]]
        preds = {key.split("/", 1)[1]: archive[key] for key in archive.files
                 if key.startswith(f"{split}/") and key.count("/") == 1 and not key.endswith("/ids")}
    return ids, preds


def read_prediction_labels(path: Path) -> dict[str, "TaskLabels"]:
    """Validation labels stored beside the predictions."""
    import numpy as np

    from abawbench.labels import TaskLabels

    with np.load(path, allow_pickle=False) as archive:
        tasks = sorted({key.split("/")[2] for key in archive.files if key.startswith("validation/labels/")})
        try:
            return {
                task: TaskLabels(values=archive[f"validation/labels/{task}/values"],
                                 mask=archive[f"validation/labels/{task}/mask"].astype(bool))
                for task in tasks
            }
        except KeyError as exc:
            raise DataFormatError(f"{path}: incomplete stored labels: {exc}") from None
