"""Problem records for the official-format readers, and the whole-dataset check behind
``abawbench data check``.

Readers never stop at the first bad row: they collect every problem as a :class:`Problem`
and only then decide (strict: raise one :class:`DataFormatError` naming the first problems;
``skip_bad``: drop the rows and count them). That one collection is what ``data check``
prints, so the check and the reader can never disagree about what is wrong.

Severities:

- ``warning``: reported, never fatal (duplicate image names: the first line is kept).
- ``error``: a bad row or file; strict reading refuses the split, ``skip_bad`` drops it.
- ``fatal``: the split cannot be read at all (missing annotation file, wrong header);
  ``skip_bad`` cannot help.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Literal

from abawbench.errors import DataFormatError

if TYPE_CHECKING:
    from abawbench.data.index import SampleIndex
    from abawbench.tracks import Track

Severity = Literal["warning", "error", "fatal"]

SPLITS = ("train", "validation", "test")
MAX_LISTED = 10
"""How many problems a DataFormatError message lists (all of them are in ``data check``)."""


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the input. ``line`` is 1-based (the header is line 1); None for
    problems of a whole file or folder."""

    file: str
    line: int | None
    message: str
    severity: Severity = "error"

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        prefix = "" if self.severity == "error" else f"{self.severity}: "
        return f"{where}: {prefix}{self.message}"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def errors_of(problems: Iterable[Problem]) -> list[Problem]:
    """Problems that make a strict read fail (errors and fatal ones)."""
    return [p for p in problems if p.severity != "warning"]


def raise_for_problems(problems: list[Problem], *, skip_bad: bool, what: str) -> None:
    """Raise one DataFormatError listing the first problems, when the read must fail.

    A fatal problem always fails; row errors fail only when ``skip_bad`` is off.
    """
    fatal = [p for p in problems if p.severity == "fatal"]
    failing = fatal if skip_bad else errors_of(problems)
    if not failing:
        return
    listed = "\n  ".join(str(p) for p in failing[:MAX_LISTED])
    more = len(failing) - MAX_LISTED
    tail = f"\n  ... and {more} more (run 'abawbench data check' to see all)" if more > 0 else ""
    hint = "" if fatal or skip_bad else "\n(use --skip-bad to drop bad rows and go on)"
    raise DataFormatError(f"{what}: {len(failing)} problem(s):\n  {listed}{tail}{hint}")


# --------------------------------------------------------------------------- the whole check


@dataclass
class SplitReport:
    """Counts of one split as read with bad rows dropped. ``label_counts[task]`` counts rows
    whose label is present; ``class_counts[task]`` maps class (or AU) name to its count."""

    split: str
    present: bool
    rows: int = 0
    skipped: int = 0
    duplicates: int = 0
    label_counts: dict[str, int] = field(default_factory=dict)
    class_counts: dict[str, dict[str, int]] = field(default_factory=dict)
    fingerprint: str | None = None


@dataclass
class CheckReport:
    """Everything ``abawbench data check`` reports about one dataset root."""

    root: str
    track: str
    splits: list[SplitReport]
    problems: list[Problem]

    def failed(self, skip_bad: bool) -> bool:
        """Whether the data is unusable: any error, or (with ``skip_bad``) any fatal problem."""
        if skip_bad:
            return any(p.severity == "fatal" for p in self.problems)
        return bool(errors_of(self.problems))

    def as_dict(self) -> dict[str, Any]:
        return {
            "root": self.root,
            "track": self.track,
            "splits": [asdict(s) for s in self.splits],
            "problems": [p.as_dict() for p in self.problems],
        }


def summarise(index: "SampleIndex", track: "Track") -> SplitReport:
    """Counts per label availability and per class, from the index alone."""
    report = SplitReport(
        split=index.split,
        present=True,
        rows=len(index),
        skipped=index.skipped,
        duplicates=index.duplicates,
        fingerprint=index.fingerprint,
    )
    for task, labels in index.labels.items():
        report.label_counts[task] = int(labels.mask.sum())
        spec = track.task(task)
        values = labels.values[labels.mask]
        if spec.kind == "multiclass":
            counts = [int((values == k).sum()) for k in range(spec.width)]
        elif spec.kind == "multilabel":
            counts = [int(c) for c in (values > 0.5).sum(axis=0)] if len(values) else [0] * spec.width
        else:
            continue
        report.class_counts[task] = dict(zip(spec.names, counts))
    return report


def check_dataset(root: Path, track: "Track", *, check_images: bool = True) -> CheckReport:
    """Read every split of ``root`` collecting all problems, never raising for bad data.

    A split whose files are absent is reported as a warning (a tree may hold only the
    labelled splits); a root with no split at all is an error.
    """
    # Imported here: the readers import this module for Problem, so a top-level import
    # would be circular.
    from abawbench.data.official import SplitMissing, scan_split

    reports: list[SplitReport] = []
    problems: list[Problem] = []
    for split in SPLITS:
        try:
            index, found = scan_split(root, track, split, check_images=check_images)
        except SplitMissing as missing:
            problems.append(Problem(missing.path, None, f"split {split!r} not found", "warning"))
            reports.append(SplitReport(split=split, present=False))
            continue
        problems.extend(found)
        if index is None:
            reports.append(SplitReport(split=split, present=True))
        else:
            reports.append(summarise(index, track))
    if not any(r.present for r in reports):
        problems.append(Problem(str(root), None, f"no {track.name} split found here", "fatal"))
    return CheckReport(root=str(root), track=track.name, splits=reports, problems=problems)
