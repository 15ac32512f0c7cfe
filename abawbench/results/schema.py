"""The result schema: what one (entry, seed) run measured, as pydantic models serialised to JSON.

A result file is data that outlives the code that wrote it: it records the run's settings as
plain values (:class:`ProtocolRecord`), not as the current configuration model, so a result
stays readable when the configuration gains, renames or narrows a setting, and nothing
downstream of results (boards, ensembles, predict) needs the configuration to read one.
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import datetime, timezone
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

RESULT_SCHEMA_VERSION = 1


class ScoreWithInterval(BaseModel):
    """A score and its bootstrap confidence interval (None when bootstrapping was off)."""

    value: float
    ci_low: float | None = None
    ci_high: float | None = None


SELECTION_SPLITS = ("train-holdout", "validation")
"""Where epochs, early stopping, AU thresholds and ensemble weights are chosen: a held-out part
of the training split, or the validation split that is also reported (docs/statistics.md)."""

Selection = Literal["train-holdout", "validation", "none"]
"""A result's selection: one of :data:`SELECTION_SPLITS`, or ``none`` where nothing was chosen
on any split (zero-shot: the model's own classifier, untrained)."""


class EpochRecord(BaseModel):
    """One training epoch: its mean training loss and the selection split's primary score
    (None when the epoch was not scored)."""

    epoch: int
    train_loss: float
    selection_score: float | None = None


class ResamplingRecord(BaseModel):
    """How a result's bootstrap resamples were drawn. Two results with equal records (and the
    same validation data) drew the very same resamples, so their stored resampled scores are
    paired: the difference of the two, resample by resample, is a paired bootstrap."""

    model_config = ConfigDict(frozen=True)

    unit: str = Field(description="what one draw takes: 'image', or the track's group (e.g. 'video')")
    groups: int = Field(description="how many units the validation rows form")
    resamples: int
    seed: int


NO_EFFECT_SETTINGS = ("num_workers", "pixel_cache")
"""Protocol settings about how images are loaded, which change neither a score nor an interval,
with one exception: fine-tuning's augmentation draws its random numbers in the DataLoader
workers when there are any, so there the worker count matters (:meth:`EntrySpecModel.same_run_as`)."""


class ProtocolRecord(BaseModel):
    """The protocol settings a run used, as recorded: ``name`` and ``head`` name the entry,
    every other setting is kept as the value it had (read as an attribute, e.g. ``.epochs``).

    Why not the configuration's own model: a record must accept whatever an older or newer
    configuration wrote, and results must not depend on the configuration module."""

    model_config = ConfigDict(extra="allow")

    name: str
    head: str


class DataIdentity(BaseModel):
    """The data an entry was trained and scored on: the dataset plugin and the content
    fingerprints of those splits. Part of an entry's identity, so that one configuration run
    on two datasets (or on two versions of one) gives two entries, never one overwriting the
    other."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    dataset: str
    fingerprints: dict[str, str]


class EntrySpecModel(BaseModel):
    """What defines an entry on a leaderboard: the same entry across seeds shares this.

    ``data`` is None only for specs that were never bound to data: ensembles (their identity is
    their members') and results written before entries carried their data."""

    model_config = ConfigDict(extra="forbid")

    model: str
    loss: str
    protocol: ProtocolRecord
    weights: str = "random"
    loss_options: dict[str, Any] = Field(default_factory=dict)
    data: DataIdentity | None = None

    @field_validator("protocol", mode="before")
    @classmethod
    def _settings_as_plain_data(cls, value: Any) -> Any:
        """Accept a configuration's protocol model as well as a mapping: recorded as JSON values."""
        if isinstance(value, BaseModel) and not isinstance(value, ProtocolRecord):
            return value.model_dump(mode="json")
        return value

    def on_data(self, data: DataIdentity) -> "EntrySpecModel":
        """This entry as measured on ``data`` (a copy: the planned entry stays data-free)."""
        return self.model_copy(update={"data": data})

    @property
    def settings_digest(self) -> str:
        """A short digest of everything that makes an entry: its settings (not the worker
        count, the bootstrap size or the pixel cache: entries that differ only there share a
        leaderboard row) and the data it was trained and scored on, so neither two
        configurations nor two datasets ever share an entry."""
        settings = self._recorded_settings()
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
        settings = self._recorded_settings()
        for setting in NO_EFFECT_SETTINGS:
            if setting == "num_workers" and self.protocol.name == "finetune":
                continue
            settings["protocol"].pop(setting, None)
        return settings

    def _recorded_settings(self) -> dict[str, Any]:
        """The spec as JSON values; a spec bound to no data digests as it did before entries
        carried their data, so an ensemble keeps its identity."""
        settings = self.model_dump(mode="json")
        if settings.get("data") is None:
            settings.pop("data", None)
        protocol = settings["protocol"]
        if protocol.get("selection") in (None, "validation"):
            # Selecting on validation is what every entry did before the setting existed: such
            # an entry keeps its identity, and the holdout size, unused there, changes nothing.
            protocol.pop("selection", None)
            protocol.pop("holdout_fraction", None)
        return settings

    @property
    def readable_id(self) -> str:
        """The folder-safe readable part of the id (model, protocol, head, loss): the default
        label of the entry."""
        raw = f"{self.model}__{self.protocol.name}-{self.protocol.head}__{self.loss}"
        return re.sub(r"[^A-Za-z0-9_.+-]", "-", raw)

    @property
    def entry_id(self) -> str:
        """Folder-safe and readable, made unique per configuration and data by the digest."""
        return f"{self.readable_id}__{self.settings_digest}"


PluginSupplier = dict[str, str | None]
"""Which plugin supplied a named thing: ``{"plugin", "distribution", "version"}``."""


class RunResult(BaseModel):
    """One (entry, seed) run: its scores, provenance and timings."""

    schema_version: int = RESULT_SCHEMA_VERSION
    status: Literal["completed", "failed"]
    error: str | None = None
    track: str
    entry: str
    label: str = Field("", description="the entry's human name in tables and commands; "
                                         "empty in a file: its entry id without the digest")
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
    selection: Selection = Field(
        "validation",
        description="the split epochs, early stopping, AU thresholds and ensemble weights were "
                    "chosen on: train-holdout (a part of train never trained on), validation "
                    "(the reported split itself: optimistic), or none (zero-shot: nothing chosen)",
    )
    history: list[EpochRecord] = Field(default_factory=list,
                                       description="per epoch: mean training loss, selection score")
    primary_resamples: list[float] = Field(
        default_factory=list,
        description="the primary score on each bootstrap resample (drawn as `resampling` says): "
                    "pooled across seeds for a row's interval, paired across entries for the "
                    "significance mark",
    )
    resampling: ResamplingRecord | None = None
    dataset: str
    data_root: str
    dataset_fingerprints: dict[str, str] = Field(default_factory=dict)
    split_sizes: dict[str, int] = Field(default_factory=dict)
    undecodable_skipped: dict[str, int] = Field(
        default_factory=dict,
        description="images dropped per split because they could not be decoded (--skip-bad)",
    )
    cache_keys: dict[str, str] = Field(default_factory=dict)
    config: dict[str, Any] = Field(default_factory=dict)
    versions: dict[str, str] = Field(default_factory=dict)
    git_commit: str | None = None
    provenance: dict[str, PluginSupplier] = Field(
        default_factory=dict,
        description="per role (model, loss, dataset, track, ensemble; model:<part> for each "
                    "backbone of a fused model) the plugin that supplied it",
    )
    device: str = "cpu"
    timings: dict[str, float] = Field(default_factory=dict)
    created_at: str = Field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))
    predictions_file: str | None = None
    weights_file: str | None = None
    data_origin: dict[str, str] = Field(
        default_factory=dict,
        description="where the data tree came from (abawbench.data.origin): a generated tree "
                    "is a synthetic stand-in, named with its generator and version; empty otherwise",
    )
    absent_tasks: list[str] = Field(default_factory=list, description="tasks the entry did not predict "
                                    "(zero-shot: VA and AUs); their sub-scores are missing, and the primary "
                                    "is partial, over the present terms only")
    warm_start: dict[str, str] = Field(default_factory=dict, description="the entry whose weights "
                                       "started this one (protocol.warm_start) and the sha256 of those "
                                       "weights; empty without a warm start")
    pretrained: dict[str, dict[str, str]] = Field(default_factory=dict, description="per backbone with "
                                                  "pretrained weights: file, sha256, source, licence, what "
                                                  "it was trained on")

    @model_validator(mode="after")
    def _label_defaults_to_the_readable_id(self) -> "RunResult":
        """Results written before labels existed read with the label a run gives by default."""
        if not self.label:
            self.label = without_settings_digest(self.entry)
        return self


def without_settings_digest(entry_id: str) -> str:
    """The readable part of an entry id (``model__protocol-head__loss``); in an ensemble's
    name, every member's digest goes."""
    return re.sub(r"__[0-9a-f]{8}(?![0-9A-Za-z_])", "", entry_id)
