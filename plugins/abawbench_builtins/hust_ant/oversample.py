"""Offline rebalancing of an LSD training set by augmentation-based oversampling (HUST-ANT).

Every class is topped up to the majority class's count with RandAugment copies (2 ops,
magnitude 9, as the paper) of its own images, written as a *new tree in the official LSD
layout*, so the rest of abawbench reads it like any other dataset: the training folders hold
the originals (hard links where possible) plus the new images; validation and test are links
to the source's, never augmented.

Deterministic from a seed: which original each new image copies, and the RandAugment draws,
depend only on the seed, the class and the source tree. A tree is
materialised once per (source training fingerprint, seed, settings) in the cache, written
under a temporary name and renamed, so a killed run never leaves a half tree that looks done.

Command line, for any tree: ``python -m abawbench_builtins.hust_ant.oversample SRC OUT [--seed N]``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from abawbench.errors import CacheError, ConfigError, DataFormatError
from abawbench.specs import ReadOptions
from abawbench.tracks import Track
from abawbench_builtins.abaw4.layout import LSD_FOLDERS, LSD_TEST_IMAGES, LSD_TEST_RELEASE
from abawbench_builtins.abaw4.reader import read_split

FORMAT_VERSION = "hust-ant-oversample/2"
MANIFEST = "hust_ant_oversampling.json"
JPEG_QUALITY = 95


@dataclass(frozen=True)
class OversampleSettings:
    """What changes the generated tree (all of it goes into the cache key)."""

    seed: int = 0
    num_ops: int = 2
    magnitude: int = 9


def class_counts(labels: np.ndarray, n_classes: int) -> list[int]:
    return np.bincount(labels, minlength=n_classes).astype(int).tolist()


def plan(labels: np.ndarray, n_classes: int, seed: int) -> dict[int, list[int]]:
    """For each class, the rows (of ``labels``) the new images copy, in order: a seeded
    permutation of the class's rows repeated until the class reaches the majority count, so
    every original is used as evenly as possible."""
    counts = class_counts(labels, n_classes)
    target = max(counts)
    out: dict[int, list[int]] = {}
    for label in range(n_classes):
        rows = np.flatnonzero(labels == label)
        needed = target - rows.size
        if needed <= 0 or rows.size == 0:
            out[label] = []
            continue
        rng = np.random.default_rng([seed, label])
        repeats = -(-needed // rows.size)
        order = np.concatenate([rng.permutation(rows) for _ in range(repeats)])
        out[label] = order[:needed].tolist()
    return out


def augment_class(sources: Sequence[Path], destinations: Sequence[Path], settings: OversampleSettings,
                  label: int) -> None:
    """RandAugment copies of ``sources`` (in order) to ``destinations``. The random draws come
    from one generator seeded by (seed, class): the tree depends on nothing else, and seeding
    once per class (not per image) keeps torch's per-call seeding overhead out of the loop."""
    import torch
    from PIL import Image
    from torchvision.transforms import RandAugment

    transform = RandAugment(num_ops=settings.num_ops, magnitude=settings.magnitude)
    draw_seed = int.from_bytes(hashlib.sha256(f"{settings.seed}/{label}".encode()).digest()[:8], "little")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(draw_seed)
        for source, destination in zip(sources, destinations):
            try:
                with Image.open(source) as image:
                    image = image.convert("RGB")
            except OSError as exc:
                raise DataFormatError(f"{source}: cannot decode image: {exc}") from None
            transform(image).save(destination, format="JPEG", quality=JPEG_QUALITY)


def _link_or_copy(source: Path, destination: Path) -> None:
    try:
        os.link(source, destination)
    except OSError:  # another filesystem, or links not allowed
        shutil.copy2(source, destination)


def _link_tree(source: Path, destination: Path) -> None:
    """Validation/test are shared with the source: a symlink, a copy where links fail."""
    if not source.exists():
        return
    try:
        destination.symlink_to(source.resolve(), target_is_directory=source.is_dir())
    except OSError:
        (shutil.copytree if source.is_dir() else shutil.copy2)(source, destination)


def oversample_tree(source: Path, out: Path, track: Track, settings: OversampleSettings = OversampleSettings()) -> dict:
    """Write the oversampled tree of LSD tree ``source`` to ``out`` (which must not exist);
    returns the manifest (counts before and after, settings, source fingerprint)."""
    source, out = Path(source), Path(out)
    if out.exists():
        raise ConfigError(f"{out}: already exists; oversampling writes a new tree")
    index = read_split(source, track, "train", ReadOptions())
    classes = track.task("expr").names
    labels = index.labels["expr"].values
    train_out = out / LSD_FOLDERS["train"]
    for name in classes:
        (train_out / name).mkdir(parents=True)
    for row in range(len(index)):
        original = index.absolute_path(row)
        destination = train_out / classes[labels[row]] / original.name
        if destination.exists():  # two source folders of one class (ANGER and ANGRER)
            raise DataFormatError(f"{original}: another image of class {classes[labels[row]]} has the same name")
        _link_or_copy(original, destination)
    todo = plan(labels, len(classes), settings.seed)
    for label, rows in todo.items():
        originals = [index.absolute_path(row) for row in rows]
        names = [train_out / classes[label] / f"ros{settings.seed}_{k:06d}_{p.stem}.jpg" for k, p in enumerate(originals)]
        augment_class(originals, names, settings, label)
    for name in (LSD_FOLDERS["validation"], LSD_TEST_RELEASE, LSD_TEST_IMAGES):
        _link_tree(source / name, out / name)
    manifest = {
        "format": FORMAT_VERSION, "source": str(source.resolve()), "source_fingerprint": index.fingerprint,
        "settings": asdict(settings), "classes": list(classes),
        "counts_before": class_counts(labels, len(classes)),
        "counts_after": [n + len(todo[c]) for c, n in enumerate(class_counts(labels, len(classes)))],
    }
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    return manifest


def cache_key(source: Path, track: Track, settings: OversampleSettings) -> str:
    """Digest of everything the tree depends on: format, settings, the source's training
    fingerprint, and the source's location (validation/test are links into it)."""
    fingerprint = read_split(Path(source), track, "train", ReadOptions(check_images=False)).fingerprint
    payload = json.dumps({"format": FORMAT_VERSION, "settings": asdict(settings), "train": fingerprint,
                          "source": str(Path(source).resolve())}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:20]


def materialise(source: Path, cache_root: Path, track: Track,
                settings: OversampleSettings = OversampleSettings()) -> Path:
    """The oversampled tree of ``source`` under ``cache_root``, made once and reused. A folder
    without a readable manifest of the same key is not trusted: it is rebuilt."""
    key = cache_key(source, track, settings)
    final = Path(cache_root) / "hust_ant" / "oversampled" / key
    if _complete(final, key):
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=final.parent))
    try:
        tree = staging / "tree"
        manifest = oversample_tree(source, tree, track, settings)
        manifest["key"] = key
        (tree / MANIFEST).write_text(json.dumps(manifest, indent=2), encoding="utf-8")
        if _complete(final, key):  # a concurrent writer finished first: theirs is as good
            return final
        if final.exists():  # a stale or broken tree of the same key
            shutil.rmtree(final)
        try:
            os.replace(tree, final)
        except OSError as exc:
            if not _complete(final, key):  # a concurrent writer finished first: theirs is as good
                raise CacheError(f"{final}: cannot place the oversampled tree: {exc}") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return final


def _complete(folder: Path, key: str) -> bool:
    try:
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return manifest.get("key") == key and manifest.get("format") == FORMAT_VERSION


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m abawbench_builtins.hust_ant.oversample",
                                     description="Oversample an LSD training set to the majority count with RandAugment.")
    parser.add_argument("source", type=Path, help="LSD tree in the official layout")
    parser.add_argument("out", type=Path, help="new tree to write (must not exist)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--num-ops", type=int, default=2)
    parser.add_argument("--magnitude", type=int, default=9)
    args = parser.parse_args(argv)
    from abawbench.plugins import get_host

    track = get_host().tracks.get("lsd")
    manifest = oversample_tree(args.source, args.out, track,
                               OversampleSettings(args.seed, args.num_ops, args.magnitude))
    print(json.dumps({k: manifest[k] for k in ("classes", "counts_before", "counts_after")}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
