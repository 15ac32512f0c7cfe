"""Warm start: another entry's saved weights initialise a network before it is fine-tuned.

``protocol.warm_start`` names a completed entry (label, entry id or folder, as ``ensemble
--members`` takes them) of the same track under the run's output, at the same seed. What it
saved decides what is initialised:

- a fine-tuned entry: the whole network, backbone and heads. A backbone module may define
  ``load_warm_start(state)`` to take another architecture's state (a deviation network loads a
  plain network's weights into both of its copies); otherwise names and shapes must match.
- a linear-probe entry: the heads only (the probe never changed its backbone: its features are
  extracted in eval mode, so its backbone *is* the model's weights). The probe's heads read
  standardised features; the standardisation is folded into their first linear layer, so the
  warm-started network predicts exactly what the probe did before its first update.

Anything that cannot be loaded is one :class:`ConfigError` naming the entry and the problem.
The source must be selected as the entry is (:func:`read_warm_start`), and the result records
the sha256 of the weights it started from (:func:`warm_start_digest`), so a warm-started result
is reused only while its source's weights are unchanged.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from abawbench.errors import AbawbenchError, ConfigError
from abawbench.results.files import read_result, read_weights
from abawbench.results.lookup import find_entry_result

FINETUNED = "finetune"
PROBED = "linear-probe"


def read_warm_start(runs: Path, track: str, name: str, seed: int, *, selection: str,
                    holdout_fraction: float) -> dict[str, Any]:
    """The saved state of entry ``name`` at ``seed`` under ``runs``, with ``source`` (its
    result file) added for error messages; ConfigError when it has no usable weights, or when
    it was selected otherwise than the entry it would start (``selection``, and the holdout's
    size): weights chosen on validation, or trained on rows that are this entry's holdout,
    would let the reported split or the selection split into a run that claims they did not."""
    path = find_entry_result(runs, track, name, seed)
    result = read_result(path)
    if result.status != "completed" or result.weights_file is None:
        raise ConfigError(f"warm start {name!r}: {path} is a {result.status} entry without saved weights; "
                          "run that entry first (same output folder and seed)")
    source_fraction = getattr(result.spec.protocol, "holdout_fraction", None)
    if result.selection != selection or (selection == "train-holdout" and source_fraction != holdout_fraction):
        raise ConfigError(f"warm start {name!r}: {path} was selected on {result.selection} "
                          f"(holdout fraction {source_fraction}), this entry on {selection} "
                          f"(holdout fraction {holdout_fraction}); start from an entry selected the same way")
    weights = path.parent / result.weights_file
    if not weights.is_file():
        raise ConfigError(f"warm start {name!r}: weights file {weights} is missing")
    return {**read_weights(weights), "source": str(weights), "sha256": file_digest(weights)}


def warm_start_digest(runs: Path, track: str, name: str, seed: int) -> str | None:
    """The sha256 of the weights entry ``name`` at ``seed`` holds now (None when there are
    none): a warm-started result is reused only while its source's weights are the ones it
    started from, so rerunning the source entry reruns what started from it."""
    try:
        path = find_entry_result(runs, track, name, seed)
        result = read_result(path)
    except (ConfigError, AbawbenchError):
        return None
    weights = path.parent / (result.weights_file or "")
    return file_digest(weights) if result.weights_file and weights.is_file() else None


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def apply_warm_start(network: nn.Module, state: Mapping[str, Any]) -> None:
    """Load ``state`` (from :func:`read_warm_start`) into ``network``, a module with ``backbone``
    and ``heads`` (:class:`abawbench.training.heads.BackboneWithHeads`)."""
    source = state.get("source", "warm start")
    kind = state.get("kind")
    if kind == FINETUNED:
        saved = state["network"]
        _load(network.backbone, _part(saved, "backbone."), source, "backbone")
        _load(network.heads, _part(saved, "heads."), source, "heads")
    elif kind == PROBED:
        heads = _folded_probe_heads(state["heads"], state["feature_mean"], state["feature_std"])
        _load(network.heads, heads, source, "heads")
    else:
        raise ConfigError(f"{source}: saved weights of kind {kind!r} cannot warm-start a network "
                          f"(expected {FINETUNED!r} or {PROBED!r})")


def _part(state: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {key[len(prefix):]: value for key, value in state.items() if key.startswith(prefix)}


def _load(module: nn.Module, state: dict[str, torch.Tensor], source: str, what: str) -> None:
    custom = getattr(module, "load_warm_start", None)
    try:
        if custom is not None:
            custom(state)
        else:
            module.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()
        raise ConfigError(f"{source}: its {what} do not fit this entry's {what} (another model or head?): "
                          f"{first[0] if first else exc}") from None


def _folded_probe_heads(heads: Mapping[str, torch.Tensor], mean: torch.Tensor,
                        std: torch.Tensor) -> dict[str, torch.Tensor]:
    """The probe's heads rewritten for raw features: ``W (x - m) / s + b`` is
    ``(W / s) x + (b - (W / s) m)``. The first linear layer on the features is the shared
    trunk's (mlp head) or, for a linear head, every task's output layer."""
    folded = dict(heads)
    first_layers = ["trunk.0"] if "trunk.0.weight" in heads else sorted(
        {key[: -len(".weight")] for key in heads if key.startswith("outputs.") and key.endswith(".weight")})
    mean, std = mean.reshape(-1).float(), std.reshape(-1).float()
    for layer in first_layers:
        weight = heads[f"{layer}.weight"].float() / std
        folded[f"{layer}.weight"] = weight
        folded[f"{layer}.bias"] = heads[f"{layer}.bias"].float() - weight @ mean
    return folded
