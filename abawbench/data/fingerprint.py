"""Cheap, content-based dataset fingerprints and the folder listings they are made from.

A fingerprint goes into every cache key that depends on a split, so it must change whenever
the split changes (an annotation byte, an image added, removed or rewritten) and must be
cheap enough to compute on every run. Hashing image bytes would cost minutes on the real
data; names plus sizes from one ``os.scandir`` per folder cost a fraction of a second and
catch every realistic edit (a re-encoded image changes its size). The same listing serves
the image-existence check, so a folder is scanned once per read.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

Listing = dict[str, int]
"""File name -> size in bytes, for the plain files of one folder."""


def list_folder(folder: Path) -> Listing | None:
    """Plain files of ``folder`` with their sizes, or None when the folder does not exist.

    ``DirEntry.stat`` is used rather than ``Path.stat``: it skips path building and, on
    platforms whose directory reads carry sizes, the system call.
    """
    try:
        iterator = os.scandir(folder)
    except (FileNotFoundError, NotADirectoryError):
        return None
    listing: Listing = {}
    with iterator:
        for entry in iterator:
            if entry.is_file():
                listing[entry.name] = entry.stat().st_size
    return listing


def subfolders(folder: Path) -> list[str]:
    """Names of the folders directly under ``folder`` (sorted; empty when it is absent)."""
    try:
        with os.scandir(folder) as iterator:
            return sorted(entry.name for entry in iterator if entry.is_dir())
    except (FileNotFoundError, NotADirectoryError):
        return []


def split_fingerprint(
    reader_version: str,
    track: str,
    split: str,
    annotation_digest: str | None,
    paths: Sequence[str],
    sizes: Sequence[int] | np.ndarray,
    dropped_lines: Iterable[int] = (),
) -> str:
    """The fingerprint of one split as read.

    ``reader_version`` names the reader and is bumped whenever it returns something else for
    the same bytes, so a changed reader never meets the caches of its older self.
    ``paths`` and ``sizes`` (bytes, -1 for a missing file) are in a deterministic order
    (annotation order, or sorted listing); ``dropped_lines`` are the lines ``skip_bad`` left
    out, since they change the index without changing the bytes.
    """
    digest = hashlib.sha256()
    digest.update(f"{reader_version}\0{track}\0{split}\0{annotation_digest}\0".encode())
    # One join and one array instead of one update per image (the per-image loop dominated).
    digest.update("\n".join(paths).encode("utf-8", "surrogateescape"))
    digest.update(b"\0" + np.asarray(sizes, dtype="<i8").tobytes())
    digest.update(b"\0" + " ".join(str(n) for n in dropped_lines).encode())
    return digest.hexdigest()[:32]
