"""The labelled LSD splits: one folder per class, the folder names the label (docs/abaw4.md).

``ANGRER`` and ``ANGERE`` (misspellings in the released data) are read as ``ANGER``; an
unknown class folder is an error and its images are not read.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from abawbench.data.fingerprint import list_folder, split_fingerprint, subfolders
from abawbench.data.index import SampleIndex
from abawbench.data.problems import Problem, SplitMissing, skipped_notes
from abawbench.labels import TaskLabels
from abawbench.registry import suggest
from abawbench.specs import ReadOptions
from abawbench.tracks import Track

from abawbench_builtins.abaw4.layout import FINGERPRINT_VERSION, IMAGE_SUFFIXES, LSD_FOLDERS, class_of_folder


def scan_lsd_folders(
    root: Path, track: Track, split: str, options: ReadOptions
) -> tuple[SampleIndex | None, list[Problem]]:
    """The index of a labelled LSD split and its problems. ``check_images`` has nothing to
    check here: the listing is the set of images."""
    class_names = track.task("expr").names
    base = root / LSD_FOLDERS[split]
    if not base.is_dir():
        raise SplitMissing(base, split)
    problems: list[Problem] = []
    entries: list[tuple[str, int, int]] = []  # (relative path, size, class)
    skipped = 0
    seen_classes: set[int] = set()
    loose = list_folder(base) or {}
    for name in sorted(loose):
        if not name.startswith("."):
            problems.append(Problem(str(base / name), None, "file outside any class folder is ignored", "warning"))
    for folder in subfolders(base):
        listing = list_folder(base / folder) or {}
        images = sorted(n for n in listing if n.lower().endswith(IMAGE_SUFFIXES) and not n.startswith("."))
        label = class_of_folder(folder, class_names)
        if label is None:
            expected = ", ".join(class_names)
            problems.append(
                Problem(
                    str(base / folder), None,
                    f"unknown class folder {folder!r}{suggest(folder.upper(), list(class_names))}; "
                    f"classes: {expected} ({len(images)} image(s) not read)",
                )
            )
            skipped += len(images)
            continue
        seen_classes.add(label)
        others = sorted(n for n in listing if n not in images and not n.startswith("."))
        if others:
            problems.append(
                Problem(str(base / folder), None, f"{len(others)} non-image file(s) ignored, e.g. {others[0]!r}", "warning")
            )
        prefix = f"{LSD_FOLDERS[split]}/{folder}/"
        entries.extend((prefix + n, listing[n], label) for n in images)
    for label, name in enumerate(class_names):
        if label not in seen_classes:
            problems.append(Problem(str(base), None, f"no folder for class {name!r}", "warning"))
    paths = [path for path, _, _ in entries]
    expr = np.fromiter((label for _, _, label in entries), dtype=np.int64, count=len(entries))
    fingerprint = split_fingerprint(
        FINGERPRINT_VERSION, track.name, split, None, paths, [size for _, size, _ in entries]
    )
    index = SampleIndex(
        root=root, track=track.name, split=split, paths=paths,
        labels={"expr": TaskLabels(expr, np.ones(len(entries), dtype=bool))},
        fingerprint=fingerprint, skipped=skipped, notes=skipped_notes(skipped, 0),
    )
    return index, problems
