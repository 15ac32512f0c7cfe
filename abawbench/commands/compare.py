"""``abawbench compare OLD NEW``: per-entry score deltas; exit 1 on a regression (the CI gate)."""

from __future__ import annotations

import argparse
from pathlib import Path

from abawbench.commands import DefaultsHelpFormatter
from abawbench.errors import ConfigError


def add_parser(subparsers) -> None:
    from abawbench.boards import CHANGE_FORMATS

    parser = subparsers.add_parser(
        "compare",
        help="compare two runs folders or leaderboard JSONs; exit 1 on a regression",
        description=(
            "Per-entry deltas of the primary score between OLD and NEW (runs folders or leaderboard "
            "JSON files). Exit code 1 when an entry worsens by more than --tolerance (in the track's "
            "direction), disappears, newly fails or was measured on different data; 0 otherwise."
        ),
        formatter_class=DefaultsHelpFormatter,
    )
    parser.add_argument("old", type=Path, help="baseline: runs folder or leaderboard JSON")
    parser.add_argument("new", type=Path, help="candidate: runs folder or leaderboard JSON")
    parser.add_argument("--tolerance", type=float, default=0.005,
                        help="allowed worsening of the primary score, in score units")
    parser.add_argument("--format", choices=CHANGE_FORMATS.names(), default="markdown")
    parser.set_defaults(handler=handle)


def handle(args) -> int:
    from abawbench.boards import CHANGE_FORMATS, Comparison, compare_scores, load_scores
    from abawbench.plugins import get_host

    if args.tolerance < 0:
        raise ConfigError(f"--tolerance must be >= 0, got {args.tolerance}")

    def higher_is_better(track: str) -> bool:
        return get_host().tracks.get(track).higher_is_better

    changes = compare_scores(load_scores(args.old, higher_is_better), load_scores(args.new, higher_is_better),
                             args.tolerance)
    comparison = Comparison(tuple(changes), args.tolerance)
    print(CHANGE_FORMATS.render(comparison, args.format), end="")
    return 1 if comparison.regressions else 0
