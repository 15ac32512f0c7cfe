"""Results: the schema of a run's result, its provenance, and its files (one atomic write).

Everything downstream (leaderboards, compare, ensembles, predict) reads runs through these
names; nothing here knows how a run is made.
"""

from abawbench.results.files import (
    entry_dir,
    iter_results,
    read_prediction_labels,
    read_predictions,
    read_result,
    read_weights,
    result_path,
    write_predictions,
    write_result,
    write_weights,
)
from abawbench.results.lookup import find_entry_result
from abawbench.results.provenance import git_commit, package_versions
from abawbench.results.schema import (
    NO_EFFECT_SETTINGS,
    RESULT_SCHEMA_VERSION,
    SELECTION_SPLITS,
    DataIdentity,
    EntrySpecModel,
    EpochRecord,
    PluginSupplier,
    ProtocolRecord,
    ResamplingRecord,
    RunResult,
    ScoreWithInterval,
    without_settings_digest,
)

__all__ = [
    "NO_EFFECT_SETTINGS",
    "RESULT_SCHEMA_VERSION",
    "SELECTION_SPLITS",
    "DataIdentity",
    "EntrySpecModel",
    "EpochRecord",
    "PluginSupplier",
    "ProtocolRecord",
    "ResamplingRecord",
    "RunResult",
    "ScoreWithInterval",
    "entry_dir",
    "find_entry_result",
    "git_commit",
    "iter_results",
    "package_versions",
    "read_prediction_labels",
    "read_predictions",
    "read_result",
    "read_weights",
    "result_path",
    "without_settings_digest",
    "write_predictions",
    "write_result",
    "write_weights",
]
