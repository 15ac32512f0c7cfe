"""Hostile names (issue 16, findings 2 and 3): what a user or a plugin names never writes
outside the folder the user gave, never replaces another entry, and never breaks or injects
into an output format."""

from __future__ import annotations

import csv
import io

import numpy as np
import pytest

from abawbench.boards import build_leaderboard, render
from abawbench.cli import main
from abawbench.config import ProtocolConfig
from abawbench.errors import PluginError
from abawbench.plugins import PluginHost
from abawbench.results import EntrySpecModel, RunResult, ScoreWithInterval, read_result, result_path
from plugin_helpers import make_module
from test_ensembles import write_member


@pytest.fixture
def runs(tmp_path):
    runs = tmp_path / "out" / "runs"
    labels = np.arange(12) % 6
    eye = np.eye(6)
    write_member(runs, "a", eye[labels] * 0.7 + 0.05, labels)
    write_member(runs, "b", eye[(labels + 1) % 6] * 0.6 + eye[labels] * 0.3 + 0.02, labels)
    write_member(runs, "c", eye[labels] * 0.5 + 0.05, labels)
    return runs


def ensemble(runs, members: str, *extra: str) -> int:
    return main(["ensemble", "--track", "lsd", "--method", "mean-prob", "--members", members,
                 "--runs", str(runs), "--folds", "3", "--bootstrap", "0", *extra])


def files_under(folder) -> set:
    return {p for p in folder.rglob("*") if p.is_file()}


@pytest.mark.parametrize("name", ["..", "../escape", "/tmp/x", ".hidden", "a b", "a,b", "x" * 101])
def test_ensemble_name_that_is_no_label_is_refused_before_writing(host, runs, capsys, name):
    before = files_under(runs.parent.parent)
    assert ensemble(runs, "a,b", "--name", name) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--name" in err and "a label is" in err
    assert files_under(runs.parent.parent) == before


def test_ensemble_never_overwrites_a_trained_entry(host, runs, capsys):
    original = (runs / "lsd" / "c" / "seed0.json").read_bytes()
    assert ensemble(runs, "a,b", "--name", "c") == 2
    err = capsys.readouterr().err
    assert "the trained entry 'c'" in err and "choose another --name" in err
    assert (runs / "lsd" / "c" / "seed0.json").read_bytes() == original
    assert read_result(runs / "lsd" / "c" / "seed0.json").config.get("ensemble") is None


def test_ensemble_names_sharing_a_folder_are_refused(host, runs, capsys):
    assert ensemble(runs, "a,b", "--name", "x/y") == 0
    written = (runs / "lsd" / "x-y" / "seed0.json").read_bytes()
    assert ensemble(runs, "a,b", "--name", "x-y") == 2  # 'x-y' sanitises to the folder of 'x/y'
    assert "ensemble 'x/y' (mean-prob of a, b)" in capsys.readouterr().err
    assert ensemble(runs, "a,c", "--name", "x/y") == 2  # same name, other members: another ensemble
    assert (runs / "lsd" / "x-y" / "seed0.json").read_bytes() == written
    assert ensemble(runs, "a,b", "--name", "x/y") == 0  # the very same ensemble reruns


def test_ensemble_name_taken_by_an_entry_label_elsewhere_is_refused(host, runs, capsys):
    labels = np.arange(12) % 6
    write_member(runs, "d", np.eye(6)[labels], labels)
    path = result_path(runs, "lsd", "d", 0)
    result = read_result(path)
    path.write_text(result.model_copy(update={"label": "mine"}).model_dump_json(), encoding="utf-8")
    assert ensemble(runs, "a,b", "--name", "mine") == 2
    assert "would take its name from the trained entry 'mine'" in capsys.readouterr().err
    assert not (runs / "lsd" / "mine").exists()


def test_plugin_track_named_like_a_path_is_refused_at_registration(tmp_path):
    """A track's name becomes a folder under --output: the registry's name pattern refuses
    one that could leave it, so the plugin is reported broken and registers nothing."""
    module = make_module("evil_track", """
        from abawbench.hookspecs import hookimpl
        from abawbench_builtins.tracks.lsd import LSDTrack

        class Escaping(LSDTrack):
            name = "../../x"

        @hookimpl
        def abawbench_register_tracks(register):
            register(Escaping())
    """)
    host = PluginHost()
    info = host.add_plugin(module, "evil")
    assert info.status == "broken" and "../../x" in info.error
    with pytest.raises(PluginError):
        host.tracks.get("../../x")


# --------------------------------------------------------------------------- output formats

EVIL = "x|y <script>alert(1)</script> & {50%}_#$~^\\"


def result(entry: str, label: str, note: str | None = None) -> RunResult:
    return RunResult(status="completed", track="lsd", entry=entry, label=label, seed=0,
                     primary_metric="macro_f1", primary=ScoreWithInterval(value=0.5),
                     spec=EntrySpecModel(model=entry, loss="cross-entropy", protocol=ProtocolConfig()),
                     dataset="synthface", data_root="/d", dataset_fingerprints={"validation": "fp"},
                     split_sizes={"validation": 3})


@pytest.fixture
def board():
    results = [result("evil", EVIL), result("formula", "=HYPERLINK(\"http://x\")"),
               result("plus", "+cmd|' /C calc'!A0"), result("at", "@SUM(A1)"), result("minus", "-2+3")]
    return build_leaderboard(results, track="lsd", primary_metric="macro_f1", higher_is_better=True)


def test_markdown_cells_keep_the_table_and_show_html_as_text(board):
    text = render(board, "markdown")
    table = [line for line in text.splitlines() if line.startswith("|")]
    columns = {line.replace("\\|", "").count("|") for line in table}
    assert len(columns) == 1  # every row, the escaped one too, has the header's cells
    assert "<script>" not in text and "&lt;script&gt;" in text
    assert "x\\|y" in text


def test_html_escapes_every_field(board):
    text = render(board, "html")
    assert text.count("<script") == 1 and "&lt;script&gt;alert(1)&lt;/script&gt;" in text


def test_latex_escapes_special_characters(board):
    text = render(board, "latex")
    row = next(line for line in text.splitlines() if "alert" in line)
    for raw, escaped in (("&", r"\&"), ("%", r"\%"), ("_", r"\_"), ("#", r"\#"), ("$", r"\$"),
                         ("{", r"\{"), ("}", r"\}")):
        assert escaped in row, raw
    assert " & {" not in row and "<script>" not in row


def test_csv_cells_are_never_formulas(board):
    rows = list(csv.DictReader(io.StringIO(render(board, "csv"))))
    labels = {row["label"] for row in rows}
    assert "'=HYPERLINK(\"http://x\")" in labels
    assert "'+cmd|' /C calc'!A0" in labels and "'@SUM(A1)" in labels and "'-2+3" in labels
    assert not any(value.startswith(("=", "+", "@")) or (value.startswith("-") and not _number(value))
                   for row in rows for value in row.values())
    assert {row["macro_f1"] for row in rows} == {"0.5"}  # numbers stay numbers


def _number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
