"""The HDF5 feature cache: backbone features are extracted once per key and reused.

One file per :class:`CacheKey` (backbone, weights digest, resolved preprocessing, dataset
fingerprint, split, format version), the full key stored as attributes so that a file can be
checked against what the caller expects rather than trusted by its name (lm-evaluation-harness
#3881, MTEB #5383: a key that ignores a setting silently returns stale results).

Layout of a file (``features/<backbone>/<split>-<digest>.h5``)::

    /features     float16 [rows, dim] (or uint8 rows: decoded pixels, see abawbench.pixels),
                  chunked (~1 MiB chunks of whole rows), no filters
    /checksums    uint64 [chunks, 2], the XXH3-128 digest of each chunk's bytes (high, low word)
    /sample_ids   uint8 [bytes]: the ids as UTF-8, one per line
    attrs         key.* fields and key_digest (for people and other tools), "abawbench" (the
                  same key plus layout facts as one JSON string: what the reader checks, in
                  one attribute read, as h5py reads attributes at ~0.5 ms each), complete

Life of an entry: a writer streams batches into a temporary file next to the final one while
holding a per-key file lock, checksums each chunk as it is flushed, marks the file complete and
``os.replace``-s it into place, so a reader sees either nothing or a whole file. A file that
fails verification (cannot open, incomplete, other key, wrong shapes, checksum mismatch) is
removed and reported as a miss, never used.

Why XXH3 (the ``xxhash`` package): every read checks every chunk, so the hash's speed is the
read's speed. zlib's crc32 runs at ~3.8 GB/s here, which alone made ``read()`` take 60% longer
than ``np.load``; a hand-written two-sum block checksum (format 1) ran at ~16 GB/s; XXH3-128
runs at ~35 GB/s on one core and, unlike the sums, catches any reordering of bytes, not only
the cases it was designed around. It is an integrity check against accidents (bit rot, torn or
truncated writes, a file from elsewhere), not a defence against tampering.
"""

from __future__ import annotations

import contextlib
import fnmatch
import hashlib
import itertools
import json
import logging
import math
import os
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Mapping, Sequence

import numpy as np
import xxhash

from abawbench.errors import CacheError

if TYPE_CHECKING:
    import h5py
    import torch

log = logging.getLogger(__name__)

FORMAT_VERSION = 2
"""Bumped whenever the file layout or the meaning of a stored value changes (2: XXH3-128
chunk digests replaced format 1's block sums)."""

CACHE_ENV = "ABAWBENCH_CACHE"
CHUNK_BYTES = 1 << 20
"""Target chunk size: large enough for fast sequential reads, small enough that the writer's
one-chunk buffer keeps extraction memory flat."""

CHECKSUM_ALGORITHM = "xxh3-128"
STORED_DTYPES = {"float16": np.dtype("<f2"), "uint8": np.dtype("|u1")}
"""What an entry's rows may hold: float16 features, or uint8 pixel rows (abawbench.pixels)."""
FEATURES = "features"
CHECKSUMS = "checksums"
SAMPLE_IDS = "sample_ids"
KEY_PREFIX = "key."
META = "abawbench"
TMP_MARK = ".tmp-"


def default_cache_root() -> Path:
    """``$ABAWBENCH_CACHE`` or ``~/.cache/abawbench``: one place for every cached artefact."""
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "abawbench"


# --------------------------------------------------------------------------- keys


def canonical(value: Any, where: str = "value") -> Any:
    """A JSON-ready, order-independent form of ``value`` so that equal settings digest equally.

    Tuples and lists become lists, numpy scalars and arrays become Python numbers and lists,
    integral floats become ints (``224.0`` and ``224`` are one input size), mappings get string
    keys (sorted at dump time). Non-integral floats are kept exactly: rounding would make
    different preprocessing share a key, and a stale hit is worse than a miss. Unknown types
    are refused rather than ``str()``-ed, since a repr with an address would miss forever.
    """
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise CacheError(f"cache key: {where} is {value!r}; only finite numbers can be keyed")
        return int(value) if value.is_integer() else value
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, Mapping):
        return {str(k): canonical(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [canonical(v, f"{where}[{i}]") for i, v in enumerate(value)]
    raise CacheError(f"cache key: {where} has type {type(value).__name__}, which cannot be keyed")


def canonical_json(value: Any) -> str:
    return json.dumps(canonical(value), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


@dataclass(frozen=True, eq=False)
class CacheKey:
    """Everything that changes a split's features. Two keys are equal iff their :meth:`digest`
    is (so ``(3, 224, 224)`` and ``[3, 224, 224]`` are one key); ``preprocessing`` is timm's
    resolved data config."""

    backbone: str
    weights_digest: str
    preprocessing: Mapping[str, Any]
    dataset_fingerprint: str
    split: str
    format_version: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        # The key is a value: its canonical form and digest are fixed when it is made (a
        # preprocessing dict changed afterwards does not change the key), and computed once:
        # every cache hit compares keys several times.
        fields = {
            "backbone": self.backbone,
            "weights_digest": self.weights_digest,
            "preprocessing": canonical(self.preprocessing, "preprocessing"),
            "dataset_fingerprint": self.dataset_fingerprint,
            "split": self.split,
            "format_version": int(self.format_version),
        }
        object.__setattr__(self, "_canonical_json", canonical_json(fields))
        object.__setattr__(self, "_digest", hashlib.sha256(self._canonical_json.encode("utf-8")).hexdigest())

    def canonical(self) -> dict[str, Any]:
        return json.loads(self._canonical_json)

    def digest(self) -> str:
        """sha256 of the canonical JSON of every field."""
        return self._digest

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CacheKey) and self.digest() == other.digest()

    def __hash__(self) -> int:
        return hash(self.digest())

    def as_attrs(self) -> dict[str, Any]:
        """HDF5 attributes: one per field (preprocessing as canonical JSON) plus the digest."""
        attrs: dict[str, Any] = {KEY_PREFIX + k: v for k, v in self.canonical().items()}
        attrs[KEY_PREFIX + "preprocessing"] = canonical_json(self.canonical()["preprocessing"])
        attrs["key_digest"] = self.digest()
        return attrs

    @classmethod
    def from_canonical(cls, fields: Mapping[str, Any]) -> CacheKey:
        try:
            return cls(
                backbone=str(fields["backbone"]),
                weights_digest=str(fields["weights_digest"]),
                preprocessing=dict(fields["preprocessing"]),
                dataset_fingerprint=str(fields["dataset_fingerprint"]),
                split=str(fields["split"]),
                format_version=int(fields["format_version"]),
            )
        except (KeyError, ValueError, TypeError) as exc:
            raise CacheError(f"stored key is incomplete or unreadable ({exc!r})") from exc


def _as_str(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def encode_ids(sample_ids: Sequence[str]) -> bytes:
    """The ids as one UTF-8 blob, one per line: read, checked and split in milliseconds, where
    an HDF5 string array takes ~100 ms per 50,000 ids. ``surrogateescape`` keeps file names
    that are not valid UTF-8 (as ``os.scandir`` returns them) round-tripping."""
    blob = "\n".join(sample_ids).encode("utf-8", "surrogateescape")
    if blob.count(b"\n") != max(len(sample_ids) - 1, 0):  # one pass in C; name the row only then
        row = next(row for row, sample_id in enumerate(sample_ids) if "\n" in sample_id)
        raise CacheError(f"sample id of row {row} contains a line break: {sample_ids[row]!r}")
    return blob


def decode_ids(blob: bytes) -> list[str]:
    return blob.decode("utf-8", "surrogateescape").split("\n")


def ids_digest(blob: bytes) -> str:
    """sha256 of the encoded ids in order: a hit must map rows to the same samples as the caller."""
    return hashlib.sha256(blob).hexdigest()


# --------------------------------------------------------------------------- checksum


def chunk_checksum(data: np.ndarray) -> tuple[int, int]:
    """XXH3-128 of the raw bytes of ``data`` as (high, low) 64-bit words, as ``/checksums``
    stores them."""
    return _split_digest(xxhash.xxh3_128_intdigest(np.ascontiguousarray(data)))


def _split_digest(digest: int) -> tuple[int, int]:
    return digest >> 64, digest & 0xFFFF_FFFF_FFFF_FFFF


# --------------------------------------------------------------------------- writing


class FeatureWriter:
    """Streams feature batches into the ``features`` dataset, one whole chunk at a time.

    Only one chunk is ever buffered, so memory stays flat however large the split; each chunk
    is checksummed as it is flushed, so no second pass over the data is needed.
    """

    def __init__(self, dataset: "h5py.Dataset", chunk_rows: int) -> None:
        self._dataset = dataset
        self.num_rows, self.feature_dim = (int(n) for n in dataset.shape)
        self.chunk_rows = chunk_rows
        self.dtype = dataset.dtype
        self._buffer = np.empty((chunk_rows, self.feature_dim), self.dtype)
        self._buffered = 0  # rows in the buffer, which holds rows [_flushed, _flushed + _buffered)
        self._flushed = 0
        self.checksums: list[tuple[int, int]] = []

    @property
    def rows_written(self) -> int:
        return self._flushed + self._buffered

    def write(self, start_row: int, features: "np.ndarray | torch.Tensor") -> None:
        """Append rows ``start_row .. start_row + len(features) - 1``; batches must come in order.

        Features: numpy arrays or torch tensors of any float dtype, on any device, stored as
        float16; values float16 cannot hold (NaN, |x| > 65504) are refused. Pixel rows (an
        entry of dtype "uint8"): uint8 arrays or CPU tensors only.
        """
        batch = _as_float16(features) if self.dtype == np.float16 else _as_uint8(features)
        if batch.ndim != 2 or batch.shape[1] != self.feature_dim:
            raise CacheError(
                f"feature batch has shape {tuple(batch.shape)}; expected [rows, {self.feature_dim}]"
            )
        if start_row != self.rows_written:
            raise CacheError(
                f"feature batch starts at row {start_row}; expected row {self.rows_written} "
                "(batches must be written in order, without gaps or overlaps)"
            )
        end = start_row + batch.shape[0]
        if end > self.num_rows:
            raise CacheError(f"feature batch ends at row {end - 1}; the split has {self.num_rows} rows")
        if self.dtype == np.float16:
            bad = ~np.isfinite(batch).all(axis=1)
            if bad.any():
                row = start_row + int(np.argmax(bad))
                raise CacheError(f"features of row {row} are NaN or outside the float16 range (|x| > 65504)")
        taken = 0
        while taken < batch.shape[0]:
            room = min(self.chunk_rows - self._buffered, batch.shape[0] - taken)
            self._buffer[self._buffered : self._buffered + room] = batch[taken : taken + room]
            self._buffered += room
            taken += room
            if self._buffered == self.chunk_rows or self.rows_written == self.num_rows:
                self._flush()

    def _flush(self) -> None:
        rows = self._buffer[: self._buffered]
        self._dataset.write_direct(rows, dest_sel=np.s_[self._flushed : self._flushed + self._buffered])
        self.checksums.append(chunk_checksum(rows))
        self._flushed += self._buffered
        self._buffered = 0

    def finish(self) -> None:
        """Check that every row was written, then store the chunk checksums."""
        if self.rows_written != self.num_rows:
            raise CacheError(
                f"feature extraction wrote {self.rows_written} of {self.num_rows} rows; "
                "the entry is incomplete and was not stored"
            )
        self._dataset.file.create_dataset(
            CHECKSUMS, data=np.asarray(self.checksums, dtype=np.uint64).reshape(-1, 2)
        )


def _as_uint8(rows: Any) -> np.ndarray:
    array = rows.numpy() if hasattr(rows, "detach") else np.asarray(rows)
    if array.dtype != np.uint8:
        raise CacheError(f"pixel rows must be uint8, got dtype {array.dtype}")
    return array


def _as_float16(features: Any) -> np.ndarray:
    if hasattr(features, "detach"):  # torch.Tensor, without importing torch here
        import torch

        return features.detach().to(device="cpu", dtype=torch.float16).numpy()
    array = np.asarray(features)
    if not np.issubdtype(array.dtype, np.floating):
        raise CacheError(f"features must be floating point, got dtype {array.dtype}")
    with np.errstate(over="ignore"):  # overflow becomes inf and is reported by the caller
        return array.astype(np.float16, copy=False)


# --------------------------------------------------------------------------- reading


@dataclass(frozen=True)
class _Layout:
    """What a verified file holds and where its chunks lie (for reading them directly)."""

    key: CacheKey
    num_rows: int
    feature_dim: int
    chunk_rows: int
    chunk_offsets: tuple[int, ...]  # byte offset of chunk i, which holds rows from i*chunk_rows
    checksums: np.ndarray
    ids_digest: str
    dtype: np.dtype = STORED_DTYPES["float16"]

    def rows_of(self, chunk: int) -> tuple[int, int]:
        start = chunk * self.chunk_rows
        return start, min(self.num_rows, start + self.chunk_rows)


def _read_layout(f: "h5py.File") -> _Layout:
    """Cheap checks (attributes, shapes, chunk index) that need no pass over the data."""
    import h5py

    attrs = f.attrs
    if not bool(attrs.get("complete", False)):
        raise CacheError("not marked complete (the writer did not finish)")
    try:
        meta = json.loads(_as_str(attrs[META]))
        version = int(meta["format_version"])
    except (KeyError, ValueError, TypeError) as exc:
        raise CacheError(f"attribute {META!r} is missing or unreadable ({exc!r})") from exc
    if version != FORMAT_VERSION:
        raise CacheError(f"cache format version {version}; this abawbench reads {FORMAT_VERSION}")
    if meta.get("checksum_algorithm") != CHECKSUM_ALGORITHM:
        raise CacheError(f"unknown checksum algorithm {meta.get('checksum_algorithm')!r}")
    key = CacheKey.from_canonical(meta.get("key") or {})
    if meta.get("key_digest") != key.digest():
        raise CacheError("stored key digest does not match the stored key fields")
    dset, stored_checksums, ids = (f.get(name) for name in (FEATURES, CHECKSUMS, SAMPLE_IDS))
    for name, found in ((FEATURES, dset), (CHECKSUMS, stored_checksums), (SAMPLE_IDS, ids)):
        if not isinstance(found, h5py.Dataset):
            raise CacheError(f"dataset /{name} is missing")
    dtype = STORED_DTYPES.get(str(meta.get("dtype")))
    if dtype is None:
        raise CacheError(f"unknown row type {meta.get('dtype')!r}")
    if dset.ndim != 2 or dset.dtype != dtype:
        raise CacheError(f"/{FEATURES} is {dset.dtype} {dset.shape}; expected {meta['dtype']} [rows, dim]")
    num_rows, dim = (int(n) for n in dset.shape)
    chunk_rows = int(meta.get("chunk_rows", 0))
    if dset.chunks != (chunk_rows, dim) or dset.compression or dset.fletcher32 or dset.shuffle:
        raise CacheError(f"/{FEATURES} has an unexpected storage layout (chunks {dset.chunks})")
    num_chunks = -(-num_rows // chunk_rows)
    checksums = stored_checksums[()]
    if checksums.shape != (num_chunks, 2) or checksums.dtype != np.uint64:
        raise CacheError(f"/{CHECKSUMS} has shape {checksums.shape}; expected ({num_chunks}, 2)")
    if ids.ndim != 1 or ids.dtype != np.uint8:
        raise CacheError(f"/{SAMPLE_IDS} is {ids.dtype} {ids.shape}; expected uint8 bytes")
    return _Layout(
        key=key,
        num_rows=num_rows,
        feature_dim=dim,
        chunk_rows=chunk_rows,
        chunk_offsets=_chunk_offsets(dset, chunk_rows, num_chunks),
        dtype=dtype,
        checksums=checksums,
        ids_digest=str(meta.get("sample_ids_sha256", "")),
    )


def _chunk_offsets(dset: "h5py.Dataset", chunk_rows: int, num_chunks: int) -> tuple[int, ...]:
    """Byte offset of every chunk, checked to be whole, unfiltered and inside the file."""
    expected_size = chunk_rows * dset.shape[1] * dset.dtype.itemsize
    file_size = os.fstat(dset.file.id.get_vfd_handle()).st_size
    offsets: list[int | None] = [None] * num_chunks
    dsid = dset.id
    # chunk_iter walks the whole index in one HDF5 call, 5x faster than asking for each chunk
    # (it exists where h5py was built with HDF5 >= 1.14).
    if hasattr(dsid, "chunk_iter"):
        infos: list[Any] = []
        dsid.chunk_iter(infos.append)
    else:
        infos = [dsid.get_chunk_info(i) for i in range(dsid.get_num_chunks())]
    for info in infos:
        index = info.chunk_offset[0] // chunk_rows
        if info.filter_mask or info.size != expected_size or info.byte_offset is None:
            raise CacheError(f"chunk {index} is stored in an unexpected way")
        if info.byte_offset + info.size > file_size:
            raise CacheError(f"chunk {index} lies past the end of the file (truncated)")
        offsets[index] = info.byte_offset
    missing = [i for i, off in enumerate(offsets) if off is None]
    if missing:
        raise CacheError(f"rows from {missing[0] * chunk_rows} were never written")
    return tuple(int(off) for off in offsets)  # type: ignore[arg-type]


@contextlib.contextmanager
def _open_h5(path: Path, **kwargs: Any) -> Iterator["h5py.File"]:
    """Open read-only, turning HDF5's errors (truncation, garbage) into CacheError."""
    import h5py

    try:
        f = h5py.File(path, "r", **kwargs)
    except (OSError, ValueError) as exc:
        raise CacheError(f"cannot be opened as HDF5 ({_first_line(exc)})") from exc
    try:
        yield f
    finally:
        f.close()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _verified_chunks(
    f: "h5py.File", layout: _Layout, into: np.ndarray | None = None, chunks: Iterable[int] | None = None
) -> Iterator[tuple[int, int, np.ndarray]]:
    """``(start_row, end_row, rows)`` of every chunk of ``/features`` (or of the chunk numbers
    ``chunks``), in order, each handed over only once it has matched its stored digest; raises
    CacheError naming the first bad rows.

    Uncompressed chunks are raw rows (little-endian float16 or uint8), so one ``preadv`` per
    chunk skips HDF5's per-chunk machinery: into a reused buffer (the rows handed over live
    there: copy what you keep), or with ``into`` ([rows, dim] of the stored type) straight into
    the caller's array, as ``np.load`` reads, which is as fast as ``np.load`` here because
    chunks are not page-aligned (see ``_write_entry``; ``into`` holds unverified rows if this
    raises: drop it). Reading each chunk in smaller, L2-sized pieces measured no faster
    (``benchmarks/bench_cache_stages.py``). A memory map of the file was measured a little
    faster (~0.05 of ``np.load``'s speed) and dropped: a private writable mapping is charged
    its whole size against memory commit (a file larger than RAM could not be read), and an
    I/O error under a mapping (NFS, a failing disk) kills the process with SIGBUS where
    ``preadv`` raises, which becomes a rebuild.
    """
    fd = f.id.get_vfd_handle()
    buffer = np.empty((layout.chunk_rows, layout.feature_dim), layout.dtype) if into is None else None
    for chunk in range(len(layout.chunk_offsets)) if chunks is None else chunks:
        start, end = layout.rows_of(chunk)
        rows = into[start:end] if buffer is None else buffer[: end - start]
        _pread_rows(fd, rows, layout.chunk_offsets[chunk], start, end)
        _check_digest(layout, chunk, xxhash.xxh3_128_intdigest(rows))
        yield start, end, rows


MAX_READ_THREADS = 4
"""Whole-entry reads split their chunks over up to this many threads (and no more than the
usable cores): most of such a read is the kernel's copy out of the page cache and the page
faults of the fresh result, which run in parallel, as do the digest and torch's conversion
(all release the GIL). On the 2-core machine two threads cut ``read()`` by ~20% in the best
round and ~10% in the median one (docs/bench/cache.md)."""
_MIN_CHUNKS_PER_THREAD = 4  # below this a thread's start costs more than its share saves


def _read_threads(num_chunks: int) -> int:
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    return max(1, min(MAX_READ_THREADS, cores, num_chunks // _MIN_CHUNKS_PER_THREAD))


def _each_verified_chunk(
    f: "h5py.File",
    layout: _Layout,
    consume: Callable[[int, int, np.ndarray], None] | None = None,
    into: np.ndarray | None = None,
) -> None:
    """Every chunk through :func:`_verified_chunks`, split over threads (chunk ``i`` goes to
    thread ``i % threads``); ``consume(start_row, end_row, rows)`` runs in the thread that read
    and verified the chunk, in no particular order across threads. Returns only once every
    chunk was read and verified and every thread has ended.

    On failure the CacheError of the first bad rows is raised, as a single thread would: once
    rows from ``r`` on are known bad, each thread stops before its first chunk past ``r``, but
    goes on up to it, so a lower bad chunk is always found whichever thread gets there first.
    Any other error stops every thread and is raised instead (an interrupt before anything
    else; which of two simultaneous errors is seen then depends on timing)."""
    num_chunks = len(layout.chunk_offsets)
    threads = _read_threads(num_chunks)
    lock = threading.Lock()
    failures: list[BaseException] = []
    first_bad_row = [layout.num_rows]  # below 0 once anything but bad rows went wrong: all stop

    def still_needed(chunk: int) -> bool:
        return chunk * layout.chunk_rows < first_bad_row[0]

    def work(first: int) -> None:
        try:
            chunks = itertools.takewhile(still_needed, range(first, num_chunks, threads))
            for start, end, rows in _verified_chunks(f, layout, into, chunks):
                if consume is not None:
                    consume(start, end, rows)
        except BaseException as exc:  # re-raised in the calling thread below
            with lock:
                failures.append(exc)
                first_bad_row[0] = min(first_bad_row[0], _failure_rank(exc))

    started: list[threading.Thread] = []
    in_this_thread = [0]
    try:
        for first in range(1, threads):
            worker = threading.Thread(target=work, args=(first,), daemon=True)
            try:
                worker.start()
            except RuntimeError:  # no thread to be had (a pids limit): read its chunks here
                in_this_thread.append(first)
            else:
                started.append(worker)
        for first in in_this_thread:
            work(first)
        for worker in started:
            worker.join()
    except BaseException:
        # An interrupt: leave once the others have stopped (at their next chunk) and no longer
        # use the file, which the caller closes next. (One that lands inside start() leaves
        # that thread unjoined: harmless, as a thread only ever writes to the result the caller
        # is dropping, and fails on the closed file.)
        first_bad_row[0] = -2
        for worker in started:
            worker.join()
        raise
    if failures:
        raise min(failures, key=_failure_rank)


def _failure_rank(exc: BaseException) -> int:
    """Which failure a parallel read reports: an interrupt (-2), then any other error (-1),
    then the bad rows that start first."""
    if isinstance(exc, _BadRows):
        return exc.start
    return -1 if isinstance(exc, Exception) else -2


def _pread_rows(fd: int, rows: np.ndarray, offset: int, start: int, end: int) -> None:
    """Fill ``rows`` from the file at ``offset``; errors name the chunk's rows ``start..end-1``."""
    try:
        read = os.preadv(fd, [rows], offset)
    except OSError as exc:
        raise _BadRows(start, end, f"cannot be read: {exc.strerror or exc}") from exc
    if read != rows.nbytes:
        raise _BadRows(start, end, "end past the end of the file (truncated)")


def _check_digest(layout: _Layout, chunk: int, digest: int) -> None:
    if _split_digest(digest) != tuple(int(x) for x in layout.checksums[chunk]):
        raise _BadRows(*layout.rows_of(chunk), "fail their checksum (file is corrupt)")


class _BadRows(CacheError):
    """Rows of one chunk that cannot be used; ``start`` orders the failures of parallel reads."""

    def __init__(self, start: int, end: int, problem: str) -> None:
        super().__init__(f"rows {start}..{end - 1} {problem}")
        self.start = start


@dataclass
class CachedFeatures:
    """A verified cache entry. ``read()`` returns the whole array; ``torch_dataset()`` serves
    rows to a DataLoader without loading everything."""

    path: Path
    key: CacheKey
    num_rows: int
    feature_dim: int
    _ids: list[str] | None = field(default=None, repr=False)

    @property
    def sample_ids(self) -> list[str]:
        """Row ``i`` holds the features of ``sample_ids[i]`` (read on first use)."""
        if self._ids is None:
            with _open_h5(self.path) as f:
                self._ids = decode_ids(_read_ids_blob(f))
        return self._ids

    def read(self) -> np.ndarray:
        """All features as float32 ``[rows, dim]``, every chunk checked against its checksum.

        Raises CacheError on any mismatch; never returns data that failed verification.
        """
        return self._with_file(_read_float32)

    def read_float16(self) -> np.ndarray:
        """The stored float16 features, verified like :meth:`read` (half the memory, no torch)."""
        return self._with_file(_read_float16)

    def iter_batches(self, batch_rows: int) -> Iterator[tuple[int, np.ndarray]]:
        """``(start_row, rows)`` in order, ``batch_rows`` rows at a time (the last may be
        shorter), each a fresh array of the stored type; every chunk is verified before any of
        its rows is handed out, and memory stays at one chunk plus one batch however large
        the entry. Raises CacheError (naming the file and rows) on a mismatch."""
        if batch_rows < 1:
            raise ValueError(f"batch_rows must be >= 1, got {batch_rows}")
        try:
            with _open_h5(self.path) as f:
                layout = self._layout(f)
                batch = np.empty((min(batch_rows, self.num_rows), self.feature_dim), layout.dtype)
                filled, batch_start = 0, 0
                for _start, _end, rows in _verified_chunks(f, layout):
                    taken = 0
                    while taken < len(rows):
                        room = min(len(batch) - filled, len(rows) - taken)
                        batch[filled : filled + room] = rows[taken : taken + room]
                        filled, taken = filled + room, taken + room
                        if filled == len(batch):
                            yield batch_start, batch
                            batch_start += filled
                            batch = np.empty((min(batch_rows, self.num_rows - batch_start), self.feature_dim),
                                             layout.dtype)
                            filled = 0
        except CacheError as exc:
            raise CacheError(_with_path(self.path, exc)) from exc

    def _with_file(self, read: Callable[["h5py.File", "_Layout"], np.ndarray]) -> np.ndarray:
        try:
            with _open_h5(self.path) as f:
                return read(f, self._layout(f))
        except CacheError as exc:
            raise CacheError(_with_path(self.path, exc)) from exc

    def _layout(self, f: "h5py.File") -> _Layout:
        layout = _read_layout(f)
        if layout.key != self.key or layout.num_rows != self.num_rows:
            raise CacheError("was replaced by a different entry since it was loaded")
        return layout

    def torch_dataset(self) -> "FeatureDataset":
        with _open_h5(self.path) as f:
            _features_only(self._layout(f))
        return FeatureDataset(self.path, self.num_rows, self.feature_dim)


def _features_only(layout: _Layout) -> None:
    if layout.dtype != STORED_DTYPES["float16"]:
        raise CacheError(f"holds {layout.dtype} rows (pixels), not features")


def _read_float32(f: "h5py.File", layout: _Layout) -> np.ndarray:
    """Every chunk verified and converted to float32 while it is in cache."""
    import torch

    _features_only(layout)
    out = np.empty((layout.num_rows, layout.feature_dim), np.float32)
    target = torch.from_numpy(out)

    def convert(start: int, end: int, rows: np.ndarray) -> None:
        # torch converts float16 with F16C at memory speed: 0.05 ms per 1 MiB chunk, where
        # numpy 2.4's copyto takes 1.4 ms (docs/bench/cache.md, with the timeit commands).
        target[start:end].copy_(torch.from_numpy(rows))

    # One torch thread per reading thread: a chunk is converted while it is in that core's
    # cache, and torch's OpenMP pool, woken once per chunk, spin-waits for a busy second core
    # (it cost 200-400 ms per read on the shared 2-core machine). The setting is process
    # wide (reading threads started under it see it), so torch work in other threads runs on
    # one thread for these milliseconds too.
    with _torch_threads(1):
        _each_verified_chunk(f, layout, convert)
    return out


def _read_float16(f: "h5py.File", layout: _Layout) -> np.ndarray:
    """Every chunk read straight into the result and verified there (as ``np.load`` reads: no
    bounce buffer, no second copy)."""
    _features_only(layout)
    out = np.empty((layout.num_rows, layout.feature_dim), np.float16)
    _each_verified_chunk(f, layout, into=out)
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


def _with_path(path: Path, exc: CacheError) -> str:
    text = str(exc)
    return text if text.startswith(str(path)) else f"{path}: {text}"


def _read_ids_blob(f: "h5py.File") -> bytes:
    return f[SAMPLE_IDS][()].tobytes()


class FeatureDataset:
    """A map-style torch dataset of ``(row_index, float32 feature)`` items.

    The HDF5 handle is opened lazily and remembered per process id: a DataLoader worker made
    by fork must not reuse its parent's handle (h5py state is not fork-safe), so each worker
    opens its own. The chunk cache is disabled because rows are read one at a time: with a
    cache, HDF5 would read a whole 1 MiB chunk for every 1 KiB row.
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


# --------------------------------------------------------------------------- the cache


@dataclass(frozen=True)
class CacheEntry:
    """One file in the cache as ``cache ls`` shows it; ``key`` is None when unreadable."""

    path: Path
    key: CacheKey | None
    num_rows: int | None
    feature_dim: int | None
    size_bytes: int
    modified: datetime
    problem: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "key": self.key.canonical() if self.key else None,
            "key_digest": self.key.digest() if self.key else None,
            "rows": self.num_rows,
            "dim": self.feature_dim,
            "size_bytes": self.size_bytes,
            "modified": self.modified.isoformat(timespec="seconds"),
            "problem": self.problem,
        }


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "_"


class FeatureCache:
    """Feature files under ``root/features``; safe to share between processes."""

    def __init__(self, root: Path | None = None, *, lock_timeout: float | None = None) -> None:
        self.root = Path(root) if root is not None else default_cache_root()
        self.folder = self.root / "features"
        self.lock_timeout = lock_timeout  # None: wait as long as another extraction takes

    def path_for(self, key: CacheKey) -> Path:
        """``features/<backbone>/<split>-<digest>.h5``: readable names; the digest decides."""
        return self.folder / _safe_name(key.backbone) / f"{_safe_name(key.split)}-{key.digest()[:24]}.h5"

    # -- reading ---------------------------------------------------------------------------

    def load(self, key: CacheKey, sample_ids: Sequence[str] | None = None, *,
             verify_data: bool = True) -> CachedFeatures | None:
        """The verified entry for ``key``, or None. A file that fails verification (or holds
        other ``sample_ids`` than given) is removed and logged, and counts as a miss.

        ``verify_data=False`` checks all but the data (structure, key, sample ids): for a reader
        that streams the entry once with :meth:`CachedFeatures.iter_batches`, which verifies
        each chunk before handing it out, so the data is not read twice.
        """
        path = self.path_for(key)
        if not path.exists():
            return None
        problems, found = _inspect(path, key, sample_ids, verify_data=verify_data)
        if not problems:
            return found
        log.warning("feature cache: %s is unusable and will be rebuilt: %s", path, "; ".join(problems))
        self._remove_if_still_bad(path, key, sample_ids)
        return None

    def read_or_create(
        self,
        key: CacheKey,
        sample_ids: Sequence[str],
        feature_dim: int,
        produce: Callable[[FeatureWriter], None],
    ) -> np.ndarray:
        """The features of ``key`` as float32, made on a miss: the protocol's hot path.

        A hit opens the file once and reads the data once: the structure is checked up front,
        the checksums while the chunks are converted. A file that fails is removed and rebuilt.
        """
        sample_ids = list(sample_ids)
        path = self.path_for(key)
        if path.exists():
            try:
                with _open_h5(path) as f:
                    return _read_float32(f, _check_entry(f, key, sample_ids))
            except CacheError as exc:
                log.warning("feature cache: %s is unusable and will be rebuilt: %s", path, exc)
            self._remove_if_still_bad(path, key, sample_ids)
        # read() verifies every chunk as it converts: no separate verifying pass after writing.
        return self.get_or_create(key, sample_ids, feature_dim, produce, verify_data=False).read()

    def remove_if_bad(self, key: CacheKey, sample_ids: Sequence[str] | None = None) -> None:
        """Remove the entry of ``key`` if it fails full verification (for a reader that found
        a bad chunk while streaming it), so that the next request rebuilds it."""
        self._remove_if_still_bad(self.path_for(key), key, sample_ids)

    def _remove_if_still_bad(self, path: Path, key: CacheKey, sample_ids: Sequence[str] | None) -> None:
        # Under the lock, and only if still bad: a writer may have just replaced it with a good file.
        lock = self._lock(path, timeout=0)
        try:
            with lock:
                if path.exists() and _inspect(path, key, sample_ids)[0]:
                    path.unlink(missing_ok=True)
        except _lock_timeout_error():
            pass  # someone is writing this entry right now; their file will replace it

    def verify(self, path: Path) -> list[str]:
        """Every problem of one file (empty: usable), including a full checksum pass."""
        return _inspect(Path(path), None, None)[0]

    def entries(self) -> list[CacheEntry]:
        """Every finished file, readable or not (cheap: attributes only, no checksum pass)."""
        return [_entry(path) for path in self._files()]

    def _files(self) -> list[Path]:
        if not self.folder.is_dir():
            return []
        return sorted(p for p in self.folder.glob("*/*.h5") if TMP_MARK not in p.name)

    # -- writing ---------------------------------------------------------------------------

    def get_or_create(
        self,
        key: CacheKey,
        sample_ids: Sequence[str],
        feature_dim: int,
        produce: Callable[[FeatureWriter], None],
        *,
        dtype: str = "float16",
        verify_data: bool = True,
    ) -> CachedFeatures:
        """The entry for ``key``, calling ``produce(writer)`` to make it on a miss.

        Of several processes asking for one key, exactly one runs ``produce``; the others wait
        on the key's lock and then read its file. If ``produce`` raises, nothing is stored.
        ``dtype`` is what the rows hold: "float16" features or "uint8" pixel rows.
        ``verify_data=False`` skips the full data pass of :meth:`load` (for callers that only
        stream the entry with :meth:`CachedFeatures.iter_batches`, which verifies each chunk).
        """
        if dtype not in STORED_DTYPES:
            raise CacheError(f"cannot store rows of type {dtype!r}; expected one of {sorted(STORED_DTYPES)}")
        if key.format_version != FORMAT_VERSION:
            raise CacheError(
                f"cache key asks for format version {key.format_version}; "
                f"this abawbench writes version {FORMAT_VERSION}"
            )
        sample_ids = list(sample_ids)
        found = self.load(key, sample_ids, verify_data=verify_data)
        if found is not None:
            return found
        path = self.path_for(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            with self._lock(path, timeout=self.lock_timeout):
                # another process may have made it meanwhile
                found = self.load(key, sample_ids, verify_data=verify_data)
                if found is not None:
                    return found
                _remove_temporaries(path)  # left by writers that were killed; we hold the lock
                _write_entry(path, key, sample_ids, feature_dim, produce, dtype)
        except _lock_timeout_error() as exc:
            raise CacheError(
                f"{path}: another process has held the cache lock for more than "
                f"{self.lock_timeout} s; if no extraction is running, remove {path}.lock"
            ) from exc
        found = self.load(key, sample_ids, verify_data=verify_data)
        if found is None:
            raise CacheError(f"{path}: the entry just written failed verification")
        return found

    # -- removing --------------------------------------------------------------------------

    def clear(self, backbone: str | None = None, pattern: str | None = None, *,
              only_bad: bool = False) -> tuple[list[Path], list[Path]]:
        """Remove finished files (and leftover temporaries) of ``backbone`` and/or whose name
        matches the glob ``pattern``; with neither, everything; with ``only_bad``, only those
        that fail full verification (checksums included: corrupt, truncated, or written by
        another cache format, whose files never hit again). Returns (removed, busy): a file
        whose lock is held by a running extraction is left alone and reported busy.
        """
        removed: list[Path] = []
        busy: list[Path] = []
        for path in self._files():
            if pattern is not None and not fnmatch.fnmatch(path.name, pattern):
                continue
            if backbone is not None and not _belongs_to(path, backbone):
                continue
            try:
                with self._lock(path, timeout=0):
                    if only_bad and not self.verify(path):
                        continue
                    removed.extend(_remove_temporaries(path))
                    path.unlink(missing_ok=True)
                    removed.append(path)
            except _lock_timeout_error():
                busy.append(path)
        for folder in self.folder.glob("*/") if self.folder.is_dir() else []:
            with contextlib.suppress(OSError):
                folder.rmdir()  # only succeeds when empty
        return removed, busy

    def _lock(self, path: Path, timeout: float | None) -> Any:
        from filelock import FileLock

        return FileLock(f"{path}.lock", timeout=-1 if timeout is None else timeout)


def _lock_timeout_error() -> type[Exception]:
    from filelock import Timeout

    return Timeout


def _belongs_to(path: Path, backbone: str) -> bool:
    """Whether the file's stored backbone is ``backbone``; for an unreadable file, whether it
    sits in that backbone's folder (so broken files can be cleared by backbone too)."""
    try:
        with _open_h5(path) as f:
            return _read_layout(f).key.backbone == backbone
    except CacheError:
        return path.parent.name == _safe_name(backbone)


def _remove_temporaries(path: Path) -> list[Path]:
    leftovers = list(path.parent.glob(path.name + TMP_MARK + "*"))
    for tmp in leftovers:
        tmp.unlink(missing_ok=True)
    return leftovers


def _write_entry(
    path: Path,
    key: CacheKey,
    sample_ids: list[str],
    feature_dim: int,
    produce: Callable[[FeatureWriter], None],
    dtype: str,
) -> None:
    """Write to a temporary name in the same folder, then rename: readers never see a part."""
    import h5py

    num_rows = len(sample_ids)
    if num_rows == 0 or feature_dim <= 0:
        raise CacheError(f"{path}: nothing to cache ({num_rows} rows of dimension {feature_dim})")
    chunk_rows = max(1, min(num_rows, CHUNK_BYTES // (STORED_DTYPES[dtype].itemsize * feature_dim)))
    ids_blob = encode_ids(sample_ids)
    tmp = path.with_name(f"{path.name}{TMP_MARK}{os.getpid()}-{uuid.uuid4().hex[:8]}")
    started = time.perf_counter()
    try:
        # HDF5's default placement, not page-aligned chunks: on the 2-core VM a page-aligned
        # read into fresh memory ran 3x slower than the same read at any other offset
        # (docs/bench/cache.md), and aligned chunks bought nothing anywhere else.
        with h5py.File(tmp, "w") as f:
            for name, value in key.as_attrs().items():
                f.attrs[name] = value
            meta = {
                "format_version": FORMAT_VERSION,
                "key": key.canonical(),
                "key_digest": key.digest(),
                "chunk_rows": chunk_rows,
                "checksum_algorithm": CHECKSUM_ALGORITHM,
                "sample_ids_sha256": ids_digest(ids_blob),
                "dtype": dtype,
            }
            f.attrs[META] = json.dumps(meta, sort_keys=True)
            f.attrs["created"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
            f.attrs["complete"] = False
            f.create_dataset(SAMPLE_IDS, data=np.frombuffer(ids_blob, np.uint8))
            dset = f.create_dataset(
                FEATURES, shape=(num_rows, feature_dim), dtype=STORED_DTYPES[dtype], chunks=(chunk_rows, feature_dim)
            )
            writer = FeatureWriter(dset, chunk_rows)
            produce(writer)
            writer.finish()
            f.attrs["extract_seconds"] = round(time.perf_counter() - started, 3)
            f.attrs["complete"] = True
            f.flush()
            os.fsync(f.id.get_vfd_handle())  # the rename must not land before the data
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _inspect(path: Path, key: CacheKey | None, sample_ids: Sequence[str] | None, *,
             verify_data: bool = True) -> tuple[list[str], CachedFeatures | None]:
    """Full verification, checksums included unless ``verify_data`` is False: (problems, the
    entry when there are none)."""
    try:
        with _open_h5(path) as f:
            layout = _check_entry(f, key, sample_ids)
            if verify_data:
                _each_verified_chunk(f, layout)
    except CacheError as exc:
        return [str(exc)], None
    entry = CachedFeatures(path, key or layout.key, layout.num_rows, layout.feature_dim)
    return [], entry


def _check_entry(f: "h5py.File", key: CacheKey | None, sample_ids: Sequence[str] | None) -> _Layout:
    """Everything but the feature data: the layout, the key (when given) and the sample ids
    (stored checksum, count, and equality with ``sample_ids`` when given)."""
    layout = _read_layout(f)
    if key is not None and layout.key != key:
        raise CacheError(f"holds key {layout.key.digest()[:12]}, not {key.digest()[:12]}")
    blob = _read_ids_blob(f)
    # Stored ids equal to the caller's are right whatever their digest says, so the usual hit
    # compares bytes (~0.1 ms) instead of hashing both blobs (~2 ms each for 50,000 ids).
    wanted = encode_ids(sample_ids) if sample_ids is not None else None
    if blob != wanted and ids_digest(blob) != layout.ids_digest:
        raise CacheError("sample ids fail their checksum")
    stored_ids = blob.count(b"\n") + 1
    if stored_ids != layout.num_rows:
        raise CacheError(f"holds {stored_ids} sample ids for {layout.num_rows} rows")
    if wanted is not None and blob != wanted:
        raise CacheError("holds other sample ids than requested (stale dataset fingerprint?)")
    return layout


def _entry(path: Path) -> CacheEntry:
    stat = path.stat()
    modified = datetime.fromtimestamp(stat.st_mtime, tz=timezone.utc)
    try:
        with _open_h5(path) as f:
            layout = _read_layout(f)
    except CacheError as exc:
        return CacheEntry(path, None, None, None, stat.st_size, modified, str(exc))
    return CacheEntry(path, layout.key, layout.num_rows, layout.feature_dim, stat.st_size, modified)
