"""Scores are validated before they reach a result: a non-finite or impossible score fails the
entry with the reason, so it can neither rank nor pass ``compare``."""

from __future__ import annotations

import csv
import io

import math

import pytest

from abawbench import cli
from abawbench.errors import MetricInputError
from abawbench.plugins import load_plugins
from abawbench.results import iter_results
from abawbench.tracks import TrackScore

from plugin_helpers import make_module, serve_with_plugin

# A third party's tracks whose scoring is broken (a NaN sub-score, an impossible primary F1;
# their primary still selects the epoch), and a dataset that reads the embedded LSD layout for
# them: everything else is the real run.
BROKEN_TRACKS = '''
from abawbench.hookspecs import hookimpl
from abawbench.specs import DatasetSpec
from abawbench.tracks import TrackScore
from abawbench_builtins.synthface import read_split as synthface_read_split
from abawbench_builtins.tracks import LSDTrack

class NaNSubScore(LSDTrack):
    name = "lsd-nan"

    def score(self, predictions, labels, *, au_thresholds=None):
        real = super().score(predictions, labels)
        return TrackScore(primary=real.primary, sub_scores={"agreement": float("nan")})

class ImpossiblePrimary(LSDTrack):
    name = "lsd-impossible"

    def score(self, predictions, labels, *, au_thresholds=None):
        return TrackScore(primary=1.5, sub_scores={})

def read_split(root, track, split, options):
    return synthface_read_split(root, LSDTrack(), split, options)

@hookimpl
def abawbench_register_tracks(register):
    register(NaNSubScore())
    register(ImpossiblePrimary())

@hookimpl
def abawbench_register_datasets(register):
    register(DatasetSpec(name="lsd-layout", tracks=("lsd-nan", "lsd-impossible"), read_split=read_split))
'''


@pytest.fixture(scope="module")
def lsd_tree(tmp_path_factory):
    host = load_plugins(strict=True)
    return host.datasets.get("synthface").generate("lsd", tmp_path_factory.mktemp("lsd") / "tree", 60, 3)


@pytest.fixture
def broken_host():
    return serve_with_plugin(make_module("broken_tracks", BROKEN_TRACKS), "broken-tracks")


@pytest.mark.parametrize(("track", "reason"), [
    ("lsd-nan", "agreement = nan is not finite"),
    ("lsd-impossible", "macro_f1 = 1.5 is outside [0.0, 1.0]"),
])
def test_an_invalid_score_fails_the_entry_with_the_reason(tmp_path, lsd_tree, broken_host, track, reason, capsys):
    runs = tmp_path / "runs"
    code = cli.main(["run", "--track", track, "--data", str(lsd_tree), "--models", "hog", "--epochs", "1",
                     "--bootstrap", "0", "--output", str(runs), "--cache-dir", str(tmp_path / "cache"),
                     "--no-progress"])
    assert code == 1
    [(_path, result)] = list(iter_results(runs, track))
    assert result.status == "failed" and result.primary is None
    assert reason in result.error
    # the board lists it as failed, never ranked
    capsys.readouterr()
    assert cli.main(["leaderboard", "--track", track, "--runs", str(runs), "--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    measured = [row for row in rows if row["rank"] != "reported"]
    assert measured and all(row["rank"] == "failed" for row in measured)


def test_builtin_tracks_bound_every_score(host):
    """P_MTL is mean CCC + two F1s: [-1, 3]; each term has its own range."""
    mtl, lsd = host.tracks.get("mtl"), host.tracks.get("lsd")
    assert mtl.score_ranges()["p_mtl"] == (-1.0, 3.0)
    assert lsd.score_ranges() == {"macro_f1": (0.0, 1.0)}
    perfect = TrackScore(primary=3.0, sub_scores={"ccc_valence": 1.0, "ccc_arousal": 1.0, "ccc_mean": 1.0,
                                                  "f1_expr": 1.0, "f1_au": 1.0})
    mtl.check_score(perfect)
    with pytest.raises(MetricInputError, match=r"ccc_arousal = -1.2 is outside \[-1.0, 1.0\]"):
        mtl.check_score(TrackScore(primary=0.5, sub_scores={"ccc_arousal": -1.2}))
    with pytest.raises(MetricInputError, match="p_mtl = inf is not finite"):
        mtl.check_score(TrackScore(primary=math.inf))
