"""Is synthface's LSD track learnable, and does it have a real domain gap?

Trains the same small CNN (plain torch, CPU) twice and scores both on the held-out real-domain
validation split (macro F1, the LSD score):

- on the tree's synthetic training split (``training_set_synthetic_images``), and
- on a real-domain twin of it: the same jobs (classes, identities, count) rendered in the
  ``real`` domain with other seeds, so only the domain differs.

Expected: synthetic-trained clearly above chance (1/6), real-trained higher still. Usage::

    .venv/bin/python scripts/synthface_learnability.py --size 1500 --image-size 40 --epochs 20
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from sklearn.metrics import f1_score
from torch import nn

from abawbench.plugins import load_plugins
from abawbench.specs import ReadOptions
from abawbench_synthface import tree
from abawbench_synthface.plans import lsd_jobs


def small_cnn(classes: int = 6) -> nn.Module:
    """A strided stem, three conv blocks and a linear head: enough to read a 40 px face, small
    enough (about 5 M multiply-adds an image) to train in a few minutes on two busy CPU cores."""

    def block(cin: int, cout: int, pool: bool) -> nn.Sequential:
        layers = [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]
        return nn.Sequential(*layers, nn.MaxPool2d(2)) if pool else nn.Sequential(*layers)

    stem = nn.Sequential(nn.Conv2d(3, 24, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(24), nn.ReLU(inplace=True))
    return nn.Sequential(stem, block(24, 32, True), block(32, 64, True), block(64, 96, False),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.2), nn.Linear(96, classes))


def load_images(root: Path, paths: list[str]) -> torch.Tensor:
    """Images standardised per image and channel: a lighting change or colour cast then
    shifts no input statistics, so the comparison measures what is left of the domain gap
    (geometry, noise, occlusion, subtlety) rather than BatchNorm statistics that do not
    transfer."""
    arrays = [np.asarray(Image.open(root / p).convert("RGB")) for p in paths]
    x = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float()
    mean = x.mean(dim=(2, 3), keepdim=True)
    std = x.std(dim=(2, 3), keepdim=True).clamp(min=1.0)
    return (x - mean) / std


def train(x: torch.Tensor, y: torch.Tensor, epochs: int, seed: int) -> nn.Module:
    """Adam, class-weighted cross-entropy (the synthetic split is imbalanced like the real
    release), horizontal flips."""
    torch.manual_seed(seed)
    model = small_cnn()
    counts = torch.bincount(y, minlength=6).float()
    loss_fn = nn.CrossEntropyLoss(weight=counts.sum() / (6 * counts.clamp(min=1)))
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-4)
    steps = epochs * ((len(y) + 63) // 64)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=steps)
    gen = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(y), generator=gen)
        for start in range(0, len(y), 64):
            idx = order[start : start + 64]
            xb = x[idx]
            flip = torch.rand(len(idx), generator=gen) < 0.5
            xb = torch.where(flip[:, None, None, None], xb.flip(3), xb)
            loss = loss_fn(model(xb), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    return model


@torch.no_grad()
def macro_f1(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    pred = torch.cat([model(x[i : i + 256]).argmax(1) for i in range(0, len(x), 256)])
    return float(f1_score(y.numpy(), pred.numpy(), average="macro", labels=list(range(6))))


def real_twin(root: Path, size: int, seed: int, image_size: int) -> tuple[list[str], list[int]]:
    """The synthetic training jobs again, rendered in the real domain with other seeds."""
    jobs = [
        replace(job, path=job.path.replace("training_set_synthetic_images", "real_twin"),
                seed_key=(seed + 7919,) + job.seed_key[1:], domain="real")
        for job in lsd_jobs("train", size, seed)
    ]
    for folder in {str(Path(job.path).parent) for job in jobs}:
        (root / folder).mkdir(parents=True, exist_ok=True)
    tree.render_all(root, jobs, image_size, workers=1)
    return [job.path for job in jobs], [job.mtl_class - 1 for job in jobs]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1500, help="training images (validation follows)")
    parser.add_argument("--image-size", type=int, default=40)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    host = load_plugins(strict=True)
    track = host.tracks.get("lsd")
    with tempfile.TemporaryDirectory() as tmp:
        root = tree.generate("lsd", Path(tmp) / "lsd", args.size, args.seed, image_size=args.image_size)
        spec = host.datasets.get("synthface")
        train_idx = spec.read_split(root, track, "train", ReadOptions())
        val_idx = spec.read_split(root, track, "validation", ReadOptions())
        x_syn, y_syn = load_images(root, train_idx.paths), torch.from_numpy(train_idx.labels["expr"].values)
        x_val, y_val = load_images(root, val_idx.paths), torch.from_numpy(val_idx.labels["expr"].values)
        twin_paths, twin_labels = real_twin(Path(tmp) / "twin", args.size, args.seed, args.image_size)
        x_real, y_real = load_images(Path(tmp) / "twin", twin_paths), torch.tensor(twin_labels)
    data_s = time.perf_counter() - started
    results = {}
    for name, (x, y) in {"synthetic-trained": (x_syn, y_syn), "real-trained": (x_real, y_real)}.items():
        t0 = time.perf_counter()
        model = train(x, y, args.epochs, args.seed)
        results[name] = {"macro_f1_real_validation": round(macro_f1(model, x_val, y_val), 4),
                         "train_s": round(time.perf_counter() - t0, 1)}
        print(f"{name:18s} macro F1 on real validation: {results[name]['macro_f1_real_validation']:.4f}"
              f"  (trained in {results[name]['train_s']:.0f} s)")
    summary = {"args": {k: str(v) for k, v in vars(args).items()}, "chance_macro_f1": round(1 / 6, 4),
               "train_images": len(y_syn), "validation_images": len(y_val), "data_s": round(data_s, 1),
               "generator_version": tree.GENERATOR_VERSION, "results": results}
    print(json.dumps(summary, indent=2))
    if args.out:
        args.out.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
