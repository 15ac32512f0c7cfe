"""Handles to checked cache entries: their rows are verified whenever they are read.

A store hands out a handle once the file's structure, key and sample ids have passed (no pass
over the data); every read of the data then checks each chunk's digest as it goes, so a hit
reads the data once and still never returns a row that failed verification. The handle keeps
the layout it was checked with and reads the same file through it, without opening it as HDF5
again, as long as the file on disk is still that file.

A read that finds bad rows removes the file (if it still fails full verification, under the
key's lock: a writer may just have replaced it), so that the next request rebuilds it; a whole
read of features from :meth:`FeatureCache.get_or_create` rebuilds it at once and reads again.
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, TypeVar

import numpy as np

from abawbench.errors import CacheError
from abawbench.features.entry import FEATURES, EntryLayout, check_entry, decode_ids, open_entry, read_ids_blob
from abawbench.features.key import EntryKey
from abawbench.features.reads import each_verified_chunk, read_float16, read_float32, verified_chunks

if TYPE_CHECKING:
    import h5py
    import torch

log = logging.getLogger(__name__)

FileIdentity = tuple[int, int, int, int]
T = TypeVar("T")


def file_identity(fd: int) -> FileIdentity:
    """What tells one file at a path from another written there later (a rename gives a new
    inode; a rewrite in place changes size or mtime)."""
    stat = os.fstat(fd)
    return stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns


class CachedRows:
    """A checked entry of any kind (features or pixel packs): its rows, streamed and verified.

    ``discard()`` removes the file if it still fails full verification; ``remake()`` returns a
    rebuilt entry (both supplied by the store that found the entry).
    """

    def __init__(self, path: Path, key: EntryKey, layout: EntryLayout, identity: FileIdentity, row_dtype: str, *,
                 sample_ids: list[str] | None = None, discard: Callable[[], None] | None = None,
                 remake: Callable[[], CachedRows] | None = None) -> None:
        self.path = Path(path)
        self.key = key
        self.num_rows = layout.num_rows
        self.row_dim = layout.row_dim
        self._layout = layout
        self._identity = identity
        self._row_dtype = row_dtype
        self._ids = sample_ids
        self._discard = discard
        self._remake = remake

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r}, rows={self.num_rows}, dim={self.row_dim})"

    @property
    def sample_ids(self) -> list[str]:
        """Row ``i`` holds the rows of ``sample_ids[i]`` (read on first use)."""
        if self._ids is None:
            with open_entry(self.path) as f:
                self._ids = decode_ids(read_ids_blob(f))
        return self._ids

    def iter_batches(self, batch_rows: int) -> Iterator[tuple[int, np.ndarray]]:
        """``(start_row, rows)`` in order, ``batch_rows`` rows at a time (the last may be
        shorter), each a fresh array of the stored type; every chunk is verified before any of
        its rows is handed out, and memory stays at one chunk plus one batch however large
        the entry. Raises CacheError (naming the file and rows) on a mismatch, after removing
        the file so that the next request rebuilds it."""
        if batch_rows < 1:
            raise ValueError(f"batch_rows must be >= 1, got {batch_rows}")
        try:
            with self._reading() as (fd, layout):
                batch = np.empty((min(batch_rows, self.num_rows), self.row_dim), layout.dtype)
                filled, batch_start = 0, 0
                for _start, rows in verified_chunks(fd, layout):
                    taken = 0
                    while taken < len(rows):
                        room = min(len(batch) - filled, len(rows) - taken)
                        batch[filled : filled + room] = rows[taken : taken + room]
                        filled, taken = filled + room, taken + room
                        if filled == len(batch):
                            yield batch_start, batch
                            batch_start += filled
                            batch = np.empty((min(batch_rows, self.num_rows - batch_start), self.row_dim),
                                             layout.dtype)
                            filled = 0
        except CacheError as exc:
            if self._discard is not None:
                self._discard()
            raise CacheError(_with_path(self.path, exc)) from exc

    def _whole(self, read: Callable[[int, EntryLayout], T], again: Callable[[Any], T]) -> T:
        """``read(fd, layout)`` of the whole entry; on bad rows the file is discarded and, when
        the store can remake it, rebuilt and ``again(rebuilt entry)`` read once more."""
        try:
            with self._reading() as (fd, layout):
                return read(fd, layout)
        except CacheError as exc:
            if self._discard is not None:
                self._discard()
            if self._remake is None:
                raise CacheError(_with_path(self.path, exc)) from exc
            log.warning("feature cache: %s is unusable and will be rebuilt: %s", self.path, exc)
            return again(self._remake())

    @contextlib.contextmanager
    def _reading(self) -> Iterator[tuple[int, EntryLayout]]:
        """A file descriptor and the layout to read it by: the checked one while the file is
        still the file that was checked, else the layout of the file there now, checked again."""
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except OSError as exc:
            raise CacheError(f"cannot be opened ({exc.strerror or exc})") from exc
        try:
            if file_identity(fd) == self._identity:
                yield fd, self._layout
                return
        finally:
            os.close(fd)
        with open_entry(self.path) as f:
            # The whole structural check (key and sample ids), as when the entry was found: a
            # writer asked for other ids may have replaced the file meanwhile.
            try:
                layout = check_entry(f, self._row_dtype, self.key, self._ids)
            except CacheError as exc:
                raise CacheError(f"was replaced by a different entry since it was found ({exc})") from exc
            if layout.num_rows != self.num_rows:
                raise CacheError("was replaced by a different entry since it was found")
            yield f.id.get_vfd_handle(), layout


class CachedFeatures(CachedRows):
    """A checked feature entry. ``read()`` returns the whole array; ``torch_dataset()`` serves
    rows to a DataLoader without loading everything."""

    @property
    def feature_dim(self) -> int:
        return self.row_dim

    def read(self) -> np.ndarray:
        """All features as float32 ``[rows, dim]``, every chunk checked against its checksum:
        never data that failed verification."""
        return self._whole(read_float32, CachedFeatures.read)

    def read_float16(self) -> np.ndarray:
        """The stored float16 features, verified like :meth:`read` (half the memory, no torch)."""
        return self._whole(read_float16, CachedFeatures.read_float16)

    def torch_dataset(self) -> FeatureDataset:
        """A map-style dataset over the file, after one full verification pass (its rows are
        then read one at a time, which a chunk digest cannot check)."""
        def verified_dataset(fd: int, layout: EntryLayout) -> FeatureDataset:
            each_verified_chunk(fd, layout)
            return FeatureDataset(self.path, layout.num_rows, layout.row_dim)

        return self._whole(verified_dataset, CachedFeatures.torch_dataset)


def _with_path(path: Path, exc: CacheError) -> str:
    text = str(exc)
    return text if text.startswith(str(path)) else f"{path}: {text}"


class FeatureDataset:
    """A map-style torch dataset of ``(row_index, float32 feature)`` items.

    The HDF5 handle is opened lazily and remembered per process id: a DataLoader worker made
    by fork must not reuse its parent's handle (h5py state is not fork-safe), so each worker
    opens its own. The chunk cache is disabled because rows are read one at a time: with a
    cache, HDF5 would read a whole chunk for every row.
    """

    def __init__(self, path: Path, num_rows: int, feature_dim: int) -> None:
        self.path = Path(path)
        self.num_rows = num_rows
        self.feature_dim = feature_dim
        self._handle: Any = None
        self._pid: int | None = None

    def __len__(self) -> int:
        return self.num_rows

    def _dataset(self) -> "h5py.Dataset":
        if self._pid != os.getpid():
            import h5py

            self._handle = h5py.File(self.path, "r", rdcc_nbytes=0)
            self._pid = os.getpid()
        return self._handle[FEATURES]

    def __getitem__(self, index: int) -> tuple[int, "torch.Tensor"]:
        import torch

        if not 0 <= index < self.num_rows:
            raise IndexError(f"row {index} out of range for {self.num_rows} rows")
        row = self._dataset()[index]
        return index, torch.from_numpy(row.astype(np.float32))

    def __getstate__(self) -> dict[str, Any]:
        # Spawned workers get a pickled copy: never ship the open handle.
        state = self.__dict__.copy()
        state["_handle"] = None
        state["_pid"] = None
        return state
