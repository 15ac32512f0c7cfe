"""The test kit (``abawbench.testing``) in a plugin author's own suite: a throw-away plugin
package is built and installed (offline, with pip), and its tests, three lines of conftest,
run the conformance checks in a separate pytest."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import abawbench
import abawbench_builtins

PYPROJECT = '''
[build-system]
requires = ["setuptools>=69"]
build-backend = "setuptools.build_meta"

[project]
name = "abawbench-kitdemo"
version = "0.1.0"

[project.entry-points.abawbench]
kitdemo = "abawbench_kitdemo"

[tool.setuptools]
py-modules = ["abawbench_kitdemo"]
'''

PLUGIN = '''
import torch
from torch import nn
from abawbench.hookspecs import hookimpl
from abawbench.specs import Backbone, LossSpec, ModelSpec

def build_model(options):
    seed = int(options.extra.get("seed", 0))
    torch.manual_seed(seed)
    size = options.image_size or 32
    module = nn.Sequential(nn.Conv2d(3, {channels}, 3, stride=2), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    return Backbone(name="kitnet", module=module, feature_dim=8,
                    data_config={{"input_size": [3, size, size], "mean": [0.5] * 3, "std": [0.5] * 3,
                                 "interpolation": "bilinear", "crop_pct": 1.0}},
                    weights_digest=f"random:kitnet:seed{{seed}}")

def build_loss(track, context):
    def loss(outputs, targets):
        total = 0
        for task, (values, mask) in targets.items():
            total = total + nn.functional.cross_entropy(outputs[task][mask], values[mask])
        return total
    return loss

@hookimpl
def abawbench_register_models(register):
    register(ModelSpec(name="kitnet", build=build_model))

@hookimpl
def abawbench_register_losses(register):
    register(LossSpec(name="kit-ce", build=build_loss, task_kinds=("multiclass",)))
'''

CONFTEST = '''
pytest_plugins = ["abawbench.testing"]
abawbench_plugins = ["abawbench_kitdemo"]
'''


def write(folder: Path, files: dict[str, str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / name).write_text(textwrap.dedent(text), encoding="utf-8")
    return folder


def code_path(*first: Path) -> dict[str, str]:
    """The environment of a subprocess that imports ``first`` before abawbench's own code."""
    roots = [str(Path(package.__file__).resolve().parents[1]) for package in (abawbench, abawbench_builtins)]
    env = {key: value for key, value in os.environ.items()
           if key not in {"ABAWBENCH_LOAD_PLUGINS", "ABAWBENCH_STRICT_PLUGINS"}}
    env["PYTHONPATH"] = os.pathsep.join([*map(str, first), *roots])
    return env


def run_pytest(project: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pytest", "-v", "-rs", "-p", "no:cacheprovider", "tests"],
                          cwd=project, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_kit_runs_the_checks_of_an_installed_plugin_package(tmp_path):
    source = write(tmp_path / "abawbench-kitdemo", {"pyproject.toml": PYPROJECT,
                                                     "abawbench_kitdemo.py": PLUGIN.format(channels=8)})
    site = tmp_path / "site"
    installed = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-build-isolation", "--no-deps",
         "--no-index", "--target", str(site), str(source)],
        capture_output=True, text=True, timeout=600)
    assert installed.returncode == 0, installed.stderr
    assert (site / "abawbench_kitdemo.py").is_file()
    write(source / "tests", {"conftest.py": CONFTEST})
    (source / "abawbench_kitdemo.py").unlink()  # the tests must use the installed copy

    done = run_pytest(source, code_path(site))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "passed" in done.stdout and "failed" not in done.stdout
    # the plugin loads, its model's 4 checks and its loss's 4 per track ran, each as a test
    assert "13 passed" in done.stdout, done.stdout
    assert "tests/conftest.py::model kitnet: builds PASSED" in done.stdout
    assert "tests/conftest.py::loss kit-ce: ignores masked rows on track lsd PASSED" in done.stdout


@pytest.mark.slow
def test_kit_fails_a_broken_plugin_with_the_checks_reason(tmp_path):
    project = write(tmp_path / "project", {"abawbench_kitdemo.py": PLUGIN.format(channels=16)})
    write(project / "tests", {"conftest.py": CONFTEST})
    done = run_pytest(project, code_path(project))
    assert done.returncode == 1, done.stdout + done.stderr
    assert ("model kitnet: maps [N, 3, H, W] to [N, feature_dim]: output shape is [2, 16] but "
            "feature_dim says [2, 8]") in done.stdout
    assert "1 failed" in done.stdout
