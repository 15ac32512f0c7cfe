"""Built-in abawbench plugin: ``abaw4``, the real challenge data in its official layout.

It only reads: the data is licensed by the organisers and cannot be generated or fetched, so
there is no ``default_root`` (a run names the tree with ``--data``) and no ``generate``.
The readers live in the core (:mod:`abawbench.data.official`) because every dataset plugin
that writes the official layout (the synthetic one included) reads through them too.
"""

from __future__ import annotations

from typing import Callable

from abawbench.data.official import read_split
from abawbench.hookspecs import hookimpl
from abawbench.specs import DatasetSpec

DATASET = DatasetSpec(
    name="abaw4",
    tracks=("mtl", "lsd"),
    read_split=read_split,
    description=(
        "the official ABAW4 data (s-Aff-Wild2 for mtl, the LSD synthetic/real images for lsd) "
        "in the organisers' layout; pass its root with --data"
    ),
)


@hookimpl
def abawbench_register_datasets(register: Callable) -> None:
    register(DATASET)
