"""The test release lists of both tracks: one image name per line (other columns empty), no
labels. The images sit in the track's image folder (docs/abaw4.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from abawbench.data.fingerprint import split_fingerprint
from abawbench.data.index import SampleIndex
from abawbench.data.problems import Problem, skipped_notes
from abawbench.specs import ReadOptions
from abawbench.tracks import Track

from abawbench_builtins.abaw4.layout import FINGERPRINT_VERSION
from abawbench_builtins.abaw4.rows import (
    dropped_lines, first_occurrences, flag_missing, flag_unsafe, image_sizes, read_lines,
)


def scan_release(
    root: Path, track: Track, split: str, options: ReadOptions, *,
    file: str, image_folder: str, header: Sequence[str],
) -> tuple[SampleIndex | None, list[Problem]]:
    """The index of the release list ``file`` (images in ``image_folder``) and its problems."""
    problems: list[Problem] = []
    rows, digest = read_lines(root / file, split, problems)
    if rows is None:
        return None, problems
    if not rows.header or rows.header[0].lower() != "image":
        problems.append(Problem(rows.file, 1, f"header should be {','.join(header)!r}, got {','.join(rows.header)!r}", "fatal"))
        return None, problems
    bad: dict[int, None] = {}
    names: list[str] = []
    for row, line in enumerate(rows.lines):
        name, _, rest = line.partition(",")
        names.append(name.strip())
        if rest.replace(",", "").strip():
            problems.append(Problem(rows.file, rows.numbers[row], "values after the image name (a test release line holds the name only)"))
            bad[row] = None
    flag_unsafe(rows, names, bad, problems)
    sizes = image_sizes(root / image_folder, names, bad)
    flag_missing(rows, names, sizes, bad, problems, root / image_folder, options.check_images)
    keep, duplicates = first_occurrences(rows, names, bad, problems)
    problems.sort(key=lambda p: (p.line or 0))
    paths = [f"{image_folder}/{names[row]}" for row in keep]
    fingerprint = split_fingerprint(
        FINGERPRINT_VERSION, track.name, split, digest, paths, [sizes[row] for row in keep],
        dropped_lines(rows, bad),
    )
    index = SampleIndex(
        root=root, track=track.name, split=split, paths=paths, labels={},
        fingerprint=fingerprint, skipped=len(bad), duplicates=duplicates,
        notes=skipped_notes(len(bad), duplicates),
    )
    return index, problems
