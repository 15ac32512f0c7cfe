"""Conformance of a dataset reader, per track it serves: it reads every split of a tree into a
:class:`~abawbench.data.index.SampleIndex` whose labels have the track's tasks, dtypes and
ranges, with a fingerprint that is stable across reads, and it reports a corrupted row as a
:class:`~abawbench.errors.DataFormatError` naming ``file:line``.

The tree is the one the dataset generates itself (``DatasetSpec.generate``, tiny) or the one
the user gives (``--data``); without either the checks are skipped and say so. The corrupted
copy is made only of a generated tree (a user's tree may be large). A reader that raises a
plain ValueError, or reads a bad label as "no label", is what this guards against: both are
found otherwise only deep inside a run.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from abawbench.conformance.core import Check, CheckFailed, CheckSkipped, expect, once

if TYPE_CHECKING:
    from abawbench.data.index import SampleIndex
    from abawbench.specs import DatasetSpec
    from abawbench.tracks import Track

GENERATED_IMAGES = 12
LABELLED_SPLITS = ("train", "validation")


def names_row(message: str, file_name: str, line: int) -> bool:
    """Whether ``message`` names the row as ``<file_name>:<line>`` (the name alone or at the end
    of a path): any ``path:number`` is not enough, it must be the row actually corrupted, or a
    reader that reports the wrong file or line would pass."""
    pattern = rf"(?:^|[\s/\\'\"(\[]){re.escape(file_name)}:{line}(?!\d)"
    return re.search(pattern, message) is not None

CORRUPT_FIELD = "@bad@"
MAX_FILES_CORRUPTED = 4
DTYPES = {"multiclass": (np.int64, 1), "multilabel": (np.float32, 2), "regression": (np.float32, 2)}
"""The dtype and number of dimensions of ``TaskLabels.values`` for each task kind."""


def dataset_checks(spec: "DatasetSpec", tracks: list["Track"], workdir: Path, data: Path | None) -> list[Check]:
    checks = []
    for track in tracks:
        checks += _checks_on(spec, track, workdir / f"{spec.name}-{track.name}", data)
    if not checks:
        def no_track() -> None:
            raise CheckSkipped(f"none of its tracks ({', '.join(spec.tracks)}) is loaded")

        checks.append(Check("dataset", spec.name, "serves a loaded track", no_track))
    return checks


def _checks_on(spec: "DatasetSpec", track: "Track", workdir: Path, data: Path | None) -> list[Check]:
    from abawbench.specs import ReadOptions

    options = ReadOptions(cache_dir=workdir / "cache")

    def tree() -> Path:
        if data is not None:
            return data
        if spec.generate is None:
            raise CheckSkipped("it cannot generate a tree (DatasetSpec.generate is None); "
                               "give one with --data PATH")
        return spec.generate(track.name, workdir / "tree", GENERATED_IMAGES, 0)

    root = once(tree, "not tried: no tree to read")

    def read(split: str, at: Path | None = None) -> "SampleIndex | None":
        """The split's index; None for an absent test split (a tree may have none)."""
        from abawbench.data.problems import SplitMissing

        try:
            return spec.read_split(at or root(), track, split, options)
        except SplitMissing:
            if split in LABELLED_SPLITS:
                raise
            return None

    def reads_splits() -> None:
        for split in (*LABELLED_SPLITS, "test"):
            index = read(split)
            if index is not None:
                _check_index(index, track, split)

    def stable_fingerprint() -> None:
        first, second = read("train"), read("train")
        expect(isinstance(first.fingerprint, str) and bool(first.fingerprint),
               "the train split's fingerprint is empty")
        expect(first.fingerprint == second.fingerprint,
               "two reads of the same train split give different fingerprints")

    def corrupted_row() -> None:
        if data is not None or spec.generate is None:
            raise CheckSkipped("needs a tree the dataset generates itself")
        _check_corruption(root(), workdir / "corrupted", read)

    on = f"on track {track.name}"
    return [
        Check("dataset", spec.name, f"reads train, validation and test {on}", reads_splits),
        Check("dataset", spec.name, f"fingerprint is stable {on}", stable_fingerprint),
        Check("dataset", spec.name, f"reports a corrupted row as DataFormatError with file:line {on}",
              corrupted_row),
    ]


def _check_index(index: "SampleIndex", track: "Track", split: str) -> None:
    from abawbench.data.index import SampleIndex

    expect(isinstance(index, SampleIndex),
           f"read_split returned {type(index).__name__}, not abawbench.data.index.SampleIndex")
    expect(index.split == split and index.track == track.name,
           f"read_split({split!r}) returned an index of split {index.split!r}, track {index.track!r}")
    expect(len(index) > 0, f"split {split!r} has no rows")
    if split not in LABELLED_SPLITS and not index.labels:
        return  # an unlabelled test split
    missing = [task.name for task in track.tasks if task.name not in index.labels]
    expect(not missing, f"split {split!r} has no labels for task(s) {missing}")
    for task in track.tasks:
        labels = index.labels[task.name]
        dtype, ndim = DTYPES[task.kind]
        expect(labels.values.dtype == dtype and labels.values.ndim == ndim,
               f"split {split!r}, task {task.name!r} ({task.kind}): values are "
               f"{labels.values.dtype} with {labels.values.ndim} dimension(s), expected "
               f"{np.dtype(dtype)} with {ndim}")
        expect(len(labels) == len(index),
               f"split {split!r}, task {task.name!r}: {len(labels)} labels for {len(index)} images")
    track.validate_labels(index.labels)  # MetricInputError names a label out of range


def _check_corruption(root: Path, workdir: Path, read) -> None:
    """Corrupt one annotation row at a time in a copy of ``root`` until some split's read
    refuses it; the refusal must be a DataFormatError naming that file and line."""
    candidates = sorted(path for path in root.rglob("*") if path.suffix in (".txt", ".csv"))
    if not candidates:
        raise CheckSkipped("the generated tree has no .txt or .csv annotation file to corrupt")
    for number, original in enumerate(candidates[:MAX_FILES_CORRUPTED]):
        copy = workdir / str(number)
        shutil.copytree(root, copy)
        target = copy / original.relative_to(root)
        line = _corrupt_a_row(target)
        for split in (*LABELLED_SPLITS, "test"):
            try:
                read(split, copy)
            except Exception as exc:
                from abawbench.errors import DataFormatError

                where = f"{original.relative_to(root)}:{line}"
                if not isinstance(exc, DataFormatError):
                    raise CheckFailed(f"reading a copy with a corrupted row ({where}) raised "
                                      f"{type(exc).__name__}, not DataFormatError: {exc}") from exc
                expect(names_row(str(exc), original.name, line),
                       f"the DataFormatError for a corrupted row ({where}) does not name "
                       f"{original.name}:{line}: {exc}")
                return
    raise CheckFailed(f"a row corrupted with {CORRUPT_FIELD!r} in each of "
                      f"{', '.join(p.name for p in candidates[:MAX_FILES_CORRUPTED])} was read without "
                      f"an error (bad labels must not become 'no label')")


def _corrupt_a_row(path: Path) -> int:
    """Replace the last field of the first row after the header with :data:`CORRUPT_FIELD`;
    the (1-based) line number changed."""
    lines = path.read_text(encoding="utf-8").splitlines()
    number = 1 if len(lines) < 2 else 2
    if not lines:
        lines = [""]
    fields = lines[number - 1].split(",")
    fields[-1] = CORRUPT_FIELD
    lines[number - 1] = ",".join(fields)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return number
