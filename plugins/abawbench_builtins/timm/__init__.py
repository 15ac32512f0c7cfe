"""Built-in abawbench plugin: every timm architecture as a backbone.

Registers the family ``timm:<arch>`` (any name ``timm.list_models()`` knows, optionally with a
pretrained tag, ``timm:resnet50.a1_in1k``) and short names for the architectures the project
uses (see :mod:`abawbench_builtins.timm.catalog`). Registration imports neither timm nor torch: they are
loaded when a model is looked up or built, so listing stays fast and a broken timm install
breaks only the models that need it.
"""

from __future__ import annotations

from abawbench.hookspecs import hookimpl
from abawbench.specs import Backbone, ModelFamily, ModelOptions, ModelSpec

from abawbench_builtins.timm.catalog import NAMED_ARCHS

PREFIX = "timm:"


def model_spec(arch: str, name: str | None = None, description: str = "",
               default_run: bool = False) -> ModelSpec:
    """A lazy spec for ``arch``: building happens in ``spec.build(options)`` only."""

    def build(options: ModelOptions) -> Backbone:
        from abawbench_builtins.timm.build import build_backbone

        return build_backbone(arch, options)

    return ModelSpec(
        name=name or PREFIX + arch,
        build=build,
        description=description or f"timm {arch}",
        default_run=default_run,
    )


def resolve(arch: str) -> ModelSpec:
    """The spec of ``timm:<arch>``; UnknownNameError with close timm names for a typo."""
    from abawbench_builtins.timm.build import check_architecture

    return model_spec(check_architecture(arch))


def known_names() -> list[str]:
    from abawbench_builtins.timm.build import known_architectures

    return known_architectures()


@hookimpl
def abawbench_register_models(register) -> None:
    register(ModelFamily(
        prefix=PREFIX,
        resolve=resolve,
        known_names=known_names,
        description="any timm architecture, e.g. timm:convnext_tiny (weights: random, hub or a file)",
    ))
    for named in NAMED_ARCHS:
        register(model_spec(named.arch, name=named.name, description=named.description,
                            default_run=named.default_run))
