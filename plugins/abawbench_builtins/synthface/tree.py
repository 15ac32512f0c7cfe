"""Write a synthface tree in the official ABAW4 layout, atomically; keep one cached default.

A tree is built in a hidden sibling folder and renamed into place only when every image,
annotation file and the manifest are written, so a crash never leaves a half tree that looks
complete. The manifest (``synthface.json``, written last) is the completeness marker.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import uuid
from concurrent.futures import ProcessPoolExecutor
from functools import lru_cache
from multiprocessing import get_context
from pathlib import Path
from typing import Sequence

import numpy as np

from abawbench.errors import CacheError, ConfigError
from abawbench_builtins.abaw4 import layout
from abawbench_builtins.synthface.domains import DOMAINS, face_jpeg
from abawbench_builtins.synthface.facs import LABELLED_AUS, sample_expression
from abawbench_builtins.synthface.identities import Identity, make_identity
from abawbench_builtins.synthface.plans import Job, lsd_jobs, mtl_jobs, mtl_presence, split_sizes

GENERATOR_VERSION = 2
"""Bump whenever the bytes or labels a seed produces change: it names the cached trees.
tests/test_synthface.py pins a digest of a few renders per version, so a change that forgets
the bump fails there. History: 1 first release; 2 larger, darker expression features, stronger
AU geometry, face fills more of the frame, milder real-domain degradations and intensities."""
DEFAULT_SIZE = 3500
"""Training images per track of the embedded default (validation 1000, test 500)."""
DEFAULT_IMAGE_SIZE = 112
MANIFEST = "synthface.json"
LOCK_TIMEOUT_S = 900.0
BYTES_PER_PIXEL = 0.6
"""A generous bound on a rendered JPEG's size per pixel, for the free-space check before a
tree is written (the faces compress far better; annotation files add little)."""
DISK_FULL = (errno.ENOSPC, errno.EDQUOT)
TRACKS = ("lsd", "mtl")

MTL_HEADER = "image,valence,arousal,expression," + ",".join(LABELLED_AUS)

Labels = tuple[list[int], float, float]
"""What rendering a job reveals: AU labels (0/1), valence, arousal."""


def seeded_rng(key: Sequence[int]) -> np.random.Generator:
    """``np.random.default_rng(list(key))``, in the same state, at a fraction of its cost.

    numpy turns a list seed into 32-bit words, each integer into its little-endian 32-bit
    chunks (0 into one zero word), in ``_coerce_to_uint32_array``, and seeds from those words;
    given as a uint32 array they are used as they are. Building the words here skips numpy's
    per-integer arrays and concatenation, most of the seeding cost per image
    (docs/bench/synthface.md; a test compares the states). Negative keys are left to numpy,
    which refuses them."""
    words = []
    for value in key:
        value = int(value)
        if value < 0:
            return np.random.default_rng(list(key))
        if value == 0:
            words.append(0)
        while value > 0:
            words.append(value & 0xFFFFFFFF)
            value >>= 32
    return np.random.default_rng(np.array(words, dtype=np.uint32))


@lru_cache(maxsize=4096)
def identity_for(key: tuple[int, ...]) -> Identity:
    return make_identity(seeded_rng(key))


def render_job(root: str, job: Job, image_size: int) -> Labels:
    """Render one job into ``root`` and return its labels. The expression and the picture come
    from the same generator, seeded by the job alone."""
    rng = seeded_rng(job.seed_key)
    domain = DOMAINS[job.domain]
    expr = sample_expression(rng, job.mtl_class, domain.intensity)
    data = face_jpeg(rng, identity_for(job.identity_key), expr.activations, domain, image_size)
    with open(os.path.join(root, job.path), "wb") as handle:
        handle.write(data)
    return list(expr.au_labels), expr.valence, expr.arousal


def _render_chunk(args: tuple[str, Sequence[Job], int]) -> list[Labels]:
    root, jobs, image_size = args
    return [render_job(root, job, image_size) for job in jobs]


def render_all(root: Path, jobs: list[Job], image_size: int, workers: int) -> list[Labels]:
    """Render every job (folders must exist). Jobs carry their own seeds, so the bytes are
    the same for any number of workers; results come back in job order."""
    if workers <= 1 or len(jobs) < 256:
        return _render_chunk((str(root), jobs, image_size))
    chunk = 128
    pieces = [(str(root), jobs[i : i + chunk], image_size) for i in range(0, len(jobs), chunk)]
    # spawn, not fork: the parent may hold torch threads, and forking threads can deadlock.
    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
        return [labels for part in pool.map(_render_chunk, pieces) for labels in part]


def _number(x: float) -> str:
    text = f"{x:.3f}"
    return "0.000" if text == "-0.000" else text


def _mtl_annotation(jobs: list[Job], labels: list[Labels], present: dict[str, np.ndarray]) -> str:
    """Annotation text with the official sentinels: VA -5, expression -1, AUs all -1."""
    lines = [MTL_HEADER]
    missing_aus = ",".join(["-1"] * len(LABELLED_AUS))
    for row, (job, (aus, valence, arousal)) in enumerate(zip(jobs, labels)):
        va = f"{_number(valence)},{_number(arousal)}" if present["va"][row] else "-5,-5"
        expr = str(job.mtl_class) if present["expr"][row] else "-1"
        au = ",".join(map(str, aus)) if present["au"][row] else missing_aus
        lines.append(f"{job.path.removeprefix(layout.MTL_IMAGES + '/')},{va},{expr},{au}")
    return "\n".join(lines) + "\n"


def _write_track(root: Path, track: str, sizes: dict[str, int], seed: int, image_size: int, workers: int) -> dict:
    """Everything of one track below ``root``; returns the manifest's per-split summary."""
    summary = {}
    for split, n in sizes.items():
        jobs = (lsd_jobs if track == "lsd" else mtl_jobs)(split, n, seed)
        for folder in sorted({os.path.dirname(job.path) for job in jobs}):
            (root / folder).mkdir(parents=True, exist_ok=True)
        labels = render_all(root, jobs, image_size, workers)
        counts = np.bincount([job.mtl_class for job in jobs], minlength=8).tolist()
        summary[split] = {"images": n, "mtl_class_counts": counts}
        if split == "test":
            header, prefix, release = (
                (layout.LSD_TEST_HEADER, layout.LSD_TEST_IMAGES, layout.LSD_TEST_RELEASE) if track == "lsd"
                else (layout.MTL_TEST_HEADER, layout.MTL_IMAGES, layout.MTL_TEST_RELEASE)
            )
            names = [job.path.removeprefix(prefix + "/") for job in jobs]
            (root / release).write_text("\n".join([",".join(header), *names]) + "\n", encoding="utf-8")
        elif track == "mtl":
            present = mtl_presence(split, n, seed)
            (root / layout.MTL_ANNOTATIONS[split]).write_text(_mtl_annotation(jobs, labels, present), encoding="utf-8")
            summary[split]["present"] = {task: int(mask.sum()) for task, mask in present.items()}
    return summary


def _auto_workers(total_images: int) -> int:
    """Processes for a tree: one for small trees (a spawned worker costs about a second to
    start), otherwise up to four, never more than the CPUs."""
    return 1 if total_images < 3000 else max(1, min(4, os.cpu_count() or 1))


def generate(
    track_name: str,
    out_dir: Path,
    size: int | None = None,
    seed: int = 0,
    *,
    image_size: int = DEFAULT_IMAGE_SIZE,
    workers: int | None = None,
) -> Path:
    """Write a fresh ``track_name`` tree at ``out_dir`` and return it. ``size``: training
    images (validation and test follow, see ``plans.split_sizes``); None means
    :data:`DEFAULT_SIZE`. ``out_dir`` must not exist or be an empty folder."""
    if track_name not in TRACKS:
        raise ConfigError(f"synthface has no track {track_name!r}; tracks: {', '.join(TRACKS)}")
    n = DEFAULT_SIZE if size is None else int(size)
    try:
        split = split_sizes(n)
    except ValueError as exc:
        raise ConfigError(f"synthface: {exc}") from None
    if image_size < 16:
        raise ConfigError(f"synthface: image size must be at least 16 px, got {image_size}")
    out_dir = Path(out_dir)
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise ConfigError(f"{out_dir}: already exists and is not an empty folder; choose a new one")
    sizes = {"train": split.train, "validation": split.validation, "test": split.test}
    workers = _auto_workers(sum(sizes.values())) if workers is None else workers
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    needed = int(sum(sizes.values()) * image_size * image_size * BYTES_PER_PIXEL)
    free = shutil.disk_usage(out_dir.parent).free
    if free < needed:
        raise _disk_full(out_dir, needed, free)
    partial = out_dir.parent / f".{out_dir.name}.partial-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        partial.mkdir()
        summary = _write_track(partial, track_name, sizes, seed, image_size, workers)
        manifest = {
            "generator": "synthface",
            "generator_version": GENERATOR_VERSION,
            "track": track_name,
            "seed": seed,
            "size": n,
            "image_size": image_size,
            "splits": summary,
        }
        (partial / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        if out_dir.exists():
            out_dir.rmdir()  # empty (checked above); a rename cannot replace a folder
        os.rename(partial, out_dir)
    except BaseException as failure:
        shutil.rmtree(partial, ignore_errors=True)
        if isinstance(failure, OSError) and failure.errno in DISK_FULL:
            raise _disk_full(out_dir, needed, shutil.disk_usage(out_dir.parent).free) from None
        raise
    return out_dir


def _disk_full(out_dir: Path, needed: int, free: int) -> CacheError:
    """The one line for a tree that does not fit (nothing of it is left behind)."""
    return CacheError(
        f"{out_dir}: no room for the synthface tree (about {needed / 1e6:.0f} MB needed, "
        f"{free / 1e6:.0f} MB free); free some space or write it elsewhere "
        "(another --out, or $ABAWBENCH_CACHE for the embedded default)"
    )


def is_complete(root: Path, track_name: str | None = None) -> bool:
    """True when ``root`` holds a finished tree of this generator version (and track)."""
    try:
        manifest = json.loads((Path(root) / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return manifest.get("generator_version") == GENERATOR_VERSION and (
        track_name is None or manifest.get("track") == track_name
    )


def default_root(track_name: str, cache_dir: Path) -> Path:
    """The embedded default tree of ``track_name`` under ``cache_dir``, generated on first use.

    A file lock makes concurrent callers wait for one generator instead of racing; leftovers
    of a crashed generator (partial folders, a root without manifest) are removed under it."""
    from filelock import FileLock, Timeout

    if track_name not in TRACKS:
        raise ConfigError(f"synthface has no track {track_name!r}; tracks: {', '.join(TRACKS)}")
    root = Path(cache_dir) / "synthface" / f"{track_name}-v{GENERATOR_VERSION}-seed0-n{DEFAULT_SIZE}"
    if is_complete(root, track_name):
        return root
    root.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(root) + ".lock")
    try:
        with lock.acquire(timeout=LOCK_TIMEOUT_S):
            if is_complete(root, track_name):
                return root
            for stale in root.parent.glob(f".{root.name}.partial-*"):
                shutil.rmtree(stale, ignore_errors=True)
            if root.exists():
                shutil.rmtree(root)
            generate(track_name, root, DEFAULT_SIZE, 0, image_size=DEFAULT_IMAGE_SIZE)
    except Timeout:
        raise CacheError(
            f"{root}: another process has been generating this tree for over {LOCK_TIMEOUT_S:.0f} s "
            f"(lock {lock.lock_file}); if none is running, delete the lock file"
        ) from None
    return root
