"""One exception hierarchy for the whole project.

The command line turns any :class:`AbawbenchError` into one clear line and an exit code;
anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class AbawbenchError(Exception):
    """Base of every error abawbench raises on purpose. ``exit_code`` is what the CLI returns."""

    exit_code = 2


class ConfigError(AbawbenchError):
    """A configuration file or flag is invalid."""


class DataFormatError(AbawbenchError):
    """Input data does not follow the official format. The message names file, line and problem."""


class PluginError(AbawbenchError):
    """A plugin failed to load or register, or a registry lookup failed."""


class UnknownNameError(PluginError):
    """A name was looked up that no plugin registered; the message suggests close matches."""


class CacheError(AbawbenchError):
    """A cache entry is unusable (corrupt, stale, locked too long)."""


class MetricInputError(AbawbenchError):
    """Predictions or labels given to a metric are malformed (shape, NaN, out of range)."""


class RunFailedError(AbawbenchError):
    """A benchmark run (or one of its entries) failed while training or evaluating."""

    exit_code = 1


class NotComparableError(AbawbenchError):
    """Two sets of results cannot be compared: measured with other seeds or on other data, or
    one side holds nothing of the track."""


class StorageError(AbawbenchError):
    """A file could not be written where the user asked (a full disk, an unwritable folder);
    nothing half-written is left under the final name."""
