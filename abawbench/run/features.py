"""Backbones and their features for the prepared splits of a run.

A run (and ``abawbench predict`` when it recomputes a probe's predictions) asks for the
features of a model on a split; they come from memory, else the HDF5 feature cache, else they
are extracted and cached. A model named ``a+b`` is a feature-level ensemble: one head on the
fused (concatenated or averaged) cached features of backbones ``a`` and ``b``.
"""

from __future__ import annotations

import hashlib
import itertools
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from torch import nn

from abawbench.features.key import CacheKey
from abawbench.features.pixel_packs import PixelPackStore
from abawbench.features.store import FeatureCache
from abawbench.config import RunConfig
from abawbench.data.index import SampleIndex
from abawbench.errors import ConfigError
from abawbench.features.device_decode import choose_device_decoding
from abawbench.features.extract import eval_transform, extract_features, precision_of
from abawbench.features.preprocess import image_decoder_identity
from abawbench.parallel.context import DistContext
from abawbench.parallel.sharded import sharded_entry
from abawbench.plugins import PluginHost
from abawbench.results.provenance import package_versions
from abawbench.specs import Backbone, ModelOptions

BACKBONE_SEED = 0
"""Random-init backbones are part of the model definition, not of the run seed: every seed of
an entry trains on the same backbone (and the same cached features)."""

FUSION_SEPARATOR = "+"
"""``a+b``: one head on the fused cached features of backbones ``a`` and ``b``."""


def build_backbone(host: PluginHost, model: str, weights: str, image_size: int | None) -> Backbone:
    """A fresh backbone of ``model`` as every run builds it (random weights from :data:`BACKBONE_SEED`)."""
    options = ModelOptions(weights=weights, image_size=image_size, extra={"seed": BACKBONE_SEED})
    return host.models.get(model).build(options)


def weights_identity(backbone: Backbone, weights: str) -> str:
    """The plugin's weights digest; for a random init, with a digest of the initial tensors.

    A plugin's digest of a random init names the seed, not the network: a changed architecture
    (or another torch drawing other numbers from the same seed) would share it. The tensors
    themselves cannot lie. Files and hub tags name their bytes; the code that loads them is
    covered by :func:`model_code_identity`.
    """
    if weights != "random" and not backbone.weights_digest.startswith("random:"):
        return backbone.weights_digest
    return f"{backbone.weights_digest}|init:{tensors_digest(backbone.module)}"


def tensors_digest(module: nn.Module) -> str:
    """sha256 over every parameter and buffer of ``module``: its name, dtype, shape and bytes."""
    digest = hashlib.sha256()
    for name, tensor in itertools.chain(module.named_parameters(), module.named_buffers()):
        flat = tensor.detach().cpu().contiguous().reshape(-1)
        digest.update(f"{name}|{flat.dtype}|{tuple(tensor.shape)}\n".encode())
        digest.update(flat.view(torch.uint8).numpy())  # the raw bytes, whatever the dtype
    return "sha256:" + digest.hexdigest()


def model_code_identity(host: PluginHost, model: str) -> dict[str, Any]:
    """The code that computes ``model``'s features, for every weights source: the torch and
    timm versions and the plugin that supplied the model (a reinstalled or upgraded plugin may
    build another network under the same name and weights digest)."""
    versions = package_versions()
    return {"torch": versions.get("torch"), "timm": versions.get("timm"), "plugin": host.supplier("models", model)}


class RunFeatures:
    """Features of every model a run uses on its splits; backbones and features are built once
    and shared by all the entries and seeds that use them."""

    def __init__(self, host: PluginHost, config: RunConfig, splits: Mapping[str, SampleIndex],
                 device: torch.device, cache_root: Path, *, progress: bool = True,
                 context: DistContext = DistContext()) -> None:
        self.host = host
        self.config = config
        self.splits = splits
        self.device = device
        self.feature_cache = FeatureCache(cache_root)
        self.pixel_packs = PixelPackStore(cache_root)
        self.progress = progress
        self.context = context  # several ranks extract each split together (abawbench.parallel)
        self._backbones: dict[str, Backbone] = {}
        self._model_identities: dict[str, tuple[str, dict[str, Any]]] = {}
        self._features: dict[tuple[str, str], np.ndarray] = {}
        self._cache_keys: dict[tuple[str, str], str] = {}

    def backbone(self, name: str) -> Backbone:
        """The frozen (eval-mode) backbone of model ``name``, built on first use (when its
        weights and code identity are taken, before any use could touch its tensors)."""
        if name not in self._backbones:
            backbone = build_backbone(self.host, name, self.config.weights, self.config.protocol.image_size)
            backbone.module.eval()
            self._model_identities[name] = (weights_identity(backbone, self.config.weights),
                                            model_code_identity(self.host, name))
            self._backbones[name] = backbone
        return self._backbones[name]

    def features(self, model: str, split: str) -> np.ndarray:
        """Features of a split, from memory, else the HDF5 cache, else extracted (and cached)."""
        if (model, split) in self._features:
            return self._features[(model, split)]
        if FUSION_SEPARATOR in model:
            return self._fused_features(model, split)
        protocol = self.config.protocol
        backbone = self.backbone(model)
        index = self.splits[split]
        weights, code = self._model_identities[model]
        device_decoding = choose_device_decoding(eval_transform(backbone.data_config), self.device)
        decoder = device_decoding.identity() if device_decoding is not None else image_decoder_identity()
        key = CacheKey(backbone=backbone.name, weights_digest=weights, model_code=code,
                       preprocessing=backbone.data_config | {"precision": precision_of(self.device)},
                       decoder=decoder, dataset_fingerprint=index.fingerprint, split=split)

        def extract(write: Any, shard: tuple[int, int] = (0, 1)) -> None:
            extract_features(backbone, index, self.device, write, batch_size=protocol.batch_size,
                             num_workers=protocol.num_workers, progress=self.progress,
                             desc=f"extract {model} {split}",
                             pixel_pack=(self.pixel_packs, split) if protocol.pixel_cache else None, shard=shard,
                             device_decoding=device_decoding)

        def get_or_create(produce: Any) -> Any:
            return self.feature_cache.get_or_create(key, sample_ids=index.paths, row_dim=backbone.feature_dim,
                                                    produce=produce)

        if self.context.distributed:
            entry = sharded_entry(self.context, get_or_create, extract)
        else:
            entry = get_or_create(lambda writer: extract(writer.write))
        array = entry.read()
        self._cache_keys[(model, split)] = key.digest()
        self._features[(model, split)] = array
        return array

    def cache_keys(self, model: str) -> dict[str, str]:
        """The feature cache keys ``model``'s features came from, per split (per split and part
        for a fused model), for the result file."""
        return {split: key for (name, split), key in self._cache_keys.items() if name == model}

    def _fused_features(self, model: str, split: str) -> np.ndarray:
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
