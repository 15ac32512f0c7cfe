"""What a run will do, decided before anything is trained: its entries, its dataset, its data.

Every name in the configuration (models, losses, the augmentation) is looked up here, so a
typo fails at once with close names instead of after an hour of training; the data is indexed
here too (cheap), since whether a completed result can be reused depends on it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from abawbench.config import ProtocolConfig, RunConfig
from abawbench.data.choice import choose_dataset
from abawbench.data.decode import drop_undecodable
from abawbench.data.index import SampleIndex
from abawbench.data.problems import MAX_LISTED
from abawbench.errors import ConfigError, DataFormatError
from abawbench.features.key import default_cache_root
from abawbench.plugins import PluginHost
from abawbench.results.schema import SELECTION_SPLITS, DataIdentity, EntrySpecModel, PluginSupplier
from abawbench.run.features import FUSION_SEPARATOR
from abawbench.specs import DatasetSpec, ReadOptions
from abawbench.tracks import Track
from abawbench.training.augmentation import resolve_augmentation

log = logging.getLogger(__name__)

LABELLED_SPLITS = ("train", "validation")


@dataclass
class PreparedData:
    """The indexed splits of a run and where they came from (the dataset plugin, its root)."""

    dataset: str
    root: Path
    splits: dict[str, SampleIndex]

    def fingerprints(self) -> dict[str, str]:
        return {split: index.fingerprint for split, index in self.splits.items()}

    def identity(self) -> DataIdentity:
        """What an entry's identity holds of the data: the dataset and the fingerprints of the
        splits trained on and scored (the test split changes neither a weight nor a score)."""
        return DataIdentity(dataset=self.dataset,
                            fingerprints={split: self.splits[split].fingerprint for split in LABELLED_SPLITS})


def cache_root_of(config: RunConfig) -> Path:
    """The cache folder of a run: the configured one, else the default."""
    return Path(config.cache_dir) if config.cache_dir else default_cache_root()


def plan_entries(host: PluginHost, config: RunConfig, track: Track) -> list[EntrySpecModel]:
    """Every (model, loss) entry of the configuration, its names checked against the plugins."""
    models = list(config.models) or [
        e.name for e in host.models.entries() if getattr(e.item, "default_run", False)
    ]
    if not models:
        raise ConfigError("no models given and no plugin proposes a default model; use --models")
    losses = list(config.losses) or [track.default_loss]
    for name in models:
        for part in name.split(FUSION_SEPARATOR):
            host.models.get(part)  # unknown names fail now, with suggestions
        if FUSION_SEPARATOR in name and config.protocol.name != "linear-probe":
            raise ConfigError(f"fused model {name!r} needs --protocol linear-probe (it reads cached features)")
    for name in losses:
        host.losses.get(name)
    resolve_augmentation(config.protocol.augmentation, host.augmentations)
    protocol = resolved_protocol(config, track)
    return [
        EntrySpecModel(model=m, loss=l, protocol=protocol, weights=config.weights,
                       loss_options=dict(config.loss_options.get(l, {})))
        for m in models for l in losses
    ]


def resolved_protocol(config: RunConfig, track: Track) -> ProtocolConfig:
    """The protocol with its selection split resolved (unset: the track's default), so that an
    entry's identity and its result say where it was selected, whatever the default was then.
    Zero-shot selects nothing: neither the selection nor the holdout size is part of its
    identity (its result records selection ``none``)."""
    if config.protocol.name == "zero-shot":
        return config.protocol.model_copy(update={"selection": None})
    if config.protocol.selection is not None:
        return config.protocol
    if track.default_selection not in SELECTION_SPLITS:
        raise ConfigError(f"track {track.name!r} declares default_selection {track.default_selection!r}; "
                          f"expected one of {list(SELECTION_SPLITS)}")
    return config.protocol.model_copy(update={"selection": track.default_selection})


def entry_labels(label: str | None, entries: list[EntrySpecModel]) -> dict[str, str]:
    """Entry id -> the label tables show and commands accept: the configured label (followed by
    the readable id when the run has several entries, so each stays distinct), else the
    readable id."""
    if label is None:
        return {entry.entry_id: entry.readable_id for entry in entries}
    if len(entries) == 1:
        return {entries[0].entry_id: label}
    return {entry.entry_id: f"{label}/{entry.readable_id}" for entry in entries}


def entry_provenance(host: PluginHost, entry: EntrySpecModel, dataset: str,
                     track: Track) -> dict[str, PluginSupplier]:
    """Which plugin supplied each part of an entry (every backbone of a fused model as
    ``model:<part>``), for the result file."""
    parts = entry.model.split(FUSION_SEPARATOR)
    models = ({"model": entry.model} if len(parts) == 1
              else {f"model:{part}": part for part in parts})
    provenance = {role: host.supplier("models", name) for role, name in models.items()}
    provenance["loss"] = host.supplier("losses", entry.loss)
    provenance["dataset"] = host.supplier("datasets", dataset)
    provenance["track"] = host.supplier("tracks", track.name)
    return provenance


def _without_undecodable(index: SampleIndex, cache_root: Path) -> SampleIndex:
    """``index`` without the images that do not decode (the verdict is cached per fingerprint),
    the first few logged."""
    index, dropped = drop_undecodable(index, cache_root)
    for problem in dropped[:MAX_LISTED]:
        log.warning("%s", problem)
    if len(dropped) > MAX_LISTED:
        log.warning("... and %d more undecodable image(s) skipped (run 'abawbench data check' to see all)",
                    len(dropped) - MAX_LISTED)
    return index


def prepare_data(host: PluginHost, config: RunConfig, track: Track, cache_root: Path) -> PreparedData:
    """Index the labelled splits (they must not be empty) and, when the data has one, the test split."""
    spec = choose_dataset(host, track, config.dataset, from_path=config.data is not None)
    if config.data is not None:
        root = Path(config.data)
        if not root.is_dir():
            raise ConfigError(f"--data {root}: not a folder")
    elif spec.default_root is None:
        raise ConfigError(f"dataset {spec.name!r} reads data from a path: pass --data")
    else:
        root = spec.default_root(track.name, cache_root)
    options = ReadOptions(skip_bad=config.skip_bad, cache_dir=cache_root, test_image_folder=config.test_images)
    splits = {split: spec.read_split(root, track, split, options) for split in LABELLED_SPLITS}
    try:
        splits["test"] = spec.read_split(root, track, "test", options)
    except (DataFormatError, FileNotFoundError) as exc:
        log.warning("no usable test split (%s); predictions cover validation only", exc)
    if config.skip_bad:  # whatever the dataset plugin: only decoding proves an image usable
        splits = {split: _without_undecodable(index, cache_root) for split, index in splits.items()}
    for split, index in splits.items():
        if split in LABELLED_SPLITS and len(index) == 0:
            raise DataFormatError(f"{root}: the {split} split is empty")
    return PreparedData(dataset=spec.name, root=root, splits=splits)
