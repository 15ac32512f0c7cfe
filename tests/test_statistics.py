"""Honest statistics: the cluster bootstrap (vectorised, the track's unit), intervals pooled over
seeds, the paired mark against a section's best row, and selection on a training holdout that
the reported validation score never influences."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from abawbench.boards import build_leaderboard
from abawbench.config import ProtocolConfig
from abawbench.evaluation import score_and_resample
from abawbench.labels import TaskLabels
from abawbench.plugins import load_plugins
from abawbench.results import (EntrySpecModel, ResamplingRecord, RunResult, ScoreWithInterval,
                               read_prediction_labels, read_predictions)
from abawbench.run.runner import Runner
from abawbench.run.selection import carve_holdout
from abawbench.stats.clusters import group_counts, resampled_scores
from abawbench.stats.seeds import not_worse_than_best, pooled_interval

from test_protocol import _config, lsd_tree, mtl_tree, tiny_host  # noqa: F401  (fixtures)


@pytest.fixture(scope="module")
def tracks():
    host = load_plugins(strict=True)
    return host.tracks.get("mtl"), host.tracks.get("lsd")


def mtl_data(rows: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    va = rng.uniform(-1, 1, (rows, 2)).astype(np.float32)
    labels = {"va": TaskLabels(va, rng.random(rows) > 0.15),
              "expr": TaskLabels(rng.integers(0, 8, rows), rng.random(rows) > 0.4),
              "au": TaskLabels((rng.random((rows, 12)) < 0.3).astype(np.float32), rng.random(rows) > 0.05)}
    predictions = {"va": torch.from_numpy(np.clip(0.5 * va + rng.normal(0, 0.4, (rows, 2)), -1, 1).astype(np.float32)),
                   "expr": torch.from_numpy(rng.random((rows, 8), dtype=np.float32)),
                   "au": torch.from_numpy(rng.random((rows, 12), dtype=np.float32))}
    return predictions, labels


# --------------------------------------------------------------------------- cluster bootstrap


def test_every_resample_is_the_track_score_of_its_drawn_groups(tracks):
    mtl, _ = tracks
    predictions, labels = mtl_data(600)
    groups = np.arange(600) // 40  # 15 "videos"
    fast = resampled_scores(mtl, predictions, labels, groups, 5, seed=2)
    counts = next(group_counts(15, 5, 2))
    for b in range(5):
        rows = torch.repeat_interleave(torch.arange(600), counts[b, torch.from_numpy(groups)].long()).numpy()
        expected = mtl.score({t: p[rows] for t, p in predictions.items()},
                             {t: c.take(rows) for t, c in labels.items()})
        assert float(fast["p_mtl"][b]) == pytest.approx(expected.primary, abs=1e-12)
        for name, value in expected.sub_scores.items():
            assert float(fast[name][b]) == pytest.approx(value, abs=1e-12)


def test_a_track_without_combine_is_scored_resample_by_resample_on_the_same_draws(tracks):
    mtl, _ = tracks

    class PlainMTL(type(mtl)):
        def combine_task_scores(self, tasks):
            return None

    predictions, labels = mtl_data(300)
    groups = np.arange(300) // 30
    fast = resampled_scores(mtl, predictions, labels, groups, 8, seed=1)
    slow = resampled_scores(PlainMTL(), predictions, labels, groups, 8, seed=1)
    assert set(fast) == set(slow)
    for name in fast:
        assert torch.allclose(fast[name], slow[name], atol=1e-12, rtol=0)


def test_the_draws_depend_on_groups_resamples_and_seed_only(tracks):
    _, lsd = tracks
    rng = np.random.default_rng(0)
    labels = {"expr": TaskLabels(rng.integers(0, 6, 200), np.ones(200, bool))}
    one = {"expr": torch.from_numpy(rng.random((200, 6)))}
    other = {"expr": torch.from_numpy(rng.random((200, 6)))}
    groups = np.arange(200)
    a = resampled_scores(lsd, one, labels, groups, 100, seed=4)["macro_f1"]
    assert torch.equal(a, resampled_scores(lsd, one, labels, groups, 100, seed=4)["macro_f1"])
    assert not torch.equal(a, resampled_scores(lsd, one, labels, groups, 100, seed=5)["macro_f1"])
    counts = torch.cat(list(group_counts(200, 100, 4)))
    assert counts.shape == (100, 200) and bool((counts.sum(1) == 200).all())
    # another entry's predictions: the very same draws, so the two are paired resample by resample
    assert torch.equal(torch.cat(list(group_counts(200, 100, 4))), counts)
    b = resampled_scores(lsd, other, labels, groups, 100, seed=4)["macro_f1"]
    assert not torch.equal(a, b)


def test_mtl_resamples_whole_videos_and_its_intervals_are_wider_when_frames_are_correlated(tracks):
    mtl, _ = tracks
    ids = [f"cropped_aligned/video{v}/{f:05d}.jpg" for v in range(20) for f in range(50)]
    groups = mtl.resampling_unit(ids)
    assert len(np.unique(groups)) == 20 and len(np.unique(groups[:50])) == 1
    rng = np.random.default_rng(0)
    rows = len(ids)
    # each video is either read well or badly: errors shared by all its frames
    good = np.repeat(rng.random(20) < 0.5, 50)
    va = rng.uniform(-1, 1, (rows, 2)).astype(np.float32)
    noise = np.where(good[:, None], 0.1, 1.0) * rng.normal(0, 1, (rows, 2))
    expr = rng.integers(0, 8, rows)
    expr_probs = np.where(good[:, None], np.eye(8)[expr], rng.random((rows, 8)))
    au = (rng.random((rows, 12)) < 0.3).astype(np.float32)
    predictions = {"va": torch.from_numpy(np.clip(va + noise, -1, 1).astype(np.float32)),
                   "expr": torch.from_numpy(expr_probs.astype(np.float32)),
                   "au": torch.from_numpy(np.where(good[:, None], au, rng.random((rows, 12))).astype(np.float32))}
    labels = {"va": TaskLabels(va, np.ones(rows, bool)), "expr": TaskLabels(expr, np.ones(rows, bool)),
              "au": TaskLabels(au, np.ones(rows, bool))}
    by_video = score_and_resample(mtl, predictions, labels, n_resamples=300, seed=0, sample_ids=ids)
    by_frame = score_and_resample(mtl, predictions, labels, n_resamples=300, seed=0)
    assert by_video.resampling == ResamplingRecord(unit="video", groups=20, resamples=300, seed=0)
    assert by_frame.resampling.unit == "image" and by_frame.resampling.groups == rows
    width = lambda s: s.primary.ci_high - s.primary.ci_low  # noqa: E731
    assert width(by_video) > 3 * width(by_frame)
    assert len(by_video.primary_resamples) == 300


def test_lsd_resamples_images(tracks):
    _, lsd = tracks
    assert lsd.resampling_unit(["a/1.jpg", "a/2.jpg", "b/1.jpg"]).tolist() == [0, 1, 2]
    assert lsd.default_selection == "train-holdout" and tracks[0].default_selection == "validation"


# --------------------------------------------------------------------------- seeds and the paired mark


def result(entry: str, seed: int, resamples: list[float] | None, value: float | None = None,
           record: ResamplingRecord | None = None, selection: str = "validation") -> RunResult:
    values = resamples or []
    primary = value if value is not None else float(np.mean(values))
    return RunResult(
        status="completed", track="lsd", entry=entry, seed=seed, primary_metric="macro_f1",
        primary=ScoreWithInterval(value=primary, ci_low=min(values, default=None), ci_high=max(values, default=None)),
        spec=EntrySpecModel(model=entry, loss="cross-entropy", protocol=ProtocolConfig()),
        dataset="synthface", data_root="/d", dataset_fingerprints={"validation": "fp"},
        split_sizes={"validation": 10}, primary_resamples=values, selection=selection,
        resampling=(record or ResamplingRecord(unit="image", groups=10, resamples=len(values), seed=seed))
        if values else None)


def test_a_multi_seed_interval_pools_every_seeds_resamples():
    rng = np.random.default_rng(0)
    low_seed = list(0.50 + 0.01 * rng.standard_normal(1000))
    high_seed = list(0.60 + 0.01 * rng.standard_normal(1000))
    results = [result("a", 0, low_seed), result("a", 1, high_seed)]
    low, high = pooled_interval(results)
    assert low < 0.50 and high > 0.60  # both seeds' spread and the gap between them
    (section,) = build_leaderboard(results, track="lsd", primary_metric="macro_f1", higher_is_better=True).sections
    (row,) = section.rows
    assert (row.ci_low, row.ci_high) == (low, high)
    # averaging the endpoints would have been about [0.53, 0.57]: narrower than the seeds' own spread
    assert high - low > 0.09


def test_a_multi_seed_row_without_stored_resamples_shows_no_interval():
    results = [result("a", 0, None, value=0.5), result("a", 1, None, value=0.6)]
    (section,) = build_leaderboard(results, track="lsd", primary_metric="macro_f1", higher_is_better=True).sections
    assert (section.rows[0].ci_low, section.rows[0].ci_high) == (None, None)


def test_rows_the_paired_bootstrap_cannot_tell_from_the_best_are_marked():
    rng = np.random.default_rng(1)
    shared = rng.standard_normal(1000) * 0.03  # the resample's luck, shared by every entry
    best = result("best", 0, list(0.70 + shared))
    tied = result("tied", 0, list(0.699 + shared + 0.002 * rng.standard_normal(1000)))
    worse = result("worse", 0, list(0.68 + shared + 0.002 * rng.standard_normal(1000)))
    unpaired = result("unpaired", 0, list(0.60 + shared),
                      record=ResamplingRecord(unit="image", groups=10, resamples=1000, seed=9))
    old = result("old", 0, None, value=0.1)
    (section,) = build_leaderboard([best, tied, worse, unpaired, old], track="lsd", primary_metric="macro_f1",
                                   higher_is_better=True).sections
    marks = {row.entry: (row.rank, row.not_worse_than_best) for row in section.rows}
    assert marks == {"best": ("1", True), "tied": ("2", True), "worse": ("3", False),
                     "unpaired": ("4", None), "old": ("5", None)}
    # the intervals of best and worse overlap, yet the paired test separates them
    assert worse.primary.ci_high > best.primary.ci_low
    assert not_worse_than_best([best], [worse], higher_is_better=False) is True


def test_rows_and_titles_say_where_entries_were_selected():
    rows = [result("a", 0, [0.5, 0.6], selection="train-holdout")]
    (section,) = build_leaderboard(rows, track="lsd", primary_metric="macro_f1", higher_is_better=True).sections
    assert section.rows[0].selection == "train-holdout"
    assert "holdout of the training split" in section.title


# --------------------------------------------------------------------------- selection split


def test_settings_digest_keeps_validation_entries_and_separates_holdout_ones():
    def spec(**protocol):
        return EntrySpecModel(model="m", loss="l", protocol=ProtocolConfig(**protocol))

    assert spec().entry_id == spec(selection="validation").entry_id
    assert spec(selection="validation").entry_id == spec(selection="validation", holdout_fraction=0.2).entry_id
    assert spec(selection="train-holdout").entry_id != spec(selection="validation").entry_id
    assert (spec(selection="train-holdout").entry_id
            != spec(selection="train-holdout", holdout_fraction=0.2).entry_id)


def test_the_lsd_holdout_is_seeded_disjoint_and_keeps_each_class_share(tmp_path, lsd_tree, tiny_host):
    runner = Runner(_config(tmp_path, lsd_tree), host=tiny_host, progress=False)
    runner.entries()
    train = runner.data.splits["train"]
    kept, held = carve_holdout(runner.track, train, 0.2)
    again = carve_holdout(runner.track, train, 0.2)
    assert np.array_equal(held, again[1]) and np.array_equal(kept, again[0])
    assert len(np.intersect1d(kept, held)) == 0 and len(kept) + len(held) == len(train)
    classes = train.labels["expr"].values
    for c in np.unique(classes):
        share = np.sum(classes[held] == c) / np.sum(classes == c)
        assert share == pytest.approx(0.2, abs=0.1)


def test_the_mtl_holdout_takes_whole_videos(tmp_path, mtl_tree, tiny_host):
    runner = Runner(_config(tmp_path, mtl_tree, track="mtl"), host=tiny_host, progress=False)
    runner.entries()
    train = runner.data.splits["train"]
    kept, held = carve_holdout(runner.track, train, 0.2)
    video = runner.track.resampling_unit(train.paths)
    assert held.size and not set(video[held]) & set(video[kept])


def test_an_lsd_run_selects_on_its_holdout_and_validation_decides_nothing(tmp_path, lsd_tree, tiny_host):
    config = _config(tmp_path, lsd_tree, protocol={"epochs": 4, "batch_size": 16, "bootstrap": 50})
    [first] = Runner(config, host=tiny_host, progress=False).run().results
    assert first.status == "completed", first.error
    assert first.selection == "train-holdout" and first.spec.protocol.selection == "train-holdout"
    assert [h.epoch for h in first.history] == list(range(1, first.epochs_run + 1))
    best = max(first.history, key=lambda h: (h.selection_score, -h.epoch))
    assert best.epoch == first.best_epoch
    assert len(first.primary_resamples) == 50 and first.resampling.unit == "image"
    npz = tmp_path / "runs" / "lsd" / first.entry / first.predictions_file
    ids, predictions = read_predictions(npz, "selection")
    held_labels = read_prediction_labels(npz, "selection")
    track = tiny_host.tracks.get("lsd")
    assert track.score(predictions, held_labels).primary == pytest.approx(best.selection_score)
    validation_ids, _ = read_predictions(npz, "validation")
    assert not set(ids) & set(validation_ids)

    # Relabelled validation changes the reported score, never the training decisions.
    import abawbench.run.runner as runner_module

    real = runner_module.prepare_data

    def scrambled(*args, **kwargs):
        data = real(*args, **kwargs)
        column = data.splits["validation"].labels["expr"]
        data.splits["validation"].labels["expr"] = TaskLabels((column.values + 1) % 6, column.mask)
        return data

    runner_module.prepare_data = scrambled
    try:
        [second] = Runner(_config(tmp_path, lsd_tree, output=tmp_path / "again",
                                  protocol={"epochs": 4, "batch_size": 16, "bootstrap": 50}),
                          host=tiny_host, progress=False).run().results
    finally:
        runner_module.prepare_data = real
    assert second.best_epoch == first.best_epoch and second.history == first.history
    assert second.primary.value != first.primary.value


def test_selection_on_validation_is_recorded_and_thresholds_say_where_they_were_tuned(tmp_path, mtl_tree,
                                                                                      tiny_host):
    [mtl] = Runner(_config(tmp_path, mtl_tree, track="mtl"), host=tiny_host, progress=False).run().results
    assert mtl.status == "completed", mtl.error
    assert mtl.selection == "validation" and mtl.resampling.unit == "video"
    assert mtl.tuned["au"]["tuned_on"] == "validation"
    best = max(mtl.history, key=lambda h: (h.selection_score, -h.epoch))
    assert best.selection_score == pytest.approx(mtl.primary.value)
    [held] = Runner(_config(tmp_path, mtl_tree, track="mtl", output=tmp_path / "held",
                            protocol={"epochs": 3, "batch_size": 16, "bootstrap": 20, "selection": "train-holdout"}),
                    host=tiny_host, progress=False).run().results
    assert held.status == "completed", held.error
    assert held.selection == "train-holdout" and held.tuned["au"]["tuned_on"] == "train-holdout"
    assert held.entry != mtl.entry


# --------------------------------------------------------------------------- ensembles


def holdout_member(runs, entry: str, holdout: np.ndarray, validation: np.ndarray, selection="train-holdout"):
    """A finished lsd entry selected on a training holdout: its predictions file holds the
    holdout's predictions and labels beside validation's."""
    from abawbench.results import result_path, write_predictions, write_result

    folder = result_path(runs, "lsd", entry, 0).parent
    labels = np.arange(12) % 6
    split_labels = {"expr": TaskLabels(labels, np.ones(12, bool))}
    write_predictions(folder / "seed0.predictions.npz",
                      {"validation": [f"v{i}.jpg" for i in range(12)], "selection": [f"h{i}.jpg" for i in range(12)]},
                      {"validation": {"expr": validation}, "selection": {"expr": holdout}},
                      split_labels, split_labels={"selection": split_labels})
    record = result(entry, 0, None, value=0.5, selection=selection)
    write_result(result_path(runs, "lsd", entry, 0), record.model_copy(update={"predictions_file": "seed0.predictions.npz"}))


def test_an_ensemble_of_holdout_selected_members_is_fitted_on_the_holdout(tmp_path, tracks):
    from abawbench.ensembling import run_ensemble
    from abawbench.errors import ConfigError

    host = load_plugins(strict=True)
    labels = np.arange(12) % 6
    eye = np.eye(6)
    right, wrong = eye[labels] * 0.6 + 0.05, eye[(labels + 1) % 6] * 0.9 + 0.02
    runs = tmp_path / "runs"
    # "a" is right on the holdout and wrong on validation; "b" the other way round: weights
    # fitted on the holdout trust "a", so validation (which decided nothing) scores 0
    holdout_member(runs, "a", right, wrong)
    holdout_member(runs, "b", wrong, right)
    _path, ensemble = run_ensemble(tracks[1], host.ensembles.get("weighted-prob"), ["a", "b"], runs,
                                   bootstrap=20, options={"steps": 100})
    assert ensemble.selection == "train-holdout"
    assert ensemble.config["ensemble"]["validation"].startswith("fitted on the training holdout")
    assert ensemble.primary.value == pytest.approx(0.0)
    assert read_predictions(runs / "lsd" / _path.parent.name / "seed0.predictions.npz", "selection") is not None

    holdout_member(runs, "c", right, right, selection="validation")
    with pytest.raises(ConfigError, match="selected on different splits"):
        run_ensemble(tracks[1], host.ensembles.get("mean-prob"), ["a", "c"], runs, bootstrap=0)
