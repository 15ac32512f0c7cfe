"""Built-in abawbench plugin: the two ABAW4 tracks, ``mtl`` and ``lsd``.

They register through the same hook a third-party track would use; the core never imports
this package.
"""

from __future__ import annotations

from typing import Callable

from abawbench.hookspecs import hookimpl

from abawbench_builtins.tracks.lsd import LSDTrack
from abawbench_builtins.tracks.mtl import MTLTrack

__all__ = ["LSDTrack", "MTLTrack"]


@hookimpl
def abawbench_register_tracks(register: Callable) -> None:
    register(MTLTrack())
    register(LSDTrack())
