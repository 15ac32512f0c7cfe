"""Feature cache benchmarks (issue 5), each a ratio measured in one run on one machine.

1. Read speed: ``CachedFeatures.read()`` (float16 on disk -> float32, every chunk checksummed)
   against ``np.load`` of the same array saved as float32 ``.npy``. Target: read() at least 80%
   as fast (ratio t_np.load / t_read >= 0.8), as it runs (its chunks split over
   ``abawbench.features.reads.MAX_READ_THREADS`` threads at most, no more than the usable cores)
   and with one reading thread. Also reported: ``read_float16()`` (verified, no conversion),
   h5py's plain ``dset[...]`` of the float16 dataset (no verification), and the protocol's
   whole hit path, ``get_or_create(key, ...)`` (structure, key and ids) followed by
   ``read()``. Files are freshly written, so every method reads from the OS page cache;
   methods alternate within each round so that machine load affects them alike.
2. Memory: peak memory while writing ``--memory-rows`` rows through the writer in batches of
   256, each in a fresh subprocess (tracemalloc peak of Python/numpy allocations, and the
   growth of the peak resident set, VmHWM). Flat means the 100k-row peak is about the 10k-row
   peak. Measured for the writer alone and for the whole ``get_or_create``.

    .venv/bin/python benchmarks/bench_cache.py [--rows 50000] [--dim 512] [--repeat 9]
        [--memory-rows 10000,100000]

Prints JSON; docs/bench/cache.md records the numbers with this command.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Callable

import numpy as np

import abawbench.features.reads as reads_module
from abawbench.features.entry import EntryWriter
from abawbench.features.key import CacheKey
from abawbench.features.store import FeatureCache

PREPROCESSING = {"input_size": (3, 224, 224), "mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225)}
BATCH = 256


def make_key(rows: int, dim: int) -> CacheKey:
    return CacheKey("bench:model", "random-seed-0", PREPROCESSING, f"bench-{rows}x{dim}", "train", {}, {})


def batch_producer(rows: int, dim: int, seed: int = 0) -> Callable:
    """Batches made on the fly, as a backbone would emit them: the full array never exists."""

    def produce(writer) -> None:
        rng = np.random.default_rng(seed)
        for start in range(0, rows, BATCH):
            count = min(BATCH, rows - start)
            writer.write(start, rng.standard_normal((count, dim), dtype=np.float32))

    return produce


def time_methods(methods: dict[str, Callable[[], object]], repeat: int) -> dict[str, dict[str, float]]:
    """Best and median wall time, and the same for process CPU time (user + system: page
    faults and the kernel's copies count), which shared cores distort far less than wall time."""
    wall: dict[str, list[float]] = {name: [] for name in methods}
    cpu: dict[str, list[float]] = {name: [] for name in methods}
    for _ in range(repeat):
        for name, method in methods.items():
            started, started_cpu = time.perf_counter(), time.process_time()
            method()
            cpu[name].append(time.process_time() - started_cpu)
            wall[name].append(time.perf_counter() - started)
    return {
        name: {
            "best_ms": round(min(wall[name]) * 1e3, 2),
            "median_ms": round(statistics.median(wall[name]) * 1e3, 2),
            "cpu_best_ms": round(min(cpu[name]) * 1e3, 2),
            "cpu_median_ms": round(statistics.median(cpu[name]) * 1e3, 2),
        }
        for name in methods
    }


def one_reading_thread(action: Callable[[], object]) -> object:
    limit = reads_module.MAX_READ_THREADS
    reads_module.MAX_READ_THREADS = 1
    try:
        return action()
    finally:
        reads_module.MAX_READ_THREADS = limit


def bench_read(rows: int, dim: int, repeat: int, folder: Path) -> dict:
    import h5py

    cache = FeatureCache(folder / "cache")
    key = make_key(rows, dim)
    started = time.perf_counter()
    ids = [f"s{i}" for i in range(rows)]
    entry = cache.get_or_create(key, ids, dim, batch_producer(rows, dim))
    write_s = time.perf_counter() - started
    reference = entry.read()
    npy = folder / "features.npy"
    np.save(npy, reference)
    assert np.array_equal(np.load(npy), reference)
    npy16 = folder / "features-float16.npy"  # the array exactly as the cache stores it
    np.save(npy16, entry.read_float16())
    with h5py.File(entry.path, "r") as f:
        num_chunks = f["features"].id.get_num_chunks()

    def h5py_plain() -> np.ndarray:
        with h5py.File(entry.path, "r") as f:
            return f["features"][...]

    results = time_methods(
        {
            "np.load float32": lambda: np.load(npy),
            "read() float32": entry.read,
            "read() float32, one reading thread": lambda: one_reading_thread(entry.read),
            "np.load float16": lambda: np.load(npy16),
            "read_float16()": entry.read_float16,
            "h5py dset[...] float16, unverified": h5py_plain,
            "get_or_create(key).read() (the protocol's hit path)": lambda: cache.get_or_create(
                key, ids, dim, batch_producer(rows, dim)).read(),
        },
        repeat,
    )
    # float16 results are compared with np.load of the float16 array, float32 ones with float32
    for name, row in results.items():
        base = results["np.load float16" if "float16" in name else "np.load float32"]
        for stat in ("best_ms", "median_ms", "cpu_best_ms", "cpu_median_ms"):
            row[f"speed_vs_np.load_{stat[:-3]}"] = round(base[stat] / row[stat], 3)
    return {
        "rows": rows,
        "dim": dim,
        "reading_threads": reads_module.read_threads(num_chunks),
        "write_seconds": round(write_s, 3),
        "file_mib": round(entry.path.stat().st_size / 2**20, 1),
        "npy_mib": round(npy.stat().st_size / 2**20, 1),
        "read": results,
    }


def peak_rss_mib() -> float:
    """VmHWM (peak resident set) of this process; ru_maxrss is useless here because Linux
    keeps it across exec, so a child inherits its parent's peak."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status (not Linux?)")


def reset_peak_rss() -> None:
    Path("/proc/self/clear_refs").write_text("5")  # Linux >= 4.0: resets VmHWM to current RSS


def measure(action: Callable[[], object]) -> dict[str, float]:
    reset_peak_rss()
    rss_before = peak_rss_mib()
    tracemalloc.start()
    action()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {
        "tracemalloc_peak_mib": round(peak / 2**20, 2),
        "peak_rss_growth_mib": round(peak_rss_mib() - rss_before, 1),
    }


def child_memory(rows: int, dim: int, folder: Path) -> dict:
    """Runs in a fresh process: peak memory of one extraction of ``rows`` rows, (a) through the
    writer alone and (b) through the whole ``get_or_create`` (ids, rename, structure check)."""
    import h5py

    folder.mkdir(parents=True, exist_ok=True)
    cache = FeatureCache(folder)
    ids = [f"video{i // 500:04d}/{i:05d}.jpg" for i in range(rows)]
    # Warm up imports and h5py's own allocations on a tiny entry so they are not counted.
    cache.get_or_create(make_key(10, dim), ids[:10], dim, batch_producer(10, dim))

    def writer_only() -> None:
        chunk_rows = max(1, min(rows, (1 << 20) // (2 * dim)))
        with h5py.File(folder / "writer.h5", "w") as f:
            dset = f.create_dataset("features", (rows, dim), "<f2", chunks=(chunk_rows, dim))
            writer = EntryWriter(dset, chunk_rows)
            batch_producer(rows, dim)(writer)
            writer.finish()

    return {
        "rows": rows,
        "writer": measure(writer_only),
        "get_or_create": measure(
            lambda: cache.get_or_create(make_key(rows, dim), ids, dim, batch_producer(rows, dim))
        ),
        "float16_file_mib": round(rows * dim * 2 / 2**20, 1),
        "float32_array_would_be_mib": round(rows * dim * 4 / 2**20, 1),
    }


def bench_memory(rows_list: list[int], dim: int, folder: Path) -> list[dict]:
    out = []
    for rows in rows_list:
        done = subprocess.run(
            [sys.executable, __file__, "--child-memory", str(rows), "--dim", str(dim),
             "--folder", str(folder / f"mem-{rows}")],
            check=True, capture_output=True, text=True,
        )
        out.append(json.loads(done.stdout))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--repeat", type=int, default=9)
    parser.add_argument("--memory-rows", default="10000,100000")
    parser.add_argument("--child-memory", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_memory:
        print(json.dumps(child_memory(args.child_memory, args.dim, args.folder)))
        return

    with tempfile.TemporaryDirectory(prefix="bench-cache-") as tmp:
        folder = Path(tmp)
        report = {
            "read": bench_read(args.rows, args.dim, args.repeat, folder),
            "memory": bench_memory([int(r) for r in args.memory_rows.split(",")], args.dim, folder),
        }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
