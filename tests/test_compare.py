"""The regression gate: ``abawbench compare OLD NEW`` exit codes and deltas."""

from __future__ import annotations

import json

import pytest

from abawbench.boards.compare import EntryScore, compare_scores, scores_from_results
from abawbench.cli import main
from abawbench.results import result_path, write_result
from test_leaderboard import make_result


def write_runs(folder, scores: dict[str, float | None], fingerprint: str = "fp-a"):
    for entry, score in scores.items():
        status = "completed" if score is not None else "failed"
        result = make_result(entry, score, status=status, fingerprint=fingerprint)
        write_result(result_path(folder, "lsd", entry, 0), result)
    return folder


def gate(tmp_path, old: dict, new: dict, *extra: str, new_fingerprint: str = "fp-a") -> int:
    old_dir = write_runs(tmp_path / "old", old)
    new_dir = write_runs(tmp_path / "new", new, fingerprint=new_fingerprint)
    return main(["compare", str(old_dir), str(new_dir), *extra])


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


def test_disappeared_and_newly_failed_entries_fail(tmp_path):
    assert gate(tmp_path / "gone", {"a": 0.5, "b": 0.4}, {"a": 0.5}) == 1
    assert gate(tmp_path / "broke", {"a": 0.5}, {"a": None}) == 1


def test_new_and_fixed_entries_pass(tmp_path):
    assert gate(tmp_path / "new", {"a": 0.5}, {"a": 0.5, "b": 0.1}) == 0
    assert gate(tmp_path / "fixed", {"a": None}, {"a": 0.2}) == 0


def test_results_on_changed_data_are_not_compared(tmp_path, capsys):
    assert gate(tmp_path, {"a": 0.5}, {"a": 0.9}, new_fingerprint="fp-b") == 1
    assert "data changed" in capsys.readouterr().out


def test_lower_is_better_is_respected():
    def side(score):
        return {("t", "a", "fp"): EntryScore("t", "a", "fp", "completed", score, higher_is_better=False)}

    (worse,) = compare_scores(side(0.10), side(0.20), tolerance=0.05)
    assert worse.regression and worse.status == "regressed"
    (better,) = compare_scores(side(0.20), side(0.10), tolerance=0.05)
    assert not better.regression and better.status == "improved"


def test_leaderboard_json_files_can_be_compared(tmp_path, capsys):
    old_dir = write_runs(tmp_path / "old", {"a": 0.5, "b": 0.4})
    new_dir = write_runs(tmp_path / "new", {"a": 0.5, "b": 0.2})
    for name, folder in (("old", old_dir), ("new", new_dir)):
        assert main(["leaderboard", "--track", "lsd", "--runs", str(folder), "--format", "json",
                     "--output", str(tmp_path / f"{name}.json")]) == 0
    assert main(["compare", str(tmp_path / "old.json"), str(tmp_path / "new.json"), "--format", "json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["regressions"] == 1
    assert report["changes"][0]["entry"] == "b" and report["changes"][0]["delta"] == pytest.approx(-0.2)
    # a folder against a JSON works too: same numbers, no change
    assert main(["compare", str(old_dir), str(tmp_path / "old.json")]) == 0


def test_unreadable_inputs_are_a_clear_error(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json", encoding="utf-8")
    assert main(["compare", str(bad), str(bad)]) == 2
    assert "bad.json: line 1: not valid JSON" in capsys.readouterr().err
    good = tmp_path / "good.json"
    good.write_text(json.dumps({"track": "lsd", "entries": []}), encoding="utf-8")
    assert main(["compare", str(tmp_path / "missing"), str(good)]) == 2
    assert "missing" in capsys.readouterr().err


def test_a_seed_that_newly_fails_is_a_regression(tmp_path):
    old = [make_result("a", 0.5, seed=0), make_result("a", 0.5, seed=1)]
    new = [make_result("a", 0.5, seed=0), make_result("a", None, seed=1, status="failed")]
    better = lambda track: True  # noqa: E731
    changes = compare_scores(scores_from_results(old, better), scores_from_results(new, better), tolerance=0.01)
    assert [c.regression for c in changes] == [True]


PINNED_CHANGES = """\
| track   | entry   | old    | new    | delta   | status                   | gate   |
|---------|---------|--------|--------|---------|--------------------------|--------|
| lsd     | c       | 0.3000 | 0.2000 | -0.1000 | regressed                | FAIL   |
| lsd     | gone    | 0.2000 | —      | —       | disappeared              | FAIL   |
| lsd     | a       | 0.5000 | 0.6000 | +0.1000 | improved                 | ok     |
| lsd     | b       | 0.4000 | 0.3990 | -0.0010 | dropped within tolerance | ok     |
| lsd     | new     | —      | 0.1000 | —       | new                      | ok     |

2 regression(s) beyond tolerance 0.005
"""


def test_the_markdown_report_is_pinned(tmp_path, capsys):
    """What a CI log shows for a comparison: regressions first, signed deltas, the verdict last."""
    assert gate(tmp_path, {"a": 0.5, "b": 0.4, "c": 0.3, "gone": 0.2}, {"a": 0.6, "b": 0.399, "c": 0.2, "new": 0.1}) == 1
    assert capsys.readouterr().out == PINNED_CHANGES
