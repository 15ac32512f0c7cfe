"""Fine-tuning on several ranks: DistributedDataParallel and a distributed sampler.

Each rank trains on its part of every epoch's shuffle (``torch.utils.data.DistributedSampler``,
seeded with the run's seed and the epoch), ``batch_size`` images per rank per step, so one step
sees ``batch_size x world_size`` images: the global batch. DDP averages the gradients, which
equals the gradient of the global batch's mean loss when every rank's batch is equally large
(the sampler's ``drop_last`` keeps it so). BatchNorm statistics are each rank's own during
training (DDP's default); before every evaluation the ranks take rank 0's buffers, so the
network evaluated, selected and saved is rank 0's.

Evaluation is sharded like extraction (:func:`abawbench.features.extract.batch_starts`): each
rank predicts every ``world_size``-th batch, and the gathered predictions, in row order, are
scored on every rank, so every rank takes the same early-stopping decision.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler

from abawbench.device import autocast_context, loader_kwargs, prepare_batch
from abawbench.errors import ConfigError
from abawbench.features.extract import decoded_batches
from abawbench.features.preprocess import collate_images
from abawbench.parallel.context import DistContext
from abawbench.training.finetune import ImageFeed
from abawbench.training.heads import to_probabilities

DDP_PREFIX = "module."


def wrap(network: nn.Module, device: torch.device) -> DistributedDataParallel:
    """``network`` (already on ``device``) wrapped for data-parallel training."""
    return DistributedDataParallel(network, device_ids=[device.index] if device.type == "cuda" else None)


def plain_state(state: Mapping[str, Any]) -> dict[str, Any]:
    """A DDP wrapper's state dict with the wrapper's key prefix removed: the state one process
    saves, loadable by :func:`abawbench.training.finetune.predict_with_network`."""
    return {key.removeprefix(DDP_PREFIX): value for key, value in state.items()}


class DistributedImageFeed(ImageFeed):
    """:class:`ImageFeed` for one rank: its share of each epoch's training batches, and
    predictions of a split computed in shards and gathered in row order."""

    def __init__(self, *args: Any, context: DistContext, seed: int, **kwargs: Any) -> None:
        super().__init__(*args, seed=seed, **kwargs)
        if self.per_task:
            raise ConfigError("task_batching 'per-task' is not supported under torchrun yet; use 'mixed' "
                              "or run it as one process")
        self.context = context
        dataset = self.loader.dataset
        self.sampler = DistributedSampler(dataset, num_replicas=context.world_size, rank=context.rank,
                                          shuffle=True, seed=seed, drop_last=len(dataset) >= context.world_size)
        per_rank_rows = len(self.sampler)
        self.loader = DataLoader(dataset, sampler=self.sampler, batch_size=self.batch_size,
                                 drop_last=per_rank_rows > self.batch_size, num_workers=self.num_workers,
                                 collate_fn=collate_images, **loader_kwargs(self.device))
        self.pixel_cache = None  # packs are written by one process reading every image

    def training_batches(self, epoch: int):  # type: ignore[override]
        self.sampler.set_epoch(epoch)
        yield from super().training_batches(epoch)

    def predict(self, network: nn.Module, split: str) -> dict[str, torch.Tensor]:
        module = network.module if isinstance(network, DistributedDataParallel) else network
        for buffer in module.buffers():
            torch.distributed.broadcast(buffer, src=0)
        module.eval()
        mine: dict[int, dict[str, torch.Tensor]] = {}
        batches = decoded_batches(self.splits[split], self.preprocessing, self.device, batch_size=self.batch_size,
                                  num_workers=self.num_workers,
                                  shard=(self.context.rank, self.context.world_size))
        with torch.inference_mode():
            for start, images in batches:
                with autocast_context(self.device):
                    raw = module(prepare_batch(images, self.device, self.preprocessing.normalize))
                mine[start] = {task: value.float().cpu() for task, value in to_probabilities(self.tasks, raw).items()}
        parts = self.context.all_gather(mine)
        ordered = [batch for _start, batch in sorted(((s, b) for part in parts for s, b in part.items()),
                                                      key=lambda item: item[0])]
        return {task: torch.cat([batch[task] for batch in ordered]) for task in self.tasks_named(ordered)}

    @staticmethod
    def tasks_named(batches: list[dict[str, torch.Tensor]]) -> list[str]:
        return list(batches[0]) if batches else []
