"""Conformance of a loss, on every track that has a task of a kind it serves: it builds from
the track and class counts, returns a finite scalar, ignores masked rows and passes gradients.

Why: the training loop can only say that a loss returned a non-scalar or NaN once training has
started; a loss that reads masked rows learns from labels that do not exist (the readers store
0 there), which no error ever reveals.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

from abawbench.conformance.core import Check, CheckFailed, CheckSkipped, expect, once
from abawbench.conformance.tiny import random_labels, random_outputs

if TYPE_CHECKING:
    from abawbench.specs import LossSpec
    from abawbench.tracks import Track


def loss_checks(spec: "LossSpec", tracks: list["Track"]) -> list[Check]:
    """Checks on each track, restricted to the tasks of the kinds the loss serves (``bce`` on
    ``mtl``'s AU task alone): a run uses such a loss for those tasks, inside a multi-task loss."""
    checks = []
    for track in tracks:
        served = tuple(task for task in track.tasks if task.kind in spec.task_kinds)
        if served:
            on = f"on track {track.name}"
            if len(served) < len(track.tasks):
                on += f" ({', '.join(task.name for task in served)} only)"
            checks += _checks_on(spec, _restricted(track, served), on)
    if not checks:
        served = ", ".join(spec.task_kinds)

        def no_track() -> None:
            raise CheckSkipped(f"no loaded track has a task of the kinds it serves ({served})")

        checks.append(Check("loss", spec.name, "serves a loaded track", no_track))
    return checks


def _restricted(track: "Track", tasks: tuple) -> "Track":
    """``track`` itself when the loss serves all its tasks, else a copy with only ``tasks``."""
    if len(tasks) == len(track.tasks):
        return track
    view = copy.copy(track)
    view.tasks = tasks  # the instance's tasks hide the class's; the track itself is untouched
    return view


def _checks_on(spec: "LossSpec", track: "Track", on: str) -> list[Check]:
    """The checks on ``track`` (``on`` says which, in each check's title)."""
    import torch

    from abawbench.training.loop import labels_as_tensors, loss_context

    labels = random_labels(track)
    targets = labels_as_tensors(labels)
    loss_fn = once(lambda: spec.build(track, loss_context(track, labels, {})),
                   f"not tried: the loss did not build for track {track.name!r}")

    def value(outputs: dict[str, torch.Tensor], targets: Any = targets) -> torch.Tensor:
        result = loss_fn()(outputs, targets)
        if not isinstance(result, torch.Tensor) or result.dim() != 0:
            shape = list(result.shape) if isinstance(result, torch.Tensor) else type(result).__name__
            raise CheckFailed(f"returned {shape} instead of a scalar tensor (reduce over the batch)")
        return result

    def builds() -> None:
        expect(callable(loss_fn()), "build returned something that cannot be called")

    def finite() -> None:
        result = value(random_outputs(track))
        expect(bool(result.isfinite()), f"returned {float(result)} on random outputs and labels")

    # the further checks mean nothing for a loss that is not a finite scalar: they are skipped
    finite_scalar = once(finite, "not tried: the loss is not a finite scalar")

    def ignores_masked_rows() -> None:
        finite_scalar()
        outputs = random_outputs(track)
        changed_outputs = random_outputs(track, seed=1)
        changed_targets = {}
        for task, (values, mask) in targets.items():
            changed_outputs[task][mask] = outputs[task][mask]  # only masked rows differ
            garbage = values.clone()
            garbage[~mask] = values[mask][0]  # another valid label, where the label is absent
            changed_targets[task] = (garbage, mask)
        before, after = value(outputs), value(changed_outputs, changed_targets)
        expect(bool(torch.isclose(before, after, rtol=1e-4, atol=1e-6)),
               f"changing only masked rows changed the loss from {float(before):.6g} to "
               f"{float(after):.6g}: rows with mask == False must not contribute")

    def passes_gradients() -> None:
        finite_scalar()
        outputs = {task: tensor.requires_grad_(True) for task, tensor in random_outputs(track).items()}
        value(outputs).backward()
        grads = [tensor.grad for tensor in outputs.values() if tensor.grad is not None]
        expect(bool(grads), "no output received a gradient (is the result detached?)")
        expect(all(bool(grad.isfinite().all()) for grad in grads), "gradients hold NaN or infinite values")
        expect(any(bool(grad.abs().sum() > 0) for grad in grads), "every gradient is zero")

    return [
        Check("loss", spec.name, f"builds {on}", builds),
        Check("loss", spec.name, f"returns a finite scalar {on}", finite_scalar),
        Check("loss", spec.name, f"ignores masked rows {on}", ignores_masked_rows),
        Check("loss", spec.name, f"passes gradients {on}", passes_gradients),
    ]
