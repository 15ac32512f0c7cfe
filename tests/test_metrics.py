"""The metrics against scikit-learn (F1, zero_division=0) and a float64 NumPy CCC."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import confusion_matrix as sk_confusion
from sklearn.metrics import f1_score

from abawbench import metrics
from abawbench.errors import MetricInputError
from abawbench.stats.intervals import percentile_interval

FAST = settings(max_examples=25, deadline=None, derandomize=True)


def numpy_ccc(x: np.ndarray, y: np.ndarray) -> float:
    """The challenge formula with population moments, in float64, 0 when undefined."""
    x, y = x.astype(np.float64), y.astype(np.float64)
    if x.size == 0:
        return 0.0
    denom = x.var() + y.var() + (x.mean() - y.mean()) ** 2
    return 0.0 if denom == 0 else 2 * np.mean((x - x.mean()) * (y - y.mean())) / denom


def sk_f1(target: np.ndarray, pred: np.ndarray, **kwargs) -> np.ndarray:
    """scikit-learn's F1 with zero_division=0; it refuses empty input, which we define as 0."""
    if len(target) == 0:
        labels = kwargs.get("labels")
        return np.zeros(len(labels)) if kwargs.get("average", "binary") is None else np.float64(0.0)
    return f1_score(target, pred, zero_division=0, **kwargs)


def draw(seed: int, n: int, classes: int, missing: float):
    rng = np.random.default_rng(seed)
    target = rng.integers(0, classes, n)
    probs = rng.random((n, classes))
    mask = rng.random(n) >= missing
    return target, probs, mask


@FAST
@given(seed=st.integers(0, 2**31), n=st.integers(0, 60), classes=st.integers(2, 8),
       missing=st.sampled_from([0.0, 0.3, 0.9, 1.0]))
def test_multiclass_f1_matches_sklearn(seed, n, classes, missing):
    target, probs, mask = draw(seed, n, classes, missing)
    pred = probs.argmax(1)
    labels = list(range(classes))
    expected = sk_f1(target[mask], pred[mask], labels=labels, average=None)
    got = metrics.per_class_f1(probs, target, classes, mask)
    assert got.dtype == torch.float64
    np.testing.assert_allclose(got.numpy(), expected, atol=1e-12)
    macro = sk_f1(target[mask], pred[mask], labels=labels, average="macro")
    assert float(metrics.macro_f1(pred, target, classes, mask)) == pytest.approx(macro, abs=1e-12)
    confusion = metrics.confusion_matrix(pred, target, classes, mask).numpy()
    if mask.any():
        np.testing.assert_array_equal(confusion, sk_confusion(target[mask], pred[mask], labels=labels))
    else:
        assert confusion.sum() == 0 and confusion.shape == (classes, classes)


@FAST
@given(seed=st.integers(0, 2**31), n=st.integers(0, 60), missing=st.sampled_from([0.0, 0.5, 1.0]),
       rate=st.sampled_from([0.02, 0.5]))
def test_au_f1_matches_sklearn(seed, n, missing, rate):
    rng = np.random.default_rng(seed)
    target = (rng.random((n, 12)) < rate).astype(np.float32)
    probs = rng.random((n, 12))
    mask = rng.random(n) >= missing
    decisions = metrics.binarize(probs)
    expected = [
        sk_f1(target[mask][:, k], (probs[mask][:, k] >= 0.5)) for k in range(12)
    ]
    got = metrics.per_au_f1(decisions, target, mask)
    np.testing.assert_allclose(got.numpy(), expected, atol=1e-12)
    assert float(metrics.mean_au_f1(decisions, target, mask)) == pytest.approx(np.mean(expected), abs=1e-12)


@FAST
@given(seed=st.integers(0, 2**31), n=st.integers(0, 80), missing=st.sampled_from([0.0, 0.4, 1.0]))
def test_ccc_matches_numpy_float64(seed, n, missing):
    rng = np.random.default_rng(seed)
    target = rng.uniform(-1, 1, (n, 2)).astype(np.float32)
    pred = (0.6 * target + rng.normal(0, 0.3, (n, 2))).astype(np.float32)
    mask = rng.random(n) >= missing
    got = metrics.ccc(pred, target, mask)
    assert got.shape == (2,) and got.dtype == torch.float64
    for k in range(2):
        assert float(got[k]) == pytest.approx(numpy_ccc(pred[mask, k], target[mask, k]), abs=1e-12)


# ----------------------------------------------------------------- degenerate cases


def test_empty_mask_scores_zero_everywhere():
    none = np.zeros(4, dtype=bool)
    assert metrics.ccc(np.ones((4, 2)), np.zeros((4, 2)), none).tolist() == [0.0, 0.0]
    assert float(metrics.macro_f1(np.array([0, 1, 2, 0]), np.array([0, 1, 2, 0]), 3, none)) == 0.0
    assert metrics.per_au_f1(np.ones((4, 3)), np.ones((4, 3)), none).tolist() == [0.0, 0.0, 0.0]


def test_constant_ccc_cases():
    # identical constants: 0/0, defined as 0 (zero_division=0), not a perfect 1
    assert float(metrics.ccc(np.full(5, 0.3), np.full(5, 0.3))) == 0.0
    # constant prediction against varying labels: covariance 0, denominator > 0 -> 0
    assert float(metrics.ccc(np.zeros(4), np.array([-1.0, 0.0, 0.5, 1.0]))) == 0.0
    # different constants: 0 / (mean difference^2) = 0
    assert float(metrics.ccc(np.zeros(3), np.ones(3))) == 0.0
    # perfect agreement with variance: exactly 1
    x = np.array([-0.5, 0.1, 0.9])
    assert float(metrics.ccc(x, x)) == pytest.approx(1.0)


def test_class_absent_from_labels_and_predictions_counts_as_zero_in_macro():
    target = np.array([0, 0, 1, 1])
    pred = np.array([0, 0, 1, 1])
    per_class = metrics.per_class_f1(pred, target, 4)
    assert per_class.tolist() == [1.0, 1.0, 0.0, 0.0]
    assert float(metrics.macro_f1(pred, target, 4)) == 0.5  # over the fixed 4-class list
    assert 0.5 == f1_score(target, pred, labels=range(4), average="macro", zero_division=0)


def test_values_under_a_false_mask_are_ignored_even_when_out_of_range():
    target = np.array([0, 1, -1, 99])
    mask = np.array([True, True, False, False])
    assert float(metrics.macro_f1(np.array([0, 1, 0, 0]), target, 2, mask)) == 1.0
    va = np.array([[0.5, 0.5], [-0.5, 0.2], [-5.0, -5.0]])
    assert metrics.ccc(va, va, np.array([True, True, False])).tolist() == pytest.approx([1.0, 1.0])


# ----------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: metrics.ccc(np.zeros((3, 2)), np.zeros((4, 2))), "shape"),
        (lambda: metrics.ccc(np.array([0.0, np.nan]), np.zeros(2)), "NaN"),
        (lambda: metrics.ccc(np.array([0.0, np.inf]), np.zeros(2)), "infinite"),
        (lambda: metrics.ccc(np.zeros(2), np.zeros(2), np.array([1, 0])), "bool"),
        (lambda: metrics.macro_f1(np.zeros(3, dtype=int), np.array([0, 1, 7]), 3), "out of range"),
        (lambda: metrics.macro_f1(np.zeros(3, dtype=int), np.array([0, -1, 1]), 3), "out of range"),
        (lambda: metrics.macro_f1(np.zeros((3, 4)), np.array([0, 1, 2]), 3), "columns"),
        (lambda: metrics.macro_f1(np.zeros(2, dtype=int), np.array([0, 1, 2]), 3), "rows"),
        (lambda: metrics.macro_f1(np.array([[np.nan, 0, 0]]), np.array([0]), 3), "NaN"),
        (lambda: metrics.per_au_f1(np.ones((2, 3)), np.full((2, 3), 2.0)), "0 or 1"),
        (lambda: metrics.per_au_f1(np.full((2, 3), 0.7), np.ones((2, 3))), "binarize"),
        (lambda: metrics.binarize(np.zeros((2, 3)), [0.5, 0.5]), "thresholds"),
    ],
)
def test_bad_input_raises_metric_input_error(call, message):
    with pytest.raises(MetricInputError, match=message):
        call()


# ----------------------------------------------------------------- threshold tuning


def brute_force_best(probs: np.ndarray, target: np.ndarray, grid) -> tuple[float, float]:
    best_f1, best_t = -1.0, 0.0
    for t in grid:  # ascending; keep the threshold closest to 0.5 among equal F1
        f1 = f1_score(target, probs >= t, zero_division=0)
        if f1 > best_f1 or (f1 == best_f1 and abs(t - 0.5) < abs(best_t - 0.5)):
            best_f1, best_t = f1, t
    return best_f1, best_t


def test_tuned_thresholds_match_brute_force_and_keep_the_fixed_result():
    rng = np.random.default_rng(7)
    n, k = 300, 4
    target = (rng.random((n, k)) < [0.05, 0.3, 0.5, 0.8]).astype(np.float32)
    probs = np.clip(0.3 * target + rng.random((n, k)) * 0.7, 0, 1).round(2)  # ties on grid values
    mask = rng.random(n) > 0.2
    grid = [round(0.05 * i, 2) for i in range(1, 20)]
    tuned = metrics.tune_au_thresholds(probs, target, mask, grid=grid)
    for col in range(k):
        f1, t = brute_force_best(probs[mask, col], target[mask, col], grid)
        assert float(tuned.f1_tuned[col]) == pytest.approx(f1, abs=1e-12)
        assert float(tuned.thresholds[col]) == pytest.approx(t)
        fixed = f1_score(target[mask, col], probs[mask, col] >= 0.5, zero_division=0)
        assert float(tuned.f1_fixed[col]) == pytest.approx(fixed, abs=1e-12)
    assert tuned.mean_tuned >= tuned.mean_fixed


def test_flat_f1_curve_keeps_the_default_threshold():
    target = np.zeros((10, 1))  # no positives: F1 is 0 at every threshold
    tuned = metrics.tune_au_thresholds(np.linspace(0, 1, 10)[:, None], target)
    assert tuned.thresholds.tolist() == [0.5]


# ----------------------------------------------------------------- bootstrap


def test_percentile_interval_is_the_central_share_of_the_values():
    values = np.arange(101, dtype=np.float64)[::-1]  # order does not matter
    assert percentile_interval(values, 0.9) == pytest.approx((5.0, 95.0), abs=1e-12)
    assert percentile_interval([2.0, 2.0, 2.0], 0.95) == (2.0, 2.0)
    low, high = percentile_interval(np.random.default_rng(0).normal(size=10_000), 0.95)
    assert low == pytest.approx(-1.96, abs=0.05) and high == pytest.approx(1.96, abs=0.05)


# ----------------------------------------------------------------- large-N code paths


def test_block_accumulation_matches_sklearn(monkeypatch):
    """The block-by-block paths (confusion, AU tallies, CCC Gram) must not depend on blocking."""
    monkeypatch.setattr(metrics, "BLOCK_ROWS", 7)
    rng = np.random.default_rng(11)
    n = 50
    expr, probs = rng.integers(0, 8, n), rng.random((n, 8))
    au, au_probs = rng.integers(0, 2, (n, 12)).astype(np.float32), rng.random((n, 12))
    va, va_pred = rng.uniform(-1, 1, (n, 2)), rng.uniform(-1, 1, (n, 2))
    mask = rng.random(n) > 0.3
    assert float(metrics.macro_f1(probs, expr, 8, mask)) == pytest.approx(
        sk_f1(expr[mask], probs[mask].argmax(1), labels=list(range(8)), average="macro"), abs=1e-12)
    expected = [sk_f1(au[mask, k], au_probs[mask, k] >= 0.5) for k in range(12)]
    np.testing.assert_allclose(metrics.au_f1(au_probs, au, mask).numpy(), expected, atol=1e-12)
    for k in range(2):
        assert float(metrics.ccc(va_pred, va, mask)[k]) == pytest.approx(
            numpy_ccc(va_pred[mask, k], va[mask, k]), abs=1e-12)


def test_ccc_with_a_large_offset_stays_exact():
    # raw moments would cancel catastrophically here; the centred route must take over
    rng = np.random.default_rng(5)
    y = 1e6 + rng.normal(0, 1e-3, 500)
    x = y + rng.normal(0, 1e-3, 500)
    assert float(metrics.ccc(x, y)) == pytest.approx(numpy_ccc(x, y), abs=1e-9)


def test_nan_on_unlabelled_rows_is_ignored_but_on_labelled_rows_is_an_error():
    x = np.array([[0.1, 0.2], [0.5, -0.3], [np.nan, np.nan], [0.9, 0.4]])
    y = np.array([[0.0, 0.1], [0.4, -0.2], [-5.0, -5.0], [1.0, 0.5]])
    mask = np.array([True, True, False, True])
    got = metrics.ccc(x, y, mask)
    assert float(got[0]) == pytest.approx(numpy_ccc(x[mask, 0], y[mask, 0]), abs=1e-12)
    with pytest.raises(MetricInputError, match="NaN"):
        metrics.ccc(x, y)


def test_thresholds_compare_exactly_in_float32():
    # 0.7 is not a float32: float32(0.7) lies just below 0.7, so it must not count as >= 0.7
    below = np.float32(0.7)
    above = np.nextafter(below, np.float32(1))
    assert float(below) < 0.7 < float(above)
    p = torch.tensor([[below], [above]])
    threshold = torch.tensor([0.7], dtype=torch.float64)
    assert metrics.binarize(p, threshold)[:, 0].tolist() == [False, True]
    assert metrics.au_f1(p, np.array([[0.0], [1.0]]), thresholds=threshold).tolist() == [1.0]
