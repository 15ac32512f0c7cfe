"""The HUST-ANT ablation table: result files of the small configurations -> markdown and JSON."""

from __future__ import annotations

import json

import pytest

from abawbench.errors import DataFormatError
from abawbench.results import write_result
from abawbench_builtins.hust_ant.ablation import ROWS, main
from test_leaderboard import make_result

CLASSES = ("ANGER", "DISGUST", "FEAR", "HAPPINESS", "SADNESS", "SURPRISE")


def write_row(runs, row_index: int, scores: list[float], fingerprint: str = "fp-a") -> None:
    """Results of one ablation row, in the folder and entry its configuration writes."""
    remedy = ROWS[row_index]
    for seed, score in enumerate(scores):
        result = make_result(remedy.entry, score, seed=seed, fingerprint=fingerprint)
        result.split_sizes["train"] = 3500
        result.per_class["expr"] = {name: score / (position + 1) for position, name in enumerate(CLASSES)}
        result.timings["train_s"] = 12.0 + seed
        write_result(runs / remedy.folder / "lsd" / f"{remedy.entry}__0123abcd" / f"seed{seed}.json", result)


PINNED_TABLE = """\
| remedy | macro F1 (mean ± std) | Δ vs its reference | seeds | train images | train s/seed |
|---|---|---|---|---|---|
| baseline: cross-entropy, linear probe | 0.3000 ± 0.0283 | — | 0,1 | 3500 | 12 |
| + label smoothing 0.2 | 0.3500 (1 seed) | +0.0500 | 0 | 3500 | 12 |
| + class weights (inverse frequency) | not run | — | — | — | — |
"""


def test_the_table_compares_each_remedy_with_its_reference(tmp_path, capsys):
    runs = tmp_path / "runs"
    write_row(runs, 0, [0.28, 0.32])
    write_row(runs, 1, [0.35])
    out = tmp_path / "tables" / "ablation"  # the folder is created
    (tmp_path / "preamble.md").write_text("# Ablation\n\n", encoding="utf-8")
    assert main(["--runs", str(runs), "--out", str(out), "--preamble", str(tmp_path / "preamble.md")]) == 0
    markdown = out.with_suffix(".md").read_text(encoding="utf-8")
    assert markdown.startswith("# Ablation\n\n" + PINNED_TABLE)
    assert "Per-class F1 (mean over seeds):" in markdown
    assert "| baseline: cross-entropy, linear probe | 0.300 | 0.150 | 0.100 |" in markdown
    assert "    abawbench run --config plugins/abawbench_builtins/hust_ant/configs/small/lsd_linear_probe.toml" in markdown
    assert capsys.readouterr().out.startswith(PINNED_TABLE)  # the preamble is for the file only
    data = json.loads(out.with_suffix(".json").read_text(encoding="utf-8"))
    assert (data["track"], data["metric"]) == ("lsd", "macro F1")
    assert [row["remedy"] for row in data["rows"]] == [remedy.label for remedy in ROWS]
    assert data["rows"][1]["delta"] == pytest.approx(0.05) and data["rows"][0]["per_seed"] == [0.28, 0.32]
    # the JSON records what produced it: the source commit, the results' commits, each row's settings
    from abawbench.results import git_commit

    assert data["commit"] == git_commit()
    assert data["result_commits"] == sorted({row_commit for row in data["rows"] for row_commit in row["git_commits"]})
    settings = data["rows"][0]["settings"]
    assert settings["model"] == make_result(ROWS[0].entry, 0.3).spec.model and "protocol" in settings
    assert data["rows"][2]["settings"] is None  # not run: nothing to record


def test_rows_scored_on_different_validation_data_are_refused(tmp_path):
    runs = tmp_path / "runs"
    write_row(runs, 0, [0.3], fingerprint="fp-a")
    write_row(runs, 1, [0.4], fingerprint="fp-b")
    with pytest.raises(DataFormatError, match="different validation splits"):
        main(["--runs", str(runs), "--out", str(tmp_path / "ablation")])
    assert not (tmp_path / "ablation.md").exists()
