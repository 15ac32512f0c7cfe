"""Leaderboard tables: ranking rules and every output format, from RunResult objects built here."""

from __future__ import annotations

import csv
import io
import json

import pytest

from abawbench.boards import LEADERBOARD_FORMATS, FormatRegistry, build_leaderboard, render
from abawbench.cli import main
from abawbench.config import ProtocolConfig
from abawbench.errors import ConfigError
from abawbench.results import EntrySpecModel, RunResult, ScoreWithInterval, result_path, write_result

EVIL = "<script>alert(1)</script>"
REFERENCES = [
    {"track": "lsd", "entry": "Paper & co_1", "split": "validation", "score": 0.99,
     "source": "arXiv 0000.00000", "data": "official ABAW4 validation"},
    {"track": "mtl", "entry": "other track", "split": "validation", "score": 1.0, "source": "x", "data": "y"},
]


def make_result(entry: str, score: float | None, *, seed: int = 0, track: str = "lsd",
                fingerprint: str = "fp-a", dataset: str = "synthface", status: str = "completed",
                subs: dict[str, float] | None = None, ci: tuple[float, float] | None = None) -> RunResult:
    """A result as the protocol would write it, without training anything."""
    metric = "macro_f1" if track == "lsd" else "p_mtl"
    primary = None
    if status == "completed":
        low, high = ci if ci else (None, None)
        primary = ScoreWithInterval(value=score, ci_low=low, ci_high=high)
    sub_scores = {k: ScoreWithInterval(value=v) for k, v in (subs or {}).items()}
    return RunResult(
        status=status, error=None if status == "completed" else "RunFailedError: loss became nan",
        track=track, entry=entry, seed=seed, primary_metric=metric, primary=primary, sub_scores=sub_scores,
        spec=EntrySpecModel(model=entry.split("__")[0], loss="cross-entropy", protocol=ProtocolConfig()),
        dataset=dataset, data_root="/data", dataset_fingerprints={"validation": fingerprint},
        split_sizes={"validation": 30}, versions={"abawbench": "0.1.0"},
        created_at="2024-05-01T10:00:00+00:00",
    )


def board(results, references=(), track="lsd", higher_is_better=True):
    metric = "macro_f1" if track == "lsd" else "p_mtl"
    return build_leaderboard(results, track=track, primary_metric=metric, higher_is_better=higher_is_better,
                             references=references, version="0.1.0")


def test_ranks_by_mean_over_seeds_with_std_and_interval():
    results = [make_result("a", 0.5, seed=0, ci=(0.4, 0.6)), make_result("a", 0.7, seed=1, ci=(0.6, 0.8)),
               make_result("b", 0.65, ci=(0.5, 0.7))]
    (section,) = board(results).sections
    assert [(r.rank, r.entry) for r in section.rows] == [("1", "b"), ("2", "a")]
    a = section.rows[1]
    assert a.mean == pytest.approx(0.6) and a.std == pytest.approx(0.1414213, abs=1e-6)
    # seeds stored no resamples to pool: no interval, rather than an average of endpoints
    # (which would leave the seeds' variation out); pooling is tested in test_statistics.py
    assert (a.ci_low, a.ci_high) == (None, None)
    b = section.rows[0]
    assert (b.ci_low, b.ci_high) == (0.5, 0.7)  # one seed: its own interval
    assert a.seeds == 2
    assert "0.6000 ± 0.1414" in render(board(results), "markdown")


def test_lower_is_better_reverses_the_ranking():
    results = [make_result("a", 0.5), make_result("b", 0.65)]
    (section,) = board(results, higher_is_better=False).sections
    assert [r.entry for r in section.rows] == ["a", "b"]


def test_ties_share_a_rank():
    results = [make_result("a", 0.5), make_result("b", 0.5), make_result("c", 0.4)]
    (section,) = board(results).sections
    assert [r.rank for r in section.rows] == ["1", "1", "3"]


def test_failed_and_partial_entries_are_listed_not_ranked():
    results = [make_result("ok", 0.3), make_result("broken", None, status="failed"),
               make_result("half", 0.9, seed=0), make_result("half", None, seed=1, status="failed")]
    (section,) = board(results).sections
    ranks = {r.entry: r.rank for r in section.rows}
    assert ranks == {"ok": "1", "half": "partial", "broken": "failed"}
    assert section.rows[0].entry == "ok"
    half = next(r for r in section.rows if r.entry == "half")
    assert half.seeds == 1 and half.seeds_total == 2 and "1 of 2 seeds failed" in half.note
    text = render(board(results), "markdown")
    assert "| failed" in text and "1/2" in text


def test_a_sub_score_missing_from_a_seed_is_missing_not_averaged():
    results = [make_result("a", 1.0, track="mtl", seed=0, subs={"f1_au": 0.2, "f1_expr": 0.3}),
               make_result("a", 1.2, track="mtl", seed=1, subs={"f1_expr": 0.5})]
    (section,) = board(results, track="mtl").sections
    row = section.rows[0]
    assert row.sub_scores["f1_expr"] == pytest.approx(0.4)
    assert row.sub_scores["f1_au"] is None


def test_results_on_different_data_never_share_a_rank():
    results = [make_result("a", 0.5, fingerprint="fp-a"), make_result("b", 0.4, fingerprint="fp-a"),
               make_result("c", 0.9, fingerprint="fp-b"), make_result("a", 0.1, fingerprint="fp-b")]
    sections = board(results).sections
    assert [s.fingerprint for s in sections] == ["fp-a", "fp-b"]
    assert [(r.rank, r.entry) for r in sections[0].rows] == [("1", "a"), ("2", "b")]
    assert [(r.rank, r.entry) for r in sections[1].rows] == [("1", "c"), ("2", "a")]
    text = render(board(results), "markdown")
    assert "fingerprint fp-a" in text and "fingerprint fp-b" in text


def test_reference_rows_are_reported_never_ranked():
    results = [make_result("mine", 0.2)]
    sections = board(results, references=REFERENCES).sections
    measured, reported = sections
    assert [r.entry for r in measured.rows] == ["mine"]  # 0.99 reported does not outrank it
    assert measured.rows[0].rank == "1"
    assert reported.kind == "reported" and reported.dataset == "official ABAW4"  # its data less the split
    assert [(r.rank, r.entry, r.source) for r in reported.rows] == [("reported", "Paper & co_1", "arXiv 0000.00000")]
    text = render(board(results, references=REFERENCES), "markdown")
    assert "reported in publications" in text and "official ABAW4 validation" in text
    assert "other track" not in text


def test_committed_references_cover_the_specification():
    from abawbench.boards import load_references
    from abawbench.commands.leaderboard import DEFAULT_REFERENCES

    rows = load_references(DEFAULT_REFERENCES)
    assert {r["track"] for r in rows} == {"lsd", "mtl"}
    situ = [r for r in rows if r["entry"].startswith("Situ-RUCAIM3")]
    assert {(r["split"], r["score"]) for r in situ} == {("validation", 1.7607), ("test", 1.4361)}


PINNED_MARKDOWN = """\
# Leaderboard: lsd

Track lsd: macro_f1 on validation (higher is better). Mean ± std over seeds; 95% CI: percentile bootstrap over the track's unit (mtl: videos, lsd: images), all seeds' resamples pooled (docs/statistics.md). Sections never share ranks.

## measured on dataset synthface, validation split fingerprint fp-a (30 images); selected on the reported (validation) split

| rank    | label   | backbone   | protocol            | loss          | macro_f1 (mean ± std)   | 95% CI   | seeds   | date       | abawbench   | note                            |
|---------|---------|------------|---------------------|---------------|-------------------------|----------|---------|------------|-------------|---------------------------------|
| 1       | b__lp   | b          | linear-probe/linear | cross-entropy | 0.6500                  | —        | 1       | 2024-05-01 | 0.1.0       |                                 |
| 2       | a__lp   | a          | linear-probe/linear | cross-entropy | 0.6000 ± 0.1414         | —        | 2       | 2024-05-01 | 0.1.0       |                                 |
| failed  | dead    | dead       | linear-probe/linear | cross-entropy | failed                  | —        | 0/1     | 2024-05-01 | 0.1.0       | RunFailedError: loss became nan |
| partial | half    | half       | linear-probe/linear | cross-entropy | 0.9000                  | —        | 1/2     | 2024-05-01 | 0.1.0       | 1 of 2 seeds failed             |

## measured on dataset synthface, validation split fingerprint fp-b (30 images); selected on the reported (validation) split

| rank   | label   | backbone   | protocol            | loss          | macro_f1 (mean ± std)   | 95% CI   | seeds   | date       | abawbench   | note   |
|--------|---------|------------|---------------------|---------------|-------------------------|----------|---------|------------|-------------|--------|
| 1      | c__lp   | c          | linear-probe/linear | cross-entropy | 0.1000                  | —        | 1       | 2024-05-01 | 0.1.0       |        |

## reported in publications (not measured here, not ranked)

| rank     | label        | split      | macro_f1   | source           | data                      |
|----------|--------------|------------|------------|------------------|---------------------------|
| reported | Paper & co_1 | validation | 0.9900     | arXiv 0000.00000 | official ABAW4 validation |
"""


def test_markdown_rendering_is_pinned():
    """The committed tables are diffed by users and CI: the same results must render to the same bytes."""
    results = [make_result("a__lp", 0.5, seed=0, ci=(0.4, 0.6)), make_result("a__lp", 0.7, seed=1, ci=(0.6, 0.8)),
               make_result("b__lp", 0.65), make_result("half", 0.9, seed=0),
               make_result("half", None, seed=1, status="failed"), make_result("dead", None, status="failed"),
               make_result("c__lp", 0.1, fingerprint="fp-b")]
    assert render(board(results, references=REFERENCES), "markdown") == PINNED_MARKDOWN


@pytest.fixture
def mixed_board():
    results = [make_result(EVIL, 0.5, ci=(0.4, 0.6)), make_result("res_net & 50%", 0.4),
               make_result("dead", None, status="failed")]
    return board(results, references=REFERENCES)


def test_markdown(mixed_board):
    text = render(mixed_board, "markdown")
    assert text.startswith("# Leaderboard: lsd")
    assert "| rank" in text and "[0.4000, 0.6000]" in text


def test_html_escapes_every_field(mixed_board):
    text = render(mixed_board, "html")
    assert text.count("<script") == 1 and "<script>alert" not in text  # the page's own sorting script only
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert "res_net &amp; 50%" in text and "Paper &amp; co_1" in text
    assert text.count("<table>") == 2


def test_latex_is_booktabs_and_escaped(mixed_board):
    text = render(mixed_board, "latex")
    assert "\\toprule" in text and "\\midrule" in text and "\\bottomrule" in text
    assert "res\\_net \\& 50\\%" in text
    assert "<script>" not in text
    assert "Paper \\& co\\_1" in text


def test_csv_round_trips(mixed_board):
    rows = list(csv.DictReader(io.StringIO(render(mixed_board, "csv"))))
    assert [(r["section"], r["rank"], r["entry"]) for r in rows] == [
        ("measured", "1", EVIL), ("measured", "2", "res_net & 50%"), ("measured", "failed", "dead"),
        ("reported", "reported", "Paper & co_1")]
    assert float(rows[0]["macro_f1"]) == 0.5


def test_json_is_structured(mixed_board):
    data = json.loads(render(mixed_board, "json"))
    assert data["format"] == "abawbench-leaderboard" and data["higher_is_better"] is True
    assert [s["kind"] for s in data["sections"]] == ["measured", "reported"]
    assert data["sections"][0]["rows"][0]["entry"] == EVIL


@pytest.mark.parametrize("fmt", LEADERBOARD_FORMATS.names())
def test_every_format_renders_an_empty_board(fmt):
    assert render(board([]), fmt).strip() or fmt == "csv"


def test_command_reads_a_runs_folder(tmp_path, capsys):
    runs = tmp_path / "runs"
    for result in [make_result("a__lp", 0.5), make_result("b__lp", 0.6), make_result("m", 1.0, track="mtl")]:
        write_result(result_path(runs, result.track, result.entry, result.seed), result)
    out = tmp_path / "boards" / "board.json"
    assert main(["leaderboard", "--track", "lsd", "--runs", str(runs), "--format", "json",
                 "--output", str(out)]) == 0
    assert [p.name for p in out.parent.iterdir()] == ["board.json"]  # written in one piece, no leftovers
    data = json.loads(out.read_text())
    entries = [r["entry"] for r in data["sections"][0]["rows"]]
    assert entries == ["b__lp", "a__lp"]  # the mtl result stays on its own track
    assert data["sections"][-1]["kind"] == "reported"
    assert main(["leaderboard", "--track", "lsd", "--runs", str(runs), "--no-references"]) == 0
    assert "reported in publications" not in capsys.readouterr().out


def test_every_registered_format_is_offered_on_the_command_line(capsys):
    with pytest.raises(SystemExit):
        main(["leaderboard", "--help"])
    help_text = capsys.readouterr().out
    assert "{" + ",".join(LEADERBOARD_FORMATS.names()) + "}" in help_text
    assert set(LEADERBOARD_FORMATS.names()) == {"markdown", "latex", "html", "csv", "json"}


def test_a_format_is_one_registered_function():
    formats: FormatRegistry[list[str]] = FormatRegistry("word list")

    @formats.register("lines")
    def lines(words: list[str]) -> str:
        return "\n".join(words) + "\n"

    assert formats.names() == ("lines",)
    assert formats.render(["a", "b"], "lines") == "a\nb\n"
    with pytest.raises(ConfigError, match="unknown word list format 'rst'; choose from lines"):
        formats.render(["a"], "rst")
    with pytest.raises(ValueError, match="registered twice"):
        formats.register("lines")(lines)


def test_a_broken_reference_file_is_one_clear_error(tmp_path, capsys):
    runs = tmp_path / "runs"
    write_result(result_path(runs, "lsd", "a__lp", 0), make_result("a__lp", 0.5))
    references = tmp_path / "references.json"
    references.write_text(json.dumps([{"track": "lsd", "entry": "x", "score": 0.5}]), encoding="utf-8")
    assert main(["leaderboard", "--track", "lsd", "--runs", str(runs), "--references", str(references)]) == 2
    assert "reference row 0 lacks ['data', 'source', 'split']" in capsys.readouterr().err
    references.write_text("[\n{", encoding="utf-8")
    assert main(["leaderboard", "--track", "lsd", "--runs", str(runs), "--references", str(references)]) == 2
    assert "references.json: line 2: not valid JSON" in capsys.readouterr().err


def _generated(entry: str, score: float, **kwargs):
    """A result measured on a generated tree laid out (and read) as the official dataset."""
    result = make_result(entry, score, dataset="abaw4", **kwargs)
    result.data_origin = {"kind": "synthetic", "generator": "synthface", "version": "2", "manifest": "m.json"}
    return result


def test_csv_names_the_data_origin_so_generated_data_never_reads_as_real():
    rows = list(csv.DictReader(io.StringIO(render(board([_generated("a", 0.5)], REFERENCES), "csv"))))
    measured, reported = rows
    assert list(rows[0])[:4] == ["section", "dataset", "origin", "fingerprint"]
    assert measured["dataset"] == "abaw4"
    assert measured["origin"] == "synthetic stand-in: generator synthface, version 2"
    assert reported["origin"] == ""


def test_leaderboard_from_json_honours_no_references_and_refuses_references(tmp_path, capsys):
    path = tmp_path / "lsd.json"
    path.write_text(render(board([make_result("m", 0.5)], REFERENCES), "json"))
    assert main(["leaderboard", "--track", "lsd", "--from", str(path), "--format", "csv"]) == 0
    assert "Paper & co_1" in capsys.readouterr().out
    assert main(["leaderboard", "--track", "lsd", "--from", str(path), "--format", "csv", "--no-references"]) == 0
    out = capsys.readouterr().out
    assert "Paper & co_1" not in out and "reported" not in out and ",m," in out
    refs = tmp_path / "refs.json"
    refs.write_text(json.dumps(REFERENCES))
    assert main(["leaderboard", "--track", "lsd", "--from", str(path), "--references", str(refs)]) == 2
    assert "--references" in capsys.readouterr().err
