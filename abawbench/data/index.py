"""SampleIndex: what a dataset reader hands the rest of the system for one split."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from abawbench.labels import TaskLabels

SPLITS = ("train", "validation", "test")
"""The splits a dataset may hold: training, validation (model selection, reported scores) and
an unlabelled test split (submission files)."""


@dataclass
class SampleIndex:
    """Image paths and labels of one split of one dataset, for one track.

    ``paths`` are relative to ``root`` (POSIX separators). ``labels`` maps task name to values
    plus mask (empty for an unlabelled test split). ``fingerprint`` is a content-based digest of
    everything that defines the split (annotation bytes, image names and sizes), cheap to
    compute, used in cache keys. ``skipped`` counts rows dropped by ``--skip-bad``;
    ``duplicates`` counts repeated image names that were reported; ``undecodable`` counts images
    ``--skip-bad`` dropped because they do not decode (:mod:`abawbench.data.decode`).
    """

    root: Path
    track: str
    split: str
    paths: list[str]
    labels: dict[str, TaskLabels]
    fingerprint: str
    skipped: int = 0
    duplicates: int = 0
    undecodable: int = 0
    notes: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.paths)

    def absolute_path(self, row: int) -> Path:
        return self.root / self.paths[row]
