"""Which checks a plugin gets: one set per thing it registered, in the registries' order,
after a first check that the plugin loaded cleanly."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from abawbench.conformance.augmentations import augmentation_checks
from abawbench.conformance.core import DEFAULT_IMAGE_SIZE, Check, CheckFailed, CheckSkipped
from abawbench.conformance.datasets import dataset_checks
from abawbench.conformance.ensembles import ensemble_checks
from abawbench.conformance.losses import loss_checks
from abawbench.conformance.models import family_checks, model_checks
from abawbench.conformance.tracks import track_checks
from abawbench.errors import UnknownNameError
from abawbench.registry import suggest
from abawbench.specs import ModelFamily

if TYPE_CHECKING:
    from abawbench.plugins import PluginHost



@dataclass(frozen=True)
class ConformanceOptions:
    """What the checks run on.

    ``data``: a dataset tree to read (default: the tree each dataset generates); ``tracks``: the
    tracks to check datasets on (default: all they serve); ``models``: the models to check instead
    of all of the plugin's own (``ModelSpec`` names, or members of a family such as
    ``timm:resnet18``), the plugin's models not named being listed as skipped (empty: every model
    the plugin registers); ``image_size``: the input size, in pixels, models are built and run at;
    ``workdir``: where generated trees and corrupted copies go (default: a new temporary folder)."""

    data: Path | None = None
    tracks: tuple[str, ...] = ()
    models: tuple[str, ...] = ()
    image_size: int = DEFAULT_IMAGE_SIZE
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="abawbench-conformance-")))


def plugin_checks(host: "PluginHost", plugin: str, options: ConformanceOptions | None = None) -> list[Check]:
    """Every check of everything ``plugin`` (a name as ``abawbench plugins`` lists it)
    registered in ``host``; :class:`UnknownNameError` with suggestions for an unknown plugin."""
    options = options or ConformanceOptions()
    if plugin not in host.plugins:
        raise UnknownNameError(f"unknown plugin {plugin!r}{suggest(plugin, list(host.plugins))}; "
                               f"loaded: {', '.join(sorted(host.plugins)) or 'none'} (see 'abawbench plugins')")
    info = host.plugins[plugin]

    def loads() -> None:
        if info.status != "ok":
            raise CheckFailed(f"{info.status}: {info.error}")

    checks = [Check("plugin", plugin, "loads cleanly", loads)]
    tracks = [entry.item for entry in host.tracks.entries()]
    for kind, registry in host.registries.items():
        for entry in registry.entries():
            if entry.plugin != plugin:
                continue
            plain_model = kind == "models" and not isinstance(entry.item, ModelFamily)
            if plain_model and options.models and entry.name not in options.models:
                checks.append(_not_named(entry.name))
            elif not (plain_model and entry.name in options.models):
                checks += _item_checks(kind, entry.item, host, tracks, options)
    for name in options.models:  # in the order named, the plugin's own or a family's member
        checks += model_checks(host.models.get(name), options.image_size, tracks)
    return checks


def _not_named(name: str) -> Check:
    def skipped() -> None:
        raise CheckSkipped("not named in --models")

    return Check("model", name, "all checks", skipped)


def _item_checks(kind: str, item, host: "PluginHost", tracks: list, options: ConformanceOptions) -> list[Check]:
    if kind == "models":
        if isinstance(item, ModelFamily):
            return family_checks(item)
        return model_checks(item, options.image_size, tracks)
    if kind == "losses":
        return loss_checks(item, tracks)
    if kind == "datasets":
        chosen = [track for track in tracks if track.name in item.tracks
                  and (not options.tracks or track.name in options.tracks)]
        return dataset_checks(item, chosen, options.workdir, options.data)
    if kind == "ensembles":
        return ensemble_checks(item, tracks)
    if kind == "tracks":
        return track_checks(item, host)
    return augmentation_checks(item)

