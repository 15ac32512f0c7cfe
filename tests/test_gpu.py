"""The CUDA paths, run only where a CUDA device is present (skipped in CI and on laptops).

The CPU suite checks every device decision with a faked ``torch.cuda``; these tests run the
real thing on a GPU (``scripts/device_check.sh``): uint8 batches normalised on the card,
bf16 autocast + channels_last extraction against the CPU, and whole runs (linear probe,
fine-tune with augmentation, predict) with ``device = "cuda"``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from abawbench import cli
from abawbench.plugins import load_plugins
from abawbench.features.preprocess import Preprocessing
from abawbench.run.runner import Runner
from abawbench.specs import ModelOptions

from test_protocol import _config, extract_into_sink, lsd_tree, mtl_tree, tiny_host, train_split  # noqa: F401 (fixtures)

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

CUDA = torch.device("cuda")


def test_normalize_on_the_gpu_equals_the_cpu_table():
    preprocessing = Preprocessing({"input_size": [3, 16, 16], "interpolation": "bicubic", "crop_pct": 0.875,
                                   "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]})
    batch = torch.randint(0, 256, (4, 3, 16, 16), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    assert torch.equal(preprocessing.normalize(batch.to(CUDA)).cpu(), preprocessing.normalize(batch))


def test_bf16_extraction_matches_the_cpu_features(tmp_path, lsd_tree):  # noqa: F811
    host = load_plugins(strict=True)  # the real timm plugin, no tiny test models needed
    train = train_split(tmp_path, lsd_tree, host, models=["timm:resnet10t"])
    features = {}
    for device in (torch.device("cpu"), CUDA):
        backbone = host.models.get("timm:resnet10t").build(ModelOptions(image_size=64, extra={"seed": 0}))
        features[device.type] = extract_into_sink(backbone, train, device, batch_size=32, num_workers=2)
    cpu, gpu = features["cpu"], features["cuda"]
    assert np.isfinite(gpu).all()
    relative = np.linalg.norm(gpu - cpu) / np.linalg.norm(cpu)
    assert relative < 0.05, relative  # bf16 rounding, not a different computation


@pytest.mark.parametrize("protocol", [
    {"name": "linear-probe", "epochs": 3, "batch_size": 16, "bootstrap": 20},
    {"name": "finetune", "epochs": 2, "batch_size": 16, "bootstrap": 0, "augmentation": "paper", "num_workers": 2},
    {"name": "linear-probe", "epochs": 3, "batch_size": 16, "bootstrap": 20, "pixel_cache": True},
    {"name": "finetune", "epochs": 2, "batch_size": 16, "bootstrap": 0, "pixel_cache": True},
], ids=["linear-probe", "finetune-paper-augmentation", "linear-probe-pixel-cache", "finetune-pixel-cache"])
def test_whole_run_on_the_gpu(tmp_path, lsd_tree, tiny_host, protocol):  # noqa: F811
    config = _config(tmp_path, lsd_tree, device="cuda", protocol=protocol)
    [result] = Runner(config, host=tiny_host, progress=False).run().results
    assert result.status == "completed", result.error
    assert result.device.startswith("cuda")  # not a silent CPU fallback
    assert 0 <= result.primary.value <= 1
    out = tmp_path / "predictions.txt"
    result_file = tmp_path / "runs" / "lsd" / result.entry / "seed0.json"
    # --data reloads the trained weights and predicts again, on the run's device (cuda)
    assert cli.main(["predict", str(result_file), "--out", str(out), "--data", str(lsd_tree)]) == 0
    assert out.read_text().splitlines()[0] == "image,expression"


def test_mtl_run_on_the_gpu(tmp_path, mtl_tree, tiny_host):  # noqa: F811
    config = _config(tmp_path, mtl_tree, track="mtl", device="cuda")
    [result] = Runner(config, host=tiny_host, progress=False).run().results
    assert result.status == "completed", result.error
    assert result.device.startswith("cuda")
    assert {"ccc_valence", "f1_expr", "f1_au"} <= set(result.sub_scores)
