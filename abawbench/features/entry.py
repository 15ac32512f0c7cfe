"""The file format of one cache entry: how it is written, and the checks that need no data pass.

Layout of a file::

    /features     [rows, dim] of float16 (features) or uint8 (pixel packs), chunked (about
                  CHUNK_BYTES per chunk, whole rows), no filters
    /checksums    uint64 [chunks, 2], the XXH3-128 digest of each chunk's bytes (high, low word)
    /sample_ids   uint8 [bytes]: the ids as UTF-8, one per line
    attrs         key.* fields and key_digest (for people and other tools), "abawbench" (the
                  same key plus layout facts as one JSON string: what the reader checks, in
                  one attribute read, since h5py pays per attribute), created, complete

The full key is stored so that a file is checked against what the caller expects rather than
trusted by its name. A writer streams batches into a temporary file beside the final one
(:func:`abawbench.atomic.atomic_path`), checksums each chunk as it is flushed, marks the file
complete and renames it into place, so a reader sees either nothing or a whole file.

Why XXH3 (the ``xxhash`` package): every read checks every chunk, so the hash's speed is the
read's speed; XXH3-128 is several times faster than zlib's crc32 and, unlike block sums, catches
any reordering of bytes (docs/bench/cache.md has the measurements). It is an integrity check
against accidents (bit rot, torn or truncated writes, a file from elsewhere), not a defence
against tampering.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Sequence

import numpy as np
import xxhash

from abawbench.atomic import atomic_path, require_free_space
from abawbench.errors import CacheError
from abawbench.features.key import FORMAT_VERSION, EntryKey, canonical_json, fields_digest

if TYPE_CHECKING:
    import h5py
    import torch

CHUNK_BYTES = 1 << 20
"""Target chunk size: large enough for fast sequential reads, small enough that the writer's
one-chunk buffer keeps extraction memory flat."""

CHECKSUM_ALGORITHM = "xxh3-128"
ROW_DTYPES = {"float16": np.dtype("<f2"), "uint8": np.dtype("|u1")}
"""What an entry's rows may hold: float16 features, or uint8 pixel rows (a pixel pack)."""
FEATURES = "features"
CHECKSUMS = "checksums"
SAMPLE_IDS = "sample_ids"
KEY_PREFIX = "key."
META = "abawbench"


# --------------------------------------------------------------------------- ids and digests


def encode_ids(sample_ids: Sequence[str]) -> bytes:
    """The ids as one UTF-8 blob, one per line: read, checked and split in one pass each, where
    an HDF5 string array costs a Python object per id (docs/bench/cache.md). ``surrogateescape``
    keeps file names that are not valid UTF-8 (as ``os.scandir`` returns them) round-tripping."""
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


def chunk_checksum(data: np.ndarray) -> tuple[int, int]:
    """XXH3-128 of the raw bytes of ``data`` as (high, low) 64-bit words, as ``/checksums``
    stores them."""
    return split_digest(xxhash.xxh3_128_intdigest(np.ascontiguousarray(data)))


def split_digest(digest: int) -> tuple[int, int]:
    return digest >> 64, digest & 0xFFFF_FFFF_FFFF_FFFF


# --------------------------------------------------------------------------- writing


class EntryWriter:
    """Streams row batches into ``/features``, one whole chunk at a time.

    Only one chunk is ever buffered, so memory stays flat however large the split; each chunk
    is checksummed as it is flushed, so no second pass over the data is needed.
    """

    def __init__(self, dataset: "h5py.Dataset", chunk_rows: int) -> None:
        self._dataset = dataset
        self.num_rows, self.row_dim = (int(n) for n in dataset.shape)
        self.chunk_rows = chunk_rows
        self.dtype = dataset.dtype
        self._buffer = np.empty((chunk_rows, self.row_dim), self.dtype)
        self._buffered = 0  # rows in the buffer, which holds rows [_flushed, _flushed + _buffered)
        self._flushed = 0
        self.checksums: list[tuple[int, int]] = []

    @property
    def rows_written(self) -> int:
        return self._flushed + self._buffered

    def write(self, start_row: int, rows: "np.ndarray | torch.Tensor") -> None:
        """Append rows ``start_row .. start_row + len(rows) - 1``; batches must come in order.

        Features: numpy arrays or torch tensors of any float dtype, on any device, stored as
        float16; values float16 cannot hold (NaN, |x| > 65504) are refused. Pixel rows (an
        entry of dtype "uint8"): uint8 arrays or CPU tensors only.
        """
        batch = _as_float16(rows) if self.dtype == np.float16 else _as_uint8(rows)
        if batch.ndim != 2 or batch.shape[1] != self.row_dim:
            raise CacheError(f"feature batch has shape {tuple(batch.shape)}; expected [rows, {self.row_dim}]")
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
        checksums = np.asarray(self.checksums, dtype=np.uint64).reshape(-1, 2)
        self._dataset.file.create_dataset(CHECKSUMS, data=checksums)


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


def key_attrs(key: EntryKey) -> dict[str, Any]:
    """HDF5 attributes for people and other tools: one per key field (mappings and lists as
    canonical JSON) plus the digest. The reader checks the JSON attribute instead."""
    attrs: dict[str, Any] = {}
    for name, value in key.canonical().items():
        attrs[KEY_PREFIX + name] = canonical_json(value) if isinstance(value, (dict, list)) else value
    attrs["key_digest"] = key.digest()
    return attrs


def write_entry(
    path: Path,
    key: EntryKey,
    sample_ids: Sequence[str],
    row_dim: int,
    produce: Callable[[EntryWriter], None],
    row_dtype: str,
    chunk_bytes: int = CHUNK_BYTES,
) -> None:
    """Write the entry of ``key`` at ``path`` with the rows ``produce(writer)`` streams in.

    Through :func:`abawbench.atomic.atomic_path`: readers never see a part, and a writer that
    raises (or is killed) leaves nothing under ``path``. The caller holds the key's lock. Too
    little free space, or a disk that fills during the write, raises StorageError.
    """
    import h5py

    num_rows = len(sample_ids)
    if num_rows == 0 or row_dim <= 0:
        raise CacheError(f"{path}: nothing to cache ({num_rows} rows of dimension {row_dim})")
    chunk_rows = max(1, min(num_rows, chunk_bytes // (ROW_DTYPES[row_dtype].itemsize * row_dim)))
    ids_blob = encode_ids(sample_ids)
    started = time.perf_counter()
    with atomic_path(path) as temporary:
        require_free_space(path.parent, expected_size(num_rows, row_dim, row_dtype, len(ids_blob)),
                           f"cache entry {path.name}")
        # HDF5's default placement, not page-aligned chunks: a page-aligned read into fresh
        # memory measured several times slower than the same read at any other offset, and
        # aligned chunks bought nothing anywhere else (docs/bench/cache.md).
        # No chunk cache: whole chunks go straight to disk, so a write that fails fails at
        # once, and little but metadata is left to flush when the file is abandoned.
        f = h5py.File(temporary, "w", rdcc_nbytes=0)
        dataset = writer = None
        try:
            for name, value in key_attrs(key).items():
                f.attrs[name] = value
            meta = {
                "format_version": FORMAT_VERSION,
                "key": key.canonical(),
                "key_digest": key.digest(),
                "chunk_rows": chunk_rows,
                "checksum_algorithm": CHECKSUM_ALGORITHM,
                "sample_ids_sha256": ids_digest(ids_blob),
                "dtype": row_dtype,
            }
            f.attrs[META] = json.dumps(meta, sort_keys=True)
            f.attrs["created"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
            f.attrs["complete"] = False
            f.create_dataset(SAMPLE_IDS, data=np.frombuffer(ids_blob, np.uint8))
            dataset = f.create_dataset(FEATURES, shape=(num_rows, row_dim), dtype=ROW_DTYPES[row_dtype],
                                       chunks=(chunk_rows, row_dim))
            writer = EntryWriter(dataset, chunk_rows)
            produce(writer)
            writer.finish()
            f.attrs["extract_seconds"] = round(time.perf_counter() - started, 3)
            f.attrs["complete"] = True
            f.flush()
            os.fsync(f.id.get_vfd_handle())  # the rename must not land before the data
            f.close()
        except BaseException:
            del dataset, writer  # no handle into the abandoned file may outlive it
            _abandon(f)
            raise


def expected_size(num_rows: int, row_dim: int, row_dtype: str, ids_bytes: int) -> int:
    """About how many bytes the entry's file takes: the rows, the ids, and room for HDF5's
    metadata (chunk index, attributes), which grows with the number of chunks."""
    return num_rows * row_dim * ROW_DTYPES[row_dtype].itemsize + ids_bytes + (1 << 20)


def _abandon(f: "h5py.File") -> None:
    """Close a file whose write failed, so that nothing touches it again.

    HDF5 flushes its metadata on close; after a write failed for want of space that flush
    fails too, and h5py then frees a half-closed file at garbage collection, which crashes the
    process (SIGSEGV or SIGBUS) instead of raising. Truncating the temporary first gives the
    space back, so the close can finish; the file's content no longer matters, as
    :func:`abawbench.atomic.atomic_path` removes it next.
    """
    with contextlib.suppress(Exception):
        os.ftruncate(f.id.get_vfd_handle(), 0)
    with contextlib.suppress(Exception):
        f.close()


# --------------------------------------------------------------------------- checks without a data pass


@dataclass(frozen=True)
class EntryLayout:
    """What a checked file holds and where its chunks lie (for reading them directly)."""

    key_fields: dict[str, Any]
    key_digest: str
    num_rows: int
    row_dim: int
    chunk_rows: int
    chunk_offsets: tuple[int, ...]  # byte offset of chunk i, which holds rows from i*chunk_rows
    checksums: np.ndarray
    ids_digest: str
    dtype: np.dtype

    def rows_of(self, chunk: int) -> tuple[int, int]:
        start = chunk * self.chunk_rows
        return start, min(self.num_rows, start + self.chunk_rows)


@contextlib.contextmanager
def open_entry(path: Path) -> Iterator["h5py.File"]:
    """Open read-only, turning HDF5's errors (truncation, garbage) into CacheError."""
    import h5py

    try:
        f = h5py.File(path, "r")
    except (OSError, ValueError) as exc:
        raise CacheError(f"cannot be opened as HDF5 ({_first_line(exc)})") from exc
    try:
        yield f
    finally:
        f.close()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def read_layout(f: "h5py.File", row_dtype: str) -> EntryLayout:
    """Cheap checks (attributes, shapes, chunk index) that need no pass over the data;
    ``row_dtype`` is what the caller's store holds, so a file of another kind never passes."""
    import h5py

    attrs = f.attrs
    if not bool(attrs.get("complete", False)):
        raise CacheError("not marked complete (the writer did not finish)")
    try:
        raw = attrs[META]
        meta = json.loads(raw.decode("utf-8") if isinstance(raw, bytes) else str(raw))
        version = int(meta["format_version"])
    except (KeyError, ValueError, TypeError) as exc:
        raise CacheError(f"attribute {META!r} is missing or unreadable ({exc!r})") from exc
    if version != FORMAT_VERSION:
        raise CacheError(f"cache format version {version}; this abawbench reads {FORMAT_VERSION}")
    if meta.get("checksum_algorithm") != CHECKSUM_ALGORITHM:
        raise CacheError(f"unknown checksum algorithm {meta.get('checksum_algorithm')!r}")
    key_fields = meta.get("key")
    if not isinstance(key_fields, dict) or meta.get("key_digest") != fields_digest(key_fields):
        raise CacheError("stored key digest does not match the stored key fields")
    if meta.get("dtype") != row_dtype:
        raise CacheError(f"holds {meta.get('dtype')} rows, not the {row_dtype} rows of this cache "
                         "(a file of another kind of entry)")
    dset, stored_checksums, ids = (f.get(name) for name in (FEATURES, CHECKSUMS, SAMPLE_IDS))
    for name, found in ((FEATURES, dset), (CHECKSUMS, stored_checksums), (SAMPLE_IDS, ids)):
        if not isinstance(found, h5py.Dataset):
            raise CacheError(f"dataset /{name} is missing")
    dtype = ROW_DTYPES[row_dtype]
    if dset.ndim != 2 or dset.dtype != dtype:
        raise CacheError(f"/{FEATURES} is {dset.dtype} {dset.shape}; expected {row_dtype} [rows, dim]")
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
    return EntryLayout(
        key_fields=key_fields,
        key_digest=str(meta["key_digest"]),
        num_rows=num_rows,
        row_dim=dim,
        chunk_rows=chunk_rows,
        chunk_offsets=_chunk_offsets(dset, chunk_rows, num_chunks),
        checksums=checksums,
        ids_digest=str(meta.get("sample_ids_sha256", "")),
        dtype=dtype,
    )


def _chunk_offsets(dset: "h5py.Dataset", chunk_rows: int, num_chunks: int) -> tuple[int, ...]:
    """Byte offset of every chunk, checked to be whole, unfiltered and inside the file."""
    expected_size = chunk_rows * dset.shape[1] * dset.dtype.itemsize
    file_size = os.fstat(dset.file.id.get_vfd_handle()).st_size
    offsets: list[int | None] = [None] * num_chunks
    dsid = dset.id
    # One chunk_iter call walks the whole index, much faster than asking for each chunk
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


def read_ids_blob(f: "h5py.File") -> bytes:
    return f[SAMPLE_IDS][()].tobytes()


def check_entry(f: "h5py.File", row_dtype: str, key: EntryKey | None = None,
                sample_ids: Sequence[str] | None = None) -> EntryLayout:
    """Everything but the row data: the layout, the key (when given) and the sample ids
    (stored checksum, count, and equality with ``sample_ids`` when given)."""
    layout = read_layout(f, row_dtype)
    if key is not None and layout.key_digest != key.digest():
        raise CacheError(f"holds key {layout.key_digest[:12]}, not {key.digest()[:12]}")
    blob = read_ids_blob(f)
    # Stored ids equal to the caller's are right whatever their digest says, so the usual hit
    # compares bytes instead of hashing both blobs.
    wanted = encode_ids(sample_ids) if sample_ids is not None else None
    if blob != wanted and ids_digest(blob) != layout.ids_digest:
        raise CacheError("sample ids fail their checksum")
    stored_ids = blob.count(b"\n") + 1
    if stored_ids != layout.num_rows:
        raise CacheError(f"holds {stored_ids} sample ids for {layout.num_rows} rows")
    if wanted is not None and blob != wanted:
        raise CacheError("holds other sample ids than requested (stale dataset fingerprint?)")
    return layout
