"""What a tree contains, decided before any pixel is drawn: one :class:`Job` per image.

Plans are pure functions of (track, split, sizes, seed). Each job carries its own seed key, so
an image's bytes do not depend on which process renders it or in what order; workers only
render. Class balance and label missingness follow the real data (figures in ABAW4.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from abawbench_builtins.abaw4.layout import LSD_FOLDERS, LSD_TEST_IMAGES, MTL_IMAGES
from abawbench_builtins.synthface.facs import LSD_CLASSES, LSD_TO_MTL

TRACK_CODES = {"lsd": 1, "mtl": 2}
SPLIT_CODES = {"train": 0, "validation": 1, "test": 2}

LSD_TRAIN_COUNTS = (18286, 15150, 10923, 73285, 144631, 14976)
"""Real LSD training counts (ANGER .. SURPRISE), as one participant read them."""
MTL_TRAIN_COUNTS = (23976, 4555, 3168, 3122, 18135, 7609, 5228, 24852)
MTL_VALIDATION_COUNTS = (1886, 487, 565, 1254, 3751, 1893, 1003, 4601)
MTL_TRAIN_PRESENT = {"va": 103917 / 142333, "expr": 90645 / 142333, "au": 103316 / 142333}
MTL_VALIDATION_PRESENT = {"va": 1.0, "expr": 15440 / 26876, "au": 1.0}

CLASS_FLOOR = 0.04
"""Smallest share of a split any class gets: the real imbalance, but no class so rare that a
small default tree leaves a model nothing to learn from."""
FRAMES_PER_VIDEO = 40


@dataclass(frozen=True)
class Job:
    """One image to render. ``path`` is relative to the tree root."""

    path: str
    seed_key: tuple[int, ...]
    identity_key: tuple[int, ...]
    mtl_class: int
    domain: str


@dataclass(frozen=True)
class SplitSizes:
    train: int
    validation: int
    test: int


def split_sizes(train: int) -> SplitSizes:
    """Validation about 2/7 and test about 1/7 of the training size (3500 -> 1000 / 500), with
    minimums that keep every class present in tiny test trees."""
    if train < 8:
        raise ValueError(f"size must be at least 8 training images, got {train}")
    return SplitSizes(train, max(16, round(train * 2 / 7)), max(8, round(train / 7)))


def class_counts(total: int, weights: tuple[float, ...], floor: float = CLASS_FLOOR) -> list[int]:
    """Counts proportional to ``weights`` summing to ``total``, no class under
    ``max(1, floor * total)``. Classes below the floor are raised to it and the rest share
    what is left, in proportion; rounding by largest remainder keeps the sum exact."""
    k = len(weights)
    minimum = max(1, int(round(floor * total)))
    if minimum * k > total:
        raise ValueError(f"{total} images cannot give {k} classes {minimum} each")
    w = np.asarray(weights, dtype=np.float64)
    fixed = np.zeros(k, dtype=bool)
    while True:
        free = total - minimum * fixed.sum()
        share = np.where(fixed, minimum, free * w / w[~fixed].sum())
        low = (~fixed) & (share < minimum)
        if not low.any():
            break
        fixed |= low
    counts = np.floor(share).astype(int)
    remainder = share - counts
    for i in np.argsort(-remainder, kind="stable")[: total - counts.sum()]:
        counts[i] += 1
    return counts.tolist()


def _shuffled_classes(rng: np.random.Generator, counts: list[int]) -> np.ndarray:
    return rng.permutation(np.repeat(np.arange(len(counts)), counts))


def lsd_jobs(split: str, n: int, seed: int) -> list[Job]:
    """LSD: synthetic training images foldered by class, imbalanced like the release; real
    validation and test images, balanced (the real validation balance is not published).
    Training identities and real-domain identities are disjoint pools."""
    track, code = TRACK_CODES["lsd"], SPLIT_CODES[split]
    rng = np.random.default_rng([seed, track, code, 999_999])
    weights = LSD_TRAIN_COUNTS if split == "train" else (1.0,) * len(LSD_CLASSES)
    counts = class_counts(n, weights)
    classes = np.repeat(np.arange(len(LSD_CLASSES)), counts)  # foldered: keep class order
    n_ids = max(6, n // 12)
    identities = rng.integers(0, n_ids, size=n)
    folder = LSD_FOLDERS.get(split)
    jobs = [
        Job(
            path=f"{folder}/{LSD_FOLDER_NAMES[cls]}/{i:06d}.jpg" if folder else "",
            seed_key=(seed, track, code, i),
            identity_key=(seed, track, 100 + code, ident),
            mtl_class=LSD_TO_MTL[cls],
            domain="synthetic" if split == "train" else "real",
        )
        for i, (cls, ident) in enumerate(zip(classes.tolist(), identities.tolist()))
    ]
    if split == "test":
        # Flat names 0.jpg, 1.jpg, ... in a shuffled order so the name says nothing of the class.
        order = rng.permutation(n)
        jobs = [
            Job(f"{LSD_TEST_IMAGES}/{k}.jpg", j.seed_key, j.identity_key, j.mtl_class, j.domain)
            for k, j in zip(range(n), (jobs[i] for i in order.tolist()))
        ]
    return jobs


LSD_FOLDER_NAMES = tuple("ANGRER" if name == "ANGER" else name for name in LSD_CLASSES)
"""Folder names as released: the anger folder is misspelled ``ANGRER`` in the real data."""


def mtl_jobs(split: str, n: int, seed: int) -> list[Job]:
    """MTL: frames of videos (one identity per video, disjoint across splits) under
    ``cropped_aligned/<video>/<frame>.jpg``. Expressions come in runs, as in video, with the
    s-Aff-Wild2 class balance (validation has its own)."""
    track, code = TRACK_CODES["mtl"], SPLIT_CODES[split]
    rng = np.random.default_rng([seed, track, code, 999_999])
    counts = class_counts(n, MTL_VALIDATION_COUNTS if split == "validation" else MTL_TRAIN_COUNTS)
    # Runs of 4-12 frames of one class, runs shuffled: expressions persist over frames.
    runs: list[np.ndarray] = []
    for cls, count in enumerate(counts):
        cuts = np.cumsum(rng.integers(4, 13, size=count))
        cuts = cuts[cuts < count]
        runs.extend(np.full(len(part), cls) for part in np.split(np.arange(count), cuts))
    classes = np.concatenate([runs[i] for i in rng.permutation(len(runs))])
    n_videos = max(2, int(np.ceil(n / FRAMES_PER_VIDEO)))
    video_of = np.sort(np.arange(n) % n_videos)
    tag = ("train", "valid", "test")[code]
    jobs = []
    frame = 0
    for i in range(n):
        if i > 0 and video_of[i] != video_of[i - 1]:
            frame = 0
        frame += 1
        video = int(video_of[i])
        jobs.append(
            Job(
                path=f"{MTL_IMAGES}/{tag}{video:03d}/{frame:05d}.jpg",
                seed_key=(seed, track, code, i),
                identity_key=(seed, track, 100 + code, video),
                mtl_class=int(classes[i]),
                domain="real",
            )
        )
    return jobs


def mtl_presence(split: str, n: int, seed: int) -> dict[str, np.ndarray]:
    """Which rows carry which label, with the s-Aff-Wild2 rates (exact counts, random rows).
    A row left with no label at all gets its expression back: the real files have no
    all-missing lines."""
    rates = MTL_TRAIN_PRESENT if split == "train" else MTL_VALIDATION_PRESENT
    rng = np.random.default_rng([seed, TRACK_CODES["mtl"], SPLIT_CODES[split], 888_888])
    present = {}
    for task, rate in rates.items():
        mask = np.zeros(n, dtype=bool)
        mask[rng.permutation(n)[: int(round(rate * n))]] = True
        present[task] = mask
    none = ~(present["va"] | present["expr"] | present["au"])
    present["expr"] |= none
    return present
