"""One way to write a file so that a reader sees either the old file, nothing, or the whole new one.

Every file abawbench writes for a user (results, predictions, tables, submissions, cache
entries) goes through :func:`atomic_path`: the data goes to a temporary name in the same
folder, is flushed to disk, and only then renamed into place. A writer killed mid-write leaves
at most a temporary file (named ``.<name>.<random>.tmp``), never a truncated result.

A write that fails (a full disk, an unwritable folder) raises :class:`StorageError` naming the
file, so the command line shows one line instead of a traceback; :func:`require_free_space`
lets a writer of a large file refuse before it starts rather than fail half way.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from abawbench.errors import StorageError

TEMPORARY_SUFFIX = ".tmp"


def temporary_name(path: Path) -> Path:
    """A fresh temporary name beside ``path`` (same folder, so the rename is atomic)."""
    return path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex[:12]}{TEMPORARY_SUFFIX}")


def is_temporary(path: Path) -> bool:
    """Whether ``path`` is a leftover of :func:`atomic_path` (a writer that died mid-write)."""
    return path.name.startswith(".") and path.name.endswith(TEMPORARY_SUFFIX)


@contextmanager
def atomic_path(path: Path | str) -> Iterator[Path]:
    """Yield a temporary path to write ``path``'s content to; rename it into place on success.

    The writer must flush (and, for data that must survive a power cut, fsync) the temporary
    file before the block ends; on any exception the temporary file is removed and ``path`` is
    left as it was. An OSError (the writer's or the rename's) becomes a :class:`StorageError`.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StorageError(write_failure(path, exc)) from exc
    temporary = temporary_name(path)
    try:
        yield temporary
        os.replace(temporary, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):  # an unwritable folder may refuse this too
            temporary.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise StorageError(write_failure(path, exc)) from exc
        raise


def write_failure(path: Path, exc: OSError) -> str:
    """One line saying which file could not be written, why, and what to do."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        advice = "free some space there or write elsewhere"
    elif exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        advice = "make the folder writable or write elsewhere"
    else:
        advice = "nothing was written"
    text = str(exc).strip()
    # HDF5's messages run over several lines; the errno says the same in a few words.
    reason = os.strerror(exc.errno) if exc.errno else (text.splitlines()[0] if text else type(exc).__name__)
    return f"{path}: cannot be written ({reason}); {advice}"


def require_free_space(folder: Path, needed_bytes: int, what: str) -> None:
    """Refuse (StorageError) before writing ``what`` of about ``needed_bytes`` into ``folder``
    when its file system has less free space: a write that fails half way costs the work done
    so far, and a library that runs out of space in the middle of a write may not recover."""
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return  # the write itself will say what is wrong with the folder
    if free < needed_bytes:
        raise StorageError(f"{folder}: {what} needs about {_mib(needed_bytes)} but only {_mib(free)} is free; "
                           "free some space there or point it elsewhere")


def _mib(num_bytes: int) -> str:
    return f"{num_bytes / (1 << 20):.1f} MiB"


def atomic_write_bytes(path: Path | str, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically, fsynced before the rename."""
    with atomic_path(path) as temporary:
        with open(temporary, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())


def atomic_write_text(path: Path | str, text: str) -> None:
    """Write ``text`` as UTF-8 with ``\\n`` line ends to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))
