"""Hostile data: undecodable images, test images in another plausible folder, generating the
default data onto a full disk. Each ends in one clear line or a usable run, never a traceback."""

from __future__ import annotations

import errno
import json
import shutil
from collections import namedtuple
from pathlib import Path

import pytest

from abawbench.cli import main
from abawbench.config import load_config
from abawbench.errors import CacheError
from abawbench.plugins import load_plugins
from abawbench.run.runner import Runner
from abawbench.specs import ReadOptions

from abawbench_builtins.abaw4.reader import read_split
from test_data_cli import write_lsd_tree
from test_protocol import lsd_tree, tiny_host  # noqa: F401  (fixtures: a tiny backbone, a small tree)


def truncate(image: Path) -> None:
    """A JPEG cut short: a plausible size and a valid header, but it does not decode."""
    data = image.read_bytes()
    image.write_bytes(data[:-10])  # the tiny test images hold little more than their header


def lsd():
    return load_plugins(strict=True).tracks.get("lsd")


# --------------------------------------------------------------------------- data check decodes


def test_check_reports_an_undecodable_image_and_quick_only_reads_headers(host, tmp_path, capsys):
    write_lsd_tree(tmp_path)
    corrupt = tmp_path / "training_set_synthetic_images" / "FEAR" / "1.jpg"
    truncate(corrupt)
    assert main(["data", "check", str(tmp_path), "--track", "lsd"]) == 2
    out = capsys.readouterr().out
    assert "problems: 1 error(s), 0 warning(s)" in out
    assert f"{corrupt}: cannot decode image" in out
    # A run with --skip-bad would drop it: usable with --skip-bad.
    assert main(["data", "check", str(tmp_path), "--track", "lsd", "--skip-bad"]) == 0
    capsys.readouterr()
    # --quick parses headers only: the truncated JPEG passes, a file that is no image does not.
    assert main(["data", "check", str(tmp_path), "--track", "lsd", "--quick"]) == 0
    capsys.readouterr()
    garbage = tmp_path / "validation_set_real_images" / "SADNESS" / "0.jpg"
    garbage.write_bytes(b"not an image at all")
    assert main(["data", "check", str(tmp_path), "--track", "lsd", "--quick", "--json"]) == 2
    report = json.loads(capsys.readouterr().out)
    assert [p["file"] for p in report["problems"]] == [str(garbage)]
    # --no-images opens no image at all.
    assert main(["data", "check", str(tmp_path), "--track", "lsd", "--no-images"]) == 0


def test_skip_bad_read_drops_undecodable_images_and_counts_them(tmp_path):
    from abawbench.data.decode import drop_undecodable

    write_lsd_tree(tmp_path)
    truncate(tmp_path / "validation_set_real_images" / "HAPPINESS" / "0.jpg")
    strict = read_split(tmp_path, lsd(), "validation", ReadOptions(cache_dir=tmp_path / "cache"))
    index, dropped = drop_undecodable(strict, tmp_path / "cache")
    assert len(strict) == 12 and strict.undecodable == 0  # reading leaves decoding to data check and runs
    assert len(index) == 11 and index.undecodable == 1 and "1 undecodable image(s) skipped" in index.notes
    assert len(dropped) == 1 and "HAPPINESS/0.jpg" in dropped[0].file
    assert "validation_set_real_images/HAPPINESS/0.jpg" not in index.paths
    assert len(index.labels["expr"].values) == 11 and index.fingerprint != strict.fingerprint
    # The verdict is cached with the split's fingerprint: the same answer on the next read.
    again, _ = drop_undecodable(strict, tmp_path / "cache")
    assert (again.paths, again.fingerprint, again.undecodable) == (index.paths, index.fingerprint, 1)


def test_run_with_skip_bad_completes_despite_an_undecodable_image(tmp_path, lsd_tree, tiny_host):
    tree = tmp_path / "tree"
    shutil.copytree(lsd_tree, tree)
    truncate(next((tree / "training_set_synthetic_images").rglob("*.jpg")))
    values = {"track": "lsd", "data": tree, "models": ["tiny"], "output": tmp_path / "runs", "skip_bad": True,
              "cache_dir": tmp_path / "cache", "protocol": {"epochs": 1, "batch_size": 16, "bootstrap": 0}}
    [result] = Runner(load_config(None, values), host=tiny_host, progress=False).run().results
    assert result.status == "completed"
    assert result.undecodable_skipped == {"train": 1}  # the result says what was dropped


# --------------------------------------------------------------------------- LSD test image folder


def test_lsd_test_images_found_in_test_set_and_check_says_where(host, tmp_path, capsys):
    write_lsd_tree(tmp_path)
    (tmp_path / "test_set_images").rename(tmp_path / "test_set")
    index = read_split(tmp_path, lsd(), "test", ReadOptions())
    assert index.paths == ["test_set/0.jpg"]
    assert main(["data", "check", str(tmp_path), "--track", "lsd"]) == 0
    out = capsys.readouterr().out
    assert "note: test: test images read from test_set/" in out and "result: ok" in out


def test_lsd_test_image_folder_named_with_a_flag(host, tmp_path, capsys):
    write_lsd_tree(tmp_path)
    (tmp_path / "test_set_images").rename(tmp_path / "release_images")
    assert main(["data", "check", str(tmp_path), "--track", "lsd", "--test-images", "release_images"]) == 0
    assert "test images read from release_images/ (as named)" in capsys.readouterr().out
    index = read_split(tmp_path, lsd(), "test", ReadOptions(test_image_folder="release_images"))
    assert index.paths == ["release_images/0.jpg"]
    # A named folder that is absent or outside the root is one fatal problem, not a traceback.
    for named in ("missing", "../elsewhere"):
        assert main(["data", "check", str(tmp_path), "--track", "lsd", "--test-images", named]) == 2
        assert "test image folder" in capsys.readouterr().out


def test_run_reads_the_test_split_from_a_named_folder(tmp_path, lsd_tree, tiny_host):
    tree = tmp_path / "tree"
    shutil.copytree(lsd_tree, tree)
    (tree / "test_set_images").rename(tree / "release_images")
    values = {"track": "lsd", "data": tree, "models": ["tiny"], "output": tmp_path / "runs",
              "cache_dir": tmp_path / "cache", "test_images": "release_images"}
    runner = Runner(load_config(None, values), host=tiny_host, progress=False)
    runner.entries()
    assert runner.data.splits["test"].paths[0].startswith("release_images/")


# --------------------------------------------------------------------------- full disk


def test_generating_onto_a_full_disk_is_one_line_and_leaves_nothing(host, tmp_path, monkeypatch, capsys):
    """Not enough free space: refused before anything is written."""
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**6, 10**6, 1000))
    out = tmp_path / "tree"
    assert main(["data", "synth", "--track", "lsd", "--out", str(out), "--size", "30"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("abawbench: error: ") and "no room for the synthface tree" in err
    assert len(err.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


def test_disk_filling_up_while_generating_is_one_line_and_leaves_nothing(tmp_path, monkeypatch):
    """The disk fills while images are written (ENOSPC from a write): no half tree is left."""
    import builtins

    real_open = builtins.open

    def full_disk_open(file, mode="r", *args, **kwargs):
        if "w" in mode and str(file).endswith(".jpg"):
            raise OSError(errno.ENOSPC, "No space left on device", str(file))
        return real_open(file, mode, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", full_disk_open)
    synthface = load_plugins(strict=True).datasets.get("synthface")
    with pytest.raises(CacheError, match="no room for the synthface tree"):
        synthface.generate("lsd", tmp_path / "tree", 30, 0)
    assert list(tmp_path.iterdir()) == []
