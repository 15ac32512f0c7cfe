"""torch.distributed runs on the CPU with gloo: sharded extraction equals one process, DDP
fine-tuning equals one process with the same global batch, a sweep never runs an entry twice,
and a killed rank leaves nothing half-written that a rerun would trust."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from abawbench.features.store import FeatureCache
from abawbench.parallel.claims import Claims
from abawbench.plugins import load_plugins
from abawbench.results import read_result

TESTS = Path(__file__).parent
REPO = TESTS.parent

# A tiny backbone without BatchNorm (whose per-rank statistics would differ from one process's
# by design); KILL_RANK makes that rank die in its first forward pass.
LAUNCHER = textwrap.dedent('''
    import json, os, sys
    sys.path.insert(0, {tests!r})
    from plugin_helpers import make_module, serve_with_plugin
    from abawbench.config import load_config
    from abawbench.parallel.context import distributed_context, shutdown
    from abawbench.run.runner import Runner

    SOURCE = """
    import os, torch
    from torch import nn
    from abawbench.hookspecs import hookimpl
    from abawbench.specs import Backbone, ModelSpec

    CONFIG = {{"input_size": [3, 32, 32], "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5],
              "interpolation": "bilinear", "crop_pct": 1.0}}

    class Tiny(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU(),
                                      nn.AdaptiveAvgPool2d(2), nn.Flatten())
        def forward(self, x):
            if os.environ.get("KILL_RANK", "none") == os.environ.get("RANK"):
                os._exit(3)
            if os.environ.get("RAISE_RANK", "none") == os.environ.get("RANK"):
                raise ValueError("this rank cannot read its images")
            return self.body(x)

    def build(options):
        torch.manual_seed(int(options.extra.get("seed", 0)))
        return Backbone(name="tiny", module=Tiny(), feature_dim=32, data_config=dict(CONFIG),
                        weights_digest="random:tiny")

    @hookimpl
    def abawbench_register_models(register):
        register(ModelSpec(name="tiny", build=build))
    """
    host = serve_with_plugin(make_module("tiny_dist_models", SOURCE), "tiny-dist-models")
    config = load_config(None, json.loads(sys.argv[1]))
    runner = Runner(config, host=host, progress=False)
    summary = runner.run()
    if runner.context.is_main:
        print("SUMMARY " + json.dumps({{"ran": [[r.entry, r.seed, r.status, r.error] for r in summary.results],
                                      "elsewhere": summary.elsewhere}}))
    shutdown()
''').format(tests=str(TESTS))


@pytest.fixture(scope="module")
def lsd_tree(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("lsd") / "tree"
    return load_plugins(strict=True).datasets.get("synthface").generate("lsd", out, 60, 3)


@pytest.fixture(scope="module")
def launcher(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("launcher") / "launch.py"
    path.write_text(LAUNCHER)
    return path


def launch(launcher: Path, config: dict, processes: int | None, **env: str) -> subprocess.CompletedProcess:
    """The launcher as one plain process (``processes=None``) or under torchrun on gloo."""
    args = [str(launcher), json.dumps(config, default=str)]
    if processes is not None:
        args = ["-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}"] + args
    environment = os.environ | {"PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "plugins"),
                                                                os.environ.get("PYTHONPATH", "")]),
                                "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"} | env
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=environment, timeout=300)


def summary_of(done: subprocess.CompletedProcess) -> dict:
    assert done.returncode == 0, done.stderr[-3000:]
    found = [line[line.index("SUMMARY ") + len("SUMMARY "):] for line in done.stdout.splitlines() if "SUMMARY " in line]
    assert len(found) == 1, (done.stdout[-3000:], done.stderr[-3000:])  # rank 0 prints one summary
    return json.loads(found[0])


def config(tmp_path: Path, data: Path, folder: str, **protocol) -> dict:
    return {"track": "lsd", "data": str(data), "models": ["tiny"], "output": str(tmp_path / folder / "runs"),
            "cache_dir": str(tmp_path / folder / "cache"), "seeds": [0],
            "protocol": {"epochs": 2, "batch_size": 8, "bootstrap": 0} | protocol}


def cached_files(cache_dir: Path) -> dict[str, tuple[dict, dict]]:
    """Every feature cache entry's datasets and attributes, by the entry's file name."""
    import h5py

    contents = {}
    for entry in FeatureCache(Path(cache_dir)).entries():
        assert entry.problem is None, entry.problem
        with h5py.File(entry.path, "r") as f:
            datasets = {}
            f.visititems(lambda name, item: datasets.__setitem__(name, item[()])
                         if isinstance(item, h5py.Dataset) else None)
            contents[Path(entry.path).name] = (datasets, {k: v for k, v in f.attrs.items()})
    return contents


def test_sharded_extraction_writes_the_single_process_entry(tmp_path, lsd_tree, launcher):
    single = summary_of(launch(launcher, config(tmp_path, lsd_tree, "one"), None))
    sharded = summary_of(launch(launcher, config(tmp_path, lsd_tree, "two"), 2))
    one, two = cached_files(tmp_path / "one" / "cache"), cached_files(tmp_path / "two" / "cache")
    assert one.keys() == two.keys() and len(one) >= 2  # same keys: train and validation at least
    for name, (datasets, attributes) in one.items():
        other_datasets, other_attributes = two[name]
        assert datasets.keys() == other_datasets.keys()
        for dataset in datasets:  # bit for bit
            assert np.array_equal(datasets[dataset], other_datasets[dataset]), (name, dataset)
        when = {"created", "extract_seconds"}  # when and how long, not what
        assert json.dumps({k: v for k, v in attributes.items() if k not in when}, default=repr, sort_keys=True) == \
            json.dumps({k: v for k, v in other_attributes.items() if k not in when}, default=repr, sort_keys=True)
    first = read_result(tmp_path / "one" / "runs" / "lsd" / single["ran"][0][0] / "seed0.json")
    second = read_result(tmp_path / "two" / "runs" / "lsd" / sharded["ran"][0][0] / "seed0.json")
    assert first.primary == second.primary and first.cache_keys == second.cache_keys


def test_linear_probe_sweep_spreads_entries_and_runs_each_once(tmp_path, lsd_tree, launcher):
    sweep = config(tmp_path, lsd_tree, "sweep") | {"seeds": [0, 1, 2],
                                                   "losses": ["cross-entropy", "focal"]}
    summary = summary_of(launch(launcher, sweep, 2))
    ran = [(entry, seed) for entry, seed, status, _ in summary["ran"]]
    assert len(ran) == len(set(ran)) == 6 and not summary["elsewhere"]
    assert all(status == "completed" for _, _, status, _ in summary["ran"])
    again = summary_of(launch(launcher, sweep, 2))
    assert again["ran"] == []  # everything completed: a rerun runs nothing


def test_ddp_finetune_equals_one_process_with_the_same_global_batch(tmp_path, lsd_tree, launcher):
    base = dict(name="finetune", epochs=2, augmentation="none")
    one = summary_of(launch(launcher, config(tmp_path, lsd_tree, "g1", **base, batch_size=16), 1))
    two = summary_of(launch(launcher, config(tmp_path, lsd_tree, "g2", **base, batch_size=8), 2))
    assert len(one["ran"]) == len(two["ran"]) == 1, (one, two)
    [(entry_one, _, status_one, error)] = one["ran"]
    [(entry_two, _, status_two, _)] = two["ran"]
    assert status_one == status_two == "completed", error
    a = np.load(tmp_path / "g1" / "runs" / "lsd" / entry_one / "seed0.predictions.npz")
    b = np.load(tmp_path / "g2" / "runs" / "lsd" / entry_two / "seed0.predictions.npz")
    probabilities = [name for name in a.files if name.startswith("validation")]
    assert probabilities
    for name in probabilities:
        if a[name].dtype.kind == "f":
            np.testing.assert_allclose(a[name], b[name], atol=1e-4)  # docs/bench/distributed.md
        else:
            assert np.array_equal(a[name], b[name])


def test_a_killed_rank_fails_the_job_and_a_rerun_resumes(tmp_path, lsd_tree, launcher):
    settings = config(tmp_path, lsd_tree, "killed")
    died = launch(launcher, settings, 2, KILL_RANK="1")
    assert died.returncode != 0
    runs = tmp_path / "killed" / "runs"
    assert not list(runs.rglob("seed*.json"))  # no result, not even a failed one, was faked
    assert not cached_files(tmp_path / "killed" / "cache")  # no half-written entry counts
    rerun = summary_of(launch(launcher, settings, 2))
    assert [status for _, _, status, _ in rerun["ran"]] == ["completed"]


def test_a_claim_held_elsewhere_or_finished_meanwhile_is_not_taken(tmp_path):
    result = tmp_path / "entry" / "seed0.json"
    claims = Claims()
    with claims.claim(result) as mine:
        assert mine
        with Claims().claim(result) as theirs:  # another job on the same results folder
            assert not theirs
    result.write_text("{}")  # written by another worker after this sweep began
    with claims.claim(result) as mine:
        assert not mine
    with Claims().claim(result) as later:  # a later sweep sees an older result: the runner decides
        assert later


def test_ranks_fine_tuning_together_run_every_entry_of_a_sweep(tmp_path, lsd_tree, launcher):
    sweep = config(tmp_path, lsd_tree, "together", name="finetune", epochs=1, augmentation="none") | {
        "seeds": [0, 1], "losses": ["cross-entropy", "focal"]}
    summary = summary_of(launch(launcher, sweep, 2))
    ran = [(entry, seed) for entry, seed, _, _ in summary["ran"]]
    assert len(ran) == len(set(ran)) == 4 and not summary["elsewhere"], summary  # none lost to a claim race


def test_a_rank_whose_shard_fails_fails_every_rank_instead_of_leaving_them_waiting(tmp_path, lsd_tree, launcher):
    failed = launch(launcher, config(tmp_path, lsd_tree, "raised"), 2, RAISE_RANK="1")
    assert failed.returncode != 0  # launch() would time out if rank 0 waited for rank 1's rows
    assert "sharded extraction failed: rank 1: ValueError: this rank cannot read its images" in failed.stderr
    assert not cached_files(tmp_path / "raised" / "cache")
