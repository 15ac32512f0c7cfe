"""The built-in losses: direct formulas, masking, gradients and option validation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from abawbench.errors import ConfigError
from abawbench.specs import LossContext

N = 7
EXPR_COUNTS = np.array([40, 10, 5, 1, 30, 8, 6, 0])
AU_POSITIVES = np.array([10, 5, 20, 30, 40, 35, 25, 2, 3, 5, 60, 10])


def context(**options) -> LossContext:
    return LossContext(
        class_counts={"expr": EXPR_COUNTS, "au": AU_POSITIVES},
        label_counts={"va": 100, "expr": 100, "au": 100},
        options=options,
    )


def batch(dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    outputs = {
        "va": torch.tanh(torch.randn(N, 2, generator=g, dtype=dtype)),
        "expr": torch.randn(N, 8, generator=g, dtype=dtype),
        "au": torch.randn(N, 12, generator=g, dtype=dtype),
    }
    mask = torch.tensor([True, False, True, True, False, True, True])
    targets = {
        "va": (torch.rand(N, 2, generator=g, dtype=dtype) * 2 - 1, mask),
        # -1 sentinels under the mask must be harmless
        "expr": (torch.where(mask, torch.randint(0, 8, (N,), generator=g), -1), mask),
        "au": (torch.where(mask[:, None], torch.randint(0, 2, (N, 12), generator=g).to(dtype), -1.0), mask),
    }
    return outputs, targets


def ccc_reference(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    mx, my = x.mean(0), y.mean(0)
    cov = ((x - mx) * (y - my)).mean(0)
    return 2 * cov / (x.var(0, unbiased=False) + y.var(0, unbiased=False) + (mx - my) ** 2)


def only(outputs, targets, task):
    return {task: outputs[task]}, {task: targets[task]}


def test_losses_are_registered(host):
    names = set(host.losses.names())
    assert {"ccc", "cross-entropy", "cross-entropy-smooth", "cross-entropy-balanced", "focal", "bce",
            "multitask"} <= names


def test_ccc_is_one_minus_ccc_per_column_summed(host):
    outputs, targets = batch()
    mtl_va = _va_track(host)
    loss = host.losses.get("ccc").build(mtl_va, context())
    x, (y, m) = outputs["va"], targets["va"]
    expected = (1 - ccc_reference(x[m], y[m])).sum()
    assert float(loss(*only(outputs, targets, "va"))) == pytest.approx(float(expected), abs=1e-7)
    mean = host.losses.get("ccc").build(mtl_va, context(reduction="mean"))
    assert float(mean(*only(outputs, targets, "va"))) == pytest.approx(float(expected) / 2, abs=1e-7)


@pytest.mark.parametrize("smoothing", [0.0, 0.2])
@pytest.mark.parametrize("weights", ["none", "inverse", "effective"])
def test_cross_entropy_equals_torch_on_labelled_rows(host, weights, smoothing):
    outputs, targets = batch()
    lsd_like = _expr_track(host)
    loss = host.losses.get("cross-entropy").build(
        lsd_like, context(class_weights=weights, label_smoothing=smoothing, beta=0.99)
    )
    x, (y, m) = outputs["expr"], targets["expr"]
    w = loss.losses["expr"].weight
    expected = F.cross_entropy(x[m], y[m], weight=None if w is None else w.double(), label_smoothing=smoothing)
    assert float(loss(*only(outputs, targets, "expr"))) == pytest.approx(float(expected), rel=1e-6)


def test_class_weights_inverse_and_effective():
    from abawbench_builtins.losses.weights import class_weights

    counts = torch.tensor([40.0, 10.0, 0.0])
    inverse = class_weights("inverse", counts, 0.0)
    assert inverse[1] / inverse[0] == pytest.approx(4.0)  # count(a) / count(b), as the paper
    assert inverse[2] == inverse[1]  # an empty class gets the largest weight, not infinity
    assert float(inverse.mean()) == pytest.approx(1.0)
    effective = class_weights("effective", counts, 0.9)
    expected = (1 - 0.9) / (1 - 0.9 ** torch.tensor([40.0, 10.0]))
    assert float(effective[1] / effective[0]) == pytest.approx(float(expected[1] / expected[0]))


def test_presets_fix_their_defining_option(host):
    track = _expr_track(host)
    smooth = host.losses.get("cross-entropy-smooth").build(track, context())
    assert smooth.losses["expr"].label_smoothing == 0.2
    balanced = host.losses.get("cross-entropy-balanced").build(track, context())
    assert balanced.losses["expr"].weight is not None
    with pytest.raises(ConfigError, match="fixes label_smoothing"):
        host.losses.get("cross-entropy-smooth").build(track, context(label_smoothing=0.1))


def test_focal_formula_and_gamma_zero_is_cross_entropy(host):
    outputs, targets = batch()
    track = _expr_track(host)
    x, (y, m) = outputs["expr"], targets["expr"]
    log_p = F.log_softmax(x[m], 1).gather(1, y[m, None]).squeeze(1)
    expected = (-(1 - log_p.exp()) ** 3 * log_p).mean()
    focal = host.losses.get("focal").build(track, context(gamma=3))
    assert float(focal(*only(outputs, targets, "expr"))) == pytest.approx(float(expected), rel=1e-9)
    zero = host.losses.get("focal").build(track, context(gamma=0))
    assert float(zero(*only(outputs, targets, "expr"))) == pytest.approx(float(F.cross_entropy(x[m], y[m])))


def test_bce_pos_weight_is_negatives_over_positives(host):
    outputs, targets = batch()
    track = _au_track(host)
    loss = host.losses.get("bce").build(track, context())
    pos_weight = torch.as_tensor((100 - AU_POSITIVES) / AU_POSITIVES, dtype=torch.float64)
    assert torch.allclose(loss.losses["au"].pos_weight.double(), pos_weight, rtol=1e-6)
    x, (y, m) = outputs["au"], targets["au"]
    expected = F.binary_cross_entropy_with_logits(x[m], y[m], pos_weight=loss.losses["au"].pos_weight.double())
    assert float(loss(*only(outputs, targets, "au"))) == pytest.approx(float(expected), rel=1e-6)
    with pytest.raises(ConfigError, match="class counts"):
        host.losses.get("bce").build(track, LossContext())


def test_multitask_is_the_weighted_sum_and_skips_missing_tasks(host):
    outputs, targets = batch()
    mtl = host.tracks.get("mtl")
    weights = {"va": 2.0, "expr": 0.5, "au": 1.0}
    loss = host.losses.get("multitask").build(mtl, context(weights=weights))
    parts = {
        "va": host.losses.get("ccc").build(_va_track(host), context()),
        "expr": host.losses.get("cross-entropy").build(_expr_track(host), context()),
        "au": host.losses.get("bce").build(_au_track(host), context()),
    }
    expected = sum(w * float(parts[t](*only(outputs, targets, t))) for t, w in weights.items())
    assert float(loss(outputs, targets)) == pytest.approx(expected, rel=1e-9)
    # lsd has only "expr": the default weights of va and au are skipped
    lsd = host.losses.get("multitask").build(host.tracks.get("lsd"), context())
    assert list(lsd.losses) == ["expr"]
    without_au = host.losses.get("multitask").build(mtl, context(weights={"au": 0}))
    assert list(without_au.losses) == ["va", "expr"]


def test_unlabelled_rows_contribute_nothing(host):
    outputs, targets = batch()
    loss = host.losses.get("multitask").build(host.tracks.get("mtl"), context())
    changed = {t: o.clone() for t, o in outputs.items()}
    for task in changed:
        changed[task][1] = changed[task][1] * 3 + 1  # row 1 is unlabelled everywhere
    assert float(loss(changed, targets)) == pytest.approx(float(loss(outputs, targets)), rel=1e-12)


def test_a_batch_without_labels_gives_a_differentiable_zero(host):
    outputs, targets = batch()
    outputs = {t: o.detach().requires_grad_() for t, o in outputs.items()}
    none = {t: (v, torch.zeros_like(m)) for t, (v, m) in targets.items()}
    loss = host.losses.get("multitask").build(host.tracks.get("mtl"), context(
        options={"expr": {"class_weights": "inverse", "label_smoothing": 0.1}}))
    value = loss(outputs, none)
    assert float(value.detach()) == 0.0
    value.backward()
    for tensor in outputs.values():
        assert tensor.grad is not None and torch.all(tensor.grad == 0)


@pytest.mark.parametrize("name, task, options", [
    ("ccc", "va", {}),
    ("cross-entropy", "expr", {"class_weights": "effective", "label_smoothing": 0.2}),
    ("focal", "expr", {"gamma": 2.0, "class_weights": "inverse"}),
    ("bce", "au", {}),
])
def test_gradcheck_float64(host, name, task, options):
    outputs, targets = batch(seed=2)
    track = {"va": _va_track, "expr": _expr_track, "au": _au_track}[task](host)
    loss = host.losses.get(name).build(track, context(**options)).double()
    values, mask = targets[task]

    def f(x):
        return loss({task: x}, {task: (values, mask)})

    x = outputs[task].detach().clone().requires_grad_()
    assert torch.autograd.gradcheck(f, (x,), eps=1e-6, atol=1e-5)


@pytest.mark.parametrize("name, options, message", [
    ("cross-entropy", {"label_smothing": 0.1}, "did you mean 'label_smoothing'"),
    ("cross-entropy", {"label_smoothing": 1.0}, "outside"),
    ("cross-entropy", {"class_weights": "balanced"}, "not one of"),
    ("cross-entropy", {"beta": "high"}, "number"),
    ("focal", {"gamma": -1}, "outside"),
    ("multitask", {"weights": {"va": -1}}, "outside"),
    ("multitask", {"losses": {"expr": "bce"}}, "cannot use 'bce'"),
    ("multitask", {"options": {"pose": {}}}, "no task"),
    ("multitask", {"options": {"expr": {"gamma": 2}}}, "unknown option 'gamma'"),
    ("multitask", {"weights": {"va": 0, "expr": 0, "au": 0}}, "weight 0"),
])
def test_bad_options_are_config_errors(host, name, options, message):
    with pytest.raises(ConfigError, match=message):
        host.losses.get(name).build(host.tracks.get("mtl") if name == "multitask" else _expr_track(host),
                                    context(**options))


def test_single_kind_loss_refuses_a_track_with_other_tasks(host):
    with pytest.raises(ConfigError, match="use 'multitask'"):
        host.losses.get("cross-entropy").build(host.tracks.get("mtl"), context())


def test_class_weights_need_counts(host):
    with pytest.raises(ConfigError, match="class counts of task 'expr'"):
        host.losses.get("cross-entropy-balanced").build(_expr_track(host), LossContext())


# --------------------------------------------------------------------------- one-task tracks


def _one_task_track(host, task: str):
    """A track holding one task of mtl, to exercise the single-kind losses on it."""
    from abawbench.tracks import Track

    mtl = host.tracks.get("mtl")

    class OneTask(Track):
        name = f"mtl-{task}"
        description = "test track"
        tasks = (mtl.task(task),)
        primary_metric = "none"
        default_loss = "multitask"

        def score(self, predictions, labels, *, au_thresholds=None):
            raise NotImplementedError

    return OneTask()


def _va_track(host):
    return _one_task_track(host, "va")


def _expr_track(host):
    return _one_task_track(host, "expr")


def _au_track(host):
    return _one_task_track(host, "au")
