"""The whole-dataset check behind ``abawbench data check``.

The check reads every split through the dataset plugin, in collect-all mode where the plugin
offers one (:attr:`~abawbench.specs.DatasetSpec.scan_split`), so it reports exactly the
problems a strict read would refuse, every one of them as ``file:line: problem``. It then
decodes every image of the splits it could read (:mod:`abawbench.data.decode`): an
undecodable image is an error a run would hit, and one that ``--skip-bad`` drops.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from abawbench.data.decode import decode_problems
from abawbench.data.index import SPLITS, SampleIndex
from abawbench.data.problems import Problem, SplitMissing, errors_of
from abawbench.errors import DataFormatError
from abawbench.specs import ReadOptions

if TYPE_CHECKING:
    from abawbench.specs import DatasetSpec
    from abawbench.tracks import Track


@dataclass
class SplitReport:
    """Counts of one split as read with bad rows dropped. ``label_counts[task]`` counts rows
    whose label is present; ``class_counts[task]`` maps class (or label) name to its count."""

    split: str
    present: bool
    rows: int = 0
    skipped: int = 0
    duplicates: int = 0
    label_counts: dict[str, int] = field(default_factory=dict)
    class_counts: dict[str, dict[str, int]] = field(default_factory=dict)
    fingerprint: str | None = None
    notes: list[str] = field(default_factory=list)


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


def summarise(index: SampleIndex, track: "Track") -> SplitReport:
    """Counts per label availability and per class, from the index alone."""
    report = SplitReport(
        split=index.split,
        present=True,
        rows=len(index),
        skipped=index.skipped,
        duplicates=index.duplicates,
        fingerprint=index.fingerprint,
        notes=list(index.notes),
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


def scan_with(
    dataset: "DatasetSpec", root: Path, track: "Track", split: str, options: ReadOptions
) -> tuple[SampleIndex | None, list[Problem]]:
    """One split read collecting its problems: the plugin's own collect-all reader, or else a
    strict read whose refusal becomes one problem (then a ``skip_bad`` read for the counts)."""
    if dataset.scan_split is not None:
        return dataset.scan_split(root, track, split, options)
    try:
        return dataset.read_split(root, track, split, options), []
    except SplitMissing:
        raise
    except DataFormatError as refused:
        problem = Problem(str(root), None, str(refused))
    try:
        return dataset.read_split(root, track, split, replace(options, skip_bad=True)), [problem]
    except DataFormatError:
        return None, [Problem(problem.file, None, problem.message, "fatal")]


def check_dataset(
    root: Path, track: "Track", dataset: "DatasetSpec", *, check_images: bool = True,
    decode: Literal["full", "quick", "none"] = "full", progress: bool = False,
    test_image_folder: str | None = None,
) -> CheckReport:
    """Read every split of ``root`` with ``dataset`` collecting all problems, never raising
    for bad data.

    A split whose files are absent is reported as a warning (a tree may hold only the
    labelled splits); a root with no split at all is fatal. With ``check_images``, every
    image is then decoded (``quick``: only its header parsed; ``none``: not opened).
    """
    options = ReadOptions(check_images=check_images, test_image_folder=test_image_folder)
    reports: list[SplitReport] = []
    problems: list[Problem] = []
    for split in SPLITS:
        try:
            index, found = scan_with(dataset, Path(root), track, split, options)
        except SplitMissing as missing:
            problems.append(Problem(missing.path, None, f"split {split!r} not found", "warning"))
            reports.append(SplitReport(split=split, present=False))
            continue
        problems.extend(found)
        if index is None:
            reports.append(SplitReport(split=split, present=True))
        else:
            reports.append(summarise(index, track))
            if check_images and decode != "none":
                problems.extend(decode_problems(index, quick=decode == "quick", progress=progress))
    if not any(r.present for r in reports):
        problems.append(Problem(str(root), None, f"no {track.name} split found here", "fatal"))
    return CheckReport(root=str(root), track=track.name, splits=reports, problems=problems)
