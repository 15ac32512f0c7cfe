"""Every number traceable: an entry's identity holds its data, it has a human label that tables
show and commands accept, and its result says which plugins supplied its parts."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from abawbench import __version__
from abawbench.cli import main
from abawbench.config import load_config
from abawbench.errors import ConfigError, UnknownNameError
from abawbench.results import iter_results, read_result, write_result
from abawbench.run.runner import Runner

from test_ensembles import write_member
from test_protocol import lsd_tree, tiny_host  # noqa: F401  (fixtures: a tiny backbone, a small tree)


def run_tiny(tmp_path, data, host, **over):
    values = {"track": "lsd", "data": data, "models": ["tiny"], "output": tmp_path / "runs",
              "cache_dir": tmp_path / "cache", "protocol": {"epochs": 2, "batch_size": 16, "bootstrap": 0}}
    return Runner(load_config(None, values | over), host=host, progress=False).run()


def other_data(tmp_path, tree):
    """A copy of ``tree`` with one validation image changed: same names, other content."""
    other = tmp_path / "other-tree"
    shutil.copytree(tree, other)
    victim = next((other / "validation_set_real_images").rglob("*.jpg"))
    victim.write_bytes(victim.read_bytes() + b"\0")
    return other


# --------------------------------------------------------------------------- data identity


def test_one_configuration_on_two_datasets_keeps_both_results(tmp_path, lsd_tree, tiny_host):
    [first] = run_tiny(tmp_path, lsd_tree, tiny_host).results
    [second] = run_tiny(tmp_path, other_data(tmp_path, lsd_tree), tiny_host).results
    assert first.entry != second.entry  # other data, another entry and another folder
    kept = {r.entry: r for _path, r in iter_results(tmp_path / "runs", "lsd")}
    assert set(kept) == {first.entry, second.entry}
    assert kept[first.entry].dataset_fingerprints != kept[second.entry].dataset_fingerprints
    assert first.spec.data.fingerprints == {s: first.dataset_fingerprints[s] for s in ("train", "validation")}
    # Both are still reused on a re-run of their own data, and keep their default label.
    assert run_tiny(tmp_path, lsd_tree, tiny_host).results == []
    assert first.label == second.label == "tiny__linear-probe-linear__cross-entropy"


# --------------------------------------------------------------------------- labels


def test_tables_show_labels_and_the_json_keeps_the_ids(tmp_path, lsd_tree, tiny_host, capsys):
    code = main(["run", "--data", str(lsd_tree), "--models", "tiny", "--label", "tiny-baseline", "--epochs", "2",
                 "--bootstrap", "0", "--output", str(tmp_path / "runs"), "--cache-dir", str(tmp_path / "cache"),
                 "--no-progress"])
    run_table = capsys.readouterr().out
    assert code == 0 and "tiny-baseline" in run_table
    [(_path, result)] = list(iter_results(tmp_path / "runs", "lsd"))
    assert result.label == "tiny-baseline" and result.entry.startswith("tiny__linear-probe-linear__cross-entropy__")
    for fmt in ("markdown", "latex", "html", "csv"):
        assert main(["leaderboard", "--track", "lsd", "--runs", str(tmp_path / "runs"), "--format", fmt]) == 0
        table = capsys.readouterr().out
        assert "tiny-baseline" in table, fmt
        assert (result.entry in table) == (fmt == "csv"), fmt  # the id only where machines read
    assert main(["leaderboard", "--track", "lsd", "--runs", str(tmp_path / "runs"), "--format", "json"]) == 0
    [row] = json.loads(capsys.readouterr().out)["sections"][0]["rows"]
    assert row["label"] == "tiny-baseline" and row["entry"] == result.entry


def test_several_entries_share_the_configured_label_as_a_prefix(tmp_path, lsd_tree, tiny_host):
    summary = run_tiny(tmp_path, lsd_tree, tiny_host, models=["tiny", "tiny+tiny"], label="sweep")
    assert sorted(r.label for r in summary.results) == [
        "sweep/tiny+tiny__linear-probe-linear__cross-entropy", "sweep/tiny__linear-probe-linear__cross-entropy"]


def test_relabelling_a_completed_entry_renames_it_without_training_again(tmp_path, lsd_tree, tiny_host):
    [first] = run_tiny(tmp_path, lsd_tree, tiny_host).results
    again = run_tiny(tmp_path, lsd_tree, tiny_host, label="renamed")
    assert again.results == [] and [r.label for r in again.skipped_results] == ["renamed"]
    path = tmp_path / "runs" / "lsd" / first.entry / "seed0.json"
    assert read_result(path).label == "renamed" and read_result(path).primary == first.primary


@pytest.mark.parametrize("label", ["a,b", "with space", "", "-leading"])
def test_a_label_that_cannot_be_typed_or_listed_is_refused(label):
    with pytest.raises(ConfigError, match="label"):
        load_config(None, {"label": label})


def labelled_member(runs, folder: str, label: str, expr, labels) -> None:
    """A finished member (see test_ensembles.write_member) whose label differs from its folder."""
    write_member(runs, folder, expr, labels)
    [path] = (runs / "lsd" / folder).glob("seed0.json")
    write_result(path, read_result(path).model_copy(update={"label": label}))


@pytest.fixture
def labelled_runs(tmp_path):
    runs = tmp_path / "runs"
    labels = np.arange(12) % 6
    eye = np.eye(6)
    labelled_member(runs, "resnet18__lp__ce__0123abcd", "resnet18-smooth", eye[labels] * 0.7 + 0.05, labels)
    labelled_member(runs, "resnet18__lp__ce__4567cdef", "resnet18-plain", eye[labels] * 0.5 + 0.1, labels)
    labelled_member(runs, "hog__lp__ce__89abcdef", "hog", eye[(labels + 1) % 6] * 0.6 + 0.02, labels)
    return runs


def test_ensemble_members_are_named_by_label_or_unambiguous_prefix(host, labelled_runs, capsys):
    assert main(["ensemble", "--track", "lsd", "--method", "mean-prob", "--members", "resnet18-sm,hog",
                 "--runs", str(labelled_runs), "--folds", "3", "--bootstrap", "0"]) == 0
    assert "ensemble:mean-prob(resnet18-smooth,hog)" in capsys.readouterr().out
    [result] = [r for _p, r in iter_results(labelled_runs, "lsd") if r.config.get("ensemble")]
    assert result.label == "ensemble:mean-prob(resnet18-smooth,hog)"
    assert result.config["ensemble"]["members"] == ["resnet18__lp__ce__0123abcd", "hog__lp__ce__89abcdef"]
    board = main(["leaderboard", "--track", "lsd", "--runs", str(labelled_runs), "--format", "markdown"])
    assert board == 0 and "ensemble:mean-prob(resnet18-smooth,hog)" in capsys.readouterr().out


def test_an_ambiguous_member_name_is_refused_with_the_candidates(host, labelled_runs, capsys):
    from abawbench.results import find_entry_result

    assert main(["ensemble", "--track", "lsd", "--method", "mean-prob", "--members", "resnet18,hog",
                 "--runs", str(labelled_runs)]) == 2
    err = capsys.readouterr().err
    assert "ambiguous" in err and "resnet18-smooth" in err and "resnet18-plain" in err
    with pytest.raises(ConfigError, match="entries there: hog, resnet18-plain, resnet18-smooth"):
        find_entry_result(labelled_runs, "lsd", "vgg", 0)
    # the folder name and the full id still work
    assert find_entry_result(labelled_runs, "lsd", "hog__lp__ce__89abcdef", 0).parent.name == "hog__lp__ce__89abcdef"


def test_predict_takes_a_label(tmp_path, lsd_tree, tiny_host, capsys):
    run_tiny(tmp_path, lsd_tree, tiny_host, label="for-submission")
    out = tmp_path / "submission.txt"
    assert main(["predict", "for-sub", "--runs", str(tmp_path / "runs"), "--out", str(out)]) == 0
    assert out.read_text().splitlines()[0] and "wrote" in capsys.readouterr().out
    assert main(["predict", "nothing-like-it", "--runs", str(tmp_path / "runs"), "--out", str(out)]) == 2
    assert "for-submission" in capsys.readouterr().err  # the entries there are listed


# --------------------------------------------------------------------------- provenance


def test_every_result_says_which_plugin_supplied_each_part(tmp_path, lsd_tree, tiny_host):
    [single, fused] = run_tiny(tmp_path, lsd_tree, tiny_host, models=["tiny", "tiny+tiny"]).results
    builtin = {"distribution": "abawbench", "version": __version__}
    assert single.provenance["model"] == {"plugin": "tiny-models", "distribution": None, "version": None}
    assert single.provenance["loss"] == {"plugin": "builtin.losses", **builtin}
    assert single.dataset == "abaw4" and single.provenance["dataset"] == {"plugin": "builtin.abaw4", **builtin}
    assert single.provenance["track"] == {"plugin": "builtin.tracks", **builtin}
    assert fused.provenance["model:tiny"]["plugin"] == "tiny-models" and "model" not in fused.provenance
    lsd, method = tiny_host.tracks.get("lsd"), tiny_host.ensembles.get("mean-prob")
    from abawbench.ensembling import run_ensemble

    _path, ensemble = run_ensemble(lsd, method, [single.entry, fused.entry], tmp_path / "runs", folds=3,
                                   bootstrap=0, host=tiny_host)
    assert ensemble.provenance == {"ensemble": {"plugin": "builtin.ensembles", **builtin},
                                   "track": {"plugin": "builtin.tracks", **builtin},
                                   "dataset": {"plugin": "builtin.abaw4", **builtin}}


def test_a_family_member_is_supplied_by_the_familys_plugin(host):
    assert host.supplier("models", "timm:convnext_atto")["plugin"] == "builtin.timm"
    assert host.supplier("models", "hog")["plugin"] == "builtin.classic"
    with pytest.raises(UnknownNameError, match="did you mean"):
        host.supplier("losses", "cross-entropi")
