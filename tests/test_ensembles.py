"""Ensemble methods against hand-computed cases, cross-fitting, and ``abawbench ensemble`` end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from abawbench.cli import main
from abawbench.config import ProtocolConfig
from abawbench.ensembling import cross_fit, ensemble_name, fold_assignment, run_ensemble
from abawbench.errors import ConfigError, DataFormatError
from abawbench.labels import TaskLabels
from abawbench.boards import build_leaderboard
from abawbench.results import EntrySpecModel, RunResult, ScoreWithInterval, read_result, result_path, write_result
from abawbench.specs import EnsembleSpec


def lsd_probs(*rows: list[float]) -> torch.Tensor:
    """Rows over the first classes, padded with zeros to the 6 LSD classes."""
    return torch.tensor([list(r) + [0.0] * (6 - len(r)) for r in rows])


def build(host, method, **options):
    return host.ensembles.get(method).build(options)


# --------------------------------------------------------------------------- mean-prob


def test_mean_prob_lsd_hand_computed(host):
    lsd = host.tracks.get("lsd")
    members = [{"expr": lsd_probs([0.6, 0.4], [0.1, 0.9])}, {"expr": lsd_probs([0.2, 0.8], [0.3, 0.7])}]
    out = build(host, "mean-prob").combine(members, lsd)["expr"]
    assert torch.allclose(out, lsd_probs([0.4, 0.6], [0.2, 0.8]))
    # the seed paper's ensemble: sum of softmax outputs, then argmax; same decision
    assert torch.equal(out.argmax(1), sum(m["expr"] for m in members).argmax(1))


def test_mean_prob_mtl_every_task(host):
    mtl = host.tracks.get("mtl")
    a = {"va": torch.tensor([[0.2, -0.4]]), "expr": torch.eye(8)[[0]], "au": torch.full((1, 12), 0.2)}
    b = {"va": torch.tensor([[0.6, 0.0]]), "expr": torch.eye(8)[[1]], "au": torch.full((1, 12), 0.6)}
    out = build(host, "mean-prob").combine([a, b], mtl)
    assert torch.allclose(out["va"], torch.tensor([[0.4, -0.2]]))
    assert torch.allclose(out["expr"][0, :2], torch.tensor([0.5, 0.5]))
    assert torch.allclose(out["au"], torch.full((1, 12), 0.4))


def test_unknown_option_is_refused(host):
    with pytest.raises(ConfigError, match="unknown option"):
        build(host, "mean-prob", weigths=[1, 2])


# --------------------------------------------------------------------------- majority-vote


def test_majority_vote_expressions_hand_computed(host):
    lsd = host.tracks.get("lsd")
    # row 0: votes 0,0,1 -> class 0 wins 2:1 although the mean probability favours class 1
    # row 1: votes 1,0,1 -> class 1
    members = [{"expr": lsd_probs([0.51, 0.49], [0.2, 0.8])},
               {"expr": lsd_probs([0.51, 0.49], [0.7, 0.3])},
               {"expr": lsd_probs([0.0, 1.0], [0.4, 0.6])}]
    out = build(host, "majority-vote").combine(members, lsd)["expr"]
    assert out.argmax(1).tolist() == [0, 1]
    assert build(host, "mean-prob").combine(members, lsd)["expr"].argmax(1).tolist()[0] == 1
    # (votes + mean probability) / (M + 1), row 0: class 0 = (2 + 0.34) / 4
    assert out[0, 0].item() == pytest.approx((2 + 1.02 / 3) / 4, abs=1e-6)
    assert torch.allclose(out.sum(1), torch.ones(2))


def test_majority_vote_tie_broken_by_summed_probability(host):
    lsd = host.tracks.get("lsd")
    # one vote each; summed probability 0.9 + 0.45 = 1.35 for class 0, 0.65 for class 1
    members = [{"expr": lsd_probs([0.9, 0.1])}, {"expr": lsd_probs([0.45, 0.55])}]
    assert build(host, "majority-vote").combine(members, lsd)["expr"].argmax(1).tolist() == [0]
    members = [{"expr": lsd_probs([0.6, 0.4])}, {"expr": lsd_probs([0.05, 0.95])}]
    assert build(host, "majority-vote").combine(members, lsd)["expr"].argmax(1).tolist() == [1]


def test_majority_vote_aus_and_va(host):
    mtl = host.tracks.get("mtl")

    def member(va, au0, au1):
        au = torch.zeros(1, 12)
        au[0, 0], au[0, 1] = au0, au1
        return {"va": torch.tensor([va]), "expr": torch.eye(8)[[0]], "au": au}

    three = [member([0.1, 0.9], 0.6, 0.9), member([0.5, -0.3], 0.7, 0.2), member([-0.2, 0.0], 0.1, 0.3)]
    out = build(host, "majority-vote").combine(three, mtl)
    assert torch.allclose(out["va"], torch.tensor([[0.1, 0.0]]))  # element-wise median
    assert out["au"][0, :2].tolist() == pytest.approx([2 / 3, 1 / 3])  # AU1 positive, AU2 negative
    two = three[:2]
    out = build(host, "majority-vote").combine(two, mtl)
    assert torch.allclose(out["va"], torch.tensor([[0.3, 0.3]]))  # even: mean of the middle two
    # AU1: both vote 1 -> 1.0; AU2: a 1:1 tie -> mean probability 0.55 >= 0.5 -> positive
    assert out["au"][0, :2].tolist() == pytest.approx([1.0, 0.55])


# --------------------------------------------------------------------------- weighted-prob


def test_weighted_prob_fixed_weights_hand_computed(host):
    lsd = host.tracks.get("lsd")
    members = [{"expr": lsd_probs([1.0, 0.0])}, {"expr": lsd_probs([0.0, 1.0])}]
    ensemble = build(host, "weighted-prob", weights=[3, 1])
    ensemble.fit(members, {}, lsd)
    assert torch.allclose(ensemble.combine(members, lsd)["expr"], lsd_probs([0.75, 0.25]))


def test_weighted_prob_fit_prefers_the_better_member(host):
    mtl = host.tracks.get("mtl")
    gen = torch.Generator().manual_seed(0)
    n = 60
    classes = torch.arange(n) % 8
    va = torch.rand(n, 2, generator=gen) * 2 - 1
    au = (torch.rand(n, 12, generator=gen) > 0.5).float()
    good = {"va": va, "expr": torch.eye(8)[classes] * 0.9 + 0.0125, "au": au * 0.8 + 0.1}
    bad = {"va": torch.rand(n, 2, generator=gen) * 2 - 1, "expr": torch.full((n, 8), 0.125),
           "au": torch.full((n, 12), 0.5)}
    labels = {"va": TaskLabels(va.numpy(), np.ones(n, bool)),
              "expr": TaskLabels(classes.numpy(), np.ones(n, bool)),
              "au": TaskLabels(au.numpy(), np.ones(n, bool))}
    ensemble = build(host, "weighted-prob")
    ensemble.fit([bad, good], labels, mtl)
    for task in ("va", "expr", "au"):
        assert ensemble.weights[task][1] > 0.8, task
        assert ensemble.weights[task].sum().item() == pytest.approx(1.0)


def test_weighted_prob_zero_steps_is_the_mean(host):
    lsd = host.tracks.get("lsd")
    members = [{"expr": lsd_probs([0.6, 0.4])}, {"expr": lsd_probs([0.2, 0.8])}]
    ensemble = build(host, "weighted-prob", steps=0)
    ensemble.fit(members, {"expr": TaskLabels(np.array([0]), np.array([True]))}, lsd)
    assert torch.allclose(ensemble.combine(members, lsd)["expr"], lsd_probs([0.4, 0.6]))


# --------------------------------------------------------------------------- cross-fitting


class SpyEnsemble:
    """Records the rows it was fitted on (row numbers ride in the predictions)."""

    fitted: list[set[int]] = []

    def __init__(self, options):
        self.rows: set[int] = set()

    def fit(self, members, labels, track):
        self.rows = {int(r) for r in members[0]["expr"][:, 0].tolist()}
        SpyEnsemble.fitted.append(self.rows)

    def combine(self, members, track):
        held = {int(r) for r in members[0]["expr"][:, 0].tolist()}
        assert not held & self.rows, "combined rows it was fitted on"
        return {"expr": members[0]["expr"]}


def test_cross_fit_never_scores_a_row_it_fitted(host):
    lsd = host.tracks.get("lsd")
    n = 23
    expr = torch.zeros(n, 6)
    expr[:, 0] = torch.arange(n).float()
    labels = {"expr": TaskLabels(np.zeros(n, np.int64), np.ones(n, bool))}
    SpyEnsemble.fitted = []
    out = cross_fit(EnsembleSpec("spy", SpyEnsemble), {}, [{"expr": expr}, {"expr": expr}], labels, lsd,
                    folds=5, seed=3)
    assert torch.equal(out["expr"], expr)  # every row predicted once, in its place
    assert len(SpyEnsemble.fitted) == 5
    assert all(len(rows) in (18, 19) for rows in SpyEnsemble.fitted)  # k-1 of 5 folds


def test_fold_assignment_is_seeded_and_balanced():
    a = fold_assignment(10, 3, seed=1)
    assert torch.equal(a, fold_assignment(10, 3, seed=1))
    assert sorted(torch.bincount(a).tolist()) == [3, 3, 4]
    with pytest.raises(ConfigError):
        fold_assignment(2, 5, seed=0)


# --------------------------------------------------------------------------- end to end


def write_member(runs, entry: str, expr: np.ndarray, labels: np.ndarray, *, ids=None, seed=0,
                 status="completed", fingerprint="fp") -> None:
    """A finished lsd entry: result JSON plus the predictions file the protocol writes."""
    folder = result_path(runs, "lsd", entry, seed).parent
    folder.mkdir(parents=True, exist_ok=True)
    n = len(labels)
    ids = ids or [f"{i}.jpg" for i in range(n)]
    np.savez(folder / f"seed{seed}.predictions.npz", **{
        "validation/ids": np.asarray(ids), "validation/expr": expr.astype(np.float32),
        "test/ids": np.asarray(["t0.jpg", "t1.jpg"]), "test/expr": expr[:2].astype(np.float32),
        "validation/labels/expr/values": labels.astype(np.int64),
        "validation/labels/expr/mask": np.ones(n, bool)})
    result = RunResult(
        status=status, track="lsd", entry=entry, seed=seed, primary_metric="macro_f1",
        primary=ScoreWithInterval(value=0.5) if status == "completed" else None,
        spec=EntrySpecModel(model=entry, loss="cross-entropy", protocol=ProtocolConfig()),
        dataset="synthface", data_root="/d", dataset_fingerprints={"validation": fingerprint},
        split_sizes={"validation": n}, predictions_file=f"seed{seed}.predictions.npz")
    write_result(result_path(runs, "lsd", entry, seed), result)


@pytest.fixture
def members(tmp_path):
    runs = tmp_path / "runs"
    labels = np.arange(12) % 6
    eye = np.eye(6)
    right = eye[labels] * 0.7 + 0.05
    wrong = eye[(labels + 1) % 6] * 0.6 + eye[labels] * 0.3 + 0.02
    write_member(runs, "a", right, labels)
    write_member(runs, "b", wrong, labels)
    write_member(runs, "c", right[::-1].copy(), labels)
    return runs


def test_ensemble_command_writes_an_entry_the_leaderboard_ranks(host, members, capsys):
    assert main(["ensemble", "--track", "lsd", "--method", "mean-prob", "--members", "a,b",
                 "--runs", str(members), "--folds", "3", "--bootstrap", "20"]) == 0
    assert "ensemble:mean-prob(a,b)" in capsys.readouterr().out
    name = ensemble_name("mean-prob", ["a", "b"])
    (path,) = [p for p in (members / "lsd").rglob("seed0.json") if read_result(p).entry == name]
    result = read_result(path)
    assert result.primary.value == pytest.approx(1.0)  # a (0.75 on the right class) outweighs b
    assert result.primary.ci_low is not None
    assert result.config["ensemble"]["members"] == ["a", "b"]
    with np.load(path.parent / result.predictions_file) as archive:
        assert archive["test/expr"].shape == (2, 6)
        assert list(archive["validation/ids"]) == [f"{i}.jpg" for i in range(12)]
    from abawbench.results import iter_results

    board = build_leaderboard([r for _p, r in iter_results(members, "lsd")], track="lsd",
                              primary_metric="macro_f1", higher_is_better=True)
    assert name in [row.entry for row in board.sections[0].rows]


def test_weighted_prob_end_to_end_is_scored_out_of_fold(host, members):
    lsd = host.tracks.get("lsd")
    labels = np.arange(12) % 6
    eye = np.eye(6)
    write_member(members, "confident-wrong", eye[(labels + 1) % 6] * 0.9 + 0.02, labels)
    pair = ["confident-wrong", "a"]
    _p, plain = run_ensemble(lsd, host.ensembles.get("mean-prob"), pair, members, folds=3, bootstrap=0)
    assert plain.primary.value == pytest.approx(0.0)  # averaging lets the confident member win
    _p, result = run_ensemble(lsd, host.ensembles.get("weighted-prob"), pair, members,
                              folds=3, bootstrap=0, options={"steps": 100})
    assert result.config["ensemble"]["folds"] == 3
    assert result.primary.value == pytest.approx(1.0)  # weights learnt on 8 rows hold on the other 4


def test_members_must_list_the_same_images_in_order(host, members):
    labels = np.arange(12) % 6
    shuffled = [f"{i}.jpg" for i in range(12)]
    shuffled[3], shuffled[4] = shuffled[4], shuffled[3]
    write_member(members, "d", np.eye(6)[labels], labels, ids=shuffled)
    with pytest.raises(DataFormatError, match="validation row 3: 'a' has '3.jpg' but 'd' has '4.jpg'"):
        run_ensemble(host.tracks.get("lsd"), host.ensembles.get("mean-prob"), ["a", "d"], members)


def test_failed_or_missing_members_are_refused(host, members):
    labels = np.arange(12) % 6
    write_member(members, "dead", np.eye(6)[labels], labels, status="failed")
    lsd, spec = host.tracks.get("lsd"), host.ensembles.get("mean-prob")
    with pytest.raises(ConfigError, match="failed"):
        run_ensemble(lsd, spec, ["a", "dead"], members)
    with pytest.raises(ConfigError, match="entries there: a, b, c, dead"):
        run_ensemble(lsd, spec, ["a", "nope"], members)
    assert main(["ensemble", "--track", "lsd", "--method", "mean-prob", "--members", "a,nope",
                 "--runs", str(members)]) == 2


def test_members_on_different_data_are_refused(host, members):
    labels = np.arange(12) % 6
    write_member(members, "other", np.eye(6)[labels], labels, fingerprint="fp-other")
    with pytest.raises(DataFormatError, match="different data"):
        run_ensemble(host.tracks.get("lsd"), host.ensembles.get("mean-prob"), ["a", "other"], members)


def test_options_flag_reaches_the_method(host, members, capsys):
    assert main(["ensemble", "--track", "lsd", "--method", "weighted-prob", "--members", "a,c",
                 "--runs", str(members), "--options", json.dumps({"weights": [0, 1]}), "--bootstrap", "0",
                 "--name", "fixed"]) == 0
    result = read_result(result_path(members, "lsd", "fixed", 0))
    # all weight on c, the member that is always wrong: weights fitted on validation never do that
    assert result.entry == "fixed" and result.primary.value == pytest.approx(0.0)


# --------------------------------------------------------------------------- with the real protocol


@pytest.mark.slow
def test_protocol_entries_and_fused_features_ensemble_and_rank(tmp_path, tiny_host, capsys):
    """A real run (backbone 'tiny' and the fused-feature model 'tiny+tiny'), then a
    prediction-level ensemble of the two entries, all ranked in one section."""
    from abawbench.config import load_config
    from abawbench.run.runner import Runner
    from abawbench.results import iter_results

    tree = tiny_host.datasets.get("synthface").generate("lsd", tmp_path / "tree", 36, 5)
    config = load_config(None, {
        "track": "lsd", "data": tree, "models": ["tiny", "tiny+tiny"],
        "output": tmp_path / "runs", "cache_dir": tmp_path / "cache",
        "protocol": {"epochs": 2, "batch_size": 16, "bootstrap": 0}})
    summary = Runner(config, host=tiny_host, progress=False).run()
    assert [r.status for r in summary.results] == ["completed"] * 2, [r.error for r in summary.results]
    single, fused = (r.entry for r in summary.results)
    assert single.startswith("tiny__linear-probe-linear__cross-entropy__") and fused.startswith("tiny+tiny__")
    readable_single = single.rsplit("__", 1)[0]  # members may be named without the settings digest
    assert main(["ensemble", "--track", "lsd", "--method", "majority-vote", "--members", f"{readable_single},{fused}",
                 "--runs", str(tmp_path / "runs"), "--folds", "3", "--bootstrap", "0"]) == 0
    results = [r for _p, r in iter_results(tmp_path / "runs", "lsd")]
    board = build_leaderboard(results, track="lsd", primary_metric="macro_f1", higher_is_better=True)
    (section,) = board.sections
    assert {row.entry for row in section.rows} == {single, fused, f"ensemble:majority-vote({single},{fused})"}
    assert all(row.rank.isdigit() for row in section.rows)


from test_protocol import tiny_host  # noqa: E402,F401  (the fixture: a tiny backbone plugin)
