"""The hook contract between abawbench and its plugins.

Every hook is callback style: abawbench passes a ``register`` function and the plugin calls it
once per thing it provides. The core owns naming, duplicate detection and aggregation, which is
why ``register`` checks each item on the spot: it takes only the hook's own spec type, under a
name that matches :data:`abawbench.registry.NAME_PATTERN`, and refuses anything else while the
plugin loads, naming the plugin (see CONTRIBUTING.md, "Naming rules").
A plugin module marks its implementations with :data:`hookimpl`::

    from abawbench.hookspecs import hookimpl

    @hookimpl
    def abawbench_register_models(register):
        register(ModelSpec(name="my-net", build=build_my_net))
"""

from __future__ import annotations

from typing import Callable

import pluggy

PROJECT_NAME = "abawbench"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


@hookspec
def abawbench_register_models(register: Callable) -> None:
    """Register models: call ``register(ModelSpec(...))`` for each backbone, or
    ``register(ModelFamily(...))`` for a family addressed by prefix (``timm:<arch>``)."""


@hookspec
def abawbench_register_datasets(register: Callable) -> None:
    """Register datasets: call ``register(DatasetSpec(...))`` for each dataset reader."""


@hookspec
def abawbench_register_losses(register: Callable) -> None:
    """Register losses: call ``register(LossSpec(...))`` for each loss function."""


@hookspec
def abawbench_register_ensembles(register: Callable) -> None:
    """Register ensemble methods: call ``register(EnsembleSpec(...))`` for each method."""


@hookspec
def abawbench_register_tracks(register: Callable) -> None:
    """Register challenge tracks: call ``register(track)`` with a ``Track`` instance."""


@hookspec
def abawbench_register_augmentations(register: Callable) -> None:
    """Register training augmentations for fine-tuning: call ``register(AugmentationSpec(...))``
    for each; a run names one with ``protocol.augmentation``."""
