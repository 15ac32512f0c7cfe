"""Is synthface's LSD track learnable, and does it have a real domain gap?

Two measurements, both scored on the held-out real-domain validation split (macro F1, the LSD
score; chance 1/6):

1. Linear probes (``--mode probe``, seconds): logistic regression on standardised HOG features
   (9 orientation bins, 8 px cells, block-normalised) and, with ``--mobilenet``, on the pooled
   features of a RANDOM-weight timm mobilenetv3_small_100. No training of features at all, so
   a probe above chance says the expression is plainly visible in the pixels.
2. A small CNN (``--mode cnn``) trained the same way twice (plain torch, CPU) twice and scores both on the held-out real-domain
validation split (macro F1, the LSD score):

- on the tree's synthetic training split (``training_set_synthetic_images``), and
- on a real-domain twin of it: the same jobs (classes, identities, count) rendered in the
  ``real`` domain with other seeds, so only the domain differs.

Expected: synthetic-trained clearly above chance (1/6), real-trained higher still. Usage::

    .venv/bin/python scripts/synthface_learnability.py --size 1500 --image-size 40 --epochs 20
    .venv/bin/python scripts/synthface_learnability.py --mode probe --tree ROOT --mobilenet
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
from torch.nn import functional as F

from abawbench.plugins import load_plugins
from abawbench.specs import ReadOptions
from abawbench_builtins.synthface import tree
from abawbench_builtins.synthface.plans import lsd_jobs


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


def hog(x: torch.Tensor, cell: int = 8, bins: int = 9) -> torch.Tensor:
    """HOG features of images ``x`` [N, 3, H, W] in [0, 1]: Sobel gradients of the grey image,
    magnitude-weighted orientation histograms (unsigned, linearly interpolated between bins)
    per ``cell`` x ``cell`` cell, each cell normalised by the energy of its 3x3 neighbourhood
    and clipped at 0.5. Torch rather than scikit-image: no extra dependency, and batched."""
    g = x.mean(1, keepdim=True)
    kx = torch.tensor([[-1.0, 0, 1], [-2, 0, 2], [-1, 0, 1]]).view(1, 1, 3, 3)
    gx, gy = F.conv2d(g, kx, padding=1), F.conv2d(g, kx.transpose(2, 3), padding=1)
    mag = torch.sqrt(gx**2 + gy**2 + 1e-12)
    pos = (torch.atan2(gy, gx) % np.pi) / np.pi * bins
    lo, w = pos.floor().long() % bins, pos - pos.floor()
    hist = torch.zeros(x.shape[0], bins, *x.shape[2:])
    hist.scatter_add_(1, lo, mag * (1 - w))
    hist.scatter_add_(1, (lo + 1) % bins, mag * w)
    cells = F.avg_pool2d(hist, cell)
    energy = F.avg_pool2d(cells.pow(2).sum(1, keepdim=True), 3, stride=1, padding=1, count_include_pad=False)
    return (cells / torch.sqrt(energy + 1e-6)).clamp(max=0.5).flatten(1)


def load_unit(root: Path, paths: list[str]) -> torch.Tensor:
    """Images as float [N, 3, H, W] in [0, 1], unnormalised (each probe normalises its own way)."""
    arrays = np.stack([np.asarray(Image.open(root / p).convert("RGB")) for p in paths])
    return torch.from_numpy(arrays).permute(0, 3, 1, 2).float() / 255.0


def linear_probe(f_train: np.ndarray, y_train: np.ndarray, f_val: np.ndarray, y_val: np.ndarray,
                 balanced: bool) -> float:
    """Macro F1 on validation of logistic regression (C=0.1) on standardised features.
    ``balanced`` weights classes inversely to their training counts (the synthetic split has
    the release's imbalance; the real validation split is balanced)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(f_train)
    clf = LogisticRegression(max_iter=2000, C=0.1, class_weight="balanced" if balanced else None)
    clf.fit(scaler.transform(f_train), y_train)
    pred = clf.predict(scaler.transform(f_val))
    return float(f1_score(y_val, pred, average="macro", labels=list(range(6))))


@torch.no_grad()
def mobilenet_features(x: torch.Tensor) -> torch.Tensor:
    """Pooled features of a random-weight (seed 0) mobilenetv3_small_100, inputs standardised
    per image: no pretrained weights, so nothing but the pixels can carry the expression."""
    import timm

    torch.manual_seed(0)
    model = timm.create_model("mobilenetv3_small_100", pretrained=False, num_classes=0).eval()
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    std = x.std(dim=(1, 2, 3), keepdim=True) + 1e-5
    return torch.cat([model((x[i : i + 128] - mean[i : i + 128]) / std[i : i + 128]) for i in range(0, len(x), 128)])


def probe_tree(root: Path, mobilenet: bool = False) -> dict[str, float]:
    """Every linear probe on an LSD tree: trained on its synthetic train split, scored on its
    real validation split."""
    host = load_plugins(strict=True)
    track, spec = host.tracks.get("lsd"), host.datasets.get("synthface")
    split = {s: spec.read_split(root, track, s, ReadOptions()) for s in ("train", "validation")}
    x = {s: load_unit(root, idx.paths) for s, idx in split.items()}
    y = {s: idx.labels["expr"].values for s, idx in split.items()}
    results = {}
    features = {"hog": {s: hog(v).numpy() for s, v in x.items()}}
    if mobilenet:
        features["mobilenetv3_small_100 random"] = {s: mobilenet_features(v).numpy() for s, v in x.items()}
    for name, f in features.items():
        for balanced in (False, True):
            key = f"{name} probe{' balanced' if balanced else ''}"
            results[key] = round(linear_probe(f["train"], y["train"], f["validation"], y["validation"], balanced), 4)
    return results


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


def cnn_gap(args: argparse.Namespace) -> dict:
    """Measurement 2: the small CNN trained on the synthetic split and on its real twin."""
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
    return {"train_images": len(y_syn), "validation_images": len(y_val), "data_s": round(data_s, 1),
            "results": results}


def probes(args: argparse.Namespace) -> dict:
    """Measurement 1: linear probes on ``--tree`` or on a freshly generated tree."""
    if args.tree is not None:
        return {"tree": str(args.tree), "results": probe_tree(args.tree, args.mobilenet)}
    with tempfile.TemporaryDirectory() as tmp:
        root = tree.generate("lsd", Path(tmp) / "lsd", args.size, args.seed, image_size=args.image_size)
        return {"results": probe_tree(root, args.mobilenet)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=("cnn", "probe"), default="cnn")
    parser.add_argument("--size", type=int, default=1500, help="training images (validation follows)")
    parser.add_argument("--image-size", type=int, default=40)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--tree", type=Path, help="probe mode: an existing LSD tree instead of a new one")
    parser.add_argument("--mobilenet", action="store_true", help="probe mode: also probe random mobilenet features")
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    summary = {"args": {k: str(v) for k, v in vars(args).items()}, "chance_macro_f1": round(1 / 6, 4),
               "generator_version": tree.GENERATOR_VERSION}
    summary.update(cnn_gap(args) if args.mode == "cnn" else probes(args))
    print(json.dumps(summary, indent=2))
    if args.out:
        args.out.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
