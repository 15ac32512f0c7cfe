"""The seed's LSD normalisation, as a model wrapper: ``synthstats:<model>``.

HUST-ANT's LSD code normalises every image with the statistics of the synthetic training set,
mean (0.4734, 0.3544, 0.3267) and std (0.1891, 0.1597, 0.1504), not with the ImageNet statistics
its backbones were trained with (``LSD/synthetic.py`` and ``LSD/DLN.py``, the ``transform``'s
``Normalize``). ``synthstats:<model>`` is ``<model>`` (any registered name: ``resnet50.tv_in1k``,
``dln:resnet50.tv_in1k``, ...) with those statistics in its data config. The data config is part
of every feature-cache key, so these features never mix with the model's own.
"""

from __future__ import annotations

import dataclasses

from abawbench.specs import ModelFamily, ModelOptions, ModelSpec

PREFIX = "synthstats:"
SYNTHETIC_MEAN = (0.4734, 0.3544, 0.3267)
SYNTHETIC_STD = (0.1891, 0.1597, 0.1504)


def synthstats_spec(inner: str) -> ModelSpec:
    """The spec of ``synthstats:<inner>``; ``inner`` is looked up when the model is built."""
    from abawbench.plugins import get_host

    inner_spec = get_host().models.get(inner)  # a misspelt inner name fails now, with suggestions

    def build(options: ModelOptions):
        backbone = inner_spec.build(options)
        config = {**backbone.data_config, "mean": SYNTHETIC_MEAN, "std": SYNTHETIC_STD}
        return dataclasses.replace(backbone, name=PREFIX + inner, data_config=config)

    return ModelSpec(name=PREFIX + inner, build=build,
                     description=f"{inner} normalised by the synthetic LSD training statistics (the seed's LSD code)")


FAMILY = ModelFamily(prefix=PREFIX, resolve=synthstats_spec, known_names=lambda: [],
                     description="any model normalised by the synthetic LSD training statistics, "
                                 "e.g. synthstats:resnet50.tv_in1k")
