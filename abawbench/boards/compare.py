"""Regression checks between two sets of results: the CI gate.

OLD and NEW are each a runs folder (as ``abawbench run`` writes it) or a leaderboard JSON (as
``abawbench leaderboard --format json`` writes it). The rules, so that the gate fails only on a
real regression and never passes one:

- Entries are matched by id, else by label (a result's ``label``; without one, the id less its
  settings digest), so an entry whose settings changed shows a delta instead of one entry gone
  and another new. A label held by several unmatched entries on one side matches nothing.
- Unlike things are never compared: a matched pair measured with different seed sets or on
  different data (any split's fingerprint) raises :class:`NotComparableError`, one line naming
  the entry, rather than reporting a delta that measures the difference in setup.
- A change is a regression when the score worsens (in the track's direction,
  ``higher_is_better``) by more than the tolerance (absolute, or relative to the old score,
  whichever allows more), when the new score is not a finite number, or when the entry newly
  fails. Sub-scores are judged the same way on request, in the track's direction.
- Entries present on one side only are listed; whether they fail the gate is
  :data:`MISSING_POLICIES`' choice (default ``ignore``: a run of a few models against a table
  of many passes). A new entry that failed fails the gate either way.

Scores from result files are summarised by :func:`abawbench.boards.build.measured_sections`, the
same function the leaderboard ranks with, so the gate judges exactly what the tables show.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

from abawbench.boards.build import measured_sections
from abawbench.boards.formats import LEADERBOARD_JSON_FORMAT, FormatRegistry, csv_text, number, text_table
from abawbench.boards.inputs import read_json
from abawbench.errors import DataFormatError, NotComparableError
from abawbench.results import RunResult, iter_results, without_settings_digest

MISSING_POLICIES = ("ignore", "fail")
"""What an entry present on one side only does to the gate: ``ignore`` (listed, passes) or
``fail``."""

COMPLETED = "completed"


@dataclass(frozen=True)
class EntryScore:
    """An entry's scores (means over its seeds) on one side of a comparison, with what it was
    measured on. ``seeds`` is None where a source records only their number (``seed_count``);
    ``fingerprints`` holds the splits a source records (at least validation's)."""

    track: str
    entry: str
    label: str
    metric: str
    status: str  # "completed", "partial" (some seeds failed) or "failed"
    score: float | None
    higher_is_better: bool
    fingerprints: Mapping[str, str]
    seed_count: int
    seeds: tuple[int, ...] | None = None
    sub_scores: Mapping[str, float | None] = field(default_factory=dict)

    @property
    def key(self) -> tuple[str, str, str]:
        return self.track, self.entry, self.fingerprints.get("validation", "")


@dataclass(frozen=True)
class Tolerance:
    """How much worse a score may get before the gate fails: ``absolute`` score units, or
    ``relative`` times the old score's magnitude, whichever allows more."""

    absolute: float = 0.005
    relative: float = 0.0

    def allowed(self, old: float) -> float:
        return max(self.absolute, self.relative * abs(old))

    def __str__(self) -> str:
        if not self.relative:
            return f"{self.absolute}"
        return f"max({self.absolute}, {self.relative:g} x |old|)"


@dataclass(frozen=True)
class Change:
    """One verdict: an entry's primary score (``metric`` is the track's primary metric) or one
    of its sub-scores. ``label`` is what tables show; the ids of both sides stay beside it."""

    track: str
    label: str
    metric: str
    status: str
    old: float | None
    new: float | None
    delta: float | None
    regression: bool
    old_entry: str | None
    new_entry: str | None


# --------------------------------------------------------------------------- reading both sides


def _label(label: Any, entry: str) -> str:
    return str(label) if label else without_settings_digest(entry)


def scores_from_results(results: Iterable[RunResult], higher_is_better: Callable[[str], bool]) -> list[EntryScore]:
    """Entry scores from result files, summarised exactly as the leaderboard does."""
    by_track: dict[str, list[RunResult]] = {}
    for result in results:
        by_track.setdefault(result.track, []).append(result)
    scores = []
    for track, results_of_track in by_track.items():
        better = higher_is_better(track)
        metric = results_of_track[0].primary_metric
        for section in measured_sections(results_of_track, track, metric, better):
            for row in section.rows:
                scores.append(EntryScore(
                    track, row.entry, _label(row.label, row.entry), metric, row.status, row.mean,
                    better, {**row.fingerprints, "validation": section.fingerprint}, row.seeds_total,
                    row.seed_list, row.sub_scores))
    return scores


def scores_from_leaderboard(data: Mapping[str, Any], source: str) -> list[EntryScore]:
    """Entry scores from a leaderboard JSON document; reported rows are not measurements."""
    if data.get("format") != LEADERBOARD_JSON_FORMAT:
        raise DataFormatError(f"{source}: not an abawbench leaderboard JSON (no 'format': '{LEADERBOARD_JSON_FORMAT}')")
    track, better = str(data["track"]), bool(data.get("higher_is_better", True))
    metric = str(data.get("primary_metric", "score"))
    scores = []
    for section in data.get("sections", []):
        if section.get("kind") != "measured":
            continue
        for row in section.get("rows", []):
            entry = str(row["entry"])
            seeds = row.get("seed_list")
            scores.append(EntryScore(
                track, entry, _label(row.get("label"), entry), metric, str(row["status"]), row.get("mean"), better,
                {**(row.get("fingerprints") or {}), "validation": str(section.get("fingerprint", ""))},
                int(row.get("seeds_total", 0)), None if seeds is None else tuple(seeds),
                row.get("sub_scores") or {}))
    return scores


def load_scores(path: Path, higher_is_better: Callable[[str], bool]) -> list[EntryScore]:
    """A runs folder or a leaderboard JSON file; a path that is neither is an error, not an
    empty side (a typo in CI must not compare against nothing)."""
    path = Path(path)
    if path.is_dir():
        return scores_from_results((r for _p, r in iter_results(path)), higher_is_better)
    if not path.exists():
        raise DataFormatError(f"{path}: no such runs folder or leaderboard JSON")
    return scores_from_leaderboard(read_json(path, dict, "a leaderboard JSON object"), str(path))


def tracks_to_compare(old: Sequence[EntryScore], new: Sequence[EntryScore], track: str | None) -> tuple[str, ...]:
    """``track``, else every track OLD holds; each must have results on both sides."""
    tracks = (track,) if track else tuple(sorted({s.track for s in old}))
    if not tracks:
        raise NotComparableError("OLD holds no result: nothing to compare")
    for name, side in (("OLD", old), ("NEW", new)):
        held = {s.track for s in side}
        absent = [t for t in tracks if t not in held]
        if absent:
            raise NotComparableError(f"{name} holds no result of track {', '.join(absent)}: nothing to compare")
    return tracks


# --------------------------------------------------------------------------- matching


def match_entries(old: Sequence[EntryScore], new: Sequence[EntryScore]
                  ) -> tuple[list[tuple[EntryScore, EntryScore]], list[EntryScore], list[EntryScore]]:
    """Pairs (by id and data, then by a label unique among the unmatched of its track), and
    the entries of each side left over."""
    new_by_key = {score.key: score for score in new}
    pairs = [(before, new_by_key[before.key]) for before in old if before.key in new_by_key]
    paired = {before.key for before, _after in pairs}
    old_left = [s for s in old if s.key not in paired]
    new_left = [s for s in new if s.key not in paired]

    def unique_labels(side: list[EntryScore]) -> dict[tuple[str, str], EntryScore]:
        counts: dict[tuple[str, str], int] = {}
        for score in side:
            counts[(score.track, score.label)] = counts.get((score.track, score.label), 0) + 1
        return {(s.track, s.label): s for s in side if counts[(s.track, s.label)] == 1}

    old_labels, new_labels = unique_labels(old_left), unique_labels(new_left)
    by_label = [(old_labels[name], new_labels[name]) for name in sorted(old_labels) if name in new_labels]
    pairs += by_label
    old_left = [s for s in old_left if not any(s is before for before, _after in by_label)]
    new_left = [s for s in new_left if not any(s is after for _before, after in by_label)]
    return pairs, old_left, new_left


def refuse_unlike(pairs: Iterable[tuple[EntryScore, EntryScore]]) -> None:
    """Raise :class:`NotComparableError`, one line, when a matched pair was measured with other
    seeds or on other data: its delta would measure the setup, not the change."""
    reasons = []
    for before, after in pairs:
        if before.seeds is not None and after.seeds is not None:
            if sorted(before.seeds) != sorted(after.seeds):
                reasons.append(f"entry {before.label!r} was measured with seeds {_seeds(before.seeds)} in OLD "
                               f"and {_seeds(after.seeds)} in NEW")
        elif before.seed_count != after.seed_count:
            reasons.append(f"entry {before.label!r} was measured with {before.seed_count} seed(s) in OLD "
                           f"and {after.seed_count} in NEW")
        differ = sorted(split for split in set(before.fingerprints) & set(after.fingerprints)
                        if before.fingerprints[split] != after.fingerprints[split])
        if differ:
            reasons.append(f"entry {before.label!r} was measured on other data in NEW "
                           f"(fingerprint of {', '.join(differ)} differs)")
    if reasons:
        more = f" (and {len(reasons) - 1} more)" if len(reasons) > 1 else ""
        raise NotComparableError(f"not comparable: {reasons[0]}{more}; compare runs of the same seeds on the same data")


def _seeds(seeds: Iterable[int]) -> str:
    return ",".join(str(seed) for seed in sorted(seeds))


# --------------------------------------------------------------------------- judging


def _finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


def judge_values(old: float | None, new: float | None, higher_is_better: bool,
                 tolerance: Tolerance) -> tuple[str, float | None, bool]:
    """Status, delta and whether it is a regression, for one score measured on both sides."""
    if new is None:
        return "missing", None, old is not None
    if not math.isfinite(new):
        return "not a number", None, True
    if not _finite(old):
        return "fixed", None, False
    delta = new - old
    worse = -delta if higher_is_better else delta
    if worse > tolerance.allowed(old):
        return "regressed", delta, True
    if worse > 0:
        return "dropped within tolerance", delta, False
    return ("improved" if worse < 0 else "unchanged"), delta, False


def _judge_pair(before: EntryScore, after: EntryScore, tolerance: Tolerance, sub_scores: bool) -> list[Change]:
    ids = dict(old_entry=before.entry, new_entry=after.entry)
    base = (after.track, after.label, after.metric)
    if after.status != COMPLETED:
        newly = before.status == COMPLETED
        status = "newly failed" if newly else "still failed"
        return [Change(*base, status, before.score, after.score, None, newly, **ids)]
    if before.status != COMPLETED:
        return [Change(*base, "fixed", before.score, after.score, None, False, **ids)]
    status, delta, regression = judge_values(before.score, after.score, after.higher_is_better, tolerance)
    if before.entry != after.entry and status != "not a number":
        status += " (settings changed)"
    changes = [Change(*base, status, before.score, after.score, delta, regression, **ids)]
    if sub_scores:
        names = sorted((set(before.sub_scores) | set(after.sub_scores)) - {after.metric})
        for name in names:
            old, new = before.sub_scores.get(name), after.sub_scores.get(name)
            if old is None and new is None:
                continue
            status, delta, regression = judge_values(old, new, after.higher_is_better, tolerance)
            if old is None and _finite(new):
                status = "new"
            changes.append(Change(after.track, after.label, name, status, old, new, delta, regression, **ids))
    return changes


def _one_sided(score: EntryScore, side: str, missing: str) -> Change:
    fail = missing == "fail"
    if side == "old":
        return Change(score.track, score.label, score.metric, "disappeared", score.score, None, None, fail,
                      score.entry, None)
    failed = score.status != COMPLETED
    status = "new, failed" if failed else "new"
    return Change(score.track, score.label, score.metric, status, None, score.score, None, fail or failed,
                  None, score.entry)


def compare_scores(old: Sequence[EntryScore], new: Sequence[EntryScore], tolerance: Tolerance, *,
                   sub_scores: bool = False, missing: str = "ignore", track: str | None = None) -> list[Change]:
    """Every entry of the compared tracks (``track``, else OLD's) on either side, judged;
    raises :class:`NotComparableError` when a side holds nothing to compare or a matched entry
    was measured with other seeds or on other data."""
    if missing not in MISSING_POLICIES:
        raise ValueError(f"missing must be one of {MISSING_POLICIES}, got {missing!r}")
    tracks = tracks_to_compare(old, new, track)
    old = [s for s in old if s.track in tracks]
    new = [s for s in new if s.track in tracks]
    pairs, old_only, new_only = match_entries(old, new)
    refuse_unlike(pairs)
    changes = [change for before, after in pairs for change in _judge_pair(before, after, tolerance, sub_scores)]
    changes += [_one_sided(score, "old", missing) for score in old_only]
    changes += [_one_sided(score, "new", missing) for score in new_only]
    return changes


# --------------------------------------------------------------------------- the report


@dataclass(frozen=True)
class Comparison:
    """What a report shows: every change, and the rules they were judged by."""

    changes: tuple[Change, ...]
    tolerance: Tolerance
    missing: str = "ignore"

    @property
    def regressions(self) -> int:
        return sum(change.regression for change in self.changes)

    @property
    def one_sided(self) -> int:
        """Entries present on one side only (new or disappeared)."""
        return sum(change.old_entry is None or change.new_entry is None for change in self.changes)

    def ordered(self) -> list[Change]:
        """Regressions first, so a CI log shows what failed the gate at the top; an entry's
        sub-scores keep their place after its primary score (the sort is stable)."""
        return sorted(self.changes, key=lambda c: (not c.regression, c.track, c.label))

    def verdict(self) -> str:
        """The last line of a report: what failed the gate, and what was left out of it."""
        text = (f"{self.regressions} regression(s) beyond tolerance {self.tolerance}" if self.regressions
                else f"no regression beyond tolerance {self.tolerance}")
        if self.one_sided and self.missing == "ignore":
            entries = "entry" if self.one_sided == 1 else "entries"
            text += f"; {self.one_sided} {entries} on one side only, not gated (--missing ignore)"
        return text


CHANGE_FORMATS: FormatRegistry[Comparison] = FormatRegistry("comparison")
_HEADER = ["track", "entry", "score", "old", "new", "delta", "status", "gate"]


def _cells(comparison: Comparison) -> list[list[str]]:
    return [[c.track, c.label, c.metric, number(c.old), number(c.new), number(c.delta, signed=True), c.status,
             "FAIL" if c.regression else "ok"] for c in comparison.ordered()]


@CHANGE_FORMATS.register("markdown")
def render_markdown(comparison: Comparison) -> str:
    """The table, then a one-line verdict."""
    return text_table(_cells(comparison), _HEADER, "github") + f"\n\n{comparison.verdict()}\n"


@CHANGE_FORMATS.register("csv")
def render_csv(comparison: Comparison) -> str:
    return csv_text(_HEADER, _cells(comparison))


@CHANGE_FORMATS.register("json")
def render_json(comparison: Comparison) -> str:
    """Every change with both entry ids; the tolerance and the missing-entry policy used."""
    tolerance = comparison.tolerance
    return json.dumps({"tolerance": {"absolute": tolerance.absolute, "relative": tolerance.relative},
                       "missing": comparison.missing, "regressions": comparison.regressions,
                       "verdict": comparison.verdict(),
                       "changes": [asdict(c) for c in comparison.ordered()]}, indent=2) + "\n"
