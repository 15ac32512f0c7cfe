"""A contact sheet of a dataset: one row per class, one column group per split.

Looking at the faces is the quickest way to see a wrong label order, a swapped folder or a
domain gap (a track that trains on synthetic faces and validates on real ones), so the sheet
puts the splits side by side for every class, each headed by the kind of images the dataset
says it holds (:attr:`~abawbench.specs.DatasetSpec.split_domains`). The rows are the classes
of the track's first multiclass task.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont, ImageOps

from abawbench.data.index import SampleIndex
from abawbench.data.problems import SplitMissing
from abawbench.errors import DataFormatError
from abawbench.labels import TaskSpec
from abawbench.specs import DatasetSpec, ReadOptions
from abawbench.tracks import Track

LABEL_WIDTH = 120
HEADER_HEIGHT = 22
GAP = 8
BACKGROUND = (255, 255, 255)
MISSING_TILE = (200, 200, 200)


def class_task(track: Track) -> TaskSpec:
    """The task whose classes make the sheet's rows: the track's first multiclass task."""
    for spec in track.tasks:
        if spec.kind == "multiclass":
            return spec
    raise DataFormatError(f"track {track.name!r} has no multiclass task: no classes to preview")


def pick_rows(index: SampleIndex, task: str, label: int, count: int) -> list[int]:
    """``count`` rows of class ``label`` of ``task`` spread evenly over the split
    (deterministic, so two sheets of the same data are identical)."""
    labels = index.labels.get(task)
    if labels is None:
        return []
    rows = np.nonzero(labels.mask & (labels.values == label))[0]
    if len(rows) <= count:
        return rows.tolist()
    return rows[np.linspace(0, len(rows) - 1, count).round().astype(int)].tolist()


def _tile(path: Path, size: int) -> tuple[Image.Image, bool]:
    try:
        with Image.open(path) as image:
            return ImageOps.fit(image.convert("RGB"), (size, size)), True
    except (OSError, ValueError):  # unreadable or not an image: shown grey, counted
        return Image.new("RGB", (size, size), MISSING_TILE), False


def contact_sheet(
    root: Path, track: Track, dataset: DatasetSpec, *, per_class: int = 4, thumb: int = 64,
    splits: tuple[str, ...] = ("train", "validation"),
) -> tuple[Image.Image, list[str]]:
    """The sheet of ``root`` read with ``dataset``, and notes (splits absent, rows skipped,
    images unreadable).

    Bad rows are skipped rather than refused: a preview is for looking at data that may
    still have problems (``data check`` lists them).
    """
    if per_class < 1 or thumb < 8:
        raise DataFormatError("--per-class must be >= 1 and the thumbnail size >= 8")
    task = class_task(track)
    class_names = task.names
    notes: list[str] = []
    indexes: list[SampleIndex] = []
    for split in splits:
        try:
            index = dataset.read_split(Path(root), track, split, ReadOptions(skip_bad=True))
        except SplitMissing:
            notes.append(f"split {split!r} not found: left out")
            continue
        if index.skipped:
            notes.append(f"{split}: {index.skipped} bad row(s) skipped (see 'abawbench data check')")
        indexes.append(index)
    if not indexes:
        raise DataFormatError(f"{root}: no labelled {track.name} split to preview")

    group_width = per_class * (thumb + 2)
    width = LABEL_WIDTH + len(indexes) * (group_width + GAP)
    height = HEADER_HEIGHT + len(class_names) * (thumb + 2)
    sheet = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default()
    unreadable = 0
    for group, index in enumerate(indexes):
        x0 = LABEL_WIDTH + group * (group_width + GAP)
        domain = dataset.split_domains.get((track.name, index.split))
        title = f"{index.split} ({domain})" if domain else index.split
        draw.text((x0, 4), title, fill=(0, 0, 0), font=font)
        for label in range(len(class_names)):
            y = HEADER_HEIGHT + label * (thumb + 2)
            for column, row in enumerate(pick_rows(index, task.name, label, per_class)):
                tile, ok = _tile(index.absolute_path(row), thumb)
                unreadable += not ok
                sheet.paste(tile, (x0 + column * (thumb + 2), y))
    for label, name in enumerate(class_names):
        draw.text((4, HEADER_HEIGHT + label * (thumb + 2) + thumb // 2 - 6), name, fill=(0, 0, 0), font=font)
    if unreadable:
        notes.append(f"{unreadable} image(s) could not be read: shown grey")
    return sheet, notes
