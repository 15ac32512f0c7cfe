"""Leaderboards from results: result files -> sections of ranked rows. Pure functions, no I/O.

Rendering is elsewhere (:mod:`abawbench.boards.formats`), so every output format shows the same
rows, and ``compare`` judges exactly what the tables rank. Rules a table keeps, so its ranks can
be trusted:

- Results measured on different data never share a rank. Rows are grouped into sections by
  dataset and the fingerprint of the validation split; each section is ranked on its own and
  labelled with that dataset and fingerprint.
- Nothing is averaged over what an entry lacks: an entry's score is the mean over its own
  completed seeds, and a sub-score missing from any of those seeds is shown as missing, never
  as a mean over the seeds that happen to have it.
- Failed entries are listed as failed, below the ranked ones, never ranked.
- Numbers reported in publications sit in their own section, marked "reported" with their
  source and data; they are never ranked with measured entries.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field, replace
from typing import Any, Iterable, Mapping, Sequence

from abawbench.data.origin import origin_text
from abawbench.results import RunResult
from abawbench.stats.seeds import not_worse_than_best, pooled_interval

REPORTED = "reported"
FAILED = "failed"
PARTIAL = "partial"  # some seeds failed: shown with its completed seeds, never ranked


@dataclass(frozen=True)
class Row:
    """One leaderboard line: an entry summarised over its seeds (or one reported number)."""

    rank: str
    entry: str
    status: str  # "completed", "failed" or "reported"
    label: str = ""  # what tables show and commands accept; ``entry`` keeps the full id
    backbone: str = ""
    protocol: str = ""
    loss: str = ""
    mean: float | None = None
    std: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    sub_scores: dict[str, float | None] = field(default_factory=dict)
    seeds: int = 0
    seeds_total: int = 0
    seed_list: tuple[int, ...] = ()  # every seed run, failed ones too: compare refuses other seed sets
    fingerprints: dict[str, str] = field(default_factory=dict)  # every split's: compare refuses other data
    date: str = ""
    version: str = ""
    note: str = ""
    split: str = "validation"
    source: str = ""
    data: str = ""
    published: str = ""  # a reported number as its source printed it ("0.30"): never more digits
    url: str = ""  # where a reported number was published
    selection: str = ""  # where epochs and thresholds were chosen: "train-holdout" or "validation"
    # True: a paired bootstrap against the best row of its section cannot tell the two apart;
    # False: significantly worse; None: not tested (reported rows, rows without resamples)
    not_worse_than_best: bool | None = None


@dataclass(frozen=True)
class Section:
    """Rows that may be ranked together: one dataset and validation fingerprint, or the
    reported numbers (``kind == "reported"``)."""

    kind: str  # "measured" or "reported"
    title: str
    dataset: str
    fingerprint: str
    rows: tuple[Row, ...]
    sub_score_names: tuple[str, ...] = ()
    origin: str = ""  # "synthetic stand-in: ..." for generated data (abawbench.data.origin)


@dataclass(frozen=True)
class Leaderboard:
    """One track's table: its sections in display order and how its primary score is read."""

    track: str
    primary_metric: str
    higher_is_better: bool
    sections: tuple[Section, ...]
    version: str = ""
    details: Mapping[str, Any] = field(default_factory=dict)
    """Per entry id, what a report shows beyond the row (abawbench.boards.details); empty when
    the board was built without reading predictions."""


# --------------------------------------------------------------------------- results -> rows


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample std over seeds (0 for a single seed)."""
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def _describe(result: RunResult) -> tuple[str, str, str]:
    """Backbone, protocol and loss columns; ensembles describe their method and members."""
    ensemble = result.config.get("ensemble") if isinstance(result.config, dict) else None
    if ensemble:
        members = ensemble.get("members", [])
        how = "fitted on holdout" if str(ensemble.get("validation", "")).startswith("fitted") else "out of fold"
        return (f"ensemble of {len(members)}", f"{ensemble.get('method', '?')} ({how})", result.spec.loss)
    protocol = result.spec.protocol
    return result.spec.model, f"{protocol.name}/{protocol.head}", result.spec.loss


def summarise_entry(results: Sequence[RunResult]) -> Row:
    """One unranked row from every seed of one entry on one dataset."""
    first = results[0]
    backbone, protocol, loss = _describe(first)
    # A score that is not a finite number is no measurement (it would sort anywhere): that seed
    # counts as failed.
    done = [r for r in results if r.status == "completed" and r.primary is not None
            and math.isfinite(r.primary.value)]
    failed = [r for r in results if r not in done]
    dates = sorted(r.created_at for r in results)
    versions = sorted({r.versions.get("abawbench", "?") for r in results})
    common = dict(entry=first.entry, label=first.label, backbone=backbone, protocol=protocol, loss=loss,
                  seeds=len(done), seeds_total=len(results), seed_list=tuple(r.seed for r in results),
                  fingerprints=dict(first.dataset_fingerprints), date=dates[-1][:10],
                  version=", ".join(versions), selection=first.selection)
    if not done:
        return Row(rank=FAILED, status=FAILED, note=_failure(failed[0])[:200], **common)
    mean, std = _mean_std([r.primary.value for r in done])
    ci_low, ci_high = _interval(done)
    names = {name for r in done for name in r.sub_scores}
    subs: dict[str, float | None] = {}
    for name in sorted(names):
        values = [r.sub_scores[name].value for r in done if name in r.sub_scores]
        # Averaging over the seeds that have it would compare unlike with unlike.
        subs[name] = statistics.fmean(values) if len(values) == len(done) else None
    note = f"{len(failed)} of {len(results)} seeds failed" if failed else ""
    # An entry whose seeds did not all complete is not ranked: its mean covers other seeds than
    # its neighbours' and a failure is information the rank would hide.
    status = PARTIAL if failed else "completed"
    return Row(rank=PARTIAL if failed else "", status=status, mean=mean, std=std, ci_low=ci_low, ci_high=ci_high,
               sub_scores=subs, note=note, **common)


def _interval(done: Sequence[RunResult]) -> tuple[float | None, float | None]:
    """One seed: its own interval. Several: the percentiles of all seeds' resamples pooled, so
    the interval holds the seed-to-seed variation too (:func:`abawbench.stats.seeds.pooled_interval`);
    none when a seed stored no resamples, rather than an average of endpoints that leaves the
    seeds' variation out."""
    if len(done) == 1:
        return done[0].primary.ci_low, done[0].primary.ci_high
    pooled = pooled_interval(done)
    return pooled if pooled is not None else (None, None)


def mark_not_worse_than_best(rows: Sequence[Row], results: Mapping[str, Sequence[RunResult]],
                             higher_is_better: bool) -> tuple[Row, ...]:
    """Every ranked row marked by a paired bootstrap against the section's best row (the first
    ranked): True when the two cannot be told apart, False when it is significantly worse, None
    when it cannot be tested (:func:`abawbench.stats.seeds.not_worse_than_best`). The ranks stay;
    the mark says which of them mean anything."""
    ranked = [row for row in rows if row.status == "completed"]
    if not ranked:
        return tuple(rows)
    best = _completed(results[ranked[0].entry])
    marked = []
    for row in rows:
        if row.status != "completed":
            marked.append(row)
            continue
        if row is ranked[0]:  # the best itself, when it can be tested against at all
            mark = True if best and all(result.primary_resamples for result in best) else None
        else:
            mark = not_worse_than_best(best, _completed(results[row.entry]), higher_is_better)
        marked.append(replace(row, not_worse_than_best=mark))
    return tuple(marked)


def _completed(results: Sequence[RunResult]) -> list[RunResult]:
    return [r for r in results if r.status == "completed" and r.primary is not None]


def _failure(result: RunResult) -> str:
    return result.error or ("score is not a finite number" if result.status == "completed" else "failed")


def rank_rows(rows: Iterable[Row], higher_is_better: bool) -> tuple[Row, ...]:
    """Competition ranking (1, 2, 2, 4) of completed rows; partial and failed rows follow, unranked."""
    completed = [r for r in rows if r.status == "completed"]
    failed = sorted((r for r in rows if r.status != "completed"), key=lambda r: r.entry)
    sign = -1.0 if higher_is_better else 1.0
    completed.sort(key=lambda r: (sign * r.mean, r.entry))
    ranked = []
    for position, row in enumerate(completed):
        if position and completed[position - 1].mean == row.mean:
            rank = ranked[-1].rank
        else:
            rank = str(position + 1)
        ranked.append(replace(row, rank=rank))
    return tuple(ranked + failed)


def data_key(result: RunResult) -> tuple[str, str]:
    """What must be equal for two results to share a rank: dataset and validation fingerprint."""
    return result.dataset, result.dataset_fingerprints.get("validation", "unknown")


def measured_sections(results: Iterable[RunResult], track: str, primary_metric: str,
                      higher_is_better: bool) -> list[Section]:
    """One ranked section per (dataset, validation fingerprint), largest section first."""
    groups: dict[tuple[str, str], dict[str, list[RunResult]]] = {}
    sizes: dict[tuple[str, str], int] = {}
    origins: dict[tuple[str, str], str] = {}
    for result in results:
        if result.track != track:
            continue
        key = data_key(result)
        groups.setdefault(key, {}).setdefault(result.entry, []).append(result)
        sizes[key] = result.split_sizes.get("validation", sizes.get(key, 0))
        origins[key] = origins.get(key) or origin_text(result.data_origin)
    sections = []
    for key, entries in groups.items():
        rows = rank_rows([summarise_entry(sorted(rs, key=lambda r: r.seed)) for rs in entries.values()],
                         higher_is_better)
        rows = mark_not_worse_than_best(rows, entries, higher_is_better)
        names = tuple(sorted({n for r in rows for n in r.sub_scores if n != primary_metric}))
        dataset, fingerprint = key
        # Generated data is named as such wherever the section's scores appear.
        origin = f" ({origins[key]})" if origins[key] else ""
        title = (f"measured on dataset {dataset}{origin}, validation split fingerprint {fingerprint}"
                 f" ({sizes[key]} images){_selected_on(rows)}")
        sections.append(Section(kind="measured", title=title, dataset=dataset, fingerprint=fingerprint,
                                rows=rows, sub_score_names=names, origin=origins[key]))
    sections.sort(key=lambda s: (-len(s.rows), s.dataset, s.fingerprint))
    return sections


def _selected_on(rows: Sequence[Row]) -> str:
    """The title's word on where the section's entries were selected, when they all agree."""
    selections = {row.selection for row in rows if row.selection}
    if selections == {"validation"}:
        return "; selected on the reported (validation) split"
    if selections == {"train-holdout"}:
        return "; selected on a holdout of the training split"
    if selections == {"none"}:
        return "; nothing selected (zero-shot)"
    return ""


def reference_section(references: Iterable[Mapping[str, Any]], track: str) -> Section | None:
    """Published numbers for ``track``, marked reported, never ranked."""
    rows = tuple(
        Row(rank=REPORTED, status=REPORTED, entry=str(ref["entry"]), label=str(ref["entry"]),
            mean=float(ref["score"]), split=str(ref["split"]), source=str(ref["source"]), data=str(ref["data"]),
            published=str(ref.get("published", "")), url=str(ref.get("url", "")))
        for ref in references if ref.get("track") == track
    )
    if not rows:
        return None
    datasets = ", ".join(sorted({_without_split(row.data, row.split) for row in rows}))
    return Section(kind="reported", title="reported in publications (not measured here, not ranked)",
                   dataset=datasets, fingerprint="", rows=rows)


def _without_split(data: str, split: str) -> str:
    """The dataset a reported number was measured on: its ``data`` less a trailing split name,
    so that validation and test numbers of one benchmark share one dataset label."""
    suffix = f" {split}"
    return data[: -len(suffix)] if split and data.endswith(suffix) else data


def build_leaderboard(results: Iterable[RunResult], *, track: str, primary_metric: str,
                      higher_is_better: bool, references: Iterable[Mapping[str, Any]] = (),
                      version: str = "") -> Leaderboard:
    """Measured sections (largest first), then the reported numbers of ``track`` if any."""
    sections = measured_sections(results, track, primary_metric, higher_is_better)
    reported = reference_section(references, track)
    if reported is not None:
        sections.append(reported)
    return Leaderboard(track=track, primary_metric=primary_metric, higher_is_better=higher_is_better,
                       sections=tuple(sections), version=version)
