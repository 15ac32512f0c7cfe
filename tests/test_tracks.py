"""The built-in tracks: registered through the plugin host and scoring hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sklearn.metrics import f1_score

from abawbench.evaluation import score_and_resample
from abawbench.errors import ConfigError, MetricInputError
from abawbench.labels import TaskLabels
from abawbench.tracks import Track
from abawbench_builtins.abaw4.submission import read_lsd_submission, read_mtl_submission
from abawbench_builtins.tracks.scoring import lsd_score, p_mtl
from test_metrics import numpy_ccc


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
    first, again, other = (score_and_resample(track, predictions, labels, n_resamples=50, seed=seed)
                           for seed in (3, 3, 4))
    a, subs_a, b, subs_b, c = first.primary, first.sub_scores, again.primary, again.sub_scores, other.primary
    assert a == b and subs_a == subs_b
    assert (a.ci_low, a.ci_high) != (c.ci_low, c.ci_high)  # the seed decides the draws
    assert a.value == pytest.approx(track.score(predictions, labels).primary)
    assert a.ci_low <= a.value <= a.ci_high


# --------------------------------------------------------------------------- scores as functions


def test_p_mtl_is_the_sum_of_its_terms_each_over_its_own_rows():
    rng = np.random.default_rng(3)
    n = 200
    va, va_pred = rng.uniform(-1, 1, (n, 2)), rng.uniform(-1, 1, (n, 2))
    expr, expr_probs = rng.integers(0, 8, n), rng.random((n, 8))
    au, au_probs = rng.integers(0, 2, (n, 12)), rng.random((n, 12))
    va_mask, expr_mask, au_mask = rng.random(n) > 0.2, rng.random(n) > 0.5, rng.random(n) > 0.1
    terms = p_mtl(va_pred, va, expr_probs, expr, au_probs, au,
                  va_mask=va_mask, expr_mask=expr_mask, au_mask=au_mask)
    ccc_v = numpy_ccc(va_pred[va_mask, 0], va[va_mask, 0])
    ccc_a = numpy_ccc(va_pred[va_mask, 1], va[va_mask, 1])
    f1_e = f1_score(expr[expr_mask], expr_probs[expr_mask].argmax(1), labels=range(8), average="macro",
                    zero_division=0)
    f1_a = np.mean([f1_score(au[au_mask, k], au_probs[au_mask, k] >= 0.5, zero_division=0) for k in range(12)])
    assert terms.p_mtl == pytest.approx((ccc_v + ccc_a) / 2 + f1_e + f1_a, abs=1e-12)
    assert terms.ccc_mean == pytest.approx((ccc_v + ccc_a) / 2, abs=1e-12)
    assert lsd_score(expr_probs[:, :6], np.minimum(expr, 5)) == pytest.approx(
        f1_score(np.minimum(expr, 5), expr_probs[:, :6].argmax(1), average="macro", zero_division=0))


def test_p_mtl_needs_valence_and_arousal():
    with pytest.raises(MetricInputError, match="va"):
        p_mtl(np.zeros((2, 3)), np.zeros((2, 3)), np.zeros(2, dtype=int), np.zeros(2, dtype=int),
              np.zeros((2, 12)), np.zeros((2, 12)))


# --------------------------------------------------------------------------- submission files


def mtl_test_predictions():
    """Two test images: VA outside [-1, 1] on one side each, AU1 exactly at 0.5, AU2 at 0.45."""
    va = np.array([[1.5, -0.25], [-2.0, 0.3]])
    expr = np.full((2, 8), 0.1)
    expr[0, 3], expr[1, 7] = 0.9, 0.8
    au = np.full((2, 12), 0.2)
    au[0, 0], au[1, 1] = 0.5, 0.45
    return {"va": va, "expr": expr, "au": au}


def test_mtl_track_writes_its_submission(host, tmp_path):
    track = host.tracks.get("mtl")
    path = tmp_path / "out" / "mtl.txt"
    ids = ["cropped_aligned/v1/00001.jpg", "cropped_aligned/v1/00002.jpg"]
    track.write_submission(path, ids, mtl_test_predictions())
    back = read_mtl_submission(path)
    assert back.names == ["v1/00001.jpg", "v1/00002.jpg"]  # as the release list names them
    np.testing.assert_allclose(back.va, [[1.0, -0.25], [-1.0, 0.3]], atol=1e-6)  # clipped
    assert back.expr.tolist() == [3, 7]  # argmax
    assert back.au[:, :2].tolist() == [[1, 0], [0, 0]] and back.au[:, 2:].sum() == 0  # p >= 0.5
    tuned = np.full(12, 0.5)
    tuned[1] = 0.4
    track.write_submission(path, ids, mtl_test_predictions(), au_thresholds=tuned)
    assert read_mtl_submission(path).au[:, :2].tolist() == [[1, 0], [0, 1]]
    assert [p.name for p in path.parent.iterdir()] == ["mtl.txt"]  # no temporary left behind


def test_lsd_track_writes_its_submission(host, tmp_path):
    path = tmp_path / "lsd.txt"
    probs = np.eye(6)[[5, 0, 3]] * 0.8 + 0.02
    host.tracks.get("lsd").write_submission(path, ["test_set_images/0.jpg", "test_set_images/1.jpg", "2.jpg"],
                                            {"expr": probs})
    assert path.read_text(encoding="utf-8") == "image,expression\n0.jpg,5\n1.jpg,0\n2.jpg,3\n"
    names, labels = read_lsd_submission(path)
    assert names == ["0.jpg", "1.jpg", "2.jpg"] and labels.tolist() == [5, 0, 3]


def test_a_track_without_a_submission_format_refuses(tmp_path):
    class NoFormat(Track):
        name, description, tasks, primary_metric, default_loss = "plain", "", (), "x", "cross-entropy"

        def score(self, predictions, labels, *, au_thresholds=None):
            raise NotImplementedError

    with pytest.raises(ConfigError, match="track 'plain' defines no submission file format"):
        NoFormat().write_submission(tmp_path / "x.txt", [], {})
    assert not (tmp_path / "x.txt").exists()
