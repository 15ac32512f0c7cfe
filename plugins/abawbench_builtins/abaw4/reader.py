"""Reading a split of an official-layout tree: which reader serves which (track, split), and
the strict / skip-bad decision on top of the collect-all scan.

This is the file-format boundary: sentinel values (-5, -1) end here and leave as
``TaskLabels`` masks. Class and AU names always come from the Track, never from here.
A path that leaves the data root (``..``, absolute) is an error, as is a missing image (with
``check_images``), a wrong column count, a non-numeric or out-of-range value and an unknown
LSD class folder.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Callable

from abawbench.data.index import SPLITS, SampleIndex
from abawbench.data.problems import Problem, raise_for_problems
from abawbench.errors import ConfigError
from abawbench.registry import suggest
from abawbench.specs import ReadOptions
from abawbench.tracks import Track

from abawbench_builtins.abaw4.layout import (
    LSD_TEST_HEADER, LSD_TEST_IMAGE_FOLDERS, LSD_TEST_RELEASE, MTL_IMAGES, MTL_TEST_HEADER, MTL_TEST_RELEASE,
)
from abawbench_builtins.abaw4.lsd_reader import scan_lsd_folders
from abawbench_builtins.abaw4.mtl_reader import scan_mtl_annotations
from abawbench_builtins.abaw4.release_lists import scan_release


Scan = Callable[[Path, Track, str, ReadOptions], "tuple[SampleIndex | None, list[Problem]]"]

SCANNERS: dict[str, tuple[Scan, Scan]] = {
    "mtl": (scan_mtl_annotations, partial(
        scan_release, file=MTL_TEST_RELEASE, image_folders=(MTL_IMAGES,), header=MTL_TEST_HEADER)),
    "lsd": (scan_lsd_folders, partial(
        scan_release, file=LSD_TEST_RELEASE, image_folders=LSD_TEST_IMAGE_FOLDERS, header=LSD_TEST_HEADER)),
}
"""Per track: the reader of its labelled splits, and of its test release list."""


def scan_split(
    root: Path, track: Track, split: str, options: ReadOptions = ReadOptions()
) -> tuple[SampleIndex | None, list[Problem]]:
    """Read a split collecting every problem without raising for bad data.

    Returns the index with bad rows dropped (None when the split cannot be read at all) and
    the problems in file order. Raises :class:`~abawbench.data.problems.SplitMissing` when the
    split is absent.
    """
    if split not in SPLITS:
        raise ConfigError(f"unknown split {split!r}{suggest(split, list(SPLITS))}; splits: {', '.join(SPLITS)}")
    scanners = SCANNERS.get(track.name)
    if scanners is None:
        raise ConfigError(f"the official ABAW4 layout has no track {track.name!r}; tracks: {', '.join(SCANNERS)}")
    labelled, release = scanners
    return (release if split == "test" else labelled)(Path(root), track, split, options)


def read_split(root: Path, track: Track, split: str, options: ReadOptions) -> SampleIndex:
    """The :class:`SampleIndex` of one split of an official-layout tree.

    Strict by default: any bad row raises one :class:`~abawbench.errors.DataFormatError`
    listing the first problems as ``file:line: problem``. ``options.skip_bad`` drops bad rows
    instead and counts them in ``SampleIndex.skipped``. Images are not decoded here: a run with
    ``--skip-bad`` drops undecodable ones for every dataset, and ``abawbench data check``
    reports them.
    """
    root = Path(root)
    index, problems = scan_split(root, track, split, options)
    raise_for_problems(problems, skip_bad=options.skip_bad, what=f"{track.name} {split} split of {root}")
    assert index is not None  # a None index always comes with a fatal problem
    return index
