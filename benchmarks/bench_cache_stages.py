"""The measurements behind the cache format 2 choices (docs/bench/cache.md), in one run:

1. ``read()`` (1 MiB chunks, each read, verified and converted in one go) against ``np.load``
   of the same float32 array, alternating (why whole chunks rather than L2-sized pieces:
   docs/bench/cache.md);
2. ``preadv`` of 49 MiB from a page-aligned and from an unaligned file offset, into fresh
   (never touched) memory and into a reused buffer: why chunks are no longer page-aligned;
3. the chunk digest's speed: XXH3-128 against zlib's crc32 on 512 KiB in cache.

    .venv/bin/python benchmarks/bench_cache_stages.py [--rows 50000] [--dim 512] [--repeat 15]

Prints best / median milliseconds per method.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import zlib
from pathlib import Path
from typing import Callable

import numpy as np
import xxhash

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_cache import batch_producer, make_key  # noqa: E402

from abawbench.features.store import FeatureCache  # noqa: E402


def timed(methods: dict[str, Callable[[], object]], repeat: int) -> None:
    times: dict[str, list[float]] = {name: [] for name in methods}
    for _ in range(repeat):  # alternating, so that machine load hits every method alike
        for name, method in methods.items():
            started = time.perf_counter()
            method()
            times[name].append(time.perf_counter() - started)
    for name, values in times.items():
        print(f"  {name:42s} best {min(values) * 1e3:8.3f} ms   median {statistics.median(values) * 1e3:8.3f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="abawbench-stages-"))
    entry = FeatureCache(folder / "cache").get_or_create(
        make_key(args.rows, args.dim), [f"s{i}" for i in range(args.rows)], args.dim,
        batch_producer(args.rows, args.dim))
    np.save(folder / "features.npy", entry.read())

    print("1. read() against np.load of the float32 array")
    timed({"np.load float32": lambda: np.load(folder / "features.npy"), "read()": entry.read}, args.repeat)

    print("2. preadv of the float16 data from an aligned / unaligned offset (1 MiB per call)")
    data = np.random.default_rng(0).standard_normal((args.rows, args.dim)).astype(np.float16)
    row_bytes = args.dim * 2
    rows_per_call = max(1, (1 << 20) // row_bytes)
    methods: dict[str, Callable[[], object]] = {}
    for header in (4096, 4096 + 128):
        path = folder / f"data-at-{header}.bin"
        path.write_bytes(b"\0" * header + data.tobytes())
        fd = os.open(path, os.O_RDONLY)

        def into_fresh(fd: int = fd, header: int = header) -> object:
            out = np.empty_like(data)
            for start in range(0, args.rows, rows_per_call):
                os.preadv(fd, [out[start:start + rows_per_call]], header + start * row_bytes)
            return out

        def into_buffer(fd: int = fd, header: int = header, buffer=np.empty((rows_per_call, args.dim), np.float16)):
            for start in range(0, args.rows, rows_per_call):
                count = min(rows_per_call, args.rows - start)
                os.preadv(fd, [buffer[:count]], header + start * row_bytes)

        kind = "page-aligned" if header % 4096 == 0 else "unaligned"
        methods[f"{kind}, into fresh memory"] = into_fresh
        methods[f"{kind}, into a reused buffer"] = into_buffer
    timed(methods, args.repeat)

    print("3. digest of 512 KiB (in cache)")
    piece = data.reshape(-1)[: 256 << 10]
    timed({"xxh3_128": lambda: xxhash.xxh3_128_intdigest(piece), "zlib.crc32": lambda: zlib.crc32(piece)},
          args.repeat * 20)


if __name__ == "__main__":
    main()
