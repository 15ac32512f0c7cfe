"""The linear probe: heads trained on a frozen backbone's cached features.

Features are standardised with the training split's statistics, then fed to the shared loop
(:mod:`abawbench.training.loop`) as seeded shuffles of in-memory rows. The saved state holds
the heads and the standardisation, so ``abawbench predict`` can apply them to new features.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterator, Mapping

import numpy as np
import torch
from torch import nn

from abawbench.labels import TaskSpec
from abawbench.training.heads import TaskHeads, to_probabilities
from abawbench.training.loop import MakeLoss, Outcome, Targets, batches_of_rows, labels_as_tensors, train_network
from abawbench.tracks import Track

if TYPE_CHECKING:
    from abawbench.config import ProtocolConfig
    from abawbench.data.index import SampleIndex

PROBE_KIND = "linear-probe"
"""``kind`` of a probe's saved state."""


class FeatureFeed:
    """Training batches of cached feature rows: a fresh permutation per epoch from a generator
    of the run's seed (not torch's global one, which dropout in an ``mlp`` head draws from)."""

    def __init__(self, features: Mapping[str, torch.Tensor], splits: Mapping[str, "SampleIndex"],
                 tasks: tuple[TaskSpec, ...], batch_size: int, seed: int) -> None:
        self.features = features
        self.splits = splits
        self.tasks = tasks
        self.batch_size = batch_size
        self.targets = labels_as_tensors(splits["train"].labels)
        self.generator = torch.Generator().manual_seed(seed)

    @property
    def batches_per_epoch(self) -> int:
        return -(-self.features["train"].shape[0] // self.batch_size)

    def training_batches(self, epoch: int) -> Iterator[tuple[torch.Tensor, Targets]]:
        x_train = self.features["train"]
        order = torch.randperm(x_train.shape[0], generator=self.generator)
        for rows in batches_of_rows(order, self.batch_size):
            yield x_train[rows], {t: (v[rows], m[rows]) for t, (v, m) in self.targets.items()}

    def outputs(self, network: nn.Module, inputs: torch.Tensor) -> dict[str, torch.Tensor]:
        return network(inputs)

    def predict(self, network: nn.Module, split: str) -> dict[str, torch.Tensor]:
        network.eval()
        with torch.no_grad():
            return to_probabilities(self.tasks, network(self.features[split]))


def standardisation(train: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and scale of the training features, per column.

    A feature constant on train (a dead unit) would be divided by ~0 and explode on validation
    and test: its scale is left at 1 instead."""
    mean = train.mean(axis=0, keepdims=True)
    std = train.std(axis=0, keepdims=True)
    std = np.where(std < 1e-3 * max(float(std.max()), 1e-12), 1.0, std).astype(np.float32)
    return mean, std


def train_linear_probe(features: Mapping[str, np.ndarray], splits: Mapping[str, "SampleIndex"], track: Track,
                       make_loss: MakeLoss, protocol: "ProtocolConfig", seed: int, *,
                       progress: bool = True, desc: str = "train", select_on: str = "validation") -> Outcome:
    """Heads on ``features`` (per split, rows in the split's order); the outcome's ``state`` is
    what :func:`predict_with_probe` needs."""
    mean, std = standardisation(features["train"])
    normalised = {s: torch.from_numpy((f - mean) / std).float() for s, f in features.items()}
    torch.manual_seed(seed)
    heads = TaskHeads(normalised["train"].shape[1], track.tasks, kind=protocol.head)
    feed = FeatureFeed(normalised, splits, track.tasks, protocol.batch_size, seed)
    outcome = train_network(heads, feed, track, make_loss(), protocol, progress=progress, desc=desc,
                            select_on=select_on)
    outcome.state = {"kind": PROBE_KIND, "heads": outcome.state, "feature_mean": torch.from_numpy(mean),
                     "feature_std": torch.from_numpy(std)}
    return outcome


def predict_with_probe(state: Mapping[str, Any], features: np.ndarray, tasks: tuple[TaskSpec, ...],
                       head: str) -> dict[str, torch.Tensor]:
    """Probabilities of a saved probe (``state`` from :func:`train_linear_probe`) on features."""
    normalised = (torch.from_numpy(features) - state["feature_mean"]) / state["feature_std"]
    heads = TaskHeads(normalised.shape[1], tasks, kind=head)
    heads.load_state_dict(state["heads"])
    heads.eval()
    with torch.no_grad():
        return to_probabilities(tasks, heads(normalised.float()))
