"""Keras HDF5 models rebuilt in torch from the file alone (h5py, no TensorFlow).

A Keras ``.h5``/``.hdf5`` model file stores its architecture as JSON (``model_config``) and its
weights as one HDF5 group per layer. This module turns the layer list into an equivalent torch
graph and loads the weights into it. What must match Keras exactly, since the converted model is
checked against Keras's own outputs (tests/fixtures/make_fer_reference.py):

- kernels: Conv2D ``(kh, kw, in, out)`` -> torch ``(out, in, kh, kw)``; SeparableConv2D is a
  depthwise ``(kh, kw, in, mult)`` -> ``(in * mult, 1, kh, kw)`` convolution with ``groups=in``
  followed by a pointwise one; Dense ``(in, out)`` -> ``(out, in)``;
- 'same' padding as TensorFlow pads it: ``total = max((ceil(n / s) - 1) * s + k - n, 0)``, with
  the odd pixel at the bottom/right (torch's symmetric ``padding=`` would put it on both sides);
  max pooling pads with -inf, so padding never wins;
- BatchNormalization with the epsilon the file states (Keras's default is 1e-3, torch's 1e-5),
  over the channel axis only (3 or -1 of an image tensor, 1 or -1 of a feature vector);
- channels-last semantics where they leak: Flatten flattens in (H, W, C) order; Dense is
  accepted on a feature vector only (on an image tensor Keras applies it to the channel axis).

A layer type not listed in :data:`LAYER_BUILDERS` is refused with an error naming the layer, its
class and the file, never skipped: a silently dropped layer would give a different network.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from abawbench.errors import ConfigError

ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "linear": lambda x: x,
    "relu": F.relu,
    "sigmoid": torch.sigmoid,
    "tanh": torch.tanh,
    "elu": F.elu,
    "softmax": lambda x: torch.softmax(x, dim=1),  # channels are dim 1 here, Keras's last axis
}


class KerasModelError(ConfigError):
    """A Keras model file that cannot be rebuilt faithfully (unknown layer, missing weights)."""


def same_padding(size: int, kernel: int, stride: int, dilation: int = 1) -> tuple[int, int]:
    """TensorFlow's 'same' padding of one axis: ``(before, after)``, the odd pixel after."""
    effective = (kernel - 1) * dilation + 1
    total = max((math.ceil(size / stride) - 1) * stride + effective - size, 0)
    return total // 2, total - total // 2


class KerasPad(nn.Module):
    """Pads an NCHW tensor as Keras's ``padding`` mode does for a given kernel and stride."""

    def __init__(self, mode: str, kernel: tuple[int, int], stride: tuple[int, int],
                 dilation: tuple[int, int] = (1, 1), value: float = 0.0) -> None:
        super().__init__()
        self.mode, self.kernel, self.stride, self.dilation, self.value = mode, kernel, stride, dilation, value

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "valid":
            return x
        top, bottom = same_padding(x.shape[2], self.kernel[0], self.stride[0], self.dilation[0])
        left, right = same_padding(x.shape[3], self.kernel[1], self.stride[1], self.dilation[1])
        if top == bottom == left == right == 0:
            return x
        return F.pad(x, (left, right, top, bottom), value=self.value)


class Conv(nn.Module):
    """Conv2D or SeparableConv2D (depthwise then pointwise), with Keras padding and activation."""

    def __init__(self, pad: KerasPad, convs: list[nn.Conv2d], activation: str) -> None:
        super().__init__()
        self.pad = pad
        self.convs = nn.ModuleList(convs)
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pad(x)
        for conv in self.convs:
            x = conv(x)
        return ACTIVATIONS[self.activation](x)


class MaxPool(nn.Module):
    def __init__(self, pad: KerasPad, pool: tuple[int, int], stride: tuple[int, int]) -> None:
        super().__init__()
        self.pad, self.pool, self.stride = pad, pool, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.max_pool2d(self.pad(x), self.pool, self.stride)


class Dense(nn.Module):
    def __init__(self, linear: nn.Linear, activation: str) -> None:
        super().__init__()
        self.linear, self.activation = linear, activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return ACTIVATIONS[self.activation](self.linear(x))


class Lambda(nn.Module):
    """A parameter-free layer (activation, pooling, flatten): a named function of its input."""

    def __init__(self, function: Callable[[torch.Tensor], torch.Tensor], what: str) -> None:
        super().__init__()
        self.function, self.what = function, what

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.function(x)

    def extra_repr(self) -> str:
        return self.what


class Add(nn.Module):
    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        total = inputs[0]
        for other in inputs[1:]:
            total = total + other
        return total


@dataclass
class LayerContext:
    """What a layer builder gets: the layer's config, its weights in file order, and where it
    came from (for errors)."""

    name: str
    class_name: str
    config: Mapping[str, Any]
    weights: list[np.ndarray]
    source: str
    input_rank: int | None = None
    """The rank of the layer's input with the batch axis (4: an image tensor, 2: a feature
    vector); None when the model does not declare its input shape."""

    def fail(self, problem: str) -> KerasModelError:
        return KerasModelError(f"{self.source}: layer {self.name!r} ({self.class_name}): {problem}")

    def pair(self, key: str, default: Any = None) -> tuple[int, int]:
        value = self.config.get(key, default)
        if isinstance(value, int):
            return value, value
        return int(value[0]), int(value[1])

    def take(self, count: int) -> list[np.ndarray]:
        if len(self.weights) != count:
            raise self.fail(f"expected {count} weight arrays, the file has {len(self.weights)}")
        return self.weights

    def activation(self) -> str:
        name = self.config.get("activation", "linear")
        if name not in ACTIVATIONS:
            raise self.fail(f"activation {name!r} is not supported (supported: {', '.join(ACTIVATIONS)})")
        return name

    def padding(self, kernel: tuple[int, int], stride: tuple[int, int], value: float = 0.0) -> KerasPad:
        mode = self.config.get("padding", "valid")
        if mode not in ("valid", "same"):
            raise self.fail(f"padding {mode!r} is not supported (valid, same)")
        if self.config.get("data_format", "channels_last") != "channels_last":
            raise self.fail(f"data_format {self.config['data_format']!r} is not supported (channels_last)")
        return KerasPad(mode, kernel, stride, self.pair("dilation_rate", 1), value)


def _tensor(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))


def build_conv2d(layer: LayerContext) -> nn.Module:
    kernel, stride, dilation = layer.pair("kernel_size"), layer.pair("strides", 1), layer.pair("dilation_rate", 1)
    use_bias = bool(layer.config.get("use_bias", True))
    arrays = layer.take(2 if use_bias else 1)
    kh, kw, channels_in, channels_out = arrays[0].shape
    conv = nn.Conv2d(channels_in, channels_out, (kh, kw), stride=stride, dilation=dilation, bias=use_bias)
    conv.weight.data = _tensor(arrays[0].transpose(3, 2, 0, 1))
    if use_bias:
        conv.bias.data = _tensor(arrays[1])
    return Conv(layer.padding(kernel, stride), [conv], layer.activation())


def build_separable_conv2d(layer: LayerContext) -> nn.Module:
    kernel, stride, dilation = layer.pair("kernel_size"), layer.pair("strides", 1), layer.pair("dilation_rate", 1)
    use_bias = bool(layer.config.get("use_bias", True))
    arrays = layer.take(3 if use_bias else 2)
    kh, kw, channels_in, multiplier = arrays[0].shape
    depthwise = nn.Conv2d(channels_in, channels_in * multiplier, (kh, kw), stride=stride, dilation=dilation,
                          groups=channels_in, bias=False)
    # Keras's depthwise output channel c * mult + m comes from input channel c and multiplier m.
    depthwise.weight.data = _tensor(arrays[0].reshape(kh, kw, channels_in * multiplier).transpose(2, 0, 1)[:, None])
    channels_out = arrays[1].shape[3]
    pointwise = nn.Conv2d(channels_in * multiplier, channels_out, 1, bias=use_bias)
    pointwise.weight.data = _tensor(arrays[1].transpose(3, 2, 0, 1))
    if use_bias:
        pointwise.bias.data = _tensor(arrays[2])
    return Conv(layer.padding(kernel, stride), [depthwise, pointwise], layer.activation())


def build_batch_normalization(layer: LayerContext) -> nn.Module:
    axis = layer.config.get("axis", -1)
    if isinstance(axis, list):
        axis = axis[0] if len(axis) == 1 else axis
    # Keras's axis counts in its channels-last layout: the channel axis is 3 of a 4-D image
    # tensor and 1 of a 2-D feature vector; axis 1 of an image tensor is its height, so which
    # axes are the channel axis depends on the input's rank. Without a known rank only -1 is
    # unambiguous.
    channel_axes = {4: (-1, 3), 2: (-1, 1)}.get(layer.input_rank, ()) if layer.input_rank else (-1,)
    if axis not in channel_axes:
        rank = f"a rank-{layer.input_rank} input" if layer.input_rank else "an input of undeclared rank"
        raise layer.fail(f"normalisation over axis {axis!r} of {rank} is not supported (the channel axis only: "
                         f"{', '.join(map(str, channel_axes)) or 'none for this rank'})")
    scale, center = bool(layer.config.get("scale", True)), bool(layer.config.get("center", True))
    arrays = layer.take(2 + scale + center)
    gamma = arrays.pop(0) if scale else None
    beta = arrays.pop(0) if center else None
    mean, variance = arrays
    norm = nn.BatchNorm2d(mean.shape[0], eps=float(layer.config.get("epsilon", 1e-3)))
    norm.running_mean.data, norm.running_var.data = _tensor(mean), _tensor(variance)
    norm.weight.data = _tensor(gamma) if gamma is not None else torch.ones(mean.shape[0])
    norm.bias.data = _tensor(beta) if beta is not None else torch.zeros(mean.shape[0])
    return _ChannelNorm(norm.eval())


class _ChannelNorm(nn.Module):
    """Inference-mode batch normalisation over dim 1 of a 2-D or 4-D tensor (running statistics
    always: the converted network is a fixed function, never trained through Keras's BN)."""

    def __init__(self, norm: nn.BatchNorm2d) -> None:
        super().__init__()
        self.norm = norm

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = self.norm
        return F.batch_norm(x, n.running_mean, n.running_var, n.weight, n.bias, False, 0.0, n.eps)


def build_activation(layer: LayerContext) -> nn.Module:
    name = layer.activation()
    return Lambda(ACTIVATIONS[name], name)


def build_max_pooling2d(layer: LayerContext) -> nn.Module:
    layer.take(0)
    pool = layer.pair("pool_size", 2)
    stride = layer.pair("strides", None) if layer.config.get("strides") is not None else pool
    return MaxPool(layer.padding(pool, stride, value=-math.inf), pool, stride)


def build_global_average_pooling2d(layer: LayerContext) -> nn.Module:
    layer.take(0)
    if layer.config.get("keepdims", False):
        raise layer.fail("keepdims=True is not supported")
    return Lambda(lambda x: x.mean(dim=(2, 3)), "global average pooling")


def build_flatten(layer: LayerContext) -> nn.Module:
    layer.take(0)
    # Keras flattens channels-last tensors: (H, W, C) order, which a following Dense expects.
    return Lambda(lambda x: x.permute(0, 2, 3, 1).flatten(1) if x.dim() == 4 else x.flatten(1), "flatten (HWC)")


def build_dense(layer: LayerContext) -> nn.Module:
    if layer.input_rank is not None and layer.input_rank > 2:
        # Keras applies Dense to the last (channel) axis of a channels-last tensor; the torch
        # tensor here is channels-first, so nn.Linear would mix the wrong axis.
        raise layer.fail(f"a rank-{layer.input_rank} input is not supported (Dense on a feature vector only: "
                         f"flatten or pool first)")
    use_bias = bool(layer.config.get("use_bias", True))
    arrays = layer.take(2 if use_bias else 1)
    linear = nn.Linear(arrays[0].shape[0], arrays[0].shape[1], bias=use_bias)
    linear.weight.data = _tensor(arrays[0].T)
    if use_bias:
        linear.bias.data = _tensor(arrays[1])
    return Dense(linear, layer.activation())


def build_identity(layer: LayerContext) -> nn.Module:
    layer.take(0)
    return Lambda(lambda x: x, f"{layer.class_name} (identity at inference)")


def build_add(layer: LayerContext) -> nn.Module:
    layer.take(0)
    return Add()


LAYER_BUILDERS: dict[str, Callable[[LayerContext], nn.Module]] = {
    "Conv2D": build_conv2d,
    "SeparableConv2D": build_separable_conv2d,
    "BatchNormalization": build_batch_normalization,
    "Activation": build_activation,
    "MaxPooling2D": build_max_pooling2d,
    "GlobalAveragePooling2D": build_global_average_pooling2d,
    "Add": build_add,
    "Dense": build_dense,
    "Flatten": build_flatten,
    "Dropout": build_identity,
}
"""Every layer class the reader rebuilds; anything else is refused."""

INPUT_LAYER = "InputLayer"


class KerasGraph(nn.Module):
    """A Keras functional (or sequential) model as a torch module over NCHW tensors.

    ``forward(x)`` returns the model's output; ``forward(x, until=name)`` stops at layer
    ``name`` and returns its output (e.g. the features before a classifier).
    """

    def __init__(self, layers: list[tuple[str, list[str], nn.Module]], input_name: str, output_name: str,
                 input_shape: tuple[int | None, ...]) -> None:
        super().__init__()
        self.order = [(name, inputs) for name, inputs, _ in layers]
        self.blocks = nn.ModuleDict({_key(name): module for name, _, module in layers})
        self.input_name, self.output_name = input_name, output_name
        self.input_shape = input_shape
        """Keras's ``batch_input_shape`` without the batch: ``(H, W, C)``."""

    @property
    def layer_names(self) -> list[str]:
        return [name for name, _ in self.order]

    def forward(self, x: torch.Tensor, until: str | None = None) -> torch.Tensor:
        target = until or self.output_name
        if target != self.input_name and target not in self.layer_names:
            raise KerasModelError(f"no layer {target!r} in this model; layers: {', '.join(self.layer_names)}")
        # Channels-last is Keras's own layout, and torch's CPU kernels for max pooling and
        # depthwise convolutions are several times faster in it (docs/bench/pretrained.md).
        outputs = {self.input_name: x.contiguous(memory_format=torch.channels_last) if x.dim() == 4 else x}
        for name, inputs in self.order:
            if target in outputs:
                break
            outputs[name] = self.blocks[_key(name)](*(outputs[i] for i in inputs))
        return outputs[target]


def _key(name: str) -> str:
    return name.replace(".", "_")


def read_keras_model(path: str | Path) -> KerasGraph:
    """The model stored in Keras HDF5 file ``path`` as a torch :class:`KerasGraph` in eval mode."""
    import h5py

    path = Path(path)
    try:
        handle = h5py.File(path, "r")
    except OSError as exc:
        raise KerasModelError(f"{path}: not a readable HDF5 file ({exc})") from None
    with handle:
        raw = handle.attrs.get("model_config")
        if raw is None:
            raise KerasModelError(f"{path}: no 'model_config' attribute: a weights-only file, not a Keras model")
        config = json.loads(raw.decode() if isinstance(raw, bytes) else raw)
        weights_root = handle["model_weights"] if "model_weights" in handle else handle
        layer_configs, input_name, output_name = _layer_list(config, path)
        layers = []
        input_shape: tuple[int | None, ...] = ()
        ranks: dict[str, int | None] = {}  # each layer's output rank, to check layers that depend on it
        for layer_config in layer_configs:
            name, class_name = layer_config["config"].get("name", layer_config.get("name")), layer_config["class_name"]
            if class_name == INPUT_LAYER:
                declared = layer_config["config"].get("batch_input_shape")
                input_shape = tuple((declared or (None,))[1:])
                ranks[name] = len(declared) if declared and len(declared) > 1 else None
                continue
            input_rank, ranks[name] = _output_rank(class_name, [ranks.get(i) for i in layer_config["_inputs"]])
            builder = LAYER_BUILDERS.get(class_name)
            if builder is None:
                raise KerasModelError(f"{path}: layer {name!r} has type {class_name!r}, which this reader cannot "
                                      f"rebuild (supported: {', '.join(LAYER_BUILDERS)})")
            context = LayerContext(name, class_name, layer_config["config"], _layer_weights(weights_root, name),
                                   str(path), input_rank)
            layers.append((name, layer_config["_inputs"], builder(context)))
    return KerasGraph(layers, input_name, output_name, input_shape).eval()


def _output_rank(class_name: str, input_ranks: list[int | None]) -> tuple[int | None, int | None]:
    """A layer's input rank and output rank from its inputs' ranks (None: unknown)."""
    known = {rank for rank in input_ranks if rank is not None}
    rank = known.pop() if len(known) == 1 and None not in input_ranks else None
    if class_name in ("GlobalAveragePooling2D", "Flatten"):
        return rank, 2
    return rank, rank


def _layer_list(config: Mapping[str, Any], path: Path) -> tuple[list[dict[str, Any]], str, str]:
    """The layer configs in execution order, each with ``_inputs`` (names of the layers it
    reads), and the names of the input and output layers."""
    class_name = config.get("class_name")
    body = config.get("config")
    if class_name == "Sequential":
        items = body if isinstance(body, list) else body.get("layers", [])
        layers, previous = [], "input"
        if items and items[0]["class_name"] == INPUT_LAYER:
            previous = items[0]["config"]["name"]
        else:
            shape = (items[0]["config"].get("batch_input_shape") if items else None) or (None,)
            layers.append({"class_name": INPUT_LAYER, "config": {"name": previous, "batch_input_shape": shape}})
        for item in items:
            item = dict(item, _inputs=[previous] if item["class_name"] != INPUT_LAYER else [])
            layers.append(item)
            previous = item["config"]["name"]
        return layers, layers[0]["config"]["name"], previous
    if class_name in ("Model", "Functional"):
        if len(body["input_layers"]) != 1 or len(body["output_layers"]) != 1:
            raise KerasModelError(f"{path}: only models with one input and one output are supported")
        layers = []
        for item in body["layers"]:
            nodes = item.get("inbound_nodes") or []
            if len(nodes) > 1:
                raise KerasModelError(f"{path}: layer {item['name']!r} is shared (called {len(nodes)} times); "
                                      f"shared layers are not supported")
            inputs = [inbound[0] for inbound in nodes[0]] if nodes else []
            layers.append(dict(item, _inputs=inputs))
        return layers, body["input_layers"][0][0], body["output_layers"][0][0]
    raise KerasModelError(f"{path}: model class {class_name!r} is not supported (Sequential, Model, Functional)")


def _layer_weights(root: Any, name: str) -> list[np.ndarray]:
    """A layer's weight arrays in the order Keras saved them (its ``weight_names``)."""
    if name not in root:
        return []
    group = root[name]
    names = [n.decode() if isinstance(n, bytes) else str(n) for n in group.attrs.get("weight_names", [])]
    return [np.asarray(group[n]) for n in names]
