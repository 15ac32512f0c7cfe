"""Which dataset plugin reads a track's data when the user names none: one rule for `run`,
`data check` and `data preview`, so they can never pick different readers for one tree."""

from __future__ import annotations

from typing import TYPE_CHECKING

from abawbench.errors import ConfigError

if TYPE_CHECKING:
    from abawbench.plugins import PluginHost
    from abawbench.specs import DatasetSpec
    from abawbench.tracks import Track


def choose_dataset(host: "PluginHost", track: "Track", name: str | None, *, from_path: bool) -> "DatasetSpec":
    """The dataset named ``name`` (it must serve ``track``); else, among the datasets that serve
    the track and take part in the automatic choice, the one that reads data from a path (when
    ``from_path``; any when none is without an embedded default) or the one that provides an
    embedded default. More or fewer than one candidate is an error asking for ``--dataset``."""
    if name:
        spec = host.datasets.get(name)
        if track.name not in spec.tracks:
            raise ConfigError(f"dataset {spec.name!r} has no {track.name!r} data; its tracks: {', '.join(spec.tracks)}")
        return spec
    candidates = [e.item for e in host.datasets.entries() if track.name in e.item.tracks and e.item.auto_select]
    if from_path:
        pick = [s for s in candidates if s.default_root is None] or candidates
        what = "reads data from a path"
    else:
        pick = [s for s in candidates if s.default_root is not None]
        what = "provides an embedded default"
    if len(pick) != 1:
        names = ", ".join(s.name for s in pick) or "none"
        raise ConfigError(f"cannot choose a dataset for track {track.name!r}: datasets that {what}: {names}; "
                          "name one with --dataset")
    return pick[0]
