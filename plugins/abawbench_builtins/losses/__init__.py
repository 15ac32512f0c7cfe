"""Built-in abawbench plugin: masked losses for the ABAW4 tasks.

``ccc``, ``cross-entropy`` (and the self-explaining presets ``cross-entropy-smooth``,
``cross-entropy-balanced``), ``focal``, ``bce`` and ``multitask``. Every loss ignores rows whose
label is missing and gives a differentiable 0 for a batch without any labelled row.
"""

from __future__ import annotations

from typing import Callable

from abawbench.hookspecs import hookimpl

from abawbench_builtins.losses.builders import loss_specs


@hookimpl
def abawbench_register_losses(register: Callable) -> None:
    for spec in loss_specs():
        register(spec)
