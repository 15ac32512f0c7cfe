"""``abawbench ensemble``: combine finished entries' saved predictions into a new entry."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from abawbench.commands import DefaultsHelpFormatter
from abawbench.errors import ConfigError


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "ensemble",
        help="ensemble finished entries' saved predictions (mean-prob, weighted-prob, majority-vote)",
        description=(
            "Combine the validation (and test) probabilities that finished runs saved, score the "
            "combination with the track and write it as a new entry (e.g. 'ensemble:mean-prob(a,b)') "
            "beside the members, so the leaderboard and compare treat it like any entry. Validation "
            "scores are out of fold: a method that fits (weighted-prob) is fitted on k-1 folds and "
            "scored on the held-out one. For a feature-level ensemble (one head on fused features) "
            "run a model named 'a+b' instead."
        ),
        formatter_class=DefaultsHelpFormatter,
    )
    parser.add_argument("--track", required=True, help="track name (see 'abawbench list tracks')")
    parser.add_argument("--method", required=True, help="ensemble method (see 'abawbench list ensembles')")
    parser.add_argument("--members", required=True,
                        help="comma-separated entries: labels (as the leaderboard shows them), unambiguous "
                             "prefixes of labels, or folder names under RUNS/TRACK")
    parser.add_argument("--runs", type=Path, default=Path("runs"), help="the runs folder holding the members")
    parser.add_argument("--seed", type=int, default=0, help="members' seed to combine; also seeds the folds and bootstrap")
    parser.add_argument("--name", help="entry name (default: ensemble:METHOD(member,...))")
    parser.add_argument("--folds", type=int, default=5, help="cross-fitting folds on validation")
    parser.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for the interval and the significance mark (0: off)")
    parser.add_argument("--options", default="{}", help="method options as JSON, e.g. '{\"weights\": [0.7, 0.3]}'")
    parser.set_defaults(handler=handle)


def handle(args) -> int:
    from abawbench.ensembling import run_ensemble
    from abawbench.plugins import get_host

    host = get_host()
    track = host.tracks.get(args.track)
    spec = host.ensembles.get(args.method)
    try:
        options = json.loads(args.options)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"--options: not valid JSON: {exc}") from None
    if not isinstance(options, dict):
        raise ConfigError("--options: expected a JSON object")
    members = [part.strip() for part in args.members.split(",") if part.strip()]
    path, result = run_ensemble(track, spec, members, args.runs, seed=args.seed, name=args.name,
                                options=options, folds=args.folds, bootstrap=args.bootstrap)
    primary = result.primary
    interval = (f" [{primary.ci_low:.4f}, {primary.ci_high:.4f}]"
                if primary is not None and primary.ci_low is not None else "")
    value = f"{primary.value:.4f}" if primary is not None else "n/a"
    how = result.config["ensemble"]["validation"]
    how = f"out of fold, {args.folds} folds" if how.startswith("out-of-fold") else how
    print(f"{result.label}: {track.primary_metric} {value}{interval} ({how}) -> {path}")
    return 0
