"""A disk cache of parsed annotation files, keyed by their bytes.

Why: parsing a large annotation file (hundreds of thousands of lines) is a large share of
reading a split (docs/bench/data.md), and every run, check and preview reads the same files
again. The parsed rows are a pure function of the file's bytes and the track's label spaces,
so a key made of those can never go stale. Only the parse is cached: image listings (and so
missing images and the fingerprint) are read fresh every time, since images change without
the annotation file changing.

The cache is an optimisation, never a dependency: an entry that cannot be read is parsed
again, and a failed write is ignored. Small files are not cached (parsing them is cheaper
than the file system round trip).
"""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path

import numpy as np

from abawbench.atomic import atomic_path

CACHE_VERSION = "parsed-annotations/1"
"""Bumped whenever the parser's output for the same bytes changes."""

MIN_LINES = 20_000
"""Files shorter than this are parsed every time."""


def parse_key(raw: bytes, *context: str) -> str:
    """Digest of the file's bytes plus everything else the parse depends on."""
    digest = hashlib.sha256()
    digest.update("\0".join((CACHE_VERSION, *context)).encode() + b"\0")
    digest.update(raw)
    return digest.hexdigest()


def cache_path(key: str, cache_dir: Path | None = None) -> Path:
    if cache_dir is None:
        # Imported here: a reader needs nothing else of the features package.
        from abawbench.features.key import default_cache_root

        cache_dir = default_cache_root()
    return Path(cache_dir) / "parsed" / f"{key[:40]}.npz"


def load(key: str, cache_dir: Path | None = None) -> dict[str, np.ndarray] | None:
    """The arrays stored under ``key``, or None (absent or unreadable: parse again)."""
    path = cache_path(key, cache_dir)
    try:
        with np.load(path, allow_pickle=False) as stored:
            arrays = {name: stored[name] for name in stored.files}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None
    if str(arrays.get("key", np.array("")).item()) != key:  # a truncated name collision
        return None
    return arrays


def store(key: str, arrays: dict[str, np.ndarray], cache_dir: Path | None = None) -> None:
    """Write atomically: a reader never sees half an entry. A failed write is ignored."""
    try:
        with atomic_path(cache_path(key, cache_dir)) as temporary:
            with open(temporary, "wb") as handle:
                np.savez(handle, key=np.array(key), **arrays)
    except OSError:
        pass  # a read-only or full cache only costs speed


def text_to_array(texts: list[str]) -> np.ndarray:
    """Strings (without newlines) as one UTF-8 byte array: far faster to save and load than
    an array of Python strings, and needs no pickle."""
    return np.frombuffer("\n".join(texts).encode("utf-8", "surrogateescape"), dtype=np.uint8)


def array_to_text(array: np.ndarray, count: int) -> list[str]:
    if count == 0:
        return []
    texts = array.tobytes().decode("utf-8", "surrogateescape").split("\n")
    if len(texts) != count:
        raise ValueError(f"cached text holds {len(texts)} entries, expected {count}")
    return texts
