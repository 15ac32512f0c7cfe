"""The fixed protocol, in one place: data -> features (cached) -> heads -> scores -> results.

``linear-probe``: the backbone is frozen, its features are extracted once per split into the
HDF5 feature cache, and heads are trained on the cached features. ``finetune``: backbone and
heads train end to end on images (no feature cache). Both train on ``train``, select the epoch
on ``validation`` (which never sees training augmentation) and report validation scores.

Every (entry, seed) ends as a result file, completed or failed; a re-run skips entries whose
completed result matches the configuration, so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import copy
import io
import logging
import math
import platform
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from abawbench import __version__
from abawbench.config import RunConfig
from abawbench.data.index import SampleIndex
from abawbench.device import (autocast_context, loader_kwargs, prepare_batch, prepare_module, resolve_device,
                              seed_everything)
from abawbench.errors import AbawbenchError, ConfigError, DataFormatError, RunFailedError
from abawbench.evaluation import score_with_intervals, tuned_threshold_report
from abawbench.features.key import CacheKey, default_cache_root
from abawbench.features.pixel_packs import PixelPackStore, pack_key, with_pixel_pack
from abawbench.features.preprocess import Preprocessing, collate_images, flip_horizontally, load_image, to_pil_rgb
from abawbench.features.store import FeatureCache
from abawbench.heads import BackboneWithHeads, TaskHeads, build_heads, to_probabilities
from abawbench.labels import TaskLabels
from abawbench.plugins import PluginHost, get_host
from abawbench.results import (
    EntrySpecModel,
    RunResult,
    atomic_write_bytes,
    entry_dir,
    read_result,
    result_path,
    write_predictions,
    write_result,
)
from abawbench.specs import Backbone, DatasetSpec, LossContext, ModelOptions, ReadOptions
from abawbench.tracks import Track

log = logging.getLogger(__name__)

LABELLED_SPLITS = ("train", "validation")
BACKBONE_SEED = 0
FUSION_SEPARATOR = "+"  # "a+b": one head on the fused cached features of backbones a and b  # random-init backbones are part of the model definition, not of the run seed


# --------------------------------------------------------------------------- data


@dataclass
class PreparedData:
    dataset: str
    root: Path
    splits: dict[str, SampleIndex]


def choose_dataset(host: PluginHost, config: RunConfig, track: Track) -> DatasetSpec:
    """The dataset plugin for this run: the configured one, else (with --data) the reader of
    the official layout, else the one that provides the embedded default."""
    if config.dataset:
        spec = host.datasets.get(config.dataset)
        if track.name not in spec.tracks:
            raise ConfigError(f"dataset {spec.name!r} does not serve track {track.name!r}")
        return spec
    candidates = [e.item for e in host.datasets.entries()
                  if track.name in e.item.tracks and getattr(e.item, "auto_select", True)]
    if config.data is not None:
        readers = [s for s in candidates if s.default_root is None] or candidates
        pick = readers
        what = "reads data from a path"
    else:
        pick = [s for s in candidates if s.default_root is not None]
        what = "provides an embedded default"
    if len(pick) != 1:
        names = ", ".join(s.name for s in pick) or "none"
        raise ConfigError(
            f"cannot choose a dataset for track {track.name!r}: datasets that {what}: {names}; "
            "name one with --dataset"
        )
    return pick[0]


def prepare_data(host: PluginHost, config: RunConfig, track: Track, cache_root: Path) -> PreparedData:
    spec = choose_dataset(host, config, track)
    if config.data is not None:
        root = Path(config.data)
        if not root.is_dir():
            raise ConfigError(f"--data {root}: not a folder")
    elif spec.default_root is None:
        raise ConfigError(f"dataset {spec.name!r} reads data from a path: pass --data")
    else:
        root = spec.default_root(track.name, cache_root)
    options = ReadOptions(skip_bad=config.skip_bad, cache_dir=cache_root)
    splits = {split: spec.read_split(root, track, split, options) for split in LABELLED_SPLITS}
    try:
        splits["test"] = spec.read_split(root, track, "test", options)
    except (DataFormatError, FileNotFoundError) as exc:
        log.warning("no usable test split (%s); predictions cover validation only", exc)
    for split, index in splits.items():
        if split in LABELLED_SPLITS and len(index) == 0:
            raise DataFormatError(f"{root}: the {split} split is empty")
    return PreparedData(dataset=spec.name, root=root, splits=splits)


class ImageDataset(Dataset):
    """Decoded, resized uint8 images ``[3, H, W]`` of a split (normalisation happens per batch,
    where the model runs: :meth:`Preprocessing.normalize`); each worker opens its own files."""

    def __init__(self, index: SampleIndex, pixels: Callable, flip: bool = False) -> None:
        self.index = index
        self.pixels = pixels
        self.flip = flip

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, row: int):
        image = load_image(self.index.absolute_path(row))
        if self.flip and torch.rand(()) < 0.5:
            image = flip_horizontally(image)
        return self.pixels(image), row


def training_transform(base: Callable, augmentation: str) -> Callable:
    """The seed paper's augmentation ("paper": 1.02x resize, random crop back to size, colour
    jitter (0.4, 0.4, 0.4, 0.1) with p 0.8, horizontal flip) in front of ``base`` (the
    preprocessing's ``pixels``); "flip" is applied by :class:`ImageDataset`; "none" is ``base``."""
    if augmentation != "paper":
        return base
    from torchvision import transforms as T

    def paper(image):
        image = to_pil_rgb(image)
        width, height = image.size
        enlarged = image.resize((round(width * 1.02), round(height * 1.02)))
        image = T.RandomCrop((height, width))(enlarged)
        image = T.RandomApply([T.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8)(image)
        image = T.RandomHorizontalFlip()(image)
        return base(image)

    return paper


def eval_transform(data_config: dict[str, Any]) -> Preprocessing:
    """The backbone's exact preprocessing (timm's resolved data config), no augmentation: a
    deterministic callable image -> normalised float tensor ``[3, H, W]`` (timm's values)."""
    return Preprocessing(data_config)


def labels_as_tensors(labels: dict[str, TaskLabels], rows: Any = None) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    out = {}
    for task, column in labels.items():
        values = torch.from_numpy(np.ascontiguousarray(column.values))
        mask = torch.from_numpy(np.ascontiguousarray(column.mask))
        if rows is not None:
            values, mask = values[rows], mask[rows]
        out[task] = (values, mask)
    return out


def loss_context(track: Track, labels: dict[str, TaskLabels], options: dict[str, Any]) -> LossContext:
    """Per-task class (or positive-label) counts on the training split, for class weights."""
    return LossContext(class_counts=track.class_counts(labels), label_counts=track.label_counts(labels),
                       options=options)


# --------------------------------------------------------------------------- the runner


@dataclass
class RunSummary:
    """This run's results, and the completed ones it found and skipped (resume)."""

    results: list[RunResult] = field(default_factory=list)
    skipped_results: list[RunResult] = field(default_factory=list)

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
        self.device = resolve_device(config.device)
        self.cache_root = Path(config.cache_dir) if config.cache_dir else default_cache_root()
        self.feature_cache = FeatureCache(self.cache_root)
        self.progress = progress
        self._backbones: dict[str, Backbone] = {}
        self._features: dict[tuple[str, str], np.ndarray] = {}
        self._cache_keys: dict[tuple[str, str], str] = {}
        self.data: PreparedData | None = None

    # -- planning ------------------------------------------------------------------------------
    def entries(self) -> list[EntrySpecModel]:
        models = list(self.config.models) or [
            e.name for e in self.host.models.entries() if getattr(e.item, "default_run", False)
        ]
        if not models:
            raise ConfigError("no models given and no plugin proposes a default model; use --models")
        losses = list(self.config.losses) or [self.track.default_loss]
        for name in models:
            for part in name.split(FUSION_SEPARATOR):
                self.host.models.get(part)  # unknown names fail now, with suggestions
            if FUSION_SEPARATOR in name and self.config.protocol.name != "linear-probe":
                raise ConfigError(f"fused model {name!r} needs --protocol linear-probe (it reads cached features)")
        for name in losses:
            self.host.losses.get(name)
        return [
            EntrySpecModel(model=m, loss=l, protocol=self.config.protocol, weights=self.config.weights,
                           loss_options=dict(self.config.loss_options.get(l, {})))
            for m in models for l in losses
        ]

    def run(self) -> RunSummary:
        entries = self.entries()
        summary = RunSummary()
        # The data is indexed first (cheap): a completed result only counts when it was measured
        # on exactly this data (dataset plugin, fingerprints, bad-row policy).
        self.data = prepare_data(self.host, self.config, self.track, self.cache_root)
        for seed in self.config.seeds:
            for entry in entries:
                previous = self._completed(entry, seed)
                if previous is not None:
                    summary.skipped_results.append(previous)
                else:
                    summary.results.append(self.run_entry(entry, seed))
        return summary

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
        fingerprints = {s: i.fingerprint for s, i in self.data.splits.items()}
        same = (previous.status == "completed" and previous.spec.same_run_as(entry)
                and previous.dataset == self.data.dataset
                and previous.dataset_fingerprints == fingerprints
                and previous.config.get("skip_bad") == self.config.skip_bad)
        return previous if same else None

    # -- one entry -----------------------------------------------------------------------------
    def run_entry(self, entry: EntrySpecModel, seed: int) -> RunResult:
        assert self.data is not None
        started = time.perf_counter()
        timings: dict[str, float] = {}
        base = dict(
            track=self.track.name, entry=entry.entry_id, spec=entry, seed=seed,
            primary_metric=self.track.primary_metric, dataset=self.data.dataset,
            data_root=str(self.data.root),
            dataset_fingerprints={s: i.fingerprint for s, i in self.data.splits.items()},
            split_sizes={s: len(i) for s, i in self.data.splits.items()},
            config=_jsonable(self.config), versions=package_versions(), git_commit=git_commit(),
            device=str(self.device),
        )
        out_dir = entry_dir(self.config.output, self.track.name, entry.entry_id)
        try:
            seed_everything(seed)
            if entry.protocol.name == "linear-probe":
                outcome = self._linear_probe(entry, seed, timings)
            else:
                outcome = self._finetune(entry, seed, timings)
            eval_start = time.perf_counter()
            labels = self.data.splits["validation"].labels
            score, primary, subs = score_with_intervals(
                self.track, outcome.validation, labels,
                n_resamples=entry.protocol.bootstrap, seed=seed,
            )
            tuned = tuned_threshold_report(self.track, outcome.validation, labels)
            predictions_file = out_dir / f"seed{seed}.predictions.npz"
            weights_file = out_dir / f"seed{seed}.head.pt"
            self._save_predictions(predictions_file, outcome)
            buffer = io.BytesIO()
            torch.save(outcome.state, buffer)
            atomic_write_bytes(weights_file, buffer.getvalue())
            timings["evaluate_s"] = time.perf_counter() - eval_start
            timings["total_s"] = time.perf_counter() - started
            result = RunResult(
                status="completed", primary=primary, sub_scores=subs, per_class=score.per_class,
                confusion=score.confusion, tuned=tuned, best_epoch=outcome.best_epoch,
                epochs_run=outcome.epochs_run,
                cache_keys={s: k for (m, s), k in self._cache_keys.items() if m == entry.model},
                timings=timings, predictions_file=predictions_file.name,
                weights_file=weights_file.name, **base,
            )
        except Exception as exc:
            # One entry failing (NaN loss, bad data, out of memory, a plugin's bug) must not stop
            # the others; KeyboardInterrupt is not an Exception and still stops the run.
            timings["total_s"] = time.perf_counter() - started
            log.error("entry %s seed %s failed: %s", entry.entry_id, seed, exc)
            result = RunResult(status="failed", error=f"{type(exc).__name__}: {exc}",
                               timings=timings, **base)
        write_result(result_path(self.config.output, self.track.name, entry.entry_id, seed), result)
        return result

    # -- linear probe --------------------------------------------------------------------------
    def backbone(self, name: str) -> Backbone:
        if name not in self._backbones:
            spec = self.host.models.get(name)
            options = ModelOptions(weights=self.config.weights, image_size=self.config.protocol.image_size,
                                   extra={"seed": BACKBONE_SEED})
            backbone = spec.build(options)
            backbone.module.eval()
            self._backbones[name] = backbone
        return self._backbones[name]

    def features(self, model: str, split: str) -> np.ndarray:
        """Features of a split, from memory, else the HDF5 cache, else extracted (and cached)."""
        if (model, split) in self._features:
            return self._features[(model, split)]
        if FUSION_SEPARATOR in model:
            return self._fused_features(model, split)
        assert self.data is not None
        backbone = self.backbone(model)
        index = self.data.splits[split]
        key = CacheKey(backbone=backbone.name, weights_digest=self._weights_identity(backbone),
                       preprocessing=backbone.data_config | {"precision": precision_of(self.device)},
                       dataset_fingerprint=index.fingerprint, split=split)
        array = self.feature_cache.get_or_create(
            key, sample_ids=index.paths, row_dim=backbone.feature_dim,
            produce=lambda writer: extract_features(
                backbone, index, self.device, writer.write, batch_size=self.config.protocol.batch_size,
                num_workers=self.config.protocol.num_workers,
                progress=self.progress, desc=f"extract {model} {split}",
                pixel_pack=(PixelPackStore(self.cache_root), split) if self.config.protocol.pixel_cache else None),
        ).read()
        self._cache_keys[(model, split)] = key.digest()
        self._features[(model, split)] = array
        return array

    @staticmethod
    def _weights_identity(backbone: Backbone) -> str:
        """The weights digest, plus the library versions when the weights are a random init
        (the same seed may give other weights under another torch or timm)."""
        if not backbone.weights_digest.startswith("random:"):
            return backbone.weights_digest
        versions = package_versions()
        return f"{backbone.weights_digest}|torch-{versions.get('torch')}|timm-{versions.get('timm')}"

    def _fused_features(self, model: str, split: str) -> np.ndarray:
        """The feature-vector ensemble of SMM-EmotionNet: several backbones' cached features,
        concatenated or averaged, for one head."""
        parts = [self.features(part, split) for part in model.split(FUSION_SEPARATOR)]
        for part in model.split(FUSION_SEPARATOR):
            self._cache_keys[(model, f"{split}:{part}")] = self._cache_keys[(part, split)]
        if self.config.protocol.feature_fusion == "mean":
            widths = {p.shape[1] for p in parts}
            if len(widths) != 1:
                raise ConfigError(f"feature_fusion 'mean' needs equal feature widths, {model!r} has {sorted(widths)}")
            fused = np.mean(parts, axis=0)
        else:
            fused = np.concatenate(parts, axis=1)
        self._features[(model, split)] = fused
        return fused

    def _linear_probe(self, entry: EntrySpecModel, seed: int, timings: dict[str, float]) -> "Outcome":
        assert self.data is not None
        t0 = time.perf_counter()
        feats = {split: self.features(entry.model, split) for split in self.data.splits}
        timings["features_s"] = time.perf_counter() - t0
        mean = feats["train"].mean(axis=0, keepdims=True)
        std = feats["train"].std(axis=0, keepdims=True)
        # A feature constant on train (a dead unit) would be divided by ~0 and explode on
        # validation and test: leave its scale alone instead.
        std = np.where(std < 1e-3 * max(float(std.max()), 1e-12), 1.0, std).astype(np.float32)
        normalised = {s: torch.from_numpy((f - mean) / std).float() for s, f in feats.items()}
        t1 = time.perf_counter()
        torch.manual_seed(seed)
        heads = TaskHeads(normalised["train"].shape[1], self.track.tasks, kind=entry.protocol.head)
        outcome = train_heads(
            heads, normalised, self.data.splits, self.track,
            self.host.losses.get(entry.loss).build(
                self.track, loss_context(self.track, self.data.splits["train"].labels, entry.loss_options)),
            entry, seed, progress=self.progress,
        )
        outcome.state = {"kind": "linear-probe", "heads": outcome.state, "feature_mean": torch.from_numpy(mean),
                         "feature_std": torch.from_numpy(std), "spec": entry.model_dump(mode="json")}
        timings["train_s"] = time.perf_counter() - t1
        return outcome

    # -- fine-tuning ---------------------------------------------------------------------------
    def _finetune(self, entry: EntrySpecModel, seed: int, timings: dict[str, float]) -> "Outcome":
        assert self.data is not None
        spec = self.host.models.get(entry.model)
        backbone = spec.build(ModelOptions(weights=self.config.weights, image_size=entry.protocol.image_size,
                                           extra={"seed": BACKBONE_SEED}))
        torch.manual_seed(seed)
        heads = build_heads(backbone, self.track.tasks, entry.protocol.head)
        network = prepare_module(BackboneWithHeads(backbone.module, heads), self.device)
        loss = self.host.losses.get(entry.loss).build(
            self.track, loss_context(self.track, self.data.splits["train"].labels, entry.loss_options))
        if isinstance(loss, nn.Module):
            loss = loss.to(self.device)  # class weights and pos_weight are buffers
        preprocessing = eval_transform(backbone.data_config)
        t0 = time.perf_counter()
        outcome = finetune_network(network, preprocessing, self.data.splits, self.track, loss, entry, seed,
                                   self.device, progress=self.progress,
                                   pixel_cache=PixelPackStore(self.cache_root) if entry.protocol.pixel_cache else None)
        outcome.state = {"kind": "finetune", "network": outcome.state, "spec": entry.model_dump(mode="json")}
        timings["train_s"] = time.perf_counter() - t0
        return outcome

    def _save_predictions(self, path: Path, outcome: "Outcome") -> None:
        assert self.data is not None
        predictions = {"validation": outcome.validation} | ({"test": outcome.test} if outcome.test else {})
        write_predictions(path, {split: self.data.splits[split].paths for split in predictions}, predictions,
                          self.data.splits["validation"].labels)


@dataclass
class Outcome:
    validation: dict[str, torch.Tensor]
    test: dict[str, torch.Tensor] | None
    best_epoch: int
    epochs_run: int
    state: Any = None


# --------------------------------------------------------------------------- extraction


@torch.inference_mode()
def extract_features(
    backbone: Backbone,
    index: SampleIndex,
    device: torch.device,
    write: Callable[[int, np.ndarray], None],
    *,
    batch_size: int = 64,
    num_workers: int = 0,
    progress: bool = True,
    desc: str = "extract",
    pixel_pack: tuple[PixelPackStore, str] | None = None,
) -> None:
    """Stream features of every image of ``index`` to ``write(start_row, batch)``, in order:
    memory stays flat however large the split is.

    ``pixel_pack=(cache, split)`` reads the split's decoded pixels from a pixel pack in
    ``cache`` (:mod:`abawbench.features.pixel_packs`), writing the pack on the first extraction of this
    geometry; the features are the same either way.
    """
    from tqdm.auto import tqdm

    module = prepare_module(backbone.module, device).eval()
    preprocessing = eval_transform(backbone.data_config)

    def forward(batches: Iterable[tuple[int, torch.Tensor]]) -> None:
        with tqdm(total=len(index), desc=desc, unit="img", disable=not progress, leave=False) as bar:
            for start, images in batches:
                with autocast_context(device):
                    out = module(prepare_batch(images, device, preprocessing.normalize))
                write(start, out.float().cpu().numpy())
                bar.update(out.shape[0])

    cache, split = pixel_pack if pixel_pack is not None else (None, "")
    consume_eval_batches(index, split, preprocessing, device, forward, batch_size=batch_size,
                         num_workers=num_workers, pixel_cache=cache)


def consume_eval_batches(index: SampleIndex, split: str, preprocessing: Preprocessing, device: torch.device,
                         consume: Callable[[Iterable[tuple[int, torch.Tensor]]], None], *, batch_size: int,
                         num_workers: int, pixel_cache: PixelPackStore | None = None) -> bool:
    """Call ``consume`` once with the eval batches ``(start_row, uint8 images)`` of a split:
    from its pixel pack in ``pixel_cache`` when given (written on first use: :mod:`abawbench.features.pixel_packs`),
    else decoded from the image files. False when a pack was wanted but could not be written
    (the caller may stop asking for one)."""

    def decode(first_row: int = 0) -> Iterable[tuple[int, torch.Tensor]]:
        return decoded_batches(index, preprocessing, device, batch_size=batch_size, num_workers=num_workers,
                               first_row=first_row)

    if pixel_cache is None:
        consume(decode())
        return True
    return with_pixel_pack(pixel_cache, pack_key(preprocessing.data_config, index.fingerprint, split), index.paths,
                           decode, consume, batch_size=batch_size)


def decoded_batches(index: SampleIndex, preprocessing: Preprocessing, device: torch.device, *,
                    batch_size: int, num_workers: int, first_row: int = 0) -> Iterable[tuple[int, torch.Tensor]]:
    """``(start_row, uint8 images [N, 3, H, W])`` of a split in row order from ``first_row`` on,
    decoded and resized from its image files (by ``num_workers`` DataLoader workers, if any).

    The loader has a generator of its own: iterating a DataLoader draws a number from its
    generator (worker seeds), by default torch's global one, and an eval pass must not move
    the random stream that fine-tuning's augmentation and dropout draw from (else a run would
    depend on whether its validation came from files or from a pixel pack)."""
    loader = DataLoader(ImageDataset(index, preprocessing.pixels), batch_size=batch_size, collate_fn=collate_images,
                        sampler=range(first_row, len(index)), num_workers=num_workers, **loader_kwargs(device),
                        persistent_workers=False, generator=torch.Generator().manual_seed(0))
    for images, rows in loader:
        yield int(rows[0]), images


# --------------------------------------------------------------------------- training


def make_optimizer(parameters, protocol) -> torch.optim.Optimizer:
    params = [p for p in parameters if p.requires_grad]
    if protocol.optimizer == "sgd":
        return torch.optim.SGD(params, lr=protocol.lr, momentum=0.9, weight_decay=protocol.weight_decay)
    if protocol.optimizer == "adam":
        return torch.optim.Adam(params, lr=protocol.lr, weight_decay=protocol.weight_decay)
    return torch.optim.AdamW(params, lr=protocol.lr, weight_decay=protocol.weight_decay)


class EarlyStopping:
    """Keeps the best validation state and its validation predictions (so they need not be
    computed again); says stop after ``patience`` epochs without progress."""

    def __init__(self, higher_is_better: bool, patience: int | None) -> None:
        self.sign = 1 if higher_is_better else -1
        self.patience = patience
        self.best_score = -math.inf
        self.best_epoch = 0
        self.best_state: Any = None
        self.best_predictions: dict[str, torch.Tensor] = {}

    def update(self, score: float, epoch: int, module: nn.Module, predictions: dict[str, torch.Tensor]) -> bool:
        """Record the epoch's score; True when training should stop."""
        if self.sign * score > self.best_score:
            self.best_score, self.best_epoch = self.sign * score, epoch
            self.best_state = copy.deepcopy(module.state_dict())
            self.best_predictions = predictions
        return self.patience is not None and epoch - self.best_epoch >= self.patience


def precision_of(device: torch.device) -> str:
    """The numeric precision extraction runs in on ``device`` (see ``autocast_context``)."""
    return "bf16-autocast" if device.type == "cuda" else "fp32"


def _check_finite_loss(loss: torch.Tensor, epoch: int) -> None:
    if not torch.isfinite(loss):
        raise RunFailedError(f"loss became {float(loss)} at epoch {epoch}; lower the learning rate")


def _validation_score(track: Track, predictions: dict[str, torch.Tensor], index: SampleIndex) -> float:
    return track.score(predictions, index.labels).primary


def train_heads(
    heads: TaskHeads,
    features: dict[str, torch.Tensor],
    splits: dict[str, SampleIndex],
    track: Track,
    loss_fn: Callable,
    entry: EntrySpecModel,
    seed: int,
    progress: bool = True,
) -> Outcome:
    """Mini-batch training of heads on in-memory features; the best validation epoch wins."""
    from tqdm.auto import tqdm

    protocol = entry.protocol
    optimiser = make_optimizer(heads.parameters(), protocol)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=protocol.epochs)
    x_train = features["train"]
    targets = labels_as_tensors(splits["train"].labels)
    generator = torch.Generator().manual_seed(seed)
    stopper = EarlyStopping(track.higher_is_better, protocol.patience)
    epoch = 0
    for epoch in tqdm(range(1, protocol.epochs + 1), desc=f"train {entry.entry_id}", disable=not progress, leave=False):
        heads.train()
        order = torch.randperm(x_train.shape[0], generator=generator)
        for start in range(0, len(order), protocol.batch_size):
            rows = order[start:start + protocol.batch_size]
            loss = loss_fn(heads(x_train[rows]), {t: (v[rows], m[rows]) for t, (v, m) in targets.items()})
            _check_finite_loss(loss, epoch)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
        scheduler.step()
        heads.eval()
        with torch.no_grad():
            validation = to_probabilities(track.tasks, heads(features["validation"]))
            score = _validation_score(track, validation, splits["validation"])
        if stopper.update(score, epoch, heads, validation):
            break
    heads.load_state_dict(stopper.best_state)
    heads.eval()
    validation = stopper.best_predictions
    with torch.no_grad():
        test = to_probabilities(track.tasks, heads(features["test"])) if "test" in features else None
    return Outcome(validation=validation, test=test, best_epoch=stopper.best_epoch, epochs_run=epoch,
                   state=stopper.best_state)


def predict_images(network: nn.Module, batches: Iterable[tuple[int, torch.Tensor]], device: torch.device,
                   tasks, normalize: Callable[[torch.Tensor], torch.Tensor]) -> dict[str, torch.Tensor]:
    """Probabilities of ``network`` on every batch ``(start_row, uint8 images)`` of ``batches``
    (in row order; normalised by ``normalize`` on the device)."""
    network.eval()
    chunks: dict[str, list[torch.Tensor]] = {}
    with torch.inference_mode():
        for _start, images in batches:
            images = prepare_batch(images, device, normalize)
            with autocast_context(device):
                raw = network(images)
            for task, value in to_probabilities(tasks, raw).items():
                chunks.setdefault(task, []).append(value.float().cpu())
    return {task: torch.cat(values) for task, values in chunks.items()}


def finetune_network(
    network: nn.Module,
    preprocessing: Preprocessing,
    splits: dict[str, SampleIndex],
    track: Track,
    loss_fn: Callable,
    entry: EntrySpecModel,
    seed: int,
    device: torch.device,
    progress: bool = True,
    pixel_cache: PixelPackStore | None = None,
) -> Outcome:
    """End-to-end training on images; training data gets the configured augmentation,
    validation and test data never any (a defect of the seed paper's code we do not repeat).
    With ``pixel_cache``, validation and test (predicted every epoch / once) come from pixel
    packs after their first pass instead of being decoded again."""
    from tqdm.auto import tqdm

    protocol = entry.protocol
    generator = torch.Generator().manual_seed(seed)
    common = dict(batch_size=protocol.batch_size, num_workers=protocol.num_workers, collate_fn=collate_images,
                  **loader_kwargs(device))
    train_transform = training_transform(preprocessing.pixels, protocol.augmentation)
    train_loader = DataLoader(ImageDataset(splits["train"], train_transform, flip=protocol.augmentation == "flip"),
                              shuffle=True,
                              generator=generator, drop_last=len(splits["train"]) > protocol.batch_size, **common)

    def evaluate(split: str) -> dict[str, torch.Tensor]:
        nonlocal pixel_cache
        predictions: dict[str, torch.Tensor] = {}
        if not consume_eval_batches(
                splits[split], split, preprocessing, device,
                lambda batches: predictions.update(
                    predict_images(network, batches, device, track.tasks, preprocessing.normalize)),
                batch_size=protocol.batch_size, num_workers=protocol.num_workers, pixel_cache=pixel_cache):
            pixel_cache = None  # a pack that cannot be written is not tried again every epoch
        return predictions

    targets = labels_as_tensors(splits["train"].labels)
    optimiser = make_optimizer(network.parameters(), protocol)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=protocol.epochs)
    stopper = EarlyStopping(track.higher_is_better, protocol.patience)
    epoch = 0
    for epoch in range(1, protocol.epochs + 1):
        network.train()
        for images, rows in tqdm(train_loader, desc=f"finetune {entry.entry_id} epoch {epoch}",
                                 disable=not progress, leave=False):
            images = prepare_batch(images, device, preprocessing.normalize)
            with autocast_context(device):
                raw = network(images)
            batch_targets = {t: (v[rows].to(device), m[rows].to(device)) for t, (v, m) in targets.items()}
            loss = loss_fn({t: r.float() for t, r in raw.items()}, batch_targets)
            _check_finite_loss(loss, epoch)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
        scheduler.step()
        validation = evaluate("validation")
        score = _validation_score(track, validation, splits["validation"])
        if stopper.update(score, epoch, network, validation):
            break
    network.load_state_dict(stopper.best_state)
    validation = stopper.best_predictions
    test = evaluate("test") if "test" in splits else None
    return Outcome(validation=validation, test=test, best_epoch=stopper.best_epoch, epochs_run=epoch,
                   state=stopper.best_state)


# --------------------------------------------------------------------------- provenance


def package_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    versions = {"abawbench": __version__, "python": platform.python_version()}
    for name in ("torch", "timm", "numpy", "h5py", "pydantic", "pluggy"):
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            continue
    return versions


def git_commit() -> str | None:
    """The commit of the abawbench source tree, when it is a git checkout."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True,
                             text=True, timeout=5, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def _jsonable(config: RunConfig) -> dict[str, Any]:
    return config.model_dump(mode="json")


def run_config(config: RunConfig, host: PluginHost | None = None, progress: bool = True) -> RunSummary:
    """Run a whole configuration (the ``abawbench run`` command without the printing)."""
    return Runner(config, host=host, progress=progress).run()


def mean_std(values: Iterable[float]) -> tuple[float, float]:
    array = np.asarray(list(values), dtype=np.float64)
    spread = float(array.std(ddof=1)) if array.size > 1 else 0.0
    return float(array.mean()), spread
