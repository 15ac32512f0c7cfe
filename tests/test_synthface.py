"""synthface: the embedded procedural dataset.

What users rely on: the same seed gives the same bytes; labels agree with the faces (FACS
prototypes, valence sign, s-Aff-Wild2 missingness); trees follow the official layout to the
letter and the official reader reads them; a crash never leaves a tree that looks complete;
the cached default is generated once. Trees here are tiny (tens of images, 32-48 px).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from abawbench.errors import ConfigError
from abawbench.specs import ReadOptions
from abawbench_builtins.synthface import render, tree
from abawbench_builtins.synthface.domains import DOMAINS, _clutter, _occluder, degrade, face_jpeg
from abawbench_builtins.synthface.facs import ALL_AUS, AU, LABELLED_AUS, MTL_EXPRESSIONS, sample_expression
from abawbench_builtins.synthface.geometry import build_face
from abawbench_builtins.synthface.identities import make_identity
from abawbench_builtins.synthface.plans import (
    LSD_TRAIN_COUNTS,
    MTL_TRAIN_PRESENT,
    MTL_VALIDATION_PRESENT,
    class_counts,
    mtl_jobs,
    mtl_presence,
)
from abawbench_builtins.synthface.render import pose_matrix, rasterise

LSD_FOLDERS = ["ANGRER", "DISGUST", "FEAR", "HAPPINESS", "SADNESS", "SURPRISE"]
MTL_HEADER = "image,valence,arousal,expression,AU1,AU2,AU4,AU6,AU7,AU10,AU12,AU15,AU23,AU24,AU25,AU26"


def _digests(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def trees(tmp_path_factory) -> dict[str, Path]:
    """One tiny tree per track, shared by the layout and reader tests."""
    base = tmp_path_factory.mktemp("synthface")
    return {
        track: tree.generate(track, base / track, 48, 0, image_size=40, workers=1)
        for track in ("mtl", "lsd")
    }


# --------------------------------------------------------------------------- determinism


def test_same_seed_same_bytes_and_other_seed_other_bytes(tmp_path, trees):
    again = _digests(tree.generate("lsd", tmp_path / "again", 48, 0, image_size=40, workers=1))
    assert again == _digests(trees["lsd"])
    other = _digests(tree.generate("lsd", tmp_path / "other", 48, 1, image_size=40, workers=1))
    assert other.keys() == again.keys()  # same layout ...
    images = [name for name in again if name.endswith(".jpg")]
    changed = sum(other[name] != again[name] for name in images)
    assert changed == len(images)  # ... different pictures


def test_worker_pool_gives_the_same_bytes(tmp_path):
    jobs = mtl_jobs("train", 260, 3)  # render_all only uses a pool from 256 jobs on
    for folder in {str(Path(job.path).parent) for job in jobs}:
        (tmp_path / "one" / folder).mkdir(parents=True, exist_ok=True)
        (tmp_path / "two" / folder).mkdir(parents=True, exist_ok=True)
    labels_one = tree.render_all(tmp_path / "one", jobs, 24, workers=1)
    labels_two = tree.render_all(tmp_path / "two", jobs, 24, workers=2)
    assert labels_one == labels_two
    assert _digests(tmp_path / "one") == _digests(tmp_path / "two")


def test_seeded_rng_is_numpys_list_seeding():
    keys = [(0, 9, 9, 0), (0, 1, 2, 12345), (7,), (0, 0), (2**32 - 1, 2**32, 2**40 + 5), (3, 2**64 + 1)]
    for key in keys:
        fast, reference = tree.seeded_rng(key), np.random.default_rng(list(key))
        assert fast.bit_generator.state == reference.bit_generator.state, key
    with pytest.raises(ValueError):
        tree.seeded_rng((1, -1))


# --------------------------------------------------------------------------- labels


def _many(name: str, n: int = 300, seed: int = 0):
    cls = MTL_EXPRESSIONS.index(name)
    rng = np.random.default_rng(seed)
    return [sample_expression(rng, cls) for _ in range(n)]


@pytest.mark.parametrize(
    ("name", "aus"),
    [
        ("Happiness", ["AU6", "AU12"]),
        ("Sadness", ["AU1", "AU4", "AU15"]),
        ("Surprise", ["AU1", "AU2", "AU25", "AU26"]),
        ("Anger", ["AU4", "AU7", "AU23"]),
        ("Fear", ["AU1", "AU2", "AU4", "AU25"]),
        ("Disgust", ["AU10"]),
    ],
)
def test_prototype_aus_are_coded_present(name, aus):
    labels = np.stack([e.au_labels for e in _many(name)])
    for au in aus:
        # Intensity goes down to 0.3 and AUs drop out sometimes: most, not all, faces show it.
        assert labels[:, LABELLED_AUS.index(au)].mean() > 0.6, (name, au)


def test_neutral_faces_show_few_aus_and_calm_affect():
    exprs = _many("Neutral")
    assert np.stack([e.au_labels for e in exprs]).mean() < 0.12
    assert abs(np.mean([e.valence for e in exprs])) < 0.1


@pytest.mark.parametrize(
    ("name", "sign"),
    [("Happiness", 1), ("Anger", -1), ("Disgust", -1), ("Fear", -1), ("Sadness", -1)],
)
def test_valence_sign_matches_expression(name, sign):
    valence = np.array([e.valence for e in _many(name)])
    assert (np.sign(valence) == sign).mean() > 0.9
    assert np.all(np.abs(valence) <= 1.0)


def test_high_arousal_expressions_are_more_aroused_than_sadness():
    def mean_arousal(name: str) -> float:
        return float(np.mean([e.arousal for e in _many(name)]))

    assert min(mean_arousal("Surprise"), mean_arousal("Fear"), mean_arousal("Anger")) > mean_arousal("Sadness") + 0.5


@pytest.mark.parametrize(("split", "rates"), [("train", MTL_TRAIN_PRESENT), ("validation", MTL_VALIDATION_PRESENT)])
def test_missingness_follows_s_aff_wild2(split, rates):
    present = mtl_presence(split, 2000, 0)
    for task, rate in rates.items():
        # A row with no label at all gets its expression back, which nudges EXPR up a little.
        assert present[task].mean() == pytest.approx(rate, abs=0.04), task
    assert (present["va"] | present["expr"] | present["au"]).all()


def test_class_counts_keep_imbalance_with_a_floor():
    counts = class_counts(3500, LSD_TRAIN_COUNTS)
    assert sum(counts) == 3500
    assert min(counts) >= 0.04 * 3500 - 1
    assert np.argmax(counts) == 4 and np.argmin(counts) == 2  # SADNESS most, FEAR fewest
    assert counts[4] / counts[2] > 8  # heavy imbalance survives
    assert class_counts(12, (1.0,) * 6) == [2] * 6


# --------------------------------------------------------------------------- pixels


def _render(act: np.ndarray) -> np.ndarray:
    ident = make_identity(np.random.default_rng(5))
    image = rasterise(build_face(ident, act), 64, ident.background, pose_matrix(0.0, 1.0, (0.0, 0.0)))
    return np.asarray(image, dtype=np.int16)


@pytest.mark.parametrize("au", ALL_AUS)
def test_every_au_changes_the_face_where_it_should(au):
    neutral = _render(np.zeros(len(ALL_AUS)))
    act = np.zeros(len(ALL_AUS))
    act[AU[au]] = 1.0
    diff = np.abs(_render(act) - neutral).sum(axis=2)
    assert diff.sum() > 0, f"{au} changes no pixel"
    upper, lower = diff[:32].sum(), diff[32:].sum()
    if au in ("AU1", "AU2", "AU4", "AU5", "AU7"):
        assert upper > lower, f"{au} should act on brows and lids"
    if au in ("AU12", "AU15", "AU23", "AU24", "AU25", "AU26"):
        assert lower > upper, f"{au} should act on the mouth and jaw"


def _spy_on_public_drawing(monkeypatch) -> list[str]:
    """Record every call of ImageDraw's public polygon and line methods."""
    calls: list[str] = []
    for name in ("polygon", "line"):
        real = getattr(ImageDraw.ImageDraw, name)

        def spy(self, *args, _real=real, _name=name, **kwargs):
            calls.append(_name)
            return _real(self, *args, **kwargs)

        monkeypatch.setattr(ImageDraw.ImageDraw, name, spy)
    return calls


def _force_public_route(monkeypatch) -> None:
    monkeypatch.setattr("abawbench_builtins.synthface.render._direct_drawing_matches", lambda: False)


def test_rasteriser_draws_what_imagedraw_draws(monkeypatch):
    """rasterise calls the C drawing object behind ImageDraw directly (see its docstring):
    if a Pillow upgrade makes that differ from the public methods, it shows up here."""
    cases = []
    for k in range(6):
        rng = np.random.default_rng([3, k])
        ident = make_identity(rng)
        act = sample_expression(rng, k % 8).activations
        shapes = _clutter(rng) + build_face(ident, act, 0.4 * k - 1.0) + _occluder(rng, ident.skin)
        matrix = pose_matrix(7.0 * k - 20.0, 0.9 + 0.05 * k, (0.01 * k, -0.02))
        for size, supersample in ((48, 1), (48, 2), (112, 1)):
            cases.append((shapes, size, ident.background, matrix, supersample))
    direct = [rasterise(*case).tobytes() for case in cases]
    calls = _spy_on_public_drawing(monkeypatch)
    _force_public_route(monkeypatch)
    assert [rasterise(*case).tobytes() for case in cases] == direct
    assert {"polygon", "line"} <= set(calls)  # the reference really went through the public methods


def test_rasteriser_falls_back_to_imagedraw_where_the_direct_route_differs(monkeypatch):
    """A Pillow whose C drawing object no longer matches costs speed, never pictures: the
    public methods draw then (and only then)."""
    rng = np.random.default_rng([4, 1])
    ident = make_identity(rng)
    shapes = build_face(ident, sample_expression(rng, 2).activations, 0.3) + _occluder(rng, ident.skin)
    matrix = pose_matrix(5.0, 0.95, (0.01, 0.0))
    calls = _spy_on_public_drawing(monkeypatch)
    rasterise(shapes, 48, ident.background, matrix, 2)
    assert calls == [] or not render._direct_drawing_matches()  # the direct route where it matches
    _force_public_route(monkeypatch)
    calls.clear()
    rasterise(shapes, 48, ident.background, matrix, 2)
    assert "polygon" in calls


def test_real_domain_degrades_and_synthetic_stays_clean():
    flat = Image.new("RGB", (48, 48), (120, 120, 120))
    degraded = np.asarray(degrade(flat, np.random.default_rng(0)), dtype=np.float64)
    assert degraded.std() > 1.0  # noise and a lighting gradient
    ident = make_identity(np.random.default_rng(1))
    act = sample_expression(np.random.default_rng(2), 4).activations
    synthetic = face_jpeg(np.random.default_rng(3), ident, act, DOMAINS["synthetic"], 48)
    real = face_jpeg(np.random.default_rng(3), ident, act, DOMAINS["real"], 48)
    assert synthetic != real
    assert synthetic == face_jpeg(np.random.default_rng(3), ident, act, DOMAINS["synthetic"], 48)


# --------------------------------------------------------------------------- layouts


def test_mtl_layout_is_official(trees):
    root = trees["mtl"]
    for name in ("training_set_annotations.txt", "validation_set_annotations.txt"):
        lines = (root / name).read_text(encoding="utf-8").splitlines()
        assert lines[0] == MTL_HEADER
        for line in lines[1:]:
            fields = line.split(",")
            assert len(fields) == 16, line
            video, frame = fields[0].split("/")
            assert frame.endswith(".jpg") and (root / "cropped_aligned" / video / frame).is_file()
            v, a = float(fields[1]), float(fields[2])
            assert (v, a) == (-5, -5) or (-1 <= v <= 1 and -1 <= a <= 1), line
            assert int(fields[3]) in range(-1, 8)
            aus = [int(x) for x in fields[4:]]
            assert aus == [-1] * 12 or set(aus) <= {0, 1}, line
        if name.startswith("validation"):
            assert all(line.split(",")[1] != "-5" and line.split(",")[4] != "-1" for line in lines[1:])
    test = (root / "MTL_Challenge_test_set_release.txt").read_text(encoding="utf-8").splitlines()
    assert test[0] == "image,valence,arousal,expression,aus"
    assert all((root / "cropped_aligned" / name).is_file() for name in test[1:])
    videos = {split: {line.split("/")[0] for line in (root / f).read_text().splitlines()[1:]}
              for split, f in (("train", "training_set_annotations.txt"),
                               ("validation", "validation_set_annotations.txt"),
                               ("test", "MTL_Challenge_test_set_release.txt"))}
    assert not (videos["train"] & videos["validation"]) and not (videos["train"] & videos["test"])


def test_lsd_layout_is_official(trees):
    root = trees["lsd"]
    for folder in ("training_set_synthetic_images", "validation_set_real_images"):
        assert sorted(p.name for p in (root / folder).iterdir()) == LSD_FOLDERS
        assert all(any((root / folder / c).glob("*.jpg")) for c in LSD_FOLDERS)
    release = (root / "LSD_Challenge_test_set_release.txt").read_text(encoding="utf-8").splitlines()
    assert release[0] == "image,expression"
    assert release[1:] == [f"{k}.jpg" for k in range(len(release) - 1)]
    assert sorted(p.name for p in (root / "test_set_images").iterdir()) == sorted(release[1:])
    with Image.open(next((root / "test_set_images").iterdir())) as image:
        assert image.format == "JPEG" and image.size == (40, 40) and image.mode == "RGB"


def test_official_reader_reads_both_trees(host, trees):
    from abawbench.data.check import check_dataset

    spec = host.datasets.get("synthface")
    assert set(spec.tracks) == {"mtl", "lsd"}
    for track_name, root in trees.items():
        track = host.tracks.get(track_name)
        manifest = json.loads((root / tree.MANIFEST).read_text())
        assert check_dataset(root, track, spec).problems == []  # a generated tree is clean
        for split in ("train", "validation", "test"):
            index = spec.read_split(root, track, split, ReadOptions())
            assert len(index) == manifest["splits"][split]["images"]
            assert index.duplicates == 0 and index.skipped == 0
            if split == "test":
                continue
            expr = index.labels["expr"]
            counts = np.bincount(expr.values[expr.mask], minlength=8)
            if track_name == "lsd":
                assert expr.mask.all()
                assert counts[:6].tolist() == manifest["splits"][split]["mtl_class_counts"][1:7]
            else:
                present = manifest["splits"][split]["present"]
                assert {task: int(index.labels[task].mask.sum()) for task in ("va", "expr", "au")} == present


# --------------------------------------------------------------------------- atomic writes and the cached default


def test_existing_folder_is_refused(tmp_path):
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "keep.txt").write_text("mine")
    with pytest.raises(ConfigError, match="not an empty folder"):
        tree.generate("lsd", tmp_path / "busy", 16, 0, image_size=24)
    with pytest.raises(ConfigError, match="no track"):
        tree.generate("va", tmp_path / "new", 16, 0)


def test_crash_leaves_no_tree_and_no_partial(tmp_path, monkeypatch):
    calls = {"n": 0}
    real_render = tree.render_job

    def crashing(root, job, image_size):
        calls["n"] += 1
        if calls["n"] == 20:
            raise RuntimeError("simulated crash")
        return real_render(root, job, image_size)

    monkeypatch.setattr(tree, "render_job", crashing)
    with pytest.raises(RuntimeError, match="simulated crash"):
        tree.generate("mtl", tmp_path / "out", 16, 0, image_size=24, workers=1)
    assert list(tmp_path.iterdir()) == []


def test_default_root_generates_once_and_repairs_leftovers(tmp_path, monkeypatch):
    monkeypatch.setattr(tree, "DEFAULT_SIZE", 16)
    monkeypatch.setattr(tree, "DEFAULT_IMAGE_SIZE", 24)
    root = tree.default_root("lsd", tmp_path)
    assert root == tmp_path / "synthface" / f"lsd-v{tree.GENERATOR_VERSION}-seed0-n16"
    assert tree.is_complete(root, "lsd")

    def must_not_run(*args, **kwargs):
        raise AssertionError("a complete tree was generated again")

    monkeypatch.setattr(tree, "generate", must_not_run)
    assert tree.default_root("lsd", tmp_path) == root
    monkeypatch.undo()

    # A root without its manifest (a foreign or broken folder) and a crashed partial are replaced.
    monkeypatch.setattr(tree, "DEFAULT_SIZE", 16)
    monkeypatch.setattr(tree, "DEFAULT_IMAGE_SIZE", 24)
    (root / tree.MANIFEST).unlink()
    partial = root.parent / f".{root.name}.partial-1-dead"
    partial.mkdir()
    assert tree.default_root("lsd", tmp_path) == root
    assert tree.is_complete(root, "lsd") and not partial.exists()


def test_plugin_registers_the_dataset(host):
    spec = host.datasets.get("synthface")
    assert spec.generate is not None and spec.default_root is not None
    assert spec.tracks == ("mtl", "lsd")


# --------------------------------------------------------------------------- version pin

RENDER_DIGESTS = {2: "c2283f4b90dbe3a103a4f70e862b965695682dd248d868ea6612d07953572d5f"}
"""sha256 of :func:`_pinned_renders` per GENERATOR_VERSION. Cached default trees are named by
the version, so a rendering change without a bump would silently serve stale trees. When this
test fails on purpose: bump ``tree.GENERATOR_VERSION`` and add the new digest here (the old
ones stay, as a record). The bytes also depend on the Pillow/libjpeg build (the venv's)."""


def _pinned_renders() -> str:
    """A few JPEGs of fixed seeds, both domains and several expressions, hashed together."""
    digest = hashlib.sha256()
    for k in range(4):
        for name in ("synthetic", "real"):
            rng = np.random.default_rng([2022, k])
            expr = sample_expression(rng, 1 + k, DOMAINS[name].intensity)
            ident = make_identity(np.random.default_rng([7, k]))
            digest.update(face_jpeg(rng, ident, expr.activations, DOMAINS[name], 48))
    return digest.hexdigest()


def test_rendering_change_needs_a_version_bump():
    assert tree.GENERATOR_VERSION in RENDER_DIGESTS, (
        f"GENERATOR_VERSION {tree.GENERATOR_VERSION} has no pinned digest; add {_pinned_renders()!r}"
    )
    assert _pinned_renders() == RENDER_DIGESTS[tree.GENERATOR_VERSION], (
        "synthface renders changed: bump GENERATOR_VERSION in abawbench_builtins.synthface/tree.py and pin "
        f"the new digest {_pinned_renders()!r} in RENDER_DIGESTS"
    )
