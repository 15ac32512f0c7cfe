"""Hostile input at the command line (issue 16, finding 4 and plugin faults): one line naming
what is wrong and where, the CLI's exit code, never a traceback, and nothing half-written."""

from __future__ import annotations

import os
import traceback

import numpy as np
import pytest

from abawbench.cli import main
from abawbench.features.store import FeatureCache
from plugin_helpers import make_module, serve_with_plugin
from test_cache import CHUNK_BYTES, fill, make_key
from test_ensembles import write_member


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert err.startswith("abawbench: error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    return err


@pytest.fixture
def runs(tmp_path):
    runs = tmp_path / "runs"
    labels = np.arange(12) % 6
    eye = np.eye(6)
    write_member(runs, "a", eye[labels] * 0.7 + 0.05, labels)
    write_member(runs, "b", eye[(labels + 1) % 6] * 0.6 + eye[labels] * 0.3 + 0.02, labels)
    return runs


# --------------------------------------------------------------------------- --config


def test_config_that_is_not_utf8_is_one_line(host, tmp_path, capsys):
    config = tmp_path / "run.toml"
    config.write_bytes(b'track = "lsd"\n# caf\xe9 in Latin-1\n')
    for argv in (["run", "--config", str(config)], ["config", "validate", str(config)]):
        assert main(argv) == 2
        assert "not UTF-8 text (byte 0xe9" in one_line_error(capsys)


def test_config_that_is_a_folder_is_one_line(host, tmp_path, capsys):
    for argv in (["run", "--config", str(tmp_path)], ["config", "show", str(tmp_path)]):
        assert main(argv) == 2
        assert f"{tmp_path}: is a folder" in one_line_error(capsys)


# --------------------------------------------------------------------------- predict, leaderboard


def test_predict_with_a_corrupt_predictions_file_is_one_line(host, runs, tmp_path, capsys):
    npz = runs / "lsd" / "a" / "seed0.predictions.npz"
    npz.write_bytes(npz.read_bytes()[:100])  # truncated, as by a full disk or a bad copy
    out = tmp_path / "sub.txt"
    assert main(["predict", str(runs / "lsd" / "a" / "seed0.json"), "--out", str(out)]) == 2
    assert f"{npz}: not a readable predictions archive" in one_line_error(capsys)
    assert not out.exists()
    npz.write_text("not an archive at all\n")
    assert main(["ensemble", "--track", "lsd", "--method", "mean-prob", "--members", "a,b",
                 "--runs", str(runs)]) == 2
    assert f"{npz}: not a readable predictions archive" in one_line_error(capsys)


def test_predict_out_naming_a_folder_is_one_line(host, runs, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for out in (".", str(tmp_path)):
        assert main(["predict", str(runs / "lsd" / "a" / "seed0.json"), "--out", out]) == 2
        assert f"--out {out}: is a folder; give a file name" in one_line_error(capsys)


def test_leaderboard_output_naming_a_folder_is_one_line(host, runs, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    before = set(tmp_path.iterdir())
    assert main(["leaderboard", "--track", "lsd", "--runs", str(runs), "--output", "."]) == 2
    assert "--output .: is a folder; give a file name" in one_line_error(capsys)
    assert set(tmp_path.iterdir()) == before


# --------------------------------------------------------------------------- plugin faults


def test_malformed_ensemble_options_are_one_line_naming_the_plugin(host, runs, capsys):
    argv = ["ensemble", "--track", "lsd", "--method", "weighted-prob", "--members", "a,b",
            "--runs", str(runs), "--bootstrap", "0", "--folds", "3"]
    assert main(argv + ["--options", "{not json"]) == 2
    assert "--options: not valid JSON" in one_line_error(capsys)
    assert main(argv + ["--options", '{"weights": "heavy"}']) == 2
    err = one_line_error(capsys)
    assert "plugin 'builtin.ensembles' failed: ValueError" in err and "--debug" in err
    assert not list((runs / "lsd").glob("ensemble*"))


EXPLODING = """
    from abawbench.hookspecs import hookimpl
    from abawbench.specs import DatasetSpec

    def read_split(root, track, split, options):
        raise ValueError(f"cannot parse {root}: unexpected column")

    @hookimpl
    def abawbench_register_datasets(register):
        register(DatasetSpec(name="exploding", tracks=("lsd",), read_split=read_split))
"""


def test_a_plugin_exception_is_one_line_naming_the_plugin(tmp_path, capsys):
    serve_with_plugin(make_module("exploding_data", EXPLODING), "exploding")
    argv = ["run", "--track", "lsd", "--dataset", "exploding", "--data", str(tmp_path),
            "--models", "hog", "--output", str(tmp_path / "runs"), "--cache-dir", str(tmp_path / "cache")]
    assert main(argv) == 2
    err = one_line_error(capsys)
    assert "plugin 'exploding' failed: ValueError: cannot parse" in err and "<exploding_data>:" in err
    with pytest.raises(ValueError, match="unexpected column"):  # --debug keeps the traceback
        main(["--debug"] + argv)


def test_a_core_bug_keeps_its_traceback(host, monkeypatch):
    """Only a plugin's code is summarised: an exception raised by abawbench alone is a bug to
    report, with its traceback."""
    import abawbench.commands.listing as listing

    def broken(args):
        raise RuntimeError("core bug")

    monkeypatch.setattr(listing, "handle", broken)
    with pytest.raises(RuntimeError, match="core bug") as caught:
        main(["list", "tracks"])
    assert "broken" in "".join(traceback.format_tb(caught.value.__traceback__))


# --------------------------------------------------------------------------- cache clear


def test_cache_clear_on_a_read_only_cache_is_one_line(tmp_path, capsys, monkeypatch):
    cache = FeatureCache(tmp_path / "cache", chunk_bytes=CHUNK_BYTES)
    entry, _ = fill(cache, make_key())
    if os.geteuid() == 0:  # root ignores permissions: the file system refuses instead
        real_unlink = os.unlink

        def read_only(path, *args, **kwargs):
            if str(path).startswith(str(cache.root)):
                raise PermissionError(13, "Permission denied", str(path))
            return real_unlink(path, *args, **kwargs)

        monkeypatch.setattr(os, "unlink", read_only)
    else:
        for folder in [cache.root, *[p for p in cache.root.rglob("*") if p.is_dir()]]:
            folder.chmod(0o555)
    try:
        assert main(["cache", "clear", "--all", "--yes", "--cache-dir", str(cache.root)]) == 2
        err = one_line_error(capsys)
        assert "cache clear: cannot remove" in err and "Permission denied" in err
        assert entry.path.exists()
    finally:
        for folder in [cache.root, *[p for p in cache.root.rglob("*") if p.is_dir()]]:
            folder.chmod(0o755)
