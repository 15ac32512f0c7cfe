"""Fine-tuning: backbone and heads trained end to end on images.

Training images get the configured augmentation; validation and test images never get any (a
defect of the seed paper's code we do not repeat). With a pixel cache, validation and test,
predicted every epoch and once, come from pixel packs after their first pass instead of being
decoded again (:mod:`abawbench.features.pixel_packs`).

Batches are mixed (one shuffled loader over all training rows; each loss term reads the rows
labelled for its task) or per task (``task_batching = "per-task"``: each step one batch from
each task's labelled rows, one forward pass each, for methods that train that way). A network
can start from another entry's weights (:mod:`abawbench.training.warm_start`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Mapping, Sequence

import torch
from torch import nn
from torch.utils.data import DataLoader, Subset

from abawbench.features.pixel_packs import PixelPackStore
from abawbench.device import autocast_context, loader_kwargs, prepare_batch, prepare_module
from abawbench.features.extract import Batches, ImageDataset, consume_eval_batches, decoded_batches, eval_transform
from abawbench.errors import RunFailedError
from abawbench.labels import TaskSpec
from abawbench.parallel.context import DistContext
from abawbench.features.preprocess import Preprocessing, collate_images
from abawbench.specs import Backbone
from abawbench.training.heads import BackboneWithHeads, build_heads, to_probabilities
from abawbench.training.loop import MakeLoss, Outcome, Targets, TaskParts, labels_as_tensors, train_network
from abawbench.training.warm_start import apply_warm_start
from abawbench.tracks import Track

if TYPE_CHECKING:
    from abawbench.config import ProtocolConfig
    from abawbench.data.index import SampleIndex

FINETUNE_KIND = "finetune"
"""``kind`` of a fine-tuned network's saved state."""

Augment = Callable[[Callable[[Any], torch.Tensor]], Callable[[Any], torch.Tensor]]
"""Wraps the backbone's deterministic pixels in a random training transform
(:func:`abawbench.training.augmentation.resolve_augmentation`)."""


def predict_images(network: nn.Module, batches: Batches, device: torch.device,
                   tasks: tuple[TaskSpec, ...], normalize: Callable[[torch.Tensor], torch.Tensor]
                   ) -> dict[str, torch.Tensor]:
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


def _repeated(loader: DataLoader, steps: int) -> Iterator[Any]:
    """``steps`` batches of ``loader``, starting a new (reshuffled) pass whenever one ends: a
    task with fewer labelled rows is repeated to the longest task's length."""
    done = 0
    while done < steps:
        for batch in loader:
            yield batch
            done += 1
            if done == steps:
                return


class ImageFeed:
    """Training batches of augmented images, shuffled by a generator of the run's seed;
    evaluation passes over un-augmented images (from pixel packs when ``pixel_cache``)."""

    def __init__(self, splits: Mapping[str, "SampleIndex"], preprocessing: Preprocessing, augment: Augment,
                 tasks: tuple[TaskSpec, ...], protocol: "ProtocolConfig", seed: int, device: torch.device, *,
                 pixel_cache: PixelPackStore | None, progress: bool, desc: str) -> None:
        self.splits = splits
        self.preprocessing = preprocessing
        self.tasks = tasks
        self.batch_size = protocol.batch_size
        self.num_workers = protocol.num_workers
        self.device = device
        self.pixel_cache = pixel_cache
        self.progress = progress
        self.desc = desc
        train = splits["train"]
        dataset = ImageDataset(train, augment(preprocessing.pixels))

        def loader(rows: Sequence[int] | None, stream: int) -> DataLoader:
            part = dataset if rows is None else Subset(dataset, list(rows))
            return DataLoader(part, shuffle=True, generator=torch.Generator().manual_seed(seed + stream),
                              drop_last=len(part) > protocol.batch_size, batch_size=protocol.batch_size,
                              num_workers=protocol.num_workers, collate_fn=collate_images, **loader_kwargs(device))

        self.targets = labels_as_tensors(train.labels)
        self.per_task = protocol.task_batching == "per-task"
        self.loader = loader(None, 0)
        # per task: one loader over the rows labelled for each task (its own shuffling stream)
        self.task_loaders = {task: loader(mask.nonzero().flatten().tolist(), k + 1)
                             for k, (task, (_, mask)) in enumerate(self.targets.items())
                             if self.per_task and bool(mask.any())}
        if self.per_task and not self.task_loaders:
            raise RunFailedError("per-task batches: no training row is labelled for any task")

    @property
    def batches_per_epoch(self) -> int:
        """Optimiser steps per epoch (a per-step schedule's unit): per task, the longest task's."""
        return max(len(loader) for loader in self.task_loaders.values()) if self.per_task else len(self.loader)

    def training_batches(self, epoch: int) -> Iterator[tuple[Any, Targets | None]]:
        from tqdm.auto import tqdm

        if self.per_task:
            steps: Iterable[Any] = zip(*(_repeated(loader, self.batches_per_epoch)
                                         for loader in self.task_loaders.values()))
        else:
            steps = ([batch] for batch in self.loader)
        for step in tqdm(steps, desc=f"{self.desc} epoch {epoch}", total=self.batches_per_epoch,
                         disable=not self.progress, leave=False):
            parts = [self._part(images, rows, task) for (images, rows), task
                     in zip(step, self.task_loaders if self.per_task else [None])]
            yield (TaskParts(parts), None) if self.per_task else parts[0]

    def _part(self, images: torch.Tensor, rows: torch.Tensor, only: str | None) -> tuple[torch.Tensor, Targets]:
        """A batch on the device with its targets; ``only``: the other tasks' labels masked out,
        so a task's batch trains that task alone (per-task batching)."""
        images = prepare_batch(images, self.device, self.preprocessing.normalize)
        return images, {t: (v[rows].to(self.device), (m[rows] & (only in (None, t))).to(self.device))
                        for t, (v, m) in self.targets.items()}

    def outputs(self, network: nn.Module, inputs: torch.Tensor) -> dict[str, torch.Tensor]:
        with autocast_context(self.device):
            raw = network(inputs)
        return {t: r.float() for t, r in raw.items()}

    def predict(self, network: nn.Module, split: str) -> dict[str, torch.Tensor]:
        predictions: dict[str, torch.Tensor] = {}
        if not consume_eval_batches(
                self.splits[split], split, self.preprocessing, self.device,
                lambda batches: predictions.update(
                    predict_images(network, batches, self.device, self.tasks, self.preprocessing.normalize)),
                batch_size=self.batch_size, num_workers=self.num_workers, pixel_cache=self.pixel_cache):
            self.pixel_cache = None  # a pack that cannot be written is not tried again every epoch
        return predictions


def finetune(backbone: Backbone, splits: Mapping[str, "SampleIndex"], track: Track, make_loss: MakeLoss,
             protocol: "ProtocolConfig", seed: int, device: torch.device, augment: Augment, *,
             pixel_cache: PixelPackStore | None = None, progress: bool = True, desc: str = "finetune",
             warm_start: Mapping[str, Any] | None = None, context: DistContext = DistContext(),
             select_on: str = "validation") -> Outcome:
    """Train ``backbone`` with heads for ``track`` end to end; the outcome's ``state`` is what
    :func:`predict_with_network` needs. ``warm_start``: a saved state (another entry's weights
    file) that initialises the network before training (:mod:`abawbench.training.warm_start`).
    With several ranks (``context``), every rank calls this together and trains with
    DistributedDataParallel (:mod:`abawbench.parallel.ddp`)."""
    torch.manual_seed(seed)
    heads = build_heads(backbone, track.tasks, protocol.head)
    assembled = BackboneWithHeads(backbone.module, heads)
    if warm_start is not None:
        apply_warm_start(assembled, warm_start)
    network = prepare_module(assembled, device)
    loss = make_loss()
    if isinstance(loss, nn.Module):
        loss = loss.to(device)  # class weights and pos_weight are buffers
    if context.distributed:
        from abawbench.parallel.ddp import DistributedImageFeed, plain_state, wrap

        network = wrap(network, device)
        feed: ImageFeed = DistributedImageFeed(splits, eval_transform(backbone.data_config), augment, track.tasks,
                                               protocol, seed=seed, device=device, pixel_cache=None,
                                               progress=progress, desc=desc, context=context)
    else:
        feed = ImageFeed(splits, eval_transform(backbone.data_config), augment, track.tasks, protocol, seed, device,
                         pixel_cache=pixel_cache, progress=progress, desc=desc)
    outcome = train_network(network, feed, track, loss, protocol, progress=progress, desc=desc,
                            select_on=select_on)
    state = plain_state(outcome.state) if context.distributed else outcome.state
    outcome.state = {"kind": FINETUNE_KIND, "network": state}
    return outcome


def predict_with_network(state: Mapping[str, Any], backbone: Backbone, tasks: tuple[TaskSpec, ...], head: str,
                         index: "SampleIndex", device: torch.device, *, batch_size: int) -> dict[str, torch.Tensor]:
    """Probabilities of a saved fine-tuned network (``state`` from :func:`finetune`, on a fresh
    ``backbone`` of the same model) on every image of ``index``."""
    network = BackboneWithHeads(backbone.module, build_heads(backbone, tasks, head))
    network.load_state_dict(state["network"])
    network = prepare_module(network, device)
    preprocessing = eval_transform(backbone.data_config)
    batches: Iterable[tuple[int, torch.Tensor]] = decoded_batches(index, preprocessing, device,
                                                                  batch_size=batch_size, num_workers=0)
    return predict_images(network, batches, device, tasks, preprocessing.normalize)
