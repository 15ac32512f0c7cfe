"""Ensembles of finished runs: load members' saved predictions, cross-fit, score, write a result.

An ensemble is an entry like any other: it ends as a :class:`RunResult` with a predictions file
at ``<runs>/<track>/<entry folder>/seed<k>.json``, so the leaderboard, ``compare`` and
``predict`` treat it exactly as a trained entry. Members are read from the files the runner
wrote (``seed<k>.predictions.npz`` holds validation ids, probabilities and labels), so no data,
model or cache is needed to ensemble.

An ensemble is fitted where its members were selected. Members selected on a holdout of the
training split (``selection = "train-holdout"``) saved their predictions on it: the ensemble is
fitted there and scored on all of validation, which decided nothing. Members selected on
validation leave nothing else to fit on, so there validation scores are out of fold: rows are
dealt into ``folds`` folds (a seeded permutation); for each fold a fresh ensemble is fitted on
the other folds and predicts the held-out one. A method that fits nothing (``mean-prob``,
``majority-vote``) gives the same predictions either way; one that does (``weighted-prob``) is
never scored on rows it was fitted on. Test predictions come from one ensemble fitted on all
rows of the selection split.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch

from abawbench.config import LABEL_MAX_LENGTH, LABEL_PATTERN, LABEL_RULE
from abawbench.errors import ConfigError, DataFormatError
from abawbench.labels import TaskLabels, take_labels
from abawbench.plugins import PluginHost, get_host
from abawbench.results import (
    EntrySpecModel,
    RunResult,
    entry_dir,
    find_entry_result,
    git_commit,
    iter_results,
    package_versions,
    read_prediction_labels,
    read_predictions,
    read_result,
    result_path,
    write_predictions,
    write_result,
)
from abawbench.run.selection import SELECTION_SPLIT
from abawbench.specs import EnsembleSpec
from abawbench.tracks import Predictions, Track

ENSEMBLE_PREFIX = "ensemble:"


@dataclass
class Member:
    """One finished (entry, seed): its result and its saved predictions per split."""

    result: RunResult
    folder: Path
    ids: dict[str, list[str]]
    predictions: dict[str, dict[str, torch.Tensor]]
    labels: dict[str, dict[str, TaskLabels]]
    """Per split (validation, and the selection holdout where there is one), its stored labels."""


def ensemble_name(method: str, members: Sequence[str]) -> str:
    """The leaderboard name of an ensemble, e.g. ``ensemble:mean-prob(a,b)``."""
    return f"{ENSEMBLE_PREFIX}{method}({','.join(members)})"


def folder_name(entry: str) -> str:
    """A folder-safe form of an entry name (``:``, ``(``, ``,`` are not portable)."""
    return re.sub(r"[^A-Za-z0-9_.+-]", "-", entry).strip("-") or "ensemble"


def check_name(name: str) -> str:
    """``--name`` as a label: the pattern labels follow everywhere, so it can never start a
    path step (``..``, ``/x``) and stays one comma-free word on command lines."""
    if len(name) > LABEL_MAX_LENGTH or not re.fullmatch(LABEL_PATTERN, name):
        raise ConfigError(f"--name {name!r}: {LABEL_RULE}")
    return name


def check_target_free(runs: Path, track: str, entry: str, label: str, folder: str,
                      settings: Mapping[str, Any]) -> Path:
    """The folder the ensemble will be written to, after making sure writing it loses nothing.

    Results of the very same ensemble (same entry, method, members and options) are the only
    thing it may replace: a rerun. A trained entry, another ensemble whose name sanitises to
    the same folder (``a/b`` and ``a-b``), or an entry elsewhere already shown under this name
    is refused, since writing beside it would overwrite or shadow a result the user relies on."""
    track_dir = Path(runs) / track
    out_dir = entry_dir(runs, track, folder)
    if out_dir.resolve().parent != track_dir.resolve():  # exactly one folder below the track's
        raise ConfigError(f"ensemble name {entry!r} would be written outside {track_dir}; choose another --name")
    if not track_dir.is_dir():
        return out_dir
    mine = {key: settings[key] for key in ("method", "members", "options")}
    for path, other in iter_results(track_dir, track):
        theirs = other.config.get("ensemble")
        same = (isinstance(theirs, dict) and other.entry == entry
                and {key: theirs.get(key) for key in mine} == mine)
        in_folder = path.parent.resolve() == out_dir.resolve()
        if same or not (in_folder or {entry, label} & {other.entry, other.label}):
            continue
        what = (f"ensemble {other.label!r} ({theirs.get('method')} of {', '.join(theirs.get('members', []))})"
                if isinstance(theirs, dict) else f"the trained entry {other.label!r}")
        where = "its folder" if in_folder else "its name"
        raise ConfigError(f"ensemble {label!r} would take {where} from {what} at {path.parent}; "
                          "an ensemble never replaces another entry: choose another --name")
    return out_dir


def load_member(runs: Path, track: str, entry: str, seed: int) -> Member:
    """A completed member with its predictions; a failed run or a missing file is an error."""
    path = find_entry_result(Path(runs), track, entry, seed)
    result = read_result(path)
    if result.status != "completed":
        raise ConfigError(f"{path}: entry {entry!r} seed {seed} failed ({result.error}); it cannot be a member")
    if not result.predictions_file:
        raise DataFormatError(f"{path}: the result names no predictions file")
    npz = path.parent / result.predictions_file
    if not npz.exists():
        raise DataFormatError(f"{npz}: predictions file of {entry!r} seed {seed} is missing")
    ids: dict[str, list[str]] = {}
    predictions: dict[str, dict[str, torch.Tensor]] = {}
    for split in ("validation", "test", SELECTION_SPLIT):
        loaded = read_predictions(npz, split)
        if loaded is not None:
            ids[split] = loaded[0]
            predictions[split] = {task: torch.from_numpy(array) for task, array in loaded[1].items()}
    if "validation" not in ids:
        raise DataFormatError(f"{npz}: no validation predictions")
    if result.selection == "train-holdout" and SELECTION_SPLIT not in ids:
        raise DataFormatError(f"{npz}: {entry!r} was selected on a training holdout but its predictions "
                              "file holds none; rerun the entry to write it again")
    labels = {"validation": read_prediction_labels(npz)}
    if SELECTION_SPLIT in ids:
        labels[SELECTION_SPLIT] = read_prediction_labels(npz, SELECTION_SPLIT)
    return Member(result=result, folder=path.parent, ids=ids, predictions=predictions, labels=labels)


def check_aligned(members: Sequence[Member], split: str) -> None:
    """Members must hold the same ids in the same order, else averaging rows would mix images."""
    first = members[0]
    reference = first.ids[split]
    for member in members[1:]:
        ids = member.ids[split]
        if len(ids) != len(reference):
            raise DataFormatError(
                f"{split} predictions of {member.result.entry!r} have {len(ids)} rows, "
                f"{first.result.entry!r} has {len(reference)}: members must be run on the same data"
            )
        for row, (a, b) in enumerate(zip(reference, ids)):
            if a != b:
                raise DataFormatError(
                    f"{split} row {row}: {first.result.entry!r} has {a!r} but {member.result.entry!r} has "
                    f"{b!r}: members must list the same images in the same order"
                )


def fold_assignment(rows: int, folds: int, seed: int) -> torch.Tensor:
    """Fold number of every row: a seeded permutation dealt round-robin (sizes differ by <= 1)."""
    if folds < 2:
        raise ConfigError(f"cross-fitting needs at least 2 folds, got {folds}")
    if rows < folds:
        raise ConfigError(f"cannot cross-fit {rows} validation rows in {folds} folds")
    order = torch.randperm(rows, generator=torch.Generator().manual_seed(seed))
    assignment = torch.empty(rows, dtype=torch.long)
    assignment[order] = torch.arange(rows) % folds
    return assignment


def cross_fit(
    spec: EnsembleSpec,
    options: Mapping[str, Any],
    members: list[Predictions],
    labels: Mapping[str, TaskLabels],
    track: Track,
    *,
    folds: int,
    seed: int,
) -> dict[str, torch.Tensor]:
    """Out-of-fold predictions: rows of fold f are combined by an ensemble fitted without them."""
    rows = int(next(iter(members[0].values())).shape[0])
    assignment = fold_assignment(rows, folds, seed)
    out: dict[str, torch.Tensor] = {}
    for fold in range(folds):
        held = assignment == fold
        fit_rows = (~held).nonzero().squeeze(1)
        held_rows = held.nonzero().squeeze(1)
        ensemble = spec.build(options)
        ensemble.fit([{t: p[fit_rows] for t, p in m.items()} for m in members],
                     take_labels(labels, fit_rows.numpy()), track)
        combined = ensemble.combine([{t: p[held_rows] for t, p in m.items()} for m in members], track)
        for task, value in combined.items():
            if task not in out:
                out[task] = torch.empty((rows,) + tuple(value.shape[1:]), dtype=value.dtype)
            out[task][held_rows] = value
    return out


def run_ensemble(
    track: Track,
    spec: EnsembleSpec,
    member_entries: Sequence[str],
    runs: Path,
    *,
    seed: int = 0,
    name: str | None = None,
    options: Mapping[str, Any] | None = None,
    folds: int = 5,
    bootstrap: int = 1000,
    host: PluginHost | None = None,
) -> tuple[Path, RunResult]:
    """Ensemble ``member_entries`` (each named by label, label prefix or folder; their ``seed``
    runs) and write the result; returns its path. ``host`` (default: the process's) tells which
    plugins supplied the method and the track, for the result's provenance."""
    from abawbench.evaluation import score_and_resample, tuned_threshold_report

    started = time.perf_counter()
    options = dict(options or {})
    if name is not None:
        check_name(name)
    if len(member_entries) < 2:
        raise ConfigError(f"an ensemble needs at least 2 members, got {list(member_entries)}")
    if len(set(member_entries)) != len(member_entries):
        raise ConfigError(f"ensemble members repeat: {list(member_entries)}")
    members = [load_member(runs, track.name, entry, seed) for entry in member_entries]
    if len({m.folder for m in members}) != len(members):
        raise ConfigError(f"ensemble members {list(member_entries)} name one entry more than once")
    entry = name or ensemble_name(spec.name, [m.result.entry for m in members])
    label = name or ensemble_name(spec.name, [m.result.label for m in members])
    selections = {m.result.selection for m in members}
    if len(selections) > 1:
        raise ConfigError(f"members were selected on different splits ({', '.join(sorted(selections))}); "
                          "an ensemble is fitted where its members were selected, so they must agree")
    selection = selections.pop()
    if selection == "none":
        # Zero-shot members chose nothing, but an ensemble of them is cross-fitted on
        # validation folds: the validation split decides its weights, and its result says so.
        selection = "validation"
    scored_how = ("fitted on the training holdout, scored on all of validation" if selection == "train-holdout"
                  else "out-of-fold (k-fold cross-fitting)")
    settings = {"method": spec.name, "members": [m.result.entry for m in members], "options": options,
                "folds": folds, "bootstrap": bootstrap, "validation": scored_how}
    out_dir = check_target_free(runs, track.name, entry, label, folder_name(entry), settings)
    check_aligned(members, "validation")
    fingerprints = {m.result.dataset_fingerprints.get("validation") for m in members}
    if len(fingerprints) > 1:
        raise DataFormatError(f"members were validated on different data (fingerprints {sorted(map(str, fingerprints))})")
    splits = ["validation"] + (["test"] if all("test" in m.ids for m in members) else [])
    if "test" in splits:
        check_aligned(members, "test")
    labels = members[0].labels["validation"]
    validation = [m.predictions["validation"] for m in members]
    full = spec.build(options)
    held: tuple[dict[str, torch.Tensor], dict[str, TaskLabels]] | None = None
    if selection == "train-holdout":
        check_aligned(members, SELECTION_SPLIT)
        holdout = [m.predictions[SELECTION_SPLIT] for m in members]
        full.fit(holdout, members[0].labels[SELECTION_SPLIT], track)
        oof = full.combine(validation, track)  # validation decided nothing: no folds needed
        held = (full.combine(holdout, track), members[0].labels[SELECTION_SPLIT])
    else:
        oof = cross_fit(spec, options, validation, labels, track, folds=folds, seed=seed)
        full.fit(validation, labels, track)
    test = full.combine([m.predictions["test"] for m in members], track) if "test" in splits else None
    scored = score_and_resample(track, oof, labels, n_resamples=bootstrap, seed=seed,
                                sample_ids=members[0].ids["validation"])
    score = scored.score
    track.check_score(score)  # a NaN or impossible combined score is refused, never written

    host = host or get_host()
    provenance = {"ensemble": host.supplier("ensembles", spec.name), "track": host.supplier("tracks", track.name)}
    if "dataset" in members[0].result.provenance:
        provenance["dataset"] = members[0].result.provenance["dataset"]
    predictions_file = out_dir / f"seed{seed}.predictions.npz"
    split_predictions = ({"validation": oof} | ({"test": test} if test is not None else {})
                         | ({SELECTION_SPLIT: held[0]} if held is not None else {}))
    write_predictions(predictions_file, members[0].ids, split_predictions, labels,
                      split_labels={SELECTION_SPLIT: held[1]} if held is not None else None)
    first = members[0].result
    losses = sorted({m.result.spec.loss for m in members})
    result = RunResult(
        status="completed", track=track.name, entry=entry, label=label, seed=seed,
        spec=EntrySpecModel(model=entry, loss="+".join(losses), protocol=first.spec.protocol,
                            weights=first.spec.weights),
        primary_metric=track.primary_metric, primary=scored.primary, sub_scores=scored.sub_scores,
        per_class=score.per_class, confusion=score.confusion,
        tuned=tuned_threshold_report(track, oof, labels, selection=held), selection=selection,
        primary_resamples=scored.primary_resamples, resampling=scored.resampling,
        dataset=first.dataset, data_root=first.data_root,
        dataset_fingerprints=dict(first.dataset_fingerprints), split_sizes=dict(first.split_sizes),
        config={"ensemble": settings},
        versions=package_versions(), git_commit=git_commit(), provenance=provenance,
        timings={"total_s": time.perf_counter() - started},
        predictions_file=predictions_file.name,
    )
    path = out_dir / result_path(runs, track.name, folder_name(entry), seed).name
    write_result(path, result)
    return path, result
