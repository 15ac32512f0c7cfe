"""Built-in abawbench plugin: ensembles of saved member predictions.

``mean-prob``, ``weighted-prob`` and ``majority-vote`` combine the probabilities that finished
runs saved beside their result files (``abawbench ensemble``). The feature-vector ensemble
(one head on several backbones' fused features, model name ``a+b``) is not here: it trains a
new head, so it is part of the run (:mod:`abawbench.run.features`).
"""

from __future__ import annotations

from typing import Callable

from abawbench.hookspecs import hookimpl
from abawbench.specs import EnsembleSpec

from abawbench_builtins.ensembles.methods import MajorityVote, MeanProbability, WeightedProbability

__all__ = ["MajorityVote", "MeanProbability", "WeightedProbability"]


@hookimpl
def abawbench_register_ensembles(register: Callable) -> None:
    register(EnsembleSpec(
        name="mean-prob", build=MeanProbability,
        description="average of members' probabilities (argmax = the seed paper's summed softmax)",
    ))
    register(EnsembleSpec(
        name="weighted-prob", build=WeightedProbability,
        description="per-task simplex weights fitted on validation, scored out of fold (k-fold cross-fitting)",
    ))
    register(EnsembleSpec(
        name="majority-vote", build=MajorityVote,
        description="argmax votes (ties: summed probability), per-AU 0/1 majority, VA median",
    ))
