"""The seed paper's methods (HUST-ANT) as one plugin: SMM-EmotionNet, DLN, oversampling, the
hust-ant-mtl loss, configurations, and each method end to end through the Runner."""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from abawbench.config import load_config
from abawbench.errors import ConfigError
from abawbench.labels import TaskSpec
from abawbench.plugins import load_plugins, set_host
from abawbench.run.runner import Runner
from abawbench.specs import LossContext, ModelOptions, ReadOptions
from abawbench.training.augmentation import resolve_augmentation
from abawbench_builtins.abaw4.layout import LSD_FOLDERS
from abawbench_builtins.abaw4.reader import read_split

PACKAGE = Path(__file__).resolve().parents[1] / "plugins" / "abawbench_builtins" / "hust_ant"


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny tensors gain nothing from threads; on a shared 2-core machine two threads per test
    process made the SMM tests ten times slower (contention), so these tests use one."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
SMALL = ModelOptions(image_size=32)  # resnet10t at 32 px: a 2 x 2 map at stride 16


# --------------------------------------------------------------------------- models


@pytest.mark.parametrize("name", ["smm-emotionnet:resnet10t", "smm-emotionnet-featavg:resnet10t"])
def test_smm_emotionnet_shapes_bounds_and_gradients(host, name):
    backbone = host.models.get(name).build(SMALL)
    tasks = host.tracks.get("mtl").tasks
    heads = backbone.make_heads(tasks, "linear")
    assert len(heads.tokens) == 17  # 12 labelled AUs + AU5, AU9, AU14, AU16, AU17
    images = torch.randn(3, 3, 32, 32)
    feature_map = backbone.module(images)
    assert feature_map.shape == (3, backbone.feature_dim, 2, 2)
    out = heads(feature_map)
    assert {k: tuple(v.shape) for k, v in out.items()} == {"va": (3, 2), "expr": (3, 8), "au": (3, 12)}
    (out["va"].sum() + out["expr"].sum() + out["au"].sum()).backward()
    for module in (heads.attention, heads.tokens[0], heads.tokens[16], heads.transformer, heads.emotion_maps,
                   heads.au_classifier):
        grads = [p.grad for p in module.parameters()]
        assert all(g is not None and torch.isfinite(g).all() for g in grads)
        assert any(g.abs().sum() > 0 for g in grads)
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in backbone.module.parameters())


def test_smm_variants_compute_the_same_function():
    """With the seed's linear outputs and no bound inside the network, averaging per-token
    outputs equals one output of the averaged embeddings: ``featavg`` adds no new model."""
    from abawbench_builtins.hust_ant.smm import SMMHeads

    tasks = (TaskSpec("expr", "multiclass", tuple("abcdef")),
             TaskSpec("va", "regression", ("valence", "arousal"), (-1.0, 1.0)))
    torch.manual_seed(0)
    token = SMMHeads(16, tasks, variant="token").eval()
    featavg = SMMHeads(16, tasks, variant="featavg").eval()
    featavg.load_state_dict(token.state_dict())
    x = torch.randn(2, 16, 3, 3)
    token_out, featavg_out = token(x), featavg(x)
    for task in ("expr", "va"):
        torch.testing.assert_close(token_out[task], featavg_out[task])
    assert token.au_classifier is None and len(token.tokens) == 17  # no AU task: attention tokens unsupervised


def test_smm_emotionnet_paper_cut_is_mixed_6e_768_channels(host):
    import timm

    from abawbench_builtins.hust_ant.smm import cut_stage_index

    info = timm.create_model("inception_v3", pretrained=False, features_only=True).feature_info.get_dicts()
    assert info[cut_stage_index(info)]["module"] == "Mixed_6e" and info[cut_stage_index(info)]["num_chs"] == 768


def test_dln_shapes_and_gradients_reach_only_the_trained_copy(host):
    backbone = host.models.get("dln:resnet10t").build(SMALL)
    network = backbone.module.train()
    out = network(torch.randn(4, 3, 32, 32))
    assert out.shape == (4, backbone.feature_dim)
    assert torch.count_nonzero(out) > 0  # train-mode BN makes the copies differ at once
    out.pow(2).sum().backward()
    assert all(p.grad is None for p in network.frozen.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in network.trained.parameters())


def test_dln_frozen_copy_stays_frozen_through_training(host):
    from abawbench.training.heads import BackboneWithHeads, TaskHeads
    from abawbench.training.loop import make_optimizer

    track = host.tracks.get("lsd")
    backbone = host.models.get("dln:resnet10t").build(SMALL)
    network = BackboneWithHeads(backbone.module, TaskHeads(backbone.feature_dim, track.tasks))
    frozen_before = copy.deepcopy(backbone.module.frozen.state_dict())
    trained_before = copy.deepcopy(backbone.module.trained.state_dict())
    protocol = load_config(None, {"protocol": {"optimizer": "sgd", "lr": 0.1}}).protocol
    optimiser = make_optimizer(network.parameters(), protocol)
    network.train()
    assert not backbone.module.frozen.training  # .train() on the wrapper leaves it in eval mode
    loss = F.cross_entropy(network(torch.randn(4, 3, 32, 32))["expr"], torch.tensor([0, 1, 2, 3]))
    optimiser.zero_grad()
    loss.backward()
    optimiser.step()
    for key, value in backbone.module.frozen.state_dict().items():  # params and BN running stats
        torch.testing.assert_close(value, frozen_before[key], rtol=0, atol=0, msg=key)
    moved = [k for k, v in backbone.module.trained.state_dict().items()
             if v.is_floating_point() and not torch.equal(v, trained_before[k])]
    assert any("running_mean" in k for k in moved) and any(k.endswith("weight") for k in moved)


# --------------------------------------------------------------------------- loss


def test_hust_ant_mtl_loss_matches_the_direct_formula(host):
    track = host.tracks.get("mtl")
    g = torch.Generator().manual_seed(0)
    n = 10
    outputs = {"va": torch.rand(n, 2, generator=g) * 2 - 1, "expr": torch.randn(n, 8, generator=g),
               "au": torch.randn(n, 12, generator=g)}
    va = torch.rand(n, 2, generator=g) * 2 - 1
    expr = torch.randint(0, 8, (n,), generator=g)
    au = (torch.rand(n, 12, generator=g) > 0.6).float()
    masks = {"va": torch.rand(n, generator=g) > 0.3, "expr": torch.rand(n, generator=g) > 0.3,
             "au": torch.rand(n, generator=g) > 0.3}
    expr_counts = np.array([50, 10, 5, 5, 40, 20, 10, 60])
    au_positives = np.arange(1, 13) * 3
    context = LossContext(class_counts={"expr": expr_counts, "au": au_positives},
                          label_counts={"expr": 200, "au": 100, "va": 150})
    loss = host.losses.get("hust-ant-mtl").build(track, context)
    got = loss(outputs, {"va": (va, masks["va"]), "expr": (expr, masks["expr"]), "au": (au, masks["au"])})

    def ccc(x, y):
        return 2 * ((x - x.mean()) * (y - y.mean())).mean() / (x.var(unbiased=False) + y.var(unbiased=False)
                                                                + (x.mean() - y.mean()) ** 2)

    m = masks["va"]
    expected_va = sum(1 - ccc(outputs["va"][m, k], va[m, k]) for k in range(2))
    class_weight = torch.tensor(60.0 / expr_counts, dtype=torch.float32)  # count(Other) / count(c)
    m = masks["expr"]
    expected_expr = F.cross_entropy(outputs["expr"][m], expr[m], weight=class_weight)
    m = masks["au"]
    pos_weight = torch.tensor((100 - au_positives) / au_positives, dtype=torch.float32)
    expected_au = F.binary_cross_entropy_with_logits(outputs["au"][m], au[m], pos_weight=pos_weight)
    torch.testing.assert_close(got, expected_va + expected_expr + expected_au, rtol=1e-5, atol=1e-6)


def test_hust_ant_mtl_loss_refuses_options(host):
    with pytest.raises(ConfigError, match="no options"):
        host.losses.get("hust-ant-mtl").build(host.tracks.get("lsd"), LossContext(
            class_counts={"expr": np.ones(6)}, options={"label_smoothing": 0.2}))


# --------------------------------------------------------------------------- augmentation


def test_paper_augmentation_is_the_plugins_and_keeps_the_image_size(host):
    assert host.augmentations.entry("paper").plugin == "builtin.hust_ant"
    base = lambda image: torch.from_numpy(np.asarray(image).transpose(2, 0, 1).copy())  # noqa: E731
    augment = resolve_augmentation("paper", host.augmentations)(base)
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 30, 3), dtype=np.uint8))
    torch.manual_seed(3)
    first = augment(image)
    torch.manual_seed(3)
    assert first.shape == (3, 40, 30) and torch.equal(augment(image), first)  # seeded: reproducible
    assert any(not torch.equal(augment(image), first) for _ in range(5))  # but random


def test_unknown_augmentation_is_refused_with_close_names(host):
    from abawbench.errors import UnknownNameError

    with pytest.raises(UnknownNameError, match="did you mean 'paper'"):
        resolve_augmentation("papr", host.augmentations)


# --------------------------------------------------------------------------- oversampling


def _tiny_lsd_tree(root: Path, counts: list[int], folder_names: tuple[str, ...]) -> Path:
    rng = np.random.default_rng(0)
    for split in ("train", "validation"):
        for name, count in zip(folder_names, counts if split == "train" else [2] * len(counts)):
            folder = root / LSD_FOLDERS[split] / name
            folder.mkdir(parents=True)
            for i in range(count):
                pixels = rng.integers(0, 255, (24, 24, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / f"{i}.jpg", quality=90)
    return root


def _tree_digest(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in (root / LSD_FOLDERS["train"]).rglob("*.jpg")):
        digest.update(path.relative_to(root).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


FOLDERS = ("ANGRER", "DISGUST", "FEAR", "HAPPINESS", "SADNESS", "SURPRISE")  # the released misspelling


def test_oversampling_reaches_majority_count_and_is_deterministic(host, tmp_path):
    from abawbench_builtins.hust_ant.oversample import OversampleSettings, oversample_tree

    track = host.tracks.get("lsd")
    source = _tiny_lsd_tree(tmp_path / "src", [3, 1, 2, 7, 4, 7], FOLDERS)
    first = oversample_tree(source, tmp_path / "a", track, OversampleSettings(seed=5))
    oversample_tree(source, tmp_path / "b", track, OversampleSettings(seed=5))
    other = tmp_path / "c"
    oversample_tree(source, other, track, OversampleSettings(seed=6))
    index = read_split(tmp_path / "a", track, "train", ReadOptions())
    assert np.bincount(index.labels["expr"].values, minlength=6).tolist() == [7] * 6
    assert first["counts_before"] == [3, 1, 2, 7, 4, 7] and first["counts_after"] == [7] * 6
    assert _tree_digest(tmp_path / "a") == _tree_digest(tmp_path / "b")
    assert _tree_digest(tmp_path / "a") != _tree_digest(other)
    validation = read_split(tmp_path / "a", track, "validation", ReadOptions())
    assert validation.fingerprint == read_split(source, track, "validation", ReadOptions()).fingerprint
    with pytest.raises(ConfigError, match="already exists"):
        oversample_tree(source, tmp_path / "a", track)


def test_oversampling_plan_uses_every_original_evenly():
    from abawbench_builtins.hust_ant.oversample import plan

    labels = np.array([0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2])
    todo = plan(labels, 3, seed=1)
    assert len(todo[0]) == 7 and len(todo[1]) == 0 and len(todo[2]) == 9
    assert sorted(np.bincount(todo[0], minlength=3)[:3].tolist()) == [2, 2, 3]
    assert set(todo[2]) == {13}


def test_oversampled_dataset_reads_training_from_the_cache(host, tmp_path, monkeypatch):
    monkeypatch.setenv("ABAWBENCH_CACHE", str(tmp_path / "cache"))
    track = host.tracks.get("lsd")
    source = _tiny_lsd_tree(tmp_path / "src", [2, 1, 1, 3, 1, 1], FOLDERS)
    spec = host.datasets.get("abaw4-oversampled")
    assert spec.auto_select is False
    train = spec.read_split(source, track, "train", ReadOptions())
    assert len(train) == 18 and Path(tmp_path / "cache") in train.root.parents
    again = spec.read_split(source, track, "train", ReadOptions())
    assert again.root == train.root and again.fingerprint == train.fingerprint  # made once, reused
    assert spec.read_split(source, track, "validation", ReadOptions()).root == source


# --------------------------------------------------------------------------- configurations


CONFIGS = sorted((PACKAGE / "configs").rglob("*.toml"))


def test_paper_and_small_configurations_exist_for_every_method():
    paper = {p.name for p in (PACKAGE / "configs" / "paper").glob("*.toml")}
    small = {p.name for p in (PACKAGE / "configs" / "small").glob("*.toml")}
    assert paper == small and len(paper) >= 5


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_configuration_is_valid_and_names_registered_things(host, path):
    config = load_config(path)
    track = host.tracks.get(config.track)
    for model in config.models:
        host.models.get(model)
    for loss in config.losses:
        host.losses.get(loss)
    resolve_augmentation(config.protocol.augmentation, host.augmentations)
    if config.dataset:
        assert track.name in host.datasets.get(config.dataset).tracks
    if any(m.removeprefix("synthstats:").startswith(("smm-", "dln:")) for m in config.models):
        assert config.protocol.name == "finetune"  # their heads/difference need end-to-end training
    if path.parent.name == "small":
        assert config.protocol.image_size is not None and config.protocol.image_size <= 112


# --------------------------------------------------------------------------- end to end


def _tiny_mtl_tree(root: Path, rows: int = 16) -> Path:
    """An official-layout mtl tree with every label kind present and some rows missing each."""
    rng = np.random.default_rng(1)
    header = "image,valence,arousal,expression," + ",".join(
        f"AU{k}" for k in (1, 2, 4, 6, 7, 10, 12, 15, 23, 24, 25, 26))
    for split, name in (("train", "training_set_annotations.txt"), ("validation", "validation_set_annotations.txt")):
        lines = [header]
        for i in range(rows):
            image = f"{split}_video/{i:05d}.jpg"
            path = root / "cropped_aligned" / image
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 255, (24, 24, 3), dtype=np.uint8)).save(path, quality=90)
            va = "-5,-5" if i % 5 == 4 else f"{rng.uniform(-1, 1):.3f},{rng.uniform(-1, 1):.3f}"
            expr = -1 if i % 7 == 6 else i % 8
            aus = ",".join(["-1"] * 12) if i % 6 == 5 else ",".join(str(int(b)) for b in rng.random(12) > 0.5)
            lines.append(f"{image},{va},{expr},{aus}")
        (root / name).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


def _run(tmp_path, **values):
    base = {"output": tmp_path / "runs", "cache_dir": tmp_path / "cache", "device": "cpu", "seeds": [0]}
    protocol = {"epochs": 1, "batch_size": 8, "image_size": 32, "bootstrap": 0, **values.pop("protocol", {})}
    summary = Runner(load_config(None, {**base, **values, "protocol": protocol}), progress=False).run()
    assert [r.error for r in summary.results if r.status != "completed"] == []
    return summary.results


def test_smm_emotionnet_runs_end_to_end_on_mtl(host, tmp_path):
    tree = _tiny_mtl_tree(tmp_path / "mtl")
    results = _run(tmp_path, track="mtl", data=str(tree), dataset="abaw4",
                   models=["smm-emotionnet:resnet10t", "smm-emotionnet-featavg:resnet10t"],
                   losses=["hust-ant-mtl"],
                   protocol={"name": "finetune", "optimizer": "sgd", "lr": 1e-3, "augmentation": "paper"})
    assert len(results) == 2
    for result in results:
        assert {"f1_expr", "f1_au"} <= set(result.sub_scores) and result.primary is not None


def test_dln_and_oversampled_linear_probe_run_end_to_end_on_lsd(host, tmp_path):
    tree = _tiny_lsd_tree(tmp_path / "lsd", [4, 2, 2, 6, 3, 2], FOLDERS)
    (dln,) = _run(tmp_path, track="lsd", data=str(tree), dataset="abaw4", models=["dln:resnet10t"],
                  losses=["cross-entropy-smooth"], protocol={"name": "finetune", "optimizer": "adam"})
    assert dln.entry.startswith("dln-resnet10t")
    (probe,) = _run(tmp_path, track="lsd", data=str(tree), dataset="abaw4-oversampled", models=["resnet10t"],
                    losses=["cross-entropy"], output=tmp_path / "runs-oversampled")
    assert probe.split_sizes["train"] == 6 * 6 and probe.split_sizes["validation"] == 12


def test_synthface_tree_is_oversampled_once_into_the_cache(host, tmp_path):
    from abawbench_builtins.hust_ant.oversample import MANIFEST, materialise

    track = host.tracks.get("lsd")
    source = host.datasets.get("synthface").generate("lsd", tmp_path / "synth", 30, 3)
    before = np.bincount(read_split(source, track, "train", ReadOptions()).labels["expr"].values, minlength=6)
    root = materialise(source, tmp_path / "cache", track)
    after = np.bincount(read_split(root, track, "train", ReadOptions()).labels["expr"].values, minlength=6)
    assert after.tolist() == [before.max()] * 6
    stamp = (root / MANIFEST).stat().st_mtime_ns
    assert materialise(source, tmp_path / "cache", track) == root
    assert (root / MANIFEST).stat().st_mtime_ns == stamp  # reused, not rebuilt
