"""The test release lists of both tracks: one image name per line (other columns empty), no
labels. The images sit in the track's image folder (docs/abaw4.md); where the layout leaves
that folder open (LSD), the first plausible one that exists, or the one the user named
(``ReadOptions.test_image_folder``), and the index's notes say which was used."""

from __future__ import annotations

from pathlib import Path, PurePosixPath
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
    file: str, image_folders: Sequence[str], header: Sequence[str],
) -> tuple[SampleIndex | None, list[Problem]]:
    """The index of the release list ``file`` (images in one of ``image_folders``) and its
    problems."""
    problems: list[Problem] = []
    rows, digest = read_lines(root / file, split, problems)
    if rows is None:
        return None, problems
    image_folder, notes = _image_folder(root, image_folders, options.test_image_folder, problems)
    if image_folder is None:
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
        notes=notes + skipped_notes(len(bad), duplicates),
    )
    return index, problems


def _image_folder(
    root: Path, candidates: Sequence[str], named: str | None, problems: list[Problem]
) -> tuple[str | None, list[str]]:
    """The folder of the test images and the note that says which it is (where there was a
    choice); None with a fatal problem when the named folder is unusable."""
    if named is not None:
        folder = PurePosixPath(named.replace("\\", "/"))
        if folder.is_absolute() or ".." in folder.parts or not folder.parts:
            problems.append(Problem(named, None, "test image folder must be a folder inside the data root",
                                    "fatal"))
            return None, []
        if not (root / folder).is_dir():
            problems.append(Problem(str(root / folder), None, "test image folder not found", "fatal"))
            return None, []
        return folder.as_posix(), [f"test images read from {folder.as_posix()}/ (as named)"]
    found = next((c for c in candidates if (root / c).is_dir()), candidates[0])
    if len(candidates) == 1:
        return found, []
    return found, [f"test images read from {found}/ (looked in: {', '.join(c + '/' for c in candidates)})"]
