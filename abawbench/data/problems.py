"""Problem records that every dataset reader shares, and the strict / skip-bad decision.

Readers never stop at the first bad row: they collect every problem as a :class:`Problem`
and only then decide (strict: raise one :class:`DataFormatError` naming the first problems;
``skip_bad``: drop the rows and count them). That one collection is what ``abawbench data
check`` prints, so the check and the reader can never disagree about what is wrong.

Severities:

- ``warning``: reported, never fatal (duplicate image names: the first line is kept).
- ``error``: a bad row or file; strict reading refuses the split, ``skip_bad`` drops it.
- ``fatal``: the split cannot be read at all (missing annotation file, wrong header);
  ``skip_bad`` cannot help.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable, Literal

from abawbench.errors import DataFormatError

Severity = Literal["warning", "error", "fatal"]

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


class SplitMissing(DataFormatError):
    """The file or folder that holds a split is absent. ``data check`` reports it as a
    warning (a tree may hold only the labelled splits); reading the split is an error."""

    def __init__(self, path: Path | str, split: str) -> None:
        self.path = str(path)
        super().__init__(f"{path}: split {split!r} not found (expected this file or folder)")


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


def skipped_notes(skipped: int, duplicates: int, undecodable: int = 0) -> list[str]:
    """The notes a :class:`~abawbench.data.index.SampleIndex` carries about rows left out."""
    notes = []
    if skipped:
        notes.append(f"{skipped} bad row(s) skipped")
    if duplicates:
        notes.append(f"{duplicates} duplicate image name(s): the first line of each was kept")
    if undecodable:
        notes.append(f"{undecodable} undecodable image(s) skipped")
    return notes
