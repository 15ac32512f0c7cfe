"""What plugins register: one small, lazy description per model, dataset, loss and ensemble.

A spec is cheap to create; the expensive object (a network, an index) is made only when its
``build``/``read_split`` callable is called. That is what keeps ``abawbench list`` fast and
lets one broken model fail alone. Tracks are registered as :class:`abawbench.tracks.Track`
instances, which are cheap by nature.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Protocol

if TYPE_CHECKING:
    import numpy as np
    import torch
    from torch import nn

    from abawbench.data.index import SampleIndex
    from abawbench.data.problems import Problem
    from abawbench.tracks import Predictions, Track


# --------------------------------------------------------------------------- models


@dataclass(frozen=True)
class ModelOptions:
    """How to build a backbone. ``weights``: ``"random"``, ``"hub"``, or a path to a local
    safetensors / state-dict file. ``image_size`` overrides the native input size."""

    weights: str = "random"
    image_size: int | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class Backbone:
    """A built feature extractor.

    ``module`` maps normalised images ``[N, 3, H, W]`` to pooled features ``[N, feature_dim]``.
    ``data_config`` is the exact preprocessing (timm's resolved data config: ``input_size``,
    ``mean``, ``std``, ``interpolation``, ``crop_pct``); it belongs in every cache key, as does
    ``weights_digest`` (a digest of the weights' source: file bytes, hub tag, or random seed).
    """

    name: str
    module: "nn.Module"
    feature_dim: int
    data_config: dict[str, Any]
    weights_digest: str
    make_heads: Callable[[tuple, str], "nn.Module"] | None = None
    """Optional: ``make_heads(track.tasks, head_kind)`` builds the model's own task heads (for
    architectures whose heads read more than a pooled vector, e.g. spatial AU attention). The
    heads map ``module``'s output to raw outputs per task. None: abawbench's generic heads."""
    expression: "ExpressionHead | None" = None
    """Optional: the model's own expression classifier, for models trained to recognise
    expressions; the ``zero-shot`` protocol scores it without training anything."""
    pretrained: Mapping[str, str] | None = None
    """Optional: where pretrained weights came from (``file``, ``sha256``, ``source``,
    ``licence``, ``trained_on``), recorded in every result of the model."""


@dataclass
class ExpressionHead:
    """A model's own expression classifier: ``module`` maps the same normalised images as the
    backbone's ``module`` to class probabilities ``[N, len(classes)]``, in ``classes`` order.
    Class names are the model's own (e.g. ``"happy"``); the zero-shot protocol maps them to a
    track's classes by name (:mod:`abawbench.training.zero_shot`)."""

    classes: tuple[str, ...]
    module: "nn.Module"


@dataclass(frozen=True)
class ModelSpec:
    """A registered model. ``build`` is only called when the model is used.

    ``default_run``: the plugin proposes this model for ``abawbench run`` when the configuration
    names no models (it must run in minutes on a CPU with random weights).
    """

    name: str
    build: Callable[[ModelOptions], Backbone]
    description: str = ""
    default_run: bool = False


@dataclass(frozen=True)
class ModelFamily:
    """A family of models addressed as ``<prefix><architecture>`` (e.g. ``timm:resnet50``).

    ``resolve(architecture)`` returns the :class:`ModelSpec` or raises
    :class:`abawbench.errors.UnknownNameError`; ``known_names()`` lists architectures for
    did-you-mean suggestions (may be long, is only called on a failed lookup).
    """

    prefix: str
    resolve: Callable[[str], ModelSpec]
    known_names: Callable[[], list[str]]
    description: str = ""

    @property
    def name(self) -> str:
        return self.prefix + "*"


# --------------------------------------------------------------------------- datasets


@dataclass(frozen=True)
class ReadOptions:
    """How strictly to read a split. Strict (the default) refuses any bad row; ``skip_bad``
    drops bad rows and counts them (a run with it then also drops undecodable images, for every
    dataset: :func:`abawbench.data.decode.drop_undecodable`); ``check_images`` verifies that image files exist."""

    skip_bad: bool = False
    check_images: bool = True
    cache_dir: Path | None = None
    """Where readers may keep derived files (parsed annotations, oversampled copies);
    None: ``$ABAWBENCH_CACHE`` or ``~/.cache/abawbench``."""
    test_image_folder: str | None = None
    """The folder (relative to the root) holding the test images a release list names, where
    a layout leaves it open; None: the dataset looks in its plausible folders."""


@dataclass(frozen=True)
class DatasetSpec:
    """A registered dataset.

    ``read_split(root, track, split, options)`` returns the :class:`SampleIndex` of a split
    (``"train"``, ``"validation"`` or ``"test"``). ``default_root(track_name, cache_dir)``, when
    set, materialises an embedded copy of the dataset (generating it once) and returns its root:
    a dataset with it can run without any ``--data`` path. ``generate(track_name, out_dir,
    size, seed)``, when set, writes a fresh tree in the dataset's own layout (``abawbench data
    synth``); ``size`` None means the dataset's default size.
    """

    name: str
    tracks: tuple[str, ...]
    read_split: Callable[[Path, "Track", str, ReadOptions], "SampleIndex"]
    description: str = ""
    default_root: Callable[[str, Path], Path] | None = None
    generate: Callable[[str, Path, int | None, int], Path] | None = None
    auto_select: bool = True
    """False for a variant of another dataset (e.g. an oversampled copy): it is used only when
    a run names it with ``--dataset``, so it never makes the automatic choice ambiguous."""
    scan_split: Callable[[Path, "Track", str, ReadOptions], "tuple[SampleIndex | None, list[Problem]]"] | None = None
    """Optional: ``read_split`` in collect-all mode, for ``abawbench data check``: the index with
    bad rows dropped (None when the split cannot be read at all) and every problem found, in
    file order, never raising for bad data; raises
    :class:`~abawbench.data.problems.SplitMissing` when the split is absent. Without it, the
    check reports only the first problems a strict ``read_split`` names."""
    split_domains: Mapping[tuple[str, str], str] = field(default_factory=dict, hash=False)
    """What kind of images a split holds, by ``(track_name, split)``, where the dataset says
    (e.g. synthetic training and real validation faces); shown by ``abawbench data preview``."""


# --------------------------------------------------------------------------- losses


@dataclass(frozen=True)
class LossContext:
    """What a loss may know about the training data when it is built.

    ``class_counts[task]``: per class (multiclass) or per label positives (multilabel) counts on
    the training split; ``label_counts[task]``: rows where the task's label is present.
    ``options``: the loss's own settings from the configuration.
    """

    class_counts: Mapping[str, "np.ndarray"] = field(default_factory=dict)
    label_counts: Mapping[str, int] = field(default_factory=dict)
    options: Mapping[str, Any] = field(default_factory=dict)


class LossFunction(Protocol):
    """A built loss: raw outputs (logits for classification, values for regression) and targets
    keyed by task, targets as ``(values, mask)`` tensors. Rows with ``mask == False`` must not
    contribute. Returns a scalar tensor."""

    def __call__(
        self,
        outputs: Mapping[str, "torch.Tensor"],
        targets: Mapping[str, tuple["torch.Tensor", "torch.Tensor"]],
    ) -> "torch.Tensor": ...


@dataclass(frozen=True)
class LossSpec:
    """A registered loss. ``build(track, context)`` returns a :class:`LossFunction` (usually an
    ``nn.Module``). ``tasks`` names the task kinds it can serve (for listing and validation)."""

    name: str
    build: Callable[["Track", LossContext], LossFunction]
    description: str = ""
    task_kinds: tuple[str, ...] = ("regression", "multiclass", "multilabel")


# --------------------------------------------------------------------------- ensembles


class Ensemble(Protocol):
    """A built ensemble: fits (optionally) on validation predictions, then combines members'
    predictions (probabilities) task by task."""

    def fit(
        self, members: list["Predictions"], labels: Mapping[str, Any], track: "Track"
    ) -> None: ...

    def combine(self, members: list["Predictions"], track: "Track") -> "Predictions": ...


@dataclass(frozen=True)
class EnsembleSpec:
    """A registered ensemble method. ``build(options)`` returns an :class:`Ensemble`."""

    name: str
    build: Callable[[Mapping[str, Any]], Ensemble]
    description: str = ""


# --------------------------------------------------------------------------- augmentations


@dataclass(frozen=True)
class AugmentationSpec:
    """A registered training augmentation (fine-tuning only; evaluation never gets any).

    ``build(base)`` wraps ``base``, the backbone's deterministic preprocessing (decoded image ->
    uint8 pixels ``[3, H, W]``), in a random transform of the decoded image and returns the new
    callable. It draws from torch's random stream, which the protocol seeds per worker, so a run
    stays reproducible.
    """

    name: str
    build: Callable[[Callable[[Any], Any]], Callable[[Any], Any]]
    description: str = ""
