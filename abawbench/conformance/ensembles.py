"""Conformance of an ensemble method, on every loaded track: it builds from no options, fits on
members' validation predictions with labels, and combines members into predictions of the
track's shapes (probabilities stay probabilities)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from abawbench.conformance.core import Check, expect, once
from abawbench.conformance.tiny import random_labels, random_predictions

if TYPE_CHECKING:
    from abawbench.specs import EnsembleSpec
    from abawbench.tracks import Track

MEMBERS = 3


def ensemble_checks(spec: "EnsembleSpec", tracks: list["Track"]) -> list[Check]:
    ensemble = once(lambda: spec.build({}), "not tried: the ensemble did not build")
    checks = [Check("ensemble", spec.name, "builds with no options", lambda: ensemble() and None)]
    for track in tracks:
        checks.append(Check("ensemble", spec.name, f"fits and combines on track {track.name}",
                            _fits_and_combines(ensemble, track)))
    return checks


def _fits_and_combines(ensemble, track: "Track"):
    def run() -> None:
        import torch

        members = [random_predictions(track, seed=seed) for seed in range(MEMBERS)]
        built = ensemble()
        built.fit(members, random_labels(track), track)
        combined = built.combine(members, track)
        rows = len(next(iter(members[0].values())))
        for task in track.tasks:
            expect(task.name in combined, f"combine returned no predictions for task {task.name!r}")
            tensor = torch.as_tensor(combined[task.name])
            expect(tuple(tensor.shape) == (rows, task.width),
                   f"task {task.name!r}: combined shape {list(tensor.shape)}, expected {[rows, task.width]}")
            expect(bool(tensor.isfinite().all()), f"task {task.name!r}: combined values are not finite")
            if task.kind != "regression":
                expect(bool(((tensor >= 0) & (tensor <= 1)).all()),
                       f"task {task.name!r}: combined probabilities outside [0, 1]")

    return run
