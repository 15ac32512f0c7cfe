"""Conformance of a track: its tasks are well formed, its default loss exists, and it scores
random predictions with a score inside the ranges it declares (:meth:`Track.check_score`,
which a run applies to every score too)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from abawbench.conformance.core import Check, expect
from abawbench.conformance.tiny import random_labels, random_predictions

if TYPE_CHECKING:
    from abawbench.plugins import PluginHost
    from abawbench.tracks import Track

KINDS = ("regression", "multiclass", "multilabel")


def track_checks(track: "Track", host: "PluginHost") -> list[Check]:
    def tasks_well_formed() -> None:
        names = [task.name for task in track.tasks]
        expect(bool(names), "the track has no tasks")
        expect(len(set(names)) == len(names), f"task names repeat: {names}")
        for task in track.tasks:
            expect(task.kind in KINDS, f"task {task.name!r} has kind {task.kind!r}, not one of {KINDS}")
            expect(task.width > 0, f"task {task.name!r} names no outputs")

    def default_loss_registered() -> None:
        expect(track.default_loss in host.losses,
               f"default_loss {track.default_loss!r} is not a registered loss "
               f"(see 'abawbench list losses')")

    def scores_in_range() -> None:
        score = track.score(random_predictions(track, seed=1), random_labels(track))
        track.check_score(score)  # raises MetricInputError naming the score out of range

    return [
        Check("track", track.name, "tasks are well formed", tasks_well_formed),
        Check("track", track.name, "default loss is registered", default_loss_registered),
        Check("track", track.name, "scores random predictions inside its ranges", scores_in_range),
    ]
