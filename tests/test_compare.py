"""The regression gate: ``abawbench compare OLD NEW`` exit codes and deltas.

Exit 1 is a regression, exit 2 is "these cannot be compared" (other seeds, other data, nothing
of the track, a missing path), 0 is a pass; each rule below is what a CI job relies on.
"""

from __future__ import annotations

import json
import math

import pytest

from abawbench.boards.compare import EntryScore, Tolerance, compare_scores, scores_from_results
from abawbench.cli import main
from abawbench.results import result_path, write_result
from test_leaderboard import make_result

HOG = "hog__linear-probe-linear__cross-entropy"


def write_runs(folder, scores: dict[str, float | None], fingerprint: str = "fp-a", seeds=(0,),
               subs: dict[str, float] | None = None):
    """One result per (entry, seed); a score of None is a failed entry."""
    for entry, score in scores.items():
        status = "completed" if score is not None else "failed"
        for seed in seeds:
            result = make_result(entry, score, status=status, fingerprint=fingerprint, seed=seed, subs=subs)
            write_result(result_path(folder, "lsd", entry, seed), result)
    return folder


def gate(tmp_path, old: dict, new: dict, *extra: str, new_fingerprint: str = "fp-a") -> int:
    old_dir = write_runs(tmp_path / "old", old)
    new_dir = write_runs(tmp_path / "new", new, fingerprint=new_fingerprint)
    return main(["compare", str(old_dir), str(new_dir), *extra])


def board_json(tmp_path, runs, name: str) -> str:
    out = tmp_path / f"{name}.json"
    assert main(["leaderboard", "--track", "lsd", "--runs", str(runs), "--format", "json", "--output", str(out)]) == 0
    return str(out)


def test_improvement_passes(tmp_path, capsys):
    assert gate(tmp_path, {"a": 0.50}, {"a": 0.60}) == 0
    out = capsys.readouterr().out
    assert "improved" in out and "+0.1000" in out


def test_drop_within_tolerance_passes(tmp_path, capsys):
    assert gate(tmp_path, {"a": 0.50}, {"a": 0.495}, "--tolerance", "0.01") == 0
    assert "dropped within tolerance" in capsys.readouterr().out


def test_drop_beyond_tolerance_fails(tmp_path, capsys):
    assert gate(tmp_path, {"a": 0.50, "b": 0.3}, {"a": 0.45, "b": 0.3}, "--tolerance", "0.01") == 1
    out = capsys.readouterr().out
    assert "regressed" in out and "FAIL" in out and "-0.0500" in out


def test_relative_tolerance_allows_a_fraction_of_the_old_score(tmp_path):
    # a drop of 0.04 on 0.80: beyond 0.01 absolute, within 10% of the old score
    assert gate(tmp_path / "abs", {"a": 0.80}, {"a": 0.76}, "--tolerance", "0.01") == 1
    assert gate(tmp_path / "rel", {"a": 0.80}, {"a": 0.76}, "--tolerance", "0.01",
                "--relative-tolerance", "0.1") == 0
    assert Tolerance(0.01, 0.1).allowed(0.05) == 0.01  # the larger of the two applies


def test_a_newly_failed_entry_fails(tmp_path):
    assert gate(tmp_path, {"a": 0.5}, {"a": None}) == 1


def test_entries_on_one_side_only_are_listed_and_gated_on_request(tmp_path, capsys):
    assert gate(tmp_path / "default", {"a": 0.5, "b": 0.4}, {"a": 0.5, "c": 0.3}) == 0
    out = capsys.readouterr().out
    assert "disappeared" in out and "| new " in out and "2 entries on one side only, not gated" in out
    assert gate(tmp_path / "strict", {"a": 0.5, "b": 0.4}, {"a": 0.5}, "--missing", "fail") == 1
    assert gate(tmp_path / "strict-new", {"a": 0.5}, {"a": 0.5, "c": 0.3}, "--missing", "fail") == 1


def test_new_and_fixed_entries_pass_but_a_new_failure_fails(tmp_path):
    assert gate(tmp_path / "new", {"a": 0.5}, {"a": 0.5, "b": 0.1}) == 0
    assert gate(tmp_path / "fixed", {"a": None}, {"a": 0.2}) == 0
    assert gate(tmp_path / "new-failed", {"a": 0.5}, {"a": 0.5, "b": None}) == 1


def test_results_on_changed_data_are_refused_in_one_line(tmp_path, capsys):
    assert gate(tmp_path, {"a": 0.5}, {"a": 0.9}, new_fingerprint="fp-b") == 2
    err = capsys.readouterr().err.strip()
    assert "not comparable" in err and "'a'" in err and "validation" in err and "\n" not in err


def test_different_seed_sets_are_refused_in_one_line(tmp_path, capsys):
    """The committed tables once held seeds 0,1 while a run defaults to seed 0: a tight
    tolerance failed with no change. Now the gate says why it cannot judge."""
    old = write_runs(tmp_path / "old", {HOG + "__0000aaaa": 0.5}, seeds=(0, 1))
    new = write_runs(tmp_path / "new", {HOG + "__0000aaaa": 0.5}, seeds=(0,))
    assert main(["compare", str(old), str(new)]) == 2
    err = capsys.readouterr().err.strip()
    assert f"entry {HOG!r} was measured with seeds 0,1 in OLD and 0 in NEW" in err and "\n" not in err
    # the same from the leaderboard JSON of each side
    assert main(["compare", board_json(tmp_path, old, "old"), board_json(tmp_path, new, "new")]) == 2
    assert "seeds 0,1 in OLD and 0 in NEW" in capsys.readouterr().err


def test_a_changed_setting_shows_a_delta_not_an_entry_gone_and_another_new(tmp_path, capsys):
    old = write_runs(tmp_path / "old", {HOG + "__0000aaaa": 0.50})
    new = write_runs(tmp_path / "new", {HOG + "__1111bbbb": 0.40})
    assert main(["compare", str(old), str(new), "--format", "json"]) == 1
    [change] = json.loads(capsys.readouterr().out)["changes"]
    assert change["label"] == HOG and change["status"] == "regressed (settings changed)"
    assert change["delta"] == pytest.approx(-0.1)
    assert (change["old_entry"], change["new_entry"]) == (HOG + "__0000aaaa", HOG + "__1111bbbb")


def test_entries_are_matched_by_their_label(tmp_path, capsys):
    """A leaderboard row's ``label`` (a person's name for the entry) matches across ids."""
    old = json.loads(open(board_json(tmp_path, write_runs(tmp_path / "old", {"x__1": 0.5, "y__2": 0.3}), "old")).read())
    new = json.loads(open(board_json(tmp_path, write_runs(tmp_path / "new", {"z__9": 0.6, "w__8": 0.3}), "new")).read())
    for document, labels in ((old, {"x__1": "mine", "y__2": "theirs"}), (new, {"z__9": "mine", "w__8": "theirs"})):
        for row in document["sections"][0]["rows"]:
            row["label"] = labels[row["entry"]]
    (tmp_path / "old.json").write_text(json.dumps(old))
    (tmp_path / "new.json").write_text(json.dumps(new))
    assert main(["compare", str(tmp_path / "old.json"), str(tmp_path / "new.json"), "--format", "json"]) == 0
    changes = {c["label"]: c["status"] for c in json.loads(capsys.readouterr().out)["changes"]}
    assert changes == {"mine": "improved (settings changed)", "theirs": "unchanged (settings changed)"}


def test_a_nan_score_is_a_regression_never_unchanged(tmp_path, capsys):
    old = write_runs(tmp_path / "old", {"a": 0.5})
    new = write_runs(tmp_path / "new", {"a": 0.123456})
    seed_file = result_path(new, "lsd", "a", 0)
    seed_file.write_text(seed_file.read_text().replace("0.123456", "NaN"))
    assert main(["compare", str(old), str(new)]) == 1
    assert "newly failed" in capsys.readouterr().out  # a seed with no finite score is a failed seed
    # a leaderboard JSON holding NaN (json writes it as NaN) is judged the same way
    document = json.loads(open(board_json(tmp_path, old, "old")).read())
    document["sections"][0]["rows"][0]["mean"] = math.nan
    (tmp_path / "nan.json").write_text(json.dumps(document))
    assert main(["compare", str(old), str(tmp_path / "nan.json")]) == 1
    assert "not a number" in capsys.readouterr().out


def test_a_nan_score_never_ranks(tmp_path):
    runs = write_runs(tmp_path / "runs", {"good": 0.4, "bad": 0.123456})
    seed_file = result_path(runs, "lsd", "bad", 0)
    seed_file.write_text(seed_file.read_text().replace("0.123456", "NaN"))
    rows = json.loads(open(board_json(tmp_path, runs, "board")).read())["sections"][0]["rows"]
    assert [(r["entry"], r["rank"]) for r in rows] == [("good", "1"), ("bad", "failed")]
    assert rows[1]["note"] == "score is not a finite number"


def test_sub_scores_are_gated_on_request(tmp_path, capsys):
    old = write_runs(tmp_path / "old", {"a": 0.5}, subs={"f1_expr": 0.6, "macro_f1": 0.5})
    new = write_runs(tmp_path / "new", {"a": 0.5}, subs={"f1_expr": 0.4, "macro_f1": 0.5})
    assert main(["compare", str(old), str(new)]) == 0
    capsys.readouterr()
    assert main(["compare", str(old), str(new), "--sub-scores"]) == 1
    out = capsys.readouterr().out
    assert "| f1_expr  |" in out and "regressed" in out
    assert "| macro_f1 " in out and out.count("macro_f1") == 1  # the primary, not again as a sub-score


def test_lower_is_better_is_respected():
    def side(score):
        return [EntryScore("t", "a", "a", "err", "completed", score, False, {"validation": "fp"}, 1, (0,))]

    (worse,) = compare_scores(side(0.10), side(0.20), Tolerance(0.05))
    assert worse.regression and worse.status == "regressed"
    (better,) = compare_scores(side(0.20), side(0.10), Tolerance(0.05))
    assert not better.regression and better.status == "improved"


def test_leaderboard_json_files_can_be_compared(tmp_path, capsys):
    old_dir = write_runs(tmp_path / "old", {"a": 0.5, "b": 0.4})
    new_dir = write_runs(tmp_path / "new", {"a": 0.5, "b": 0.2})
    old_json, new_json = board_json(tmp_path, old_dir, "old"), board_json(tmp_path, new_dir, "new")
    assert main(["compare", old_json, new_json, "--format", "json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["regressions"] == 1
    assert report["changes"][0]["label"] == "b" and report["changes"][0]["delta"] == pytest.approx(-0.2)
    # a folder against a JSON works too: same numbers, no change
    assert main(["compare", str(old_dir), old_json]) == 0


def test_unreadable_inputs_are_a_clear_error(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json", encoding="utf-8")
    assert main(["compare", str(bad), str(bad)]) == 2
    assert "bad.json: line 1: not valid JSON" in capsys.readouterr().err
    good = tmp_path / "good.json"
    good.write_text(json.dumps({"track": "lsd", "entries": []}), encoding="utf-8")
    assert main(["compare", str(tmp_path / "missing"), str(good)]) == 2
    assert "missing" in capsys.readouterr().err


def test_a_side_with_nothing_of_the_track_is_refused(tmp_path, capsys):
    """A typo in CI must not compare against nothing and pass."""
    old = write_runs(tmp_path / "old", {"a": 0.5})
    (tmp_path / "empty").mkdir()
    assert main(["compare", str(old), str(tmp_path / "empty")]) == 2
    assert "NEW holds no result of track lsd" in capsys.readouterr().err
    assert main(["compare", str(tmp_path / "empty"), str(old)]) == 2
    assert "OLD holds no result" in capsys.readouterr().err
    assert main(["compare", str(old), str(tmp_path / "typo")]) == 2
    assert main(["compare", str(old), str(old), "--track", "mtl"]) == 2


def test_leaderboard_refuses_a_missing_or_empty_runs_folder(tmp_path, capsys):
    assert main(["leaderboard", "--track", "lsd", "--runs", str(tmp_path / "typo")]) == 2
    assert "no such runs folder" in capsys.readouterr().err
    runs = write_runs(tmp_path / "runs", {"a": 0.5})
    assert main(["leaderboard", "--track", "mtl", "--runs", str(runs)]) == 2
    assert "no result of track mtl" in capsys.readouterr().err


def test_a_seed_that_newly_fails_is_a_regression(tmp_path):
    old = [make_result("a", 0.5, seed=0), make_result("a", 0.5, seed=1)]
    new = [make_result("a", 0.5, seed=0), make_result("a", None, seed=1, status="failed")]
    better = lambda track: True  # noqa: E731
    changes = compare_scores(scores_from_results(old, better), scores_from_results(new, better), Tolerance(0.01))
    assert [c.regression for c in changes] == [True]


PINNED_CHANGES = """\
| track   | entry   | score    | old    | new    | delta   | status                   | gate   |
|---------|---------|----------|--------|--------|---------|--------------------------|--------|
| lsd     | c       | macro_f1 | 0.3000 | 0.2000 | -0.1000 | regressed                | FAIL   |
| lsd     | a       | macro_f1 | 0.5000 | 0.6000 | +0.1000 | improved                 | ok     |
| lsd     | b       | macro_f1 | 0.4000 | 0.3990 | -0.0010 | dropped within tolerance | ok     |
| lsd     | gone    | macro_f1 | 0.2000 | —      | —       | disappeared              | ok     |
| lsd     | new     | macro_f1 | —      | 0.1000 | —       | new                      | ok     |

1 regression(s) beyond tolerance 0.005; 2 entries on one side only, not gated (--missing ignore)
"""


def test_the_markdown_report_is_pinned(tmp_path, capsys):
    """What a CI log shows for a comparison: regressions first, signed deltas, the verdict last."""
    assert gate(tmp_path, {"a": 0.5, "b": 0.4, "c": 0.3, "gone": 0.2}, {"a": 0.6, "b": 0.399, "c": 0.2, "new": 0.1}) == 1
    assert capsys.readouterr().out == PINNED_CHANGES


def test_the_committed_tables_hold_the_seeds_regenerate_sh_runs():
    """The README's run (seed 0) compared against a committed table of other seeds is refused,
    so the tables must be built with the seeds a run uses by default, as regenerate.sh does."""
    import re
    from pathlib import Path

    from abawbench.config import RunConfig

    folder = Path(__file__).resolve().parents[1] / "leaderboards"
    [default] = re.findall(r"^SEEDS=\$\{SEEDS:-([0-9,]+)\}$", (folder / "regenerate.sh").read_text(), re.M)
    seeds = [int(seed) for seed in default.split(",")]
    assert seeds == RunConfig().seeds
    for track in ("lsd", "mtl"):
        document = json.loads((folder / f"{track}.json").read_text())
        for section in document["sections"]:
            for row in section["rows"] if section["kind"] == "measured" else []:
                assert row.get("seed_list", [None] * row["seeds_total"]) == seeds, (track, row["entry"])
