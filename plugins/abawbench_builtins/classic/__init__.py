"""Built-in abawbench plugin: classic, weight-free feature extractors.

``hog``: histograms of oriented gradients (Dalal and Triggs), the classic facial-expression
baseline. It needs no weights and no hub, is deterministic, runs at hundreds of images per
second on a CPU, and is robust to the lighting and colour shifts between the synthetic and the
real domain, which makes it the strong offline baseline of the default benchmark.
"""

from __future__ import annotations

from abawbench.hookspecs import hookimpl
from abawbench.specs import ModelSpec

from abawbench_builtins.classic.hog import build_hog


@hookimpl
def abawbench_register_models(register) -> None:
    register(ModelSpec(
        name="hog",
        build=build_hog,
        description="HOG features (9 orientations, 8 px cells, block-normalised); no weights",
        default_run=True,
    ))
