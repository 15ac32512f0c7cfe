"""Feature extraction split across the ranks of a run, written once into one cache entry.

Every rank computes every ``world_size``-th batch of the split (the very batches one process
would form, so every row's features are the ones it would compute); rank 0 gathers them and
writes the entry in row order under the cache's lock, through the same writer as a single
process, so the file is the one a single process writes. The other ranks wait, then read it.
If any rank fails, nothing is written: a failed producer stores nothing, and a rerun extracts
again.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from abawbench.errors import CacheError, RunFailedError
from abawbench.features.entry import EntryWriter
from abawbench.parallel.context import DistContext

ExtractShard = Callable[[Callable[[int, np.ndarray], None], tuple[int, int]], None]
"""``extract(write, (rank, world_size))``: streams the shard's ``(start_row, rows)`` to ``write``."""


def sharded_entry(context: DistContext, get_or_create: Callable[[Callable[[EntryWriter], None]], object],
                  extract: ExtractShard) -> object:
    """The cache entry ``get_or_create(produce)`` returns, made by all ranks together on a miss.

    Rank 0 asks the cache; only when the entry is missing does its ``produce`` tell the other
    ranks to extract their shards, gather them and write. Every rank returns the cached entry.
    A failure on any rank (a bad image in its shard, no memory, a full disk on rank 0) reaches
    every rank as an error, never as a rank left waiting at a collective.
    """
    shard = (context.rank, context.world_size)

    def own_rows() -> dict[int, np.ndarray] | str:
        try:
            rows: dict[int, np.ndarray] = {}
            extract(lambda start, batch: rows.__setitem__(start, np.asarray(batch)), shard)
            return rows
        except Exception as exc:  # sent to rank 0 in place of the rows, so nobody waits for them
            return f"rank {context.rank}: {type(exc).__name__}: {exc}"

    told: list[bool] = []  # whether every rank already knows of the failure (a failed shard)

    def exchange() -> list[dict[int, np.ndarray]] | None:
        """Every rank's rows on rank 0 (None elsewhere); a failed shard fails every rank."""
        parts = context.gather(own_rows())
        failures = context.broadcast([p for p in parts if isinstance(p, str)] if parts is not None else None)
        if failures:
            told.append(True)
            raise RunFailedError("sharded extraction failed: " + "; ".join(failures))
        return parts  # type: ignore[return-value]

    if context.is_main:
        asked = False

        def produce(writer: EntryWriter) -> None:
            nonlocal asked
            asked = True
            context.broadcast(True)
            shards = exchange()
            assert shards is not None
            for start, batch in sorted(((s, b) for part in shards for s, b in part.items()), key=lambda sb: sb[0]):
                writer.write(start, batch)

        try:
            entry = get_or_create(produce)
        except Exception as exc:
            if not asked:
                context.broadcast(False)
            if not told:  # tell the others, waiting for word that the entry is written
                context.broadcast(f"rank 0: {type(exc).__name__}: {exc}")
            raise
        if not asked:
            context.broadcast(False)  # a hit: nobody extracts
        context.broadcast(None)  # written (or found): the others may read it
        return entry

    if context.broadcast(None):
        exchange()
    problem = context.broadcast(None)
    if problem:
        raise RunFailedError(f"the cache entry was not written: {problem}")

    def never(_writer: EntryWriter) -> None:
        raise CacheError("rank 0 wrote this cache entry, but this rank cannot see it: with several "
                         "nodes, the cache folder (--cache-dir / ABAWBENCH_CACHE) must be on a file system "
                         "every node shares")

    return get_or_create(never)
