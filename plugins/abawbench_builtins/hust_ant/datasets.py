"""Oversampled LSD datasets: the paper's offline rebalancing as dataset plugins.

``synthface-oversampled``: the embedded synthetic default, oversampled (runs without --data).
``abaw4-oversampled``: any official-layout tree given with ``--data``; its training split is
read from the oversampled copy in the cache, validation and test from the tree itself.
Both are variants (``auto_select=False``): a run uses them only when it names them.
"""

from __future__ import annotations

from pathlib import Path

from abawbench.specs import DatasetSpec, ReadOptions

SOURCE_DATASET = "synthface"


def _lsd_track(track_name: str):
    from abawbench.plugins import get_host

    return get_host().tracks.get(track_name)


def synthface_oversampled_root(track_name: str, cache_dir: Path) -> Path:
    """The synthface default tree (made by its plugin), then its oversampled copy."""
    from abawbench.plugins import get_host

    from abawbench_builtins.hust_ant.oversample import materialise

    source = get_host().datasets.get(SOURCE_DATASET)
    if source.default_root is None:
        from abawbench.errors import ConfigError

        raise ConfigError(f"dataset {SOURCE_DATASET!r} has no embedded default to oversample")
    root = source.default_root(track_name, cache_dir)
    return materialise(root, cache_dir, _lsd_track(track_name))


def read_official(root: Path, track, split: str, options: ReadOptions):
    from abawbench_builtins.abaw4.reader import read_split

    return read_split(root, track, split, options)


def read_oversampled(root: Path, track, split: str, options: ReadOptions):
    """``train`` from the cached oversampled copy of ``root``; other splits from ``root``."""
    from abawbench.features.key import default_cache_root
    from abawbench_builtins.abaw4.reader import read_split

    from abawbench_builtins.hust_ant.oversample import materialise

    if split == "train":
        root = materialise(Path(root), options.cache_dir or default_cache_root(), track)
    return read_split(root, track, split, options)


DATASETS = (
    DatasetSpec(
        name="synthface-oversampled", tracks=("lsd",), read_split=read_official,
        default_root=synthface_oversampled_root, auto_select=False,
        description="synthface lsd default, every class oversampled to the majority count with "
                    "RandAugment (2 ops, magnitude 9; HUST-ANT), cached; use with --dataset",
    ),
    DatasetSpec(
        name="abaw4-oversampled", tracks=("lsd",), read_split=read_oversampled, auto_select=False,
        description="official lsd tree (--data) whose training split is oversampled to the majority "
                    "count with RandAugment (HUST-ANT), cached; validation/test untouched",
    ),
)
