"""Conformance of a model: it builds, maps ``[N, 3, H, W]`` to ``[N, feature_dim]`` (a model
with its own heads: ``[N, feature_dim, ...]``, and its heads give every task's outputs), is
deterministic in eval mode, and its weights digest follows its weights.

Why each: features are cached under the model's ``data_config`` and ``weights_digest``, so a
wrong ``feature_dim`` or a digest that stays put when the weights change is found only late in
a run (a cache error, or worse, features of other weights reused); a model that is not
deterministic in eval mode gives cached features that cannot be measured again.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, get_args

from abawbench.config import HeadName
from abawbench.conformance.core import Check, CheckFailed, CheckSkipped, expect, once

if TYPE_CHECKING:
    import torch

    from abawbench.specs import Backbone, ModelFamily, ModelSpec
    from abawbench.tracks import Track

BATCH = 2
HEAD_KINDS = get_args(HeadName)
"""The head kinds a run may ask for (``protocol.head``)."""


def model_checks(spec: "ModelSpec", image_size: int, tracks: list["Track"]) -> list[Check]:
    """The checks of one model, built twice at ``image_size`` pixels with random weights seeded
    as a run seeds them (``ModelOptions.extra["seed"]``: 0, then 1 for the digest check); its
    own heads, if it brings any, on the tasks of ``tracks``."""
    from abawbench.specs import ModelOptions

    def build(seed: int) -> "Backbone":
        return spec.build(ModelOptions(weights="random", image_size=image_size, extra={"seed": seed}))

    first = once(lambda: build(0), "not tried: the model did not build")
    features = once(lambda: _forward_twice(first()), "not tried: the model's forward pass failed")

    def builds() -> None:
        from abawbench.specs import Backbone

        backbone = first()
        expect(isinstance(backbone, Backbone),
               f"build returned {type(backbone).__name__}, not an abawbench.specs.Backbone")
        expect(isinstance(backbone.feature_dim, int) and backbone.feature_dim > 0,
               f"feature_dim is {backbone.feature_dim!r}, not a positive int")
        size = backbone.data_config.get("input_size")
        expect(isinstance(size, (list, tuple)) and len(size) == 3,
               f"data_config['input_size'] is {size!r}, not [3, H, W]")

    def maps_images_to_features() -> None:
        backbone = first()
        output, _ = features()
        expected = (BATCH, backbone.feature_dim)
        if backbone.make_heads is not None:  # its own heads read a map: [N, feature_dim, ...]
            expect(tuple(output.shape[:2]) == expected,
                   f"output shape is {list(output.shape)} but feature_dim says {list(expected)} "
                   f"(plus spatial dimensions, read by its own heads)")
        else:
            expect(tuple(output.shape) == expected,
                   f"output shape is {list(output.shape)} but feature_dim says {list(expected)}")
        expect(bool(output.isfinite().all()), "the features hold NaN or infinite values")
        if backbone.make_heads is not None:
            _check_own_heads(backbone, output, tracks)

    def deterministic() -> None:
        output, again = features()
        expect(output.shape == again.shape and bool((output - again).abs().max() <= 1e-5),
               "two forward passes in eval mode on the same images differ")

    def digest_follows_weights() -> None:
        from abawbench.run.features import tensors_digest

        backbone, other = first(), build(1)
        if not list(backbone.module.state_dict()):
            raise CheckSkipped("the model has no weights")
        if tensors_digest(other.module) == tensors_digest(backbone.module):
            raise CheckSkipped("seeds 0 and 1 give the same weights (ModelOptions.extra['seed'] "
                               "is not used), so there is no other initialisation to compare")
        expect(other.weights_digest != backbone.weights_digest,
               f"seeds 0 and 1 give different weights but the same weights_digest "
               f"{backbone.weights_digest!r}: the digest must name what makes the weights")

    return [
        Check("model", spec.name, "builds", builds),
        Check("model", spec.name, "maps [N, 3, H, W] to [N, feature_dim]", maps_images_to_features),
        Check("model", spec.name, "is deterministic in eval mode", deterministic),
        Check("model", spec.name, "weights digest follows the weights", digest_follows_weights),
    ]


def _check_own_heads(backbone: "Backbone", output: "torch.Tensor", tracks: list["Track"]) -> None:
    """A model's own heads (``Backbone.make_heads``) give every task of every track its
    ``[N, width]`` outputs from the module's output, for each head kind a run may ask for."""
    for track in tracks:
        for head_kind in HEAD_KINDS:
            raw = backbone.make_heads(track.tasks, head_kind)(output)
            for task in track.tasks:
                got = list(raw[task.name].shape) if task.name in raw else "nothing"
                expect(got == [BATCH, task.width],
                       f"make_heads(track {track.name!r} tasks, {head_kind!r}) gives task "
                       f"{task.name!r} {got}, expected {[BATCH, task.width]}")


def _forward_twice(backbone: "Backbone") -> tuple["torch.Tensor", "torch.Tensor"]:
    import torch

    _, height, width = backbone.data_config["input_size"]
    images = torch.randn(BATCH, 3, int(height), int(width), generator=torch.Generator().manual_seed(0))
    backbone.module.eval()
    with torch.no_grad():
        outputs = [backbone.module(images) for _ in range(2)]
    for output in outputs:
        if not isinstance(output, torch.Tensor):
            raise CheckFailed(f"the module returned {type(output).__name__}, not a tensor")
    return outputs[0], outputs[1]


def family_checks(family: "ModelFamily") -> list[Check]:
    """A family is checked by name lookups (its members are checked as models when named with
    ``--models``): ``known_names`` lists names, a known name resolves to a ``ModelSpec`` and an
    unknown one raises ``UnknownNameError`` (what the did-you-mean relies on)."""
    from abawbench.errors import UnknownNameError
    from abawbench.specs import ModelSpec

    known = once(lambda: list(family.known_names()), "not tried: known_names() failed")

    def lists_names() -> None:
        names = known()
        expect(bool(names) and all(isinstance(n, str) for n in names),
               "known_names() returned no names, or something other than strings")

    def resolves_known() -> None:
        member = known()[0]
        spec = family.resolve(member)
        expect(isinstance(spec, ModelSpec),
               f"resolve({member!r}) returned {type(spec).__name__}, not a ModelSpec")

    def refuses_unknown() -> None:
        try:
            family.resolve("no-such-model-0")
        except UnknownNameError:
            return
        raise CheckFailed("resolve('no-such-model-0') did not raise UnknownNameError")

    name = family.name
    return [
        Check("model", name, "known_names lists names", lists_names),
        Check("model", name, "resolves a known name", resolves_known),
        Check("model", name, "raises UnknownNameError for an unknown name", refuses_unknown),
    ]
