"""Two documented rules the metrics must keep at every length and for every input type:
CCC of one and the same constant is 0 (undefined, not perfect), and an AU threshold is
compared exactly as given (never rounded to float32 first)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from abawbench import metrics

CONSTANTS = (0.1, 0.3, 0.7, -0.9, 1 / 3, 0.123456789, 1e-3)


@pytest.mark.parametrize("constant", CONSTANTS)
def test_ccc_of_an_identical_constant_is_zero_at_every_length(constant: float) -> None:
    for n in range(1, 65):
        x = np.full(n, constant)
        assert float(metrics.ccc(x, x.copy())) == 0.0, n
        assert float(metrics.ccc(x.astype(np.float32), x.astype(np.float32))) == 0.0, n
        two = np.stack([x, x], axis=1)
        assert metrics.ccc(two, two.copy()).tolist() == [0.0, 0.0], n


def test_ccc_of_an_identical_constant_is_zero_under_a_mask() -> None:
    for n in range(1, 65):
        x = np.concatenate([np.full(n, 0.1), np.linspace(-1, 1, 5)])
        mask = np.arange(n + 5) < n
        assert float(metrics.ccc(x, x.copy(), mask)) == 0.0, n


def test_ccc_of_a_constant_against_varying_labels_is_still_zero() -> None:
    x = np.full(9, 0.1)
    assert float(metrics.ccc(x, np.linspace(-1, 1, 9))) == pytest.approx(0.0, abs=1e-15)


def test_ccc_of_a_varying_identical_series_is_one() -> None:
    x = np.linspace(-1, 1, 17)
    assert float(metrics.ccc(x, x.copy())) == pytest.approx(1.0, abs=1e-15)


THRESHOLD_FORMS = {
    "float": lambda t, k: t,
    "list": lambda t, k: [t] * k,
    "numpy": lambda t, k: np.full(k, t),
    "tensor": lambda t, k: torch.full((k,), t, dtype=torch.float64),
}


@pytest.mark.parametrize("form", sorted(THRESHOLD_FORMS))
def test_binarize_never_rounds_the_threshold(form: str) -> None:
    threshold = THRESHOLD_FORMS[form](0.7, 2)
    probs = np.array([[0.69999999, 0.7], [np.nextafter(0.7, 0), np.nextafter(0.7, 1)]])
    assert metrics.binarize(probs, threshold).tolist() == [[False, True], [False, True]]
    labels = np.array([[1.0, 1.0], [1.0, 1.0]])
    # au_f1 decides exactly as binarize does
    assert metrics.au_f1(probs, labels, thresholds=threshold).tolist() == pytest.approx([0.0, 1.0])


@pytest.mark.parametrize("form", sorted(THRESHOLD_FORMS))
def test_float32_probabilities_compare_against_the_exact_threshold(form: str) -> None:
    threshold = THRESHOLD_FORMS[form](0.7, 1)
    below = np.float32(0.7)  # float32's 0.7 lies below 0.7
    assert float(below) < 0.7
    above = np.nextafter(below, np.float32(1))
    probs = np.array([[below], [above]], dtype=np.float32)
    assert metrics.binarize(probs, threshold).squeeze(1).tolist() == [False, True]


def test_a_float32_tensor_threshold_is_taken_as_the_value_it_holds() -> None:
    t32 = torch.tensor([0.7], dtype=torch.float32)  # holds 0.699999988...
    probs = np.array([[0.6999999881]])
    assert metrics.binarize(probs, t32).tolist() == [[float(t32[0]) <= 0.6999999881]]


def test_a_threshold_that_is_not_a_number_is_one_clear_error() -> None:
    with pytest.raises(metrics.MetricInputError, match="thresholds"):
        metrics.binarize(np.zeros((1, 1)), "high")
