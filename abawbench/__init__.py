"""abawbench: a benchmark framework for the ABAW4 affective-behaviour tracks.

The core in this package names no concrete model, dataset, loss, ensemble or track: those are
plugins (see :mod:`abawbench.hookspecs`), and the built-in ones live in ``plugins/``.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("abawbench")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
