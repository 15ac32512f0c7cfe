"""Regression checks between two sets of results: the CI gate.

OLD and NEW are each a runs folder (as ``abawbench run`` writes it) or a leaderboard JSON (as
``abawbench leaderboard --format json`` writes it). Entries are matched by track, entry name
and the fingerprint of the validation data: a score measured on other data is not comparable,
so an entry whose data changed is flagged rather than compared. A change is a regression when
the primary score worsens by more than the tolerance (in the track's direction,
``higher_is_better``), or when an entry disappears or newly fails.

Scores from result files are summarised by :func:`abawbench.boards.build.measured_sections`, the
same function the leaderboard ranks with, so the gate judges exactly what the tables show.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from abawbench.boards.build import measured_sections
from abawbench.boards.formats import LEADERBOARD_JSON_FORMAT, FormatRegistry, csv_text, number, text_table
from abawbench.boards.inputs import read_json
from abawbench.errors import DataFormatError
from abawbench.results import RunResult, iter_results

Key = tuple[str, str, str]  # track, entry, validation fingerprint


@dataclass(frozen=True)
class EntryScore:
    """An entry's primary score (mean over its completed seeds) on one side of a comparison."""

    track: str
    entry: str
    fingerprint: str
    status: str  # "completed" or "failed"
    score: float | None
    higher_is_better: bool


@dataclass(frozen=True)
class Change:
    """One entry's verdict; ``regression`` marks what fails the gate."""

    track: str
    entry: str
    status: str
    old: float | None
    new: float | None
    delta: float | None
    regression: bool


def scores_from_results(results: Iterable[RunResult], higher_is_better: Callable[[str], bool]) -> dict[Key, EntryScore]:
    """Entry scores from result files, summarised exactly as the leaderboard does."""
    by_track: dict[str, list[RunResult]] = {}
    for result in results:
        by_track.setdefault(result.track, []).append(result)
    scores: dict[Key, EntryScore] = {}
    for track, results_of_track in by_track.items():
        better = higher_is_better(track)
        metric = results_of_track[0].primary_metric
        for section in measured_sections(results_of_track, track, metric, better):
            for row in section.rows:
                scores[(track, row.entry, section.fingerprint)] = EntryScore(
                    track, row.entry, section.fingerprint, row.status, row.mean, better)
    return scores


def scores_from_leaderboard(data: Mapping[str, Any], source: str) -> dict[Key, EntryScore]:
    """Entry scores from a leaderboard JSON document; reported rows are not measurements."""
    if data.get("format") != LEADERBOARD_JSON_FORMAT:
        raise DataFormatError(f"{source}: not an abawbench leaderboard JSON (no 'format': '{LEADERBOARD_JSON_FORMAT}')")
    track, better = str(data["track"]), bool(data.get("higher_is_better", True))
    scores: dict[Key, EntryScore] = {}
    for section in data.get("sections", []):
        if section.get("kind") != "measured":
            continue
        for row in section.get("rows", []):
            key = (track, str(row["entry"]), str(section.get("fingerprint", "")))
            scores[key] = EntryScore(track, key[1], key[2], str(row["status"]), row.get("mean"), better)
    return scores


def load_scores(path: Path, higher_is_better: Callable[[str], bool]) -> dict[Key, EntryScore]:
    """A runs folder or a leaderboard JSON file."""
    path = Path(path)
    if path.is_dir():
        return scores_from_results((r for _p, r in iter_results(path)), higher_is_better)
    if not path.exists():
        raise DataFormatError(f"{path}: no such runs folder or leaderboard JSON")
    return scores_from_leaderboard(read_json(path, dict, "a leaderboard JSON object"), str(path))


def compare_scores(old: Mapping[Key, EntryScore], new: Mapping[Key, EntryScore], tolerance: float) -> list[Change]:
    """Every entry of either side, with its status; ``regression`` marks what fails the gate."""
    changes: list[Change] = []
    new_entries = {(k[0], k[1]) for k in new}
    old_entries = {(k[0], k[1]) for k in old}
    for key, before in sorted(old.items()):
        after = new.get(key)
        if after is None:
            moved = (key[0], key[1]) in new_entries
            status = "data changed: not comparable" if moved else "disappeared"
            regression = before.status == "completed" or moved
            changes.append(Change(key[0], key[1], status, before.score, None, None, regression))
            continue
        changes.append(_judge(before, after, tolerance))
    for key, after in sorted(new.items()):
        if key not in old and (key[0], key[1]) not in old_entries:
            status = "new" if after.status == "completed" else "new, failed"
            changes.append(Change(key[0], key[1], status, None, after.score, None, after.status != "completed"))
    return changes


def _judge(before: EntryScore, after: EntryScore, tolerance: float) -> Change:
    base = (before.track, before.entry)
    if after.status != "completed":
        status = "still failed" if before.status != "completed" else "newly failed"
        return Change(*base, status, before.score, None, None, before.status == "completed")
    if before.status != "completed":
        return Change(*base, "fixed", None, after.score, None, False)
    delta = after.score - before.score
    worse = -delta if after.higher_is_better else delta
    if worse > tolerance:
        status, regression = "regressed", True
    elif worse > 0:
        status, regression = "dropped within tolerance", False
    elif worse < 0:
        status, regression = "improved", False
    else:
        status, regression = "unchanged", False
    return Change(*base, status, before.score, after.score, delta, regression)


@dataclass(frozen=True)
class Comparison:
    """What a report shows: every change and the tolerance they were judged with."""

    changes: tuple[Change, ...]
    tolerance: float

    @property
    def regressions(self) -> int:
        return sum(change.regression for change in self.changes)

    def ordered(self) -> list[Change]:
        """Regressions first, so a CI log shows what failed the gate at the top."""
        return sorted(self.changes, key=lambda c: (not c.regression, c.track, c.entry))


CHANGE_FORMATS: FormatRegistry[Comparison] = FormatRegistry("comparison")
_HEADER = ["track", "entry", "old", "new", "delta", "status", "gate"]


def _cells(comparison: Comparison) -> list[list[str]]:
    return [[c.track, c.entry, number(c.old), number(c.new), number(c.delta, signed=True), c.status,
             "FAIL" if c.regression else "ok"] for c in comparison.ordered()]


@CHANGE_FORMATS.register("markdown")
def render_markdown(comparison: Comparison) -> str:
    """The table, then a one-line verdict."""
    tolerance = comparison.tolerance
    verdict = (f"{comparison.regressions} regression(s) beyond tolerance {tolerance}" if comparison.regressions
               else f"no regression beyond tolerance {tolerance}")
    return text_table(_cells(comparison), _HEADER, "github") + f"\n\n{verdict}\n"


@CHANGE_FORMATS.register("csv")
def render_csv(comparison: Comparison) -> str:
    return csv_text(_HEADER, _cells(comparison))


@CHANGE_FORMATS.register("json")
def render_json(comparison: Comparison) -> str:
    return json.dumps({"tolerance": comparison.tolerance, "regressions": comparison.regressions,
                       "changes": [asdict(c) for c in comparison.ordered()]}, indent=2) + "\n"
