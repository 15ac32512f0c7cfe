"""Labels and predictions as the core sees them: values plus boolean masks, keyed by task.

Sentinel values of the file formats (e.g. -5 or -1 for "no label") never get past the readers:
a reader turns them into ``mask == False``. Everything downstream (losses, metrics, caches)
reads masks only. Task names and widths are the track's (:class:`TaskSpec`), never the core's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Mapping

import numpy as np

TaskKind = Literal["regression", "multiclass", "multilabel"]


@dataclass(frozen=True)
class TaskSpec:
    """One prediction task of a track.

    ``names`` are the output columns in their official order: the class names for a multiclass
    task, the AU names for a multilabel task, the regressed quantities for a regression task.
    ``value_range`` bounds regression targets (inclusive).
    """

    name: str
    kind: TaskKind
    names: tuple[str, ...]
    value_range: tuple[float, float] | None = None

    @property
    def width(self) -> int:
        """Number of model outputs this task needs."""
        return len(self.names)


@dataclass(frozen=True)
class TaskLabels:
    """Label values of one task for N rows, with a mask of the rows where the label exists.

    ``values`` is ``int64 [N]`` for multiclass, ``float32 [N, K]`` for regression and
    multilabel. Values under a False mask are meaningless (readers store 0 there).
    """

    values: np.ndarray
    mask: np.ndarray

    def __post_init__(self) -> None:
        if self.mask.dtype != np.bool_:
            raise TypeError(f"mask must be bool, got {self.mask.dtype}")
        if self.values.shape[0] != self.mask.shape[0]:
            raise ValueError(
                f"values have {self.values.shape[0]} rows but mask has {self.mask.shape[0]}"
            )

    def __len__(self) -> int:
        return int(self.mask.shape[0])

    def take(self, rows: np.ndarray) -> "TaskLabels":
        """A subset of rows (an index array or a boolean selector)."""
        return TaskLabels(values=self.values[rows], mask=self.mask[rows])


LabelSet = Mapping[str, TaskLabels]
"""Labels of every task of a track, keyed by ``TaskSpec.name``."""


def take_labels(labels: LabelSet, rows: np.ndarray) -> dict[str, TaskLabels]:
    """Row subset of every task in a label set."""
    return {task: column.take(rows) for task, column in labels.items()}
