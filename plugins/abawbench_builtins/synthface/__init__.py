"""Built-in abawbench plugin: ``synthface``, the embedded procedural synthetic-face dataset.

Faces are drawn from FACS action units (``facs``) on varied identities (``identities``),
laid out as geometry (``geometry``), rasterised (``render``) in a clean ``synthetic`` or a
degraded ``real`` domain (``domains``), and written as official ABAW4 trees (``plans``,
``tree``). It needs no download, so ``abawbench run`` works out of the box, and the LSD split
measures a true synthetic-to-real gap.

Importing this module is cheap: rendering modules load only when a tree is generated.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from abawbench.hookspecs import hookimpl
from abawbench.specs import DatasetSpec, ReadOptions

if TYPE_CHECKING:
    from abawbench.data.index import SampleIndex
    from abawbench.data.problems import Problem
    from abawbench.tracks import Track

SPLIT_DOMAINS = {("lsd", "train"): "synthetic", ("lsd", "validation"): "real"}
"""The LSD tree trains on the clean synthetic domain and validates on the degraded real one."""


def read_split(root: Path, track: "Track", split: str, options: ReadOptions) -> "SampleIndex":
    """The official-layout reader: synthface trees are exactly the official format. Imported
    here, not at module level, so this plugin still loads if that plugin is broken."""
    from abawbench_builtins.abaw4.reader import read_split as official_read_split

    return official_read_split(root, track, split, options)


def scan_split(
    root: Path, track: "Track", split: str, options: ReadOptions
) -> "tuple[SampleIndex | None, list[Problem]]":
    """The official-layout reader in collect-all mode (``abawbench data check``)."""
    from abawbench_builtins.abaw4.reader import scan_split as official_scan_split

    return official_scan_split(root, track, split, options)


def generate(track_name: str, out_dir: Path, size: int | None, seed: int) -> Path:
    from abawbench_builtins.synthface.tree import generate as generate_tree

    return generate_tree(track_name, out_dir, size, seed)


def default_root(track_name: str, cache_dir: Path) -> Path:
    from abawbench_builtins.synthface.tree import default_root as cached_root

    return cached_root(track_name, cache_dir)


@hookimpl
def abawbench_register_datasets(register) -> None:
    register(
        DatasetSpec(
            name="synthface",
            tracks=("mtl", "lsd"),
            read_split=read_split,
            scan_split=scan_split,
            split_domains=SPLIT_DOMAINS,
            description=(
                "embedded procedural faces driven by 12 FACS AUs: MTL videos with s-Aff-Wild2 "
                "label missingness; LSD synthetic renders -> degraded 'real' photos"
            ),
            default_root=default_root,
            generate=generate,
        )
    )
