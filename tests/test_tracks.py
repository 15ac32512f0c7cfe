"""The built-in tracks: registered through the plugin host and scoring hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from abawbench.evaluation import score_with_intervals
from abawbench.errors import MetricInputError
from abawbench.labels import TaskLabels


def mtl_case():
    """Four images, one label missing per task, every number below worked out by hand."""
    labels = {
        "va": TaskLabels(np.array([[0.5, 0.5], [-0.5, -0.5], [0.0, 0.0], [-5.0, -5.0]], np.float32),
                         np.array([True, True, True, False])),
        "expr": TaskLabels(np.array([0, 4, 4, -1]), np.array([True, True, True, False])),
        "au": TaskLabels(np.zeros((4, 12), np.float32), np.array([True, True, False, True])),
    }
    labels["au"].values[:, 0] = [1, 0, -1, 1]
    expr = torch.full((4, 8), 0.01)
    expr[torch.arange(4), torch.tensor([0, 4, 7, 0])] = 0.93
    au = torch.full((4, 12), 0.1)
    au[:, 0] = torch.tensor([0.9, 0.2, 0.9, 0.4])
    predictions = {
        # valence exact (CCC 1), arousal constant (CCC 0); row 3 is unlabelled
        "va": torch.tensor([[0.5, 0.1], [-0.5, 0.1], [0.0, 0.1], [0.9, 0.9]]),
        "expr": expr,  # argmax 0, 4, 7: class 0 F1 1, class 4 F1 2/3, the rest 0
        "au": au,  # AU1 decisions 1, 0, 0 on its labelled rows 1, 0, 1: F1 2/3; AUs 2..12 F1 0
    }
    return predictions, labels


def test_builtin_tracks_are_registered(host):
    assert {"mtl", "lsd"} <= set(host.tracks.names())
    lsd = host.tracks.get("lsd")
    assert lsd.task("expr").names == ("ANGER", "DISGUST", "FEAR", "HAPPINESS", "SADNESS", "SURPRISE")
    assert (lsd.primary_metric, lsd.default_loss) == ("macro_f1", "cross-entropy")
    mtl = host.tracks.get("mtl")
    assert mtl.task_names == ("va", "expr", "au")
    assert mtl.task("va").value_range == (-1.0, 1.0)
    assert mtl.task("expr").names[0] == "Neutral" and mtl.task("expr").names[-1] == "Other"
    assert mtl.task("au").names[2] == "AU4" and mtl.task("au").width == 12
    assert (mtl.primary_metric, mtl.default_loss) == ("p_mtl", "multitask")
    assert host.losses.get(mtl.default_loss) and host.losses.get(lsd.default_loss)


def test_mtl_scores_a_hand_computed_case(host):
    predictions, labels = mtl_case()
    score = host.tracks.get("mtl").score(predictions, labels)
    assert score.sub_scores["ccc_valence"] == pytest.approx(1.0)
    assert score.sub_scores["ccc_arousal"] == 0.0
    assert score.sub_scores["ccc_mean"] == pytest.approx(0.5)
    assert score.sub_scores["f1_expr"] == pytest.approx((1 + 2 / 3) / 8)
    assert score.sub_scores["f1_au"] == pytest.approx((2 / 3) / 12)
    assert score.primary == pytest.approx(0.5 + 5 / 24 + 1 / 18)
    assert score.per_class["expr"]["Happiness"] == pytest.approx(2 / 3)
    assert score.per_class["au"]["AU1"] == pytest.approx(2 / 3)
    assert score.confusion["expr"][4][7] == 1 and sum(map(sum, score.confusion["expr"])) == 3


def test_mtl_au_thresholds_change_only_the_au_term(host):
    predictions, labels = mtl_case()
    track = host.tracks.get("mtl")
    thresholds = torch.full((12,), 0.5)
    thresholds[0] = 0.3  # AU1 decisions become 1, 0, 1: F1 1
    tuned = track.score(predictions, labels, au_thresholds=thresholds)
    fixed = track.score(predictions, labels)
    assert tuned.sub_scores["f1_au"] == pytest.approx(1 / 12)
    assert tuned.sub_scores["f1_expr"] == fixed.sub_scores["f1_expr"]


def test_labels_may_be_tensor_pairs(host):
    predictions, labels = mtl_case()
    pairs = {task: (torch.from_numpy(c.values), torch.from_numpy(c.mask)) for task, c in labels.items()}
    track = host.tracks.get("mtl")
    assert track.score(predictions, pairs).primary == track.score(predictions, labels).primary


def test_lsd_macro_f1_over_all_six_classes(host):
    target = np.array([0, 0, 3, 3, 5])
    probs = torch.nn.functional.one_hot(torch.tensor([0, 3, 3, 3, 5]), 6).float()
    score = host.tracks.get("lsd").score({"expr": probs}, {"expr": TaskLabels(target, np.ones(5, bool))})
    # ANGER 2/3, HAPPINESS 4/5, SURPRISE 1, three absent classes 0
    assert score.primary == pytest.approx((2 / 3 + 4 / 5 + 1) / 6)
    assert score.per_class["expr"]["DISGUST"] == 0.0
    assert score.confusion["expr"][0][3] == 1


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda p, l: p.pop("au"), "lack task 'au'"),
        (lambda p, l: l.pop("va"), "lack task"),
        (lambda p, l: p.__setitem__("va", p["va"][:3]), "rows"),
        (lambda p, l: p.__setitem__("au", p["au"][:, :11]), "shape"),
        (lambda p, l: p.__setitem__("expr", torch.full((4, 8), float("nan"))), "NaN"),
        (lambda p, l: l["va"].values.__setitem__((0, 0), 1.5), "outside"),
        (lambda p, l: l["expr"].values.__setitem__(0, 8), "out of range"),
        (lambda p, l: l["au"].values.__setitem__((0, 3), 2), "0 or 1"),
    ],
)
def test_mtl_rejects_malformed_input(host, mutate, message):
    predictions, labels = mtl_case()
    mutate(predictions, labels)
    with pytest.raises(MetricInputError, match=message):
        host.tracks.get("mtl").score(predictions, labels)


def test_counts_for_the_loss_context(host):
    _, labels = mtl_case()
    track = host.tracks.get("mtl")
    counts = track.class_counts(labels)
    assert set(counts) == {"expr", "au"}  # regression has no classes
    assert counts["expr"].tolist() == [1, 0, 0, 0, 2, 0, 0, 0]
    assert counts["au"].tolist() == [2] + [0] * 11
    assert track.label_counts(labels) == {"va": 3, "expr": 3, "au": 3}


def test_bootstrap_of_a_track_score_is_seeded(host):
    rng = np.random.default_rng(1)
    n = 60
    labels = {"expr": TaskLabels(rng.integers(0, 6, n), rng.random(n) > 0.1)}
    predictions = {"expr": torch.softmax(torch.from_numpy(rng.normal(size=(n, 6))), 1)}
    track = host.tracks.get("lsd")
    _, a, subs_a = score_with_intervals(track, predictions, labels, n_resamples=50, seed=3)
    _, b, subs_b = score_with_intervals(track, predictions, labels, n_resamples=50, seed=3)
    _, c, _ = score_with_intervals(track, predictions, labels, n_resamples=50, seed=4)
    assert a == b and subs_a == subs_b
    assert (a.ci_low, a.ci_high) != (c.ci_low, c.ci_high)  # the seed decides the draws
    assert a.value == pytest.approx(track.score(predictions, labels).primary)
    assert a.ci_low <= a.value <= a.ci_high
