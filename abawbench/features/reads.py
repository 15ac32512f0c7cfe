"""Verified reads of an entry's rows, whole entries split over threads: the cache's speed work.

The contract callers rely on (tests/test_cache.py holds it):

- nothing unverified is handed out: a chunk's rows reach the caller only once they matched
  their stored digest, and a whole read that fails returns nothing (its result is dropped);
- a failure names the first bad rows (``rows 64..127 fail their checksum``) whichever thread
  found its bad chunk first; an I/O error is bad rows too (``cannot be read``), so that the
  entry is rebuilt rather than the run failing;
- any other error a reading thread raises reaches the caller (an interrupt first), and a
  thread that cannot be started costs speed, not the read.

Why it looks like this: uncompressed chunks are raw little-endian rows, so one ``preadv`` per
chunk skips HDF5's per-chunk machinery; the digest, ``preadv`` and torch's float16 -> float32
copy release the GIL, and most of a whole read is the kernel's copy and the page faults of the
fresh result, which run in parallel, hence the threads. ``benchmarks/bench_cache.py`` measures
the reads against ``np.load`` of the same array; docs/bench/cache.md has the figures and what
was tried and dropped (memory maps, page-aligned chunks, reading chunks in pieces).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import threading
from typing import Callable, Iterator

import numpy as np

from abawbench.errors import CacheError
from abawbench.features.entry import EntryLayout, chunk_checksum

MAX_READ_THREADS = 4
"""Whole-entry reads split their chunks over up to this many threads, and no more than the
usable cores (docs/bench/cache.md: what the threads buy, and what they cost in CPU time)."""
MIN_CHUNKS_PER_THREAD = 4
"""Below this many chunks per thread, starting a thread costs more than its share saves."""


class BadRows(CacheError):
    """Rows of one chunk that cannot be used (they fail their digest, or cannot be read)."""

    def __init__(self, start: int, end: int, problem: str) -> None:
        super().__init__(f"rows {start}..{end - 1} {problem}")
        self.start = start
        self.end = end


def read_threads(num_chunks: int) -> int:
    """How many threads a whole read of ``num_chunks`` chunks uses."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    return max(1, min(MAX_READ_THREADS, cores, num_chunks // MIN_CHUNKS_PER_THREAD))


def for_each_chunk(num_chunks: int, make_worker: Callable[[], Callable[[int], None]], *, threads: int) -> None:
    """Call a worker on every chunk number, split over ``threads`` threads: thread ``t`` makes
    its own worker with ``make_worker()`` (its own buffer) and takes chunks ``t``,
    ``t + threads``, ... in order; the calling thread is thread 0. Returns once every chunk was
    done and every thread has ended.

    On failure the :class:`BadRows` of the lowest chunk is raised, as a single thread would:
    once chunk ``c`` is known bad, each thread stops before its first chunk past ``c``, but goes
    on up to it, so a lower bad chunk is always found whichever thread gets there first. Any
    other error stops every thread and is raised instead (an interrupt before anything else;
    which of two simultaneous errors is seen then depends on timing).
    """
    lock = threading.Lock()
    failures: list[tuple[int, BaseException]] = []
    first_bad = [num_chunks]  # below 0 once anything but bad rows went wrong: all stop

    def work(first: int) -> None:
        chunk = first
        try:
            worker = make_worker()
            for chunk in itertools.takewhile(lambda c: c < first_bad[0], range(first, num_chunks, threads)):
                worker(chunk)
        except BaseException as exc:  # re-raised in the calling thread below
            rank = chunk if isinstance(exc, BadRows) else -1 if isinstance(exc, Exception) else -2
            with lock:
                failures.append((rank, exc))
                first_bad[0] = min(first_bad[0], rank)

    started: list[threading.Thread] = []
    in_this_thread = [0]
    try:
        for first in range(1, threads):
            thread = threading.Thread(target=work, args=(first,), daemon=True)
            try:
                thread.start()
            except RuntimeError:  # no thread to be had (a pids limit): do its chunks here
                in_this_thread.append(first)
            else:
                started.append(thread)
        for first in in_this_thread:
            work(first)
        for thread in started:
            thread.join()
    except BaseException:
        # An interrupt: leave once the others have stopped (at their next chunk) and no longer
        # use the caller's file, which it closes next. (One that lands inside start() leaves
        # that thread unjoined: harmless, as a thread only ever writes to the result the caller
        # is dropping, and fails on the closed file.)
        first_bad[0] = -2
        for thread in started:
            thread.join()
        raise
    if failures:
        raise min(failures, key=lambda failure: failure[0])[1]


def chunk_reader(fd: int, layout: EntryLayout, into: np.ndarray | None = None) -> Callable[[int], np.ndarray]:
    """``read(chunk)``: the rows of one chunk, returned only once they matched their digest.

    They land in a buffer this reader reuses (copy what you keep: fresh memory per chunk would
    pay its page faults on every read), or, with ``into`` ([rows, dim] of the stored type),
    straight in the caller's array, as ``np.load`` reads (``into`` then holds unverified rows
    if a read raises: drop it).
    """
    buffer = np.empty((layout.chunk_rows, layout.row_dim), layout.dtype) if into is None else None

    def read(chunk: int) -> np.ndarray:
        start, end = layout.rows_of(chunk)
        rows = into[start:end] if buffer is None else buffer[: end - start]
        try:
            read_bytes = os.preadv(fd, [rows], layout.chunk_offsets[chunk])
        except OSError as exc:
            raise BadRows(start, end, f"cannot be read: {exc.strerror or exc}") from exc
        if read_bytes != rows.nbytes:
            raise BadRows(start, end, "end past the end of the file (truncated)")
        if chunk_checksum(rows) != tuple(int(x) for x in layout.checksums[chunk]):
            raise BadRows(start, end, "fail their checksum (file is corrupt)")
        return rows

    return read


def verified_chunks(fd: int, layout: EntryLayout) -> Iterator[tuple[int, np.ndarray]]:
    """``(start_row, rows)`` of every chunk in order, on this thread (for streaming reads);
    the rows live in a reused buffer."""
    read = chunk_reader(fd, layout)
    for chunk in range(len(layout.chunk_offsets)):
        yield layout.rows_of(chunk)[0], read(chunk)


def each_verified_chunk(fd: int, layout: EntryLayout, consume: Callable[[int, np.ndarray], None] | None = None,
                        into: np.ndarray | None = None) -> None:
    """Every chunk read and verified, split over :func:`read_threads` threads;
    ``consume(start_row, rows)`` runs in the thread that read the chunk, in no particular
    order across threads. Without ``consume`` or ``into``: a full verification pass."""
    num_chunks = len(layout.chunk_offsets)

    def make_worker() -> Callable[[int], None]:
        read = chunk_reader(fd, layout, into)

        def work(chunk: int) -> None:
            rows = read(chunk)
            if consume is not None:
                consume(layout.rows_of(chunk)[0], rows)

        return work

    for_each_chunk(num_chunks, make_worker, threads=read_threads(num_chunks))


def read_float32(fd: int, layout: EntryLayout) -> np.ndarray:
    """All rows as float32, each chunk verified and converted while it is in the CPU's cache."""
    import torch

    out = np.empty((layout.num_rows, layout.row_dim), np.float32)
    target = torch.from_numpy(out)

    def convert(start: int, rows: np.ndarray) -> None:
        # torch converts float16 with F16C at memory speed, far faster than NumPy's copyto
        # (docs/bench/cache.md, with the timeit commands).
        target[start : start + len(rows)].copy_(torch.from_numpy(rows))

    # One torch thread per reading thread: a chunk is converted while it is in that core's
    # cache, and torch's OpenMP pool, woken once per chunk, spin-waits for a busy core. The
    # setting is process wide, so torch work in other threads runs on one thread during the read.
    with _torch_threads(1):
        each_verified_chunk(fd, layout, convert)
    return out


def read_float16(fd: int, layout: EntryLayout) -> np.ndarray:
    """All rows as stored, read straight into the result and verified there (as ``np.load``
    reads: no bounce buffer, no second copy)."""
    out = np.empty((layout.num_rows, layout.row_dim), layout.dtype)
    each_verified_chunk(fd, layout, into=out)
    return out


@contextlib.contextmanager
def _torch_threads(count: int) -> Iterator[None]:
    import torch

    before = torch.get_num_threads()
    if before != count:
        torch.set_num_threads(count)
    try:
        yield
    finally:
        if before != count:
            torch.set_num_threads(before)
