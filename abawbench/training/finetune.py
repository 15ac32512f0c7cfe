"""Fine-tuning: backbone and heads trained end to end on images.

Training images get the configured augmentation; validation and test images never get any (a
defect of the seed paper's code we do not repeat). With a pixel cache, validation and test,
predicted every epoch and once, come from pixel packs after their first pass instead of being
decoded again (:mod:`abawbench.features.pixel_packs`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Mapping

import torch
from torch import nn
from torch.utils.data import DataLoader

from abawbench.features.pixel_packs import PixelPackStore
from abawbench.device import autocast_context, loader_kwargs, prepare_batch, prepare_module
from abawbench.features.extract import Batches, ImageDataset, consume_eval_batches, decoded_batches, eval_transform
from abawbench.labels import TaskSpec
from abawbench.features.preprocess import Preprocessing, collate_images
from abawbench.specs import Backbone
from abawbench.training.heads import BackboneWithHeads, build_heads, to_probabilities
from abawbench.training.loop import MakeLoss, Outcome, Targets, labels_as_tensors, train_network
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
        self.loader = DataLoader(ImageDataset(train, augment(preprocessing.pixels)), shuffle=True,
                                 generator=torch.Generator().manual_seed(seed),
                                 drop_last=len(train) > protocol.batch_size, batch_size=protocol.batch_size,
                                 num_workers=protocol.num_workers, collate_fn=collate_images,
                                 **loader_kwargs(device))
        self.targets = labels_as_tensors(train.labels)

    def training_batches(self, epoch: int) -> Iterator[tuple[torch.Tensor, Targets]]:
        from tqdm.auto import tqdm

        for images, rows in tqdm(self.loader, desc=f"{self.desc} epoch {epoch}", disable=not self.progress,
                                 leave=False):
            images = prepare_batch(images, self.device, self.preprocessing.normalize)
            yield images, {t: (v[rows].to(self.device), m[rows].to(self.device)) for t, (v, m) in self.targets.items()}

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
             select_on: str = "validation") -> Outcome:
    """Train ``backbone`` with heads for ``track`` end to end; the outcome's ``state`` is what
    :func:`predict_with_network` needs."""
    torch.manual_seed(seed)
    heads = build_heads(backbone, track.tasks, protocol.head)
    network = prepare_module(BackboneWithHeads(backbone.module, heads), device)
    loss = make_loss()
    if isinstance(loss, nn.Module):
        loss = loss.to(device)  # class weights and pos_weight are buffers
    feed = ImageFeed(splits, eval_transform(backbone.data_config), augment, track.tasks, protocol, seed, device,
                     pixel_cache=pixel_cache, progress=progress, desc=desc)
    outcome = train_network(network, feed, track, loss, protocol, progress=progress, desc=desc,
                            select_on=select_on)
    outcome.state = {"kind": FINETUNE_KIND, "network": outcome.state}
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
