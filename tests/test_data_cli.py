"""``abawbench data check|synth|preview`` end to end, in-process, on tiny trees."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from abawbench.cli import main
from abawbench.plugins import PluginHost, set_host
from plugin_helpers import make_module

CLASSES = ("ANGER", "DISGUST", "FEAR", "HAPPINESS", "SADNESS", "SURPRISE")


def write_lsd_tree(root: Path, per_class: int = 2, colours: bool = False) -> Path:
    """A tiny LSD tree with real (decodable) images, and a test release."""
    for split, folder in (("train", "training_set_synthetic_images"), ("validation", "validation_set_real_images")):
        for k, name in enumerate(CLASSES):
            target = root / folder / ("ANGRER" if name == "ANGER" else name)
            target.mkdir(parents=True)
            for i in range(per_class):
                Image.new("RGB", (20, 20), (40 * k, 100 if split == "train" else 200, i * 50)).save(target / f"{i}.jpg")
    (root / "test_set_images").mkdir()
    Image.new("RGB", (20, 20)).save(root / "test_set_images" / "0.jpg")
    (root / "LSD_Challenge_test_set_release.txt").write_text("image,expression\n0.jpg\n", encoding="utf-8")
    return root


def test_check_clean_tree(host, tmp_path, capsys):
    write_lsd_tree(tmp_path)
    assert main(["data", "check", str(tmp_path), "--track", "lsd"]) == 0
    out = capsys.readouterr().out
    assert "problems: 0 error(s), 0 warning(s)" in out and "result: ok" in out
    assert [line.split() for line in out.splitlines() if line.startswith(("train", "test"))] == [
        ["train", "12", "0", "0", "12"], ["test", "1", "0", "0", "-"]]
    assert any(line.split() == ["ANGER", "2", "2"] for line in out.splitlines())  # ANGRER read as ANGER


def test_check_reports_problems_and_exit_codes(host, tmp_path, capsys):
    write_lsd_tree(tmp_path)
    (tmp_path / "training_set_synthetic_images" / "HAPPYNESS").mkdir()
    release = tmp_path / "LSD_Challenge_test_set_release.txt"
    release.write_text("image,expression\n0.jpg\n0.jpg\n7.jpg\n", encoding="utf-8")
    assert main(["data", "check", str(tmp_path), "--track", "lsd"]) == 2
    out = capsys.readouterr().out
    assert "problems: 2 error(s), 1 warning(s)" in out
    assert f"{release}:3: warning: duplicate image '0.jpg'" in out
    assert f"{release}:4: image not found: {tmp_path / 'test_set_images' / '7.jpg'}" in out
    assert "HAPPYNESS: unknown class folder 'HAPPYNESS' (did you mean 'HAPPINESS'" in out
    assert out.rstrip().endswith("result: PROBLEMS FOUND")
    # Every problem can be skipped: usable with --skip-bad.
    assert main(["data", "check", str(tmp_path), "--track", "lsd", "--skip-bad"]) == 0
    capsys.readouterr()
    # --no-images: the missing test image is no longer a problem (the other two still are).
    for flags, reports_missing_image in (([], True), (["--no-images"], False)):
        assert main(["data", "check", str(tmp_path), "--track", "lsd", "--json", *flags]) == 2
        report = json.dumps(json.loads(capsys.readouterr().out))
        assert ("image not found" in report) is reports_missing_image


def test_check_json(host, tmp_path, capsys):
    write_lsd_tree(tmp_path)
    (tmp_path / "LSD_Challenge_test_set_release.txt").unlink()
    assert main(["data", "check", str(tmp_path), "--track", "lsd", "--json"]) == 0  # absent split: a warning
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is True and report["track"] == "lsd"
    splits = {s["split"]: s for s in report["splits"]}
    assert splits["validation"]["class_counts"]["expr"]["SURPRISE"] == 2
    assert splits["test"]["present"] is False
    assert report["problems"] == [{
        "file": str(tmp_path / "LSD_Challenge_test_set_release.txt"), "line": None,
        "message": "split 'test' not found", "severity": "warning"}]


def test_check_empty_root_and_unknown_track(host, tmp_path, capsys):
    assert main(["data", "check", str(tmp_path), "--track", "mtl"]) == 2
    assert f"{tmp_path}: fatal: no mtl split found here" in capsys.readouterr().out
    assert main(["data", "check", str(tmp_path), "--track", "lds"]) == 2
    assert "unknown track 'lds' (did you mean 'lsd'" in capsys.readouterr().err


def test_preview_sheet(host, tmp_path, capsys):
    root = write_lsd_tree(tmp_path / "data", per_class=3)
    (root / "validation_set_real_images" / "FEAR" / "0.jpg").write_bytes(b"not a jpeg")
    out = tmp_path / "sheets" / "sheet.png"
    assert main(["data", "preview", str(root), "--track", "lsd", "--out", str(out), "--per-class", "2", "--thumb", "16"]) == 0
    printed = capsys.readouterr().out
    assert "1 image(s) could not be read" in printed
    with Image.open(out) as sheet:
        # label column + 2 groups of 2 tiles (16 px + 2 px) with a gap; a header + 6 rows.
        assert sheet.size == (120 + 2 * (2 * 18 + 8), 22 + 6 * 18)
        train_tile = sheet.getpixel((120 + 8, 22 + 8))
        validation_tile = sheet.getpixel((120 + 36 + 8 + 8, 22 + 8))
    assert abs(train_tile[1] - 100) < 20 and abs(validation_tile[1] - 200) < 20  # domains in their columns


def test_check_and_preview_read_with_the_dataset_named(host, tmp_path, capsys):
    write_lsd_tree(tmp_path)
    assert main(["data", "check", str(tmp_path), "--track", "lsd", "--dataset", "synthface"]) == 0
    assert "result: ok" in capsys.readouterr().out
    assert main(["data", "check", str(tmp_path), "--track", "mtl", "--dataset", "abaw4-oversampled"]) == 2
    assert "dataset 'abaw4-oversampled' has no 'mtl' data" in capsys.readouterr().err
    out = tmp_path / "sheet.png"
    assert main(["data", "preview", str(tmp_path), "--track", "mtl", "--out", str(out), "--dataset", "nope"]) == 2
    assert "unknown dataset 'nope'" in capsys.readouterr().err


def test_preview_headers_name_the_domains_the_dataset_declares(host, tmp_path):
    from dataclasses import replace

    from abawbench.data.preview import HEADER_HEIGHT, contact_sheet

    root = write_lsd_tree(tmp_path / "data")
    lsd, abaw4 = host.tracks.get("lsd"), host.datasets.get("abaw4")
    assert abaw4.split_domains[("lsd", "train")] == "synthetic"
    with_domains, _ = contact_sheet(root, lsd, abaw4, per_class=1, thumb=16)
    without, _ = contact_sheet(root, lsd, replace(abaw4, split_domains={}), per_class=1, thumb=16)
    assert with_domains.size == without.size
    header = (0, 0, with_domains.width, HEADER_HEIGHT)
    assert with_domains.crop(header).tobytes() != without.crop(header).tobytes()
    body = (0, HEADER_HEIGHT, with_domains.width, with_domains.height)
    assert with_domains.crop(body).tobytes() == without.crop(body).tobytes()


def test_preview_rows_are_the_classes_of_any_track(tmp_path):
    """No task name is assumed: the rows are the classes of the track's multiclass task."""
    import numpy as np

    from abawbench.data.index import SampleIndex
    from abawbench.data.preview import contact_sheet
    from abawbench.labels import TaskLabels, TaskSpec
    from abawbench.specs import DatasetSpec
    from abawbench.tracks import Track

    class Moods(Track):
        name, description, primary_metric, default_loss = "moods", "", "f1", "cross-entropy"
        tasks = (TaskSpec("valence", "regression", ("v",)), TaskSpec("mood", "multiclass", ("calm", "tense", "sad")))

        def score(self, predictions, labels, *, au_thresholds=None):
            raise NotImplementedError

    Image.new("RGB", (20, 20), (0, 0, 255)).save(tmp_path / "a.jpg")

    def read_split(root, track, split, options):
        labels = {"mood": TaskLabels(np.array([1, 1]), np.array([True, True]))}
        return SampleIndex(root, track.name, split, ["a.jpg", "a.jpg"], labels, fingerprint="f")

    dataset = DatasetSpec(name="moods", tracks=("moods",), read_split=read_split)
    sheet, notes = contact_sheet(tmp_path, Moods(), dataset, per_class=2, thumb=16, splits=("train",))
    assert sheet.size == (120 + 2 * 18 + 8, 22 + 3 * 18) and notes == []
    assert sheet.getpixel((120 + 8, 22 + 18 + 8))[2] > 200  # class 1 ("tense"): the blue images
    assert sheet.getpixel((120 + 8, 22 + 8)) == (255, 255, 255)  # class 0: none


# --------------------------------------------------------------------------- synth

GENERATOR = """
from pathlib import Path
from abawbench.hookspecs import hookimpl
from abawbench.specs import DatasetSpec

CALLS = []

def generate(track_name, out_dir, size, seed):
    CALLS.append((track_name, Path(out_dir), size, seed))
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    return Path(out_dir)

@hookimpl
def abawbench_register_datasets(register):
    register(DatasetSpec(name="fakegen", tracks=("lsd",), read_split=lambda *a: None, generate=generate))
"""


@pytest.fixture
def generator_only():
    """A host with the real tracks and one generating dataset (the built-in synthface is
    slow to generate; its own tests cover it)."""
    import abawbench_builtins.tracks

    host = PluginHost(strict=True)
    host.add_plugin(abawbench_builtins.tracks, "tracks")
    module = make_module("fakegen_plugin", GENERATOR)
    host.add_plugin(module, "fakegen")
    set_host(host)
    return host, module


def test_synth_uses_the_only_generator(generator_only, tmp_path, capsys):
    host, module = generator_only
    out = tmp_path / "tree"
    assert main(["data", "synth", "--track", "lsd", "--out", str(out), "--size", "7", "--seed", "3"]) == 0
    assert module.CALLS == [("lsd", out, 7, 3)]
    assert f"wrote lsd data from 'fakegen' (seed 3) to {out}" in capsys.readouterr().out
    assert main(["data", "synth", "--track", "mtl", "--out", str(out)]) == 2
    assert "dataset 'fakegen' has no 'mtl' data" in capsys.readouterr().err


def test_synth_choice_between_generators(generator_only, tmp_path, capsys):
    host, module = generator_only
    host.add_plugin(make_module("reader_plugin", """
from abawbench.hookspecs import hookimpl
from abawbench.specs import DatasetSpec
@hookimpl
def abawbench_register_datasets(register):
    register(DatasetSpec(name="readonly", tracks=("lsd",), read_split=lambda *a: None))
    register(DatasetSpec(name="othergen", tracks=("lsd",), read_split=lambda *a: None,
                         generate=lambda *a: None))
"""), "reader")
    assert main(["data", "synth", "--track", "lsd", "--out", str(tmp_path)]) == 2
    assert "several datasets can generate data (fakegen, othergen)" in capsys.readouterr().err
    assert main(["data", "synth", "--track", "lsd", "--out", str(tmp_path), "--dataset", "readonly"]) == 2
    assert "dataset 'readonly' cannot generate data" in capsys.readouterr().err
    assert main(["data", "synth", "--track", "lsd", "--out", str(tmp_path), "--dataset", "fakegen"]) == 0
    assert module.CALLS[-1][0] == "lsd"


def test_synth_without_generator(tmp_path, capsys):
    import abawbench_builtins.tracks

    host = PluginHost(strict=True)
    host.add_plugin(abawbench_builtins.tracks, "tracks")
    set_host(host)
    assert main(["data", "synth", "--track", "lsd", "--out", str(tmp_path)]) == 2
    assert "no registered dataset can generate data" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["data", "synth", "--track", "lsd", "--out", str(tmp_path), "--size", "0"])
