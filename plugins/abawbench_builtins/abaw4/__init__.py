"""Built-in abawbench plugin: ``abaw4``, the real challenge data in its official layout.

Everything the core must not know about the ABAW4 files lives in this package: the folder
and file names (``layout``), the readers of each split (``reader`` dispatches to
``mtl_reader``, ``lsd_reader`` and ``release_lists``) and the submission files
(``submission``). Other built-in plugins that write or read this layout (``synthface``,
``hust_ant``) import it from here.

The dataset only reads: the data is licensed by the organisers and cannot be generated or
fetched, so there is no ``default_root`` (a run names the tree with ``--data``) and no
``generate``.
"""

from __future__ import annotations

from typing import Callable

from abawbench.hookspecs import hookimpl
from abawbench.specs import DatasetSpec

from abawbench_builtins.abaw4.layout import LSD_DOMAINS
from abawbench_builtins.abaw4.reader import read_split, scan_split

LAYOUT_DOMAINS = {("lsd", split): domain for split, domain in LSD_DOMAINS.items()}
"""``DatasetSpec.split_domains`` of every tree in the official layout."""

DATASET = DatasetSpec(
    name="abaw4",
    tracks=("mtl", "lsd"),
    read_split=read_split,
    scan_split=scan_split,
    split_domains=LAYOUT_DOMAINS,
    description=(
        "the official ABAW4 data (s-Aff-Wild2 for mtl, the LSD synthetic/real images for lsd) "
        "in the organisers' layout; pass its root with --data"
    ),
)


@hookimpl
def abawbench_register_datasets(register: Callable) -> None:
    register(DATASET)
