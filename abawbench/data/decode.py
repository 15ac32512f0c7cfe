"""Finding images that cannot be decoded, before a run trips over the first of them.

Readers check that every listed image exists and use its size in the fingerprint, but only
decoding proves an image usable: a truncated or corrupt JPEG has a plausible size. The full
check decodes with :func:`abawbench.features.preprocess.load_image`, the very decoder feature
extraction uses, so what passes here never fails a run. ``quick`` only parses each header
(catches files that are not images at all, not truncated ones).

Decoders release the GIL, so a thread pool scales with the cores without the start-up cost
of processes.

``--skip-bad`` reads decode every image too; the verdict is kept in the parse cache under the
split's fingerprint (image names and sizes), so only the first read of a tree pays for it.
"""

from __future__ import annotations

import os
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from hashlib import sha256
from pathlib import Path
from typing import Sequence

import numpy as np

from abawbench.data import parse_cache
from abawbench.data.index import SampleIndex
from abawbench.data.problems import Problem, skipped_notes
from abawbench.errors import DataFormatError
from abawbench.labels import TaskLabels

DECODE_VERSION = "decode/1"
"""Names the decoding check in its cache key; bumped when the verdict for the same bytes may
change (another decoder, another notion of "decodable")."""


def decode_problem(path: Path, quick: bool = False) -> str | None:
    """Why the image at ``path`` cannot be used, or None when it decodes (``quick``: when its
    header parses)."""
    if quick:
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(path) as image:
                image.size  # noqa: B018 - the header is parsed by open(); size proves it
        except (OSError, UnidentifiedImageError, ValueError) as exc:
            return f"cannot read image header: {exc}"
        return None
    from abawbench.features.preprocess import load_image

    try:
        load_image(path)
    except DataFormatError as exc:
        # load_image names the path first, the problem line names it already; Pillow names
        # the in-memory buffer it was given, which tells the user nothing.
        reason = str(exc).removeprefix(f"{path}: ")
        return re.sub(r"cannot identify image file <[^>]*>", "not an image file Pillow can identify", reason)
    except (OSError, ValueError, RuntimeError) as exc:
        return f"cannot decode image: {exc}"
    return None


def find_undecodable(
    root: Path, paths: Sequence[str], *, quick: bool = False, progress: bool = False,
    desc: str = "decoding", workers: int | None = None,
) -> dict[int, str]:
    """Row -> reason for every image of ``paths`` (relative to ``root``) that does not decode."""
    from tqdm.auto import tqdm

    workers = workers or min(8, (os.cpu_count() or 1) + 1)
    root = Path(root)
    found: dict[int, str] = {}
    with ThreadPoolExecutor(max_workers=workers) as pool, \
            tqdm(total=len(paths), desc=desc, unit="img", disable=not progress, leave=False) as bar:
        for row, reason in enumerate(pool.map(lambda p: decode_problem(root / p, quick), paths)):
            if reason is not None:
                found[row] = " ".join(reason.split())  # one line, as every problem is
            bar.update(1)
    return found


def decode_problems(index: SampleIndex, *, quick: bool = False, progress: bool = False) -> list[Problem]:
    """One error per undecodable image of ``index``, naming the file (``data check``)."""
    bad = find_undecodable(index.root, index.paths, quick=quick, progress=progress,
                           desc=f"{index.split} images")
    return [Problem(str(index.root / index.paths[row]), None, reason) for row, reason in sorted(bad.items())]


def drop_undecodable(index: SampleIndex, cache_dir: Path | None = None) -> tuple[SampleIndex, list[Problem]]:
    """``index`` without its undecodable images, and one problem per image dropped.

    The count is kept in ``SampleIndex.undecodable`` (and in the notes), and the fingerprint
    changes with the rows dropped, as it does for bad annotation rows.
    """
    bad = _cached_verdict(index, cache_dir)
    if not bad:
        return index, []
    problems = [Problem(str(index.root / index.paths[row]), None, f"{reason} (image skipped)")
                for row, reason in sorted(bad.items())]
    keep = np.asarray([row for row in range(len(index)) if row not in bad], dtype=np.int64)
    labels = {task: TaskLabels(values.values[keep], values.mask[keep]) for task, values in index.labels.items()}
    dropped = "\n".join(index.paths[row] for row in sorted(bad))
    fingerprint = sha256(f"{index.fingerprint}\0{DECODE_VERSION}\0{dropped}".encode("utf-8", "surrogateescape"))
    undecodable = index.undecodable + len(bad)
    return replace(
        index, paths=[index.paths[row] for row in keep], labels=labels,
        fingerprint=fingerprint.hexdigest()[:32], undecodable=undecodable,
        notes=skipped_notes(index.skipped, index.duplicates, undecodable),
    ), problems


def _cached_verdict(index: SampleIndex, cache_dir: Path | None) -> dict[int, str]:
    """:func:`find_undecodable` of the index, through the parse cache (keyed by the split's
    fingerprint, which changes with any image's name or size)."""
    key = parse_cache.parse_key(index.fingerprint.encode(), DECODE_VERSION)
    stored = parse_cache.load(key, cache_dir)
    if stored is not None:
        try:
            rows = stored["rows"].tolist()
            reasons = parse_cache.array_to_text(stored["reasons"], len(rows))
            if all(0 <= row < len(index) for row in rows):
                return dict(zip(rows, reasons))
        except (KeyError, ValueError, TypeError):
            pass
    bad = find_undecodable(index.root, index.paths, desc=f"checking {index.split} images")
    parse_cache.store(key, {
        "rows": np.asarray(sorted(bad), dtype=np.int64),
        "reasons": parse_cache.text_to_array([bad[row] for row in sorted(bad)]),
    }, cache_dir)
    return bad
