"""Cache stores: one folder of entries per kind, safe to share between processes.

A store finds, makes, verifies, lists and clears the entries of one kind under
``<root>/<namespace>/``: :class:`FeatureCache` holds backbone features (``features/``), the
pixel-pack store (:mod:`abawbench.features.pixel_packs`) decoded pixels (``pixel-packs/``).
Each kind has its own key type and row type, checked on every read, so an entry of one kind is
never taken for the other.

Of several processes asking for one key, exactly one makes it: a per-key file lock guards the
write, and the others wait on it and then read the file. A file that fails verification is
removed and rebuilt, never used (lm-evaluation-harness #3881, MTEB #5383: a cache that trusts
a stale file silently returns wrong results).
"""

from __future__ import annotations

import contextlib
import fnmatch
import logging
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, ClassVar, Generic, Sequence, TypeVar

from filelock import FileLock, Timeout

from abawbench.atomic import is_temporary
from abawbench.errors import CacheError
from abawbench.features.cached import CachedFeatures, CachedRows, file_identity
from abawbench.features.entry import CHUNK_BYTES, EntryWriter, check_entry, open_entry, read_layout, write_entry
from abawbench.features.key import FORMAT_VERSION, CacheKey, EntryKey, default_cache_root, safe_name
from abawbench.features.reads import each_verified_chunk

log = logging.getLogger(__name__)

K = TypeVar("K", bound=EntryKey)
H = TypeVar("H", bound=CachedRows)


@dataclass(frozen=True)
class CacheEntry:
    """One file in a store as ``cache ls`` shows it; ``key`` is None when unreadable."""

    path: Path
    kind: str
    key: Any
    num_rows: int | None
    row_dim: int | None
    size_bytes: int
    modified: datetime
    problem: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "kind": self.kind,
            "key": self.key.canonical() if self.key else None,
            "key_digest": self.key.digest() if self.key else None,
            "rows": self.num_rows,
            "dim": self.row_dim,
            "size_bytes": self.size_bytes,
            "modified": self.modified.isoformat(timespec="seconds"),
            "problem": self.problem,
        }


class EntryStore(Generic[K, H]):
    """The entries of one kind under ``root/<namespace>``; subclasses say which kind."""

    namespace: ClassVar[str]
    kind: ClassVar[str]
    label: ClassVar[str]  # in log lines: what the file was
    row_dtype: ClassVar[str]
    key_type: ClassVar[Any]
    handle_type: ClassVar[Any] = CachedRows

    def __init__(self, root: Path | None = None, *, lock_timeout: float | None = None,
                 chunk_bytes: int = CHUNK_BYTES) -> None:
        self.root = Path(root) if root is not None else default_cache_root()
        self.folder = self.root / self.namespace
        self.lock_timeout = lock_timeout  # None: wait as long as another writer takes
        self.chunk_bytes = chunk_bytes  # only decides how new entries are chunked

    def path_for(self, key: K) -> Path:
        return self.folder / key.relative_path()

    # -- the one way to an entry -----------------------------------------------------------

    def get_or_create(self, key: K, sample_ids: Sequence[str], row_dim: int,
                      produce: Callable[[EntryWriter], None]) -> H:
        """The entry of ``key``, calling ``produce(writer)`` to make it on a miss.

        A hit checks the file's structure, key and sample ids (they must equal ``sample_ids``);
        the rows are verified as they are read, never before. A file that fails is removed
        and rebuilt. If ``produce`` raises, nothing is stored. Of several processes asking for
        one key, exactly one runs ``produce``; the others wait on the key's lock, then read.
        """
        return self._get_or_create(key, list(sample_ids), row_dim, produce, remake=True)

    def _get_or_create(self, key: K, sample_ids: list[str], row_dim: int,
                       produce: Callable[[EntryWriter], None], remake: bool) -> H:
        if key.format_version != FORMAT_VERSION:
            raise CacheError(f"cache key asks for format version {key.format_version}; "
                             f"this abawbench writes version {FORMAT_VERSION}")
        found = self._find(key, sample_ids, row_dim, produce, remake)
        if found is not None:
            return found
        path = self.path_for(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        log.debug("%s: not cached; making it (or waiting for the process that is)", path)
        try:
            with self._lock(path, timeout=self.lock_timeout):
                found = self._find(key, sample_ids, row_dim, produce, remake)  # made meanwhile?
                if found is not None:
                    return found
                _remove_temporaries(path)  # left by writers that were killed; we hold the lock
                write_entry(path, key, sample_ids, row_dim, produce, self.row_dtype, self.chunk_bytes)
        except Timeout as exc:
            raise CacheError(f"{path}: another process has held the cache lock for more than "
                             f"{self.lock_timeout} s; if no extraction is running, remove {path}.lock") from exc
        found = self._find(key, sample_ids, row_dim, produce, remake)
        if found is None:
            raise CacheError(f"{path}: the entry just written failed verification")
        return found

    def _find(self, key: K, sample_ids: list[str], row_dim: int, produce: Callable[[EntryWriter], None],
              remake: bool) -> H | None:
        """The checked entry of ``key``, or None; a file that fails is removed (if still bad)."""
        path = self.path_for(key)
        if not path.exists():
            return None
        try:
            with open_entry(path) as f:
                layout = check_entry(f, self.row_dtype, key, sample_ids)
                identity = file_identity(f.id.get_vfd_handle())
        except CacheError as exc:
            log.warning("%s: %s is unusable and will be rebuilt: %s", self.label, path, exc)
            self._remove_if_still_bad(path, key, sample_ids)
            return None
        return self.handle_type(
            path, key, layout, identity, self.row_dtype, sample_ids=sample_ids,
            discard=lambda: self._remove_if_still_bad(path, key, sample_ids),
            remake=(lambda: self._get_or_create(key, sample_ids, row_dim, produce, remake=False))
            if remake else None,
        )

    def _remove_if_still_bad(self, path: Path, key: K | None, sample_ids: Sequence[str] | None) -> None:
        # Under the lock, and only if still bad: a writer may have just replaced it with a good file.
        try:
            with self._lock(path, timeout=0):
                if path.exists() and self._problems(path, key, sample_ids):
                    path.unlink(missing_ok=True)
        except Timeout:
            pass  # someone is writing this entry right now; their file will replace it

    # -- inspection (abawbench cache ls / verify) -------------------------------------------

    def verify(self, path: Path) -> list[str]:
        """Every problem of one file (empty: usable), including a full checksum pass."""
        return self._problems(Path(path), None, None)

    def _problems(self, path: Path, key: K | None, sample_ids: Sequence[str] | None) -> list[str]:
        try:
            with open_entry(path) as f:
                layout = check_entry(f, self.row_dtype, key, sample_ids)
                self.key_type.from_canonical(layout.key_fields)
                each_verified_chunk(f.id.get_vfd_handle(), layout)
        except CacheError as exc:
            return [str(exc)]
        return []

    def entries(self) -> list[CacheEntry]:
        """Every finished file, readable or not (cheap: attributes only, no checksum pass)."""
        return [self._entry(path) for path in self._files()]

    def unfinished(self) -> list[Path]:
        """Temporary files of writes that have not finished: running, or killed mid-write."""
        if not self.folder.is_dir():
            return []
        return sorted(p for p in self.folder.glob("*/*") if _is_leftover_temporary(p))

    def stale_locks(self) -> list[Path]:
        """Lock files of entries that do not exist and that no write is making: left by a
        cleared or failed entry (a lock file outlives its lock; only its entry needs it)."""
        if not self.folder.is_dir():
            return []
        making = {_entry_of(p) for p in self.unfinished()}
        return sorted(lock for lock in self.folder.glob(f"*/*{LOCK_SUFFIX}")
                      if not _entry_of(lock).exists() and _entry_of(lock) not in making)

    def leftovers(self) -> list[Path]:
        """Files that are no entry: unfinished writes and stale lock files (``cache ls`` and
        ``cache verify`` show them, ``cache clear --all`` or ``--bad`` removes them)."""
        return sorted(self.unfinished() + self.stale_locks())

    def _files(self) -> list[Path]:
        if not self.folder.is_dir():
            return []
        return sorted(p for p in self.folder.glob("*/*.h5") if not is_temporary(p))

    def _entry(self, path: Path) -> CacheEntry:
        stat = path.stat()
        modified = datetime.fromtimestamp(stat.st_mtime, tz=timezone.utc)
        try:
            with open_entry(path) as f:
                layout = read_layout(f, self.row_dtype)
            key = self.key_type.from_canonical(layout.key_fields)
        except CacheError as exc:
            return CacheEntry(path, self.kind, None, None, None, stat.st_size, modified, str(exc))
        return CacheEntry(path, self.kind, key, layout.num_rows, layout.row_dim, stat.st_size, modified)

    def _stored_key(self, path: Path) -> K | None:
        try:
            with open_entry(path) as f:
                return self.key_type.from_canonical(read_layout(f, self.row_dtype).key_fields)
        except CacheError:
            return None

    # -- removing --------------------------------------------------------------------------

    def clear(self, pattern: str | None = None, *, only_bad: bool = False,
              select: Callable[[Path, K | None], bool] | None = None) -> tuple[list[Path], list[Path]]:
        """Remove finished files whose name matches the glob ``pattern`` (all without one) and
        that ``select(path, stored key or None)`` accepts, with the temporaries of unfinished
        writes among them; with ``only_bad``, only files that fail full verification
        (checksums included: corrupt, truncated, or written by another cache format, whose
        files never hit again) and unfinished writes. Returns (removed, busy): a file whose
        lock is held by a running writer is left alone and reported busy."""
        removed: list[Path] = []
        busy: list[Path] = []
        finished = set(self._files())
        targets = sorted(finished | {_entry_of(leftover) for leftover in self.leftovers()})
        for path in targets:
            if pattern is not None and not fnmatch.fnmatch(path.name, pattern):
                continue
            if select is not None and not select(path, self._stored_key(path) if path in finished else None):
                continue
            try:
                with self._lock(path, timeout=0):
                    removed.extend(_remove_temporaries(path))
                    if path in finished and not (only_bad and not self.verify(path)):
                        path.unlink(missing_ok=True)
                        removed.append(path)
                    if not path.exists():
                        # Held by us, so no writer is between its check and its write; one
                        # still waiting on the old lock file would redo the entry, never lose it.
                        removed.extend(_remove_lock_file(path))
            except Timeout:
                busy.append(path)
        for folder in self.folder.glob("*/") if self.folder.is_dir() else []:
            with contextlib.suppress(OSError):
                folder.rmdir()  # only succeeds when empty
        return removed, busy

    @staticmethod
    def _lock(path: Path, timeout: float | None) -> FileLock:
        return FileLock(f"{path}{LOCK_SUFFIX}", timeout=-1 if timeout is None else timeout)


class FeatureCache(EntryStore[CacheKey, CachedFeatures]):
    """Backbone features under ``root/features``: float16 rows, one file per :class:`CacheKey`
    (``features/<backbone>/<split>-<digest>.h5``)."""

    namespace = "features"
    kind = "features"
    label = "feature cache"
    row_dtype = "float16"
    key_type = CacheKey
    handle_type = CachedFeatures

    def clear(self, pattern: str | None = None, *, only_bad: bool = False,  # type: ignore[override]
              backbone: str | None = None) -> tuple[list[Path], list[Path]]:
        """:meth:`EntryStore.clear`, limited to the files of ``backbone`` when given: those
        whose stored key names it, or, unreadable, that lie in its folder."""

        def of_backbone(path: Path, key: CacheKey | None) -> bool:
            return key.backbone == backbone if key is not None else path.parent.name == safe_name(str(backbone))

        return super().clear(pattern, only_bad=only_bad, select=None if backbone is None else of_backbone)


LOCK_SUFFIX = ".lock"


def _entry_of(leftover: Path) -> Path:
    """The entry a temporary or lock file belongs to: ``.<name>.h5.<pid>-<hex>.tmp`` (as
    :func:`abawbench.atomic.atomic_path` names them), ``<name>.h5.tmp-<x>`` (other writers'
    style) and ``<name>.h5.lock`` all belong to ``<name>.h5``."""
    name = leftover.name[1:] if leftover.name.startswith(".") else leftover.name
    head, found, _rest = name.partition(".h5.")
    return leftover.with_name(f"{head}.h5" if found else name)


def _is_leftover_temporary(path: Path) -> bool:
    if path.name.endswith(LOCK_SUFFIX) or not path.is_file():
        return False
    return is_temporary(path) or ".h5.tmp" in path.name


def _remove_temporaries(path: Path) -> list[Path]:
    leftovers = [p for p in path.parent.glob(f"*{path.name}.*") if _is_leftover_temporary(p) and _entry_of(p) == path]
    for temporary in leftovers:
        temporary.unlink(missing_ok=True)
    return leftovers


def _remove_lock_file(path: Path) -> list[Path]:
    lock = path.with_name(path.name + LOCK_SUFFIX)
    try:
        lock.unlink()
    except FileNotFoundError:
        return []
    return [lock]
