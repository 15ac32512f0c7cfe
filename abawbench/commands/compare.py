"""``abawbench compare OLD NEW``: per-entry score deltas; exit 1 on a regression (the CI gate)."""

from __future__ import annotations

import argparse
from pathlib import Path

from abawbench.commands import DefaultsHelpFormatter
from abawbench.errors import ConfigError


def add_parser(subparsers) -> None:
    from abawbench.boards import CHANGE_FORMATS
    from abawbench.boards.compare import MISSING_POLICIES

    parser = subparsers.add_parser(
        "compare",
        help="compare two runs folders or leaderboard JSONs; exit 1 on a regression",
        description=(
            "Per-entry deltas of the primary score (and, with --sub-scores, of every sub-score) "
            "between OLD and NEW (runs folders or leaderboard JSON files). Entries are matched by id, "
            "else by label, so an entry whose settings changed shows a delta. Exit code 1 when a "
            "score worsens by more than the tolerance (in the track's direction), is not a number, "
            "or an entry newly fails; 2 when the two cannot be compared (a matched entry measured "
            "with other seeds or on other data, a side that holds no result of the track, a path "
            "that does not exist); 0 otherwise."
        ),
        formatter_class=DefaultsHelpFormatter,
    )
    parser.add_argument("old", type=Path, help="baseline: runs folder or leaderboard JSON")
    parser.add_argument("new", type=Path, help="candidate: runs folder or leaderboard JSON")
    parser.add_argument("--tolerance", type=float, default=0.005,
                        help="allowed worsening of a score, in score units")
    parser.add_argument("--relative-tolerance", type=float, default=0.0,
                        help="allowed worsening as a fraction of the old score's magnitude; the larger "
                             "of the two tolerances applies")
    parser.add_argument("--sub-scores", action="store_true",
                        help="judge every sub-score too (in the track's direction), not only the primary score")
    parser.add_argument("--missing", choices=MISSING_POLICIES, default="ignore",
                        help="entries present on one side only: ignore (listed, not gated; a new entry "
                             "that failed still fails the gate) or fail")
    parser.add_argument("--track", help="compare this track only; unset: every track OLD holds")
    parser.add_argument("--format", choices=CHANGE_FORMATS.names(), default="markdown")
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from abawbench.boards import CHANGE_FORMATS, Comparison, Tolerance, compare_scores, load_scores
    from abawbench.plugins import get_host

    for flag, value in (("--tolerance", args.tolerance), ("--relative-tolerance", args.relative_tolerance)):
        if not value >= 0:  # also refuses NaN
            raise ConfigError(f"{flag} must be >= 0, got {value}")
    tolerance = Tolerance(args.tolerance, args.relative_tolerance)

    def higher_is_better(track: str) -> bool:
        return get_host().tracks.get(track).higher_is_better

    changes = compare_scores(load_scores(args.old, higher_is_better), load_scores(args.new, higher_is_better),
                             tolerance, sub_scores=args.sub_scores, missing=args.missing, track=args.track)
    comparison = Comparison(tuple(changes), tolerance, args.missing)
    print(CHANGE_FORMATS.render(comparison, args.format), end="")
    return 1 if comparison.regressions else 0
