"""How long indexing a full-size MTL split takes (target: under 2 s for 200,000 lines).

Builds, in a temporary folder, an official-layout tree with a ``--lines``-line training
annotation file and one empty image per line (``--per-video`` frames per video folder, about
the size of the real s-Aff-Wild2 folders), then times ``read_split``: first parsing every
time, then with the parse cache (first read parses and stores, later reads load). Also
times the floor under every read: listing the image folders, with and without file sizes.
The parse cache is pointed at the temporary folder, never at the user's cache.

    .venv/bin/python benchmarks/bench_indexing.py [--lines 200000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

from abawbench.data import parse_cache
from abawbench.data.fingerprint import list_folder
from abawbench_builtins.abaw4.reader import read_split
from abawbench.plugins import get_host
from abawbench.specs import ReadOptions

HEADER = "image,valence,arousal,expression,AU1,AU2,AU4,AU6,AU7,AU10,AU12,AU15,AU23,AU24,AU25,AU26"


def build_tree(root: Path, lines: int, per_video: int, seed: int) -> None:
    """Annotation lines with the real data's mix of present and missing labels, plus images."""
    rng = random.Random(seed)
    rows = [HEADER]
    for row in range(lines):
        video, frame = divmod(row, per_video)
        name = f"video{video:04d}/{frame:05d}.jpg"
        va = "-5,-5" if rng.random() < 0.27 else f"{rng.uniform(-1, 1):.6f},{rng.uniform(-1, 1):.6f}"
        expr = -1 if rng.random() < 0.36 else rng.randrange(8)
        aus = ["-1"] * 12 if rng.random() < 0.27 else [str(int(rng.random() < 0.3)) for _ in range(12)]
        rows.append(f"{name},{va},{expr}," + ",".join(aus))
        folder = root / "cropped_aligned" / f"video{video:04d}"
        if frame == 0:
            folder.mkdir(parents=True)
        # os.open/close is the cheapest way to make 200k empty files.
        os.close(os.open(folder / f"{frame:05d}.jpg", os.O_CREAT | os.O_WRONLY, 0o644))
    (root / "training_set_annotations.txt").write_text("\n".join(rows) + "\n", encoding="utf-8")


def _time_reads(root: Path, track, repeat: int, lines: int) -> list[tuple[float, float]]:
    """(wall, cpu) seconds per read. CPU time (user + system of this process) barely moves
    when other jobs share the cores; wall time does. Both are reported."""
    timings = []
    for _ in range(repeat):
        start, start_cpu = time.perf_counter(), time.process_time()
        index = read_split(root, track, "train", ReadOptions())
        timings.append((time.perf_counter() - start, time.process_time() - start_cpu))
        assert len(index) == lines, (len(index), lines)
    return timings


def _describe(timings: list[tuple[float, float]]) -> str:
    wall = [w for w, _ in timings]
    cpu = [c for _, c in timings]
    return (f"wall best {min(wall):.3f} s, median {statistics.median(wall):.3f} s; "
            f"cpu best {min(cpu):.3f} s, median {statistics.median(cpu):.3f} s")


def _time_listing(images: Path) -> dict[str, float]:
    """The floor under read_split: listing the folders, with and without file sizes (the
    sizes go into the fingerprint and cost one stat per file on Linux)."""
    folders = sorted(os.listdir(images))
    start = time.perf_counter()
    for folder in folders:
        with os.scandir(images / folder) as entries:
            {entry.name for entry in entries if entry.is_file()}
    names = time.perf_counter() - start
    start = time.perf_counter()
    for folder in folders:
        list_folder(images / folder)
    return {"names": names, "sizes": time.perf_counter() - start}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=200_000)
    parser.add_argument("--per-video", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tree", type=Path, default=None,
                        help="build the tree here and keep it; reuse it when it is already there "
                             "(building 200k files takes minutes on a busy machine)")
    args = parser.parse_args(argv)

    track = get_host().tracks.get("mtl")
    with tempfile.TemporaryDirectory(prefix="abawbench-bench-") as tmp:
        root = args.tree or Path(tmp)
        if (root / "training_set_annotations.txt").is_file():
            print(f"reusing the tree in {root}")
        else:
            start = time.perf_counter()
            build_tree(root, args.lines, args.per_video, args.seed)
            print(f"built {args.lines} lines and images in {time.perf_counter() - start:.1f} s")
        os.environ["ABAWBENCH_CACHE"] = str(Path(tmp) / "cache")  # never the user's cache
        parse_cache.MIN_LINES = 10**12  # first: the parse every time
        uncached = _time_reads(root, track, args.repeat, args.lines)
        parse_cache.MIN_LINES = 1
        cached = _time_reads(root, track, args.repeat + 1, args.lines)
        listing = _time_listing(root / "cropped_aligned")
        print(f"read_split mtl/train, {args.lines} lines, {args.repeat} reads each "
              f"(python {sys.version.split()[0]}, {os.cpu_count()} cpus):")
        print("  parse every time:  " + _describe(uncached))
        print(f"  parse cache: first read (parse + store) {cached[0][0]:.3f} s wall; "
              "later reads " + _describe(cached[1:]))
        print(f"  load average {os.getloadavg()[0]:.1f}")
        print("same tree, folder listing alone: scandir names {names:.3f} s, "
              "scandir + size of every file {sizes:.3f} s".format(**listing))
    return 0


if __name__ == "__main__":
    sys.exit(main())
