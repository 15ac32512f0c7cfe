"""The run: every (entry, seed) of a configuration trained, scored and written as a result.

``linear-probe``: the backbone is frozen, its features are extracted once per split into the
HDF5 feature cache, and heads are trained on the cached features. ``finetune``: backbone and
heads train end to end on images (no feature cache). Both train on ``train``, select the epoch
on the entry's selection split (a holdout of ``train`` that is never trained on, or
``validation``: :mod:`abawbench.run.selection`; neither sees training augmentation) and report
validation scores with cluster-bootstrap intervals (:mod:`abawbench.stats.clusters`).

Every (entry, seed) ends as a result file, completed or failed; a re-run skips entries whose
completed result matches the configuration, so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import json
import logging
import time
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np

from abawbench.features.pixel_packs import PixelPackStore
from abawbench.config import RunConfig
from abawbench.data.origin import data_origin
from abawbench.data.index import SampleIndex
from abawbench.device import resolve_device, seed_everything
from abawbench.errors import AbawbenchError, ConfigError, RunFailedError, StorageError
from abawbench.evaluation import score_and_resample, tuned_threshold_report
from abawbench.parallel.claims import Claims
from abawbench.parallel.context import DistContext, distributed_context
from abawbench.plugins import PluginHost, get_host
from abawbench.results import (
    EntrySpecModel,
    RunResult,
    entry_dir,
    git_commit,
    package_versions,
    read_result,
    result_path,
    write_predictions,
    write_result,
    write_weights,
)
from abawbench.run.features import RunFeatures, build_backbone
from abawbench.run.plan import (
    PreparedData,
    cache_root_of,
    entry_labels,
    entry_provenance,
    plan_entries,
    prepare_data,
)
from abawbench.run.selection import SELECTION_SPLIT, carve_holdout, subset
from abawbench.tracks import Track
from abawbench.training.augmentation import resolve_augmentation
from abawbench.training.finetune import finetune
from abawbench.training.loop import Outcome, loss_context
from abawbench.training.probe import train_linear_probe
from abawbench.training.warm_start import read_warm_start, warm_start_digest
from abawbench.training.zero_shot import zero_shot_outcome

log = logging.getLogger(__name__)


@dataclass
class RunSummary:
    """This run's results, and the completed ones it found and skipped (resume)."""

    results: list[RunResult] = field(default_factory=list)
    skipped_results: list[RunResult] = field(default_factory=list)
    elsewhere: list[str] = field(default_factory=list)  # held or finished by another worker

    @property
    def skipped(self) -> list[str]:
        return [f"{r.entry} seed {r.seed}" for r in self.skipped_results]

    @property
    def failed(self) -> list[RunResult]:
        return [r for r in self.results if r.status == "failed"]


class Runner:
    """Runs every (entry, seed) of a configuration; shares backbones and features between them."""

    def __init__(self, config: RunConfig, host: PluginHost | None = None, progress: bool = True) -> None:
        self.config = config
        self.host = host or get_host()
        self.track: Track = self.host.tracks.get(config.track)
        self.context = distributed_context()
        self.device = self.context.device_for(resolve_device(config.device))
        self.cache_root = cache_root_of(config)
        self.progress = progress and self.context.is_main  # one set of bars, not one per rank
        self.data: PreparedData | None = None
        self.features: RunFeatures | None = None
        self.labels: dict[str, str] = {}
        self._holdout: tuple[np.ndarray, np.ndarray] = (np.arange(0), np.arange(0))
        self._holdout_key: float | None = None  # the holdout fraction ``_holdout`` was carved with

    def entries(self) -> list[EntrySpecModel]:
        """The run's entries, each bound to the data it is trained and scored on. Names are
        checked before the data is indexed, so a typo fails at once."""
        planned = plan_entries(self.host, self.config, self.track)
        if self.data is None:
            self.data = prepare_data(self.host, self.config, self.track, self.cache_root)
        entries = [entry.on_data(self.data.identity()) for entry in planned]
        self.labels = entry_labels(self.config.label, entries)
        return entries

    def run(self) -> RunSummary:
        # The data is indexed before anything runs (cheap): it is part of every entry's
        # identity, and a completed result only counts when it was measured on exactly this
        # data (dataset plugin, fingerprints, bad-row policy).
        entries = self.entries()
        summary = RunSummary()
        assert self.data is not None
        self._check_losses(entries)
        self.features = RunFeatures(self.host, self.config, self.data.splits, self.device, self.cache_root,
                                    progress=self.progress, context=self.context)
        spread = self.context.distributed and self.config.protocol.name == "linear-probe"
        if spread:
            # Ranks extract every split together first; then each trains whole entries on its own.
            for model in dict.fromkeys(entry.model for entry in entries):
                for split in self.data.splits:
                    self.features.features(model, split)
        claims = Claims()
        for seed in self.config.seeds:
            for entry in entries:
                with self._decided(entry, seed, claims, spread) as (decision, previous):
                    if decision == "run":
                        summary.results.append(self.run_entry(entry, seed))
                    elif decision == "done":
                        if previous is not None:  # known on the deciding rank
                            summary.skipped_results.append(previous)
                    else:
                        summary.elsewhere.append(f"{entry.entry_id} seed {seed}")
        return gathered(self.context, summary) if spread else summary

    @contextmanager
    def _decided(self, entry: EntrySpecModel, seed: int, claims: Claims,
                 spread: bool) -> Iterator[tuple[str, RunResult | None]]:
        """Whether to run (entry, seed): ``done`` (a completed result exists), ``run`` (this job
        holds its claim for as long as the block runs) or ``elsewhere`` (another worker holds or
        finished it). Ranks that train each entry together take rank 0's decision: only rank 0
        looks and claims, so no rank can race another to the claim or see another result."""
        deciding = spread or self.context.is_main
        with ExitStack() as held:
            previous, decision = None, "elsewhere"
            if deciding:
                previous = self._completed(entry, seed)
                path = result_path(self.config.output, self.track.name, entry.entry_id, seed)
                if previous is not None:
                    decision = "done"
                elif held.enter_context(claims.claim(path)):
                    decision = "run"
            if not spread:
                decision = self.context.broadcast(decision)
            yield decision, previous

    def _check_losses(self, entries: list[EntrySpecModel]) -> None:
        """Build every entry's loss once before anything is extracted or trained, so a misspelt
        loss option is one clear error now, not a failed result after feature extraction."""
        assert self.data is not None
        labels = self.data.splits["train"].labels
        for loss, options in {e.loss: e.loss_options for e in entries}.items():  # options follow the name
            try:
                self.host.losses.get(loss).build(self.track, loss_context(self.track, labels, options))
            except AbawbenchError:
                raise
            except Exception as exc:
                raise ConfigError(f"loss {loss!r} cannot be built with options {json.dumps(options)}: "
                                  f"{type(exc).__name__}: {exc}") from exc

    def _completed(self, entry: EntrySpecModel, seed: int) -> RunResult | None:
        """The completed result of (entry, seed) measured on this data, if there is one."""
        assert self.data is not None
        path = result_path(self.config.output, self.track.name, entry.entry_id, seed)
        if not path.exists():
            return None
        try:
            previous = read_result(path)
        except AbawbenchError:
            return None  # an unreadable result is redone, not trusted
        same = (previous.status == "completed" and previous.spec.same_run_as(entry)
                and previous.dataset == self.data.dataset
                and previous.dataset_fingerprints == self.data.fingerprints()
                and previous.config.get("skip_bad") == self.config.skip_bad)
        if not same:
            return None
        warm_start = self.config.protocol.warm_start
        if warm_start and previous.warm_start.get("sha256") != warm_start_digest(
                self.config.output, self.track.name, warm_start, seed):
            return None  # its source entry was rerun (or is gone): what started from it is redone
        label = self.labels[entry.entry_id]
        if previous.label != label:
            # A new label names the same measurement: relabel the file rather than retrain.
            previous = previous.model_copy(update={"label": label,
                                                   "config": previous.config | {"label": self.config.label}})
            write_result(path, previous)
        return previous

    def run_entry(self, entry: EntrySpecModel, seed: int) -> RunResult:
        """Train, score and write one (entry, seed); a failure is recorded, not raised."""
        assert self.data is not None and self.features is not None
        started = time.perf_counter()
        timings: dict[str, float] = {}
        base = dict(
            track=self.track.name, entry=entry.entry_id, label=self.labels[entry.entry_id], spec=entry,
            seed=seed, primary_metric=self.track.primary_metric, dataset=self.data.dataset,
            data_root=str(self.data.root), dataset_fingerprints=self.data.fingerprints(),
            split_sizes={s: len(i) for s, i in self.data.splits.items()},
            undecodable_skipped={s: i.undecodable for s, i in self.data.splits.items() if i.undecodable},
            config=self.config.model_dump(mode="json"), versions=package_versions(), git_commit=git_commit(),
            provenance=entry_provenance(self.host, entry, self.data.dataset, self.track),
            device=str(self.device), data_origin=data_origin(self.data.root), selection=selection_of(entry),
        )
        out_dir = entry_dir(self.config.output, self.track.name, entry.entry_id)
        try:
            seed_everything(seed)
            warm = self._warm_start(entry, seed)
            outcome = self._train(entry, seed, timings, warm)
            eval_start = time.perf_counter()
            validation = self.data.splits["validation"]
            scored = score_and_resample(self.track, outcome.validation, validation.labels,
                                        n_resamples=self.config.protocol.bootstrap, seed=seed,
                                        sample_ids=validation.paths)
            score = scored.score
            self.track.check_score(score)  # a NaN or impossible score fails the entry, never ranks
            splits = self._training_splits(entry)
            held = ((outcome.selection, splits[SELECTION_SPLIT].labels)
                    if outcome.selection is not None else None)
            tuned = tuned_threshold_report(self.track, outcome.validation, validation.labels, selection=held)
            predictions_file = out_dir / f"seed{seed}.predictions.npz"
            weights_file = out_dir / f"seed{seed}.head.pt"
            if self._writes():
                self._save_predictions(predictions_file, outcome, splits)
                write_weights(weights_file, outcome.state | {"spec": entry.model_dump(mode="json")})
            timings["evaluate_s"] = time.perf_counter() - eval_start
            timings["total_s"] = time.perf_counter() - started
            result = RunResult(
                status="completed", primary=scored.primary, sub_scores=scored.sub_scores,
                per_class=score.per_class, confusion=score.confusion, tuned=tuned,
                best_epoch=outcome.best_epoch, epochs_run=outcome.epochs_run, history=outcome.history,
                primary_resamples=scored.primary_resamples, resampling=scored.resampling,
                cache_keys=self.features.cache_keys(entry.model),
                timings=timings, predictions_file=predictions_file.name,
                weights_file=weights_file.name, absent_tasks=list(score.absent),
                pretrained=self.features.pretrained(entry.model),
                warm_start={"entry": str(self.config.protocol.warm_start), "sha256": warm["sha256"]} if warm else {},
                **base,
            )
        except Exception as exc:
            # One entry failing (NaN loss, bad data, out of memory, a plugin's bug) must not stop
            # the others; KeyboardInterrupt is not an Exception and still stops the run.
            timings["total_s"] = time.perf_counter() - started
            log.error("entry %s seed %s failed: %s", entry.entry_id, seed, exc)
            result = RunResult(status="failed", error=f"{type(exc).__name__}: {exc}",
                               timings=timings, **base)
            if self._trains_together():
                # The other ranks wait at a collective this rank never reaches: end the job
                # (torchrun stops the others); a rerun resumes, redoing this entry.
                self._record(entry, seed, result)
                raise RunFailedError(f"entry {entry.entry_id} seed {seed} failed on rank {self.context.rank}: "
                                     f"{result.error}; the job stops (rerun it to resume)") from exc
        self._record(entry, seed, result)
        return result

    def _trains_together(self) -> bool:
        """Whether every rank trains each entry together (distributed fine-tuning)."""
        return self.context.distributed and self.config.protocol.name != "linear-probe"

    def _writes(self) -> bool:
        """Whether this rank writes an entry's files: rank 0 of ranks training together, else each."""
        return self.context.is_main or not self._trains_together()

    def _record(self, entry: EntrySpecModel, seed: int, result: RunResult) -> None:
        if not self._writes():
            return
        try:
            write_result(result_path(self.config.output, self.track.name, entry.entry_id, seed), result)
        except StorageError as exc:
            # Not even the result can be recorded: every further entry would end the same way.
            raise RunFailedError(f"{exc}; the run stopped, since no result can be recorded") from exc

    def _warm_start(self, entry: EntrySpecModel, seed: int) -> dict[str, Any] | None:
        """The saved state the entry starts from (``protocol.warm_start``), or None."""
        protocol = self.config.protocol
        if not protocol.warm_start:
            return None
        return read_warm_start(self.config.output, self.track.name, protocol.warm_start, seed,
                               selection=selection_of(entry), holdout_fraction=protocol.holdout_fraction)

    def _train(self, entry: EntrySpecModel, seed: int, timings: dict[str, float],
               warm: dict[str, Any] | None = None) -> Outcome:
        """The entry's protocol: heads on cached features, or the whole network on images."""
        assert self.data is not None and self.features is not None
        protocol = self.config.protocol
        splits = self._training_splits(entry)
        select_on = SELECTION_SPLIT if SELECTION_SPLIT in splits else "validation"

        def make_loss() -> Any:
            context = loss_context(self.track, splits["train"].labels, entry.loss_options)
            return self.host.losses.get(entry.loss).build(self.track, context)

        if protocol.name == "linear-probe":
            t0 = time.perf_counter()
            features = {split: self.features.features(entry.model, split) for split in self.data.splits}
            if select_on == SELECTION_SPLIT:  # the cached train features, cut as the splits are
                kept, held = self._holdout
                features |= {"train": features["train"][kept], SELECTION_SPLIT: features["train"][held]}
            timings["features_s"] = time.perf_counter() - t0
            t1 = time.perf_counter()
            outcome = train_linear_probe(features, splits, self.track, make_loss, protocol, seed,
                                         progress=self.progress, desc=f"train {entry.entry_id}",
                                         select_on=select_on)
        elif protocol.name == "zero-shot":  # nothing trained: the model's own classifier
            t0 = time.perf_counter()
            outcome = zero_shot_outcome(self.features, entry.model, splits, self.track)
            timings["features_s"] = time.perf_counter() - t0
            t1 = time.perf_counter()
        else:
            backbone = build_backbone(self.host, entry.model, self.config.weights, protocol.image_size)
            augment = resolve_augmentation(protocol.augmentation, self.host.augmentations)
            t1 = time.perf_counter()
            outcome = finetune(backbone, splits, self.track, make_loss, protocol, seed, self.device, augment,
                               pixel_cache=PixelPackStore(self.cache_root) if protocol.pixel_cache else None,
                               progress=self.progress, desc=f"finetune {entry.entry_id}", context=self.context,
                               select_on=select_on, warm_start=warm)
        timings["train_s"] = time.perf_counter() - t1
        return outcome

    def _training_splits(self, entry: EntrySpecModel) -> dict[str, SampleIndex]:
        """The splits as training sees them: with selection ``train-holdout``, ``train`` less its
        holdout and the holdout as :data:`SELECTION_SPLIT`; otherwise the data's own splits."""
        assert self.data is not None
        if selection_of(entry) != "train-holdout":
            return dict(self.data.splits)
        train = self.data.splits["train"]
        fraction = float(getattr(entry.protocol, "holdout_fraction", self.config.protocol.holdout_fraction))
        if self._holdout_key != fraction:
            self._holdout = carve_holdout(self.track, train, fraction)
            self._holdout_key = fraction
        kept, held = self._holdout
        return dict(self.data.splits) | {"train": subset(train, kept, "train"),
                                         SELECTION_SPLIT: subset(train, held, SELECTION_SPLIT)}

    def _save_predictions(self, path: Path, outcome: Outcome, splits: dict[str, SampleIndex]) -> None:
        predictions = ({"validation": outcome.validation} | ({"test": outcome.test} if outcome.test else {})
                       | ({SELECTION_SPLIT: outcome.selection} if outcome.selection is not None else {}))
        extra = {SELECTION_SPLIT: splits[SELECTION_SPLIT].labels} if outcome.selection is not None else None
        write_predictions(path, {split: splits[split].paths for split in predictions}, predictions,
                          splits["validation"].labels, split_labels=extra)


def selection_of(entry: EntrySpecModel) -> str:
    """The entry's resolved selection split (``validation`` for a spec recorded without one;
    ``none`` for zero-shot, which chooses nothing on any split)."""
    if entry.protocol.name == "zero-shot":
        return "none"
    return getattr(entry.protocol, "selection", None) or "validation"


def gathered(context: DistContext, summary: RunSummary) -> RunSummary:
    """Rank 0's summary of every rank's entries (ranks that trained entries on their own)."""
    parts = context.gather(summary)
    if parts is None:
        return summary
    merged = RunSummary(skipped_results=summary.skipped_results)
    for part in parts:
        merged.results.extend(part.results)
    ran = {f"{r.entry} seed {r.seed}" for r in merged.results}
    merged.elsewhere = [name for name in summary.elsewhere if name not in ran]
    return merged


def run_config(config: RunConfig, host: PluginHost | None = None, progress: bool = True) -> RunSummary:
    """Run a whole configuration (the ``abawbench run`` command without the printing)."""
    return Runner(config, host=host, progress=progress).run()


def mean_std(values: Iterable[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value) of scores across seeds."""
    array = np.asarray(list(values), dtype=np.float64)
    spread = float(array.std(ddof=1)) if array.size > 1 else 0.0
    return float(array.mean()), spread
