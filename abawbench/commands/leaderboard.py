"""``abawbench leaderboard``: render the results under a runs folder as a ranked table."""

from __future__ import annotations

import argparse
from pathlib import Path

from abawbench.commands import DefaultsHelpFormatter, output_file
from abawbench.errors import ConfigError

# The repository's reference numbers; absent in an installed copy without the source tree.
DEFAULT_REFERENCES = Path(__file__).resolve().parents[2] / "leaderboards" / "references.json"


def add_parser(subparsers) -> None:
    from abawbench.boards import LEADERBOARD_FORMATS

    formats = LEADERBOARD_FORMATS.names()
    parser = subparsers.add_parser(
        "leaderboard",
        help=f"rank the results of a runs folder ({', '.join(formats)})",
        description=(
            "Rank every entry under RUNS/TRACK by the track's primary score: mean ± std over seeds, "
            "bootstrap interval, sub-scores. Results on different data (validation fingerprints) get "
            "separate sections and ranks; failed entries are listed, not ranked; published numbers "
            "appear as 'reported', never ranked."
        ),
        formatter_class=DefaultsHelpFormatter,
    )
    parser.add_argument("--track", required=True, help="a registered track ('abawbench list tracks')")
    parser.add_argument("--format", choices=formats, default="markdown")
    parser.add_argument("--runs", type=Path, default=Path("runs"), help="runs folder (as written by 'abawbench run')")
    parser.add_argument("--output", type=Path, help="write here (atomically) instead of printing")
    parser.add_argument("--references", type=Path, default=DEFAULT_REFERENCES,
                        help="JSON list of reported reference rows")
    parser.add_argument("--no-references", action="store_true", help="leave reported rows out")
    parser.set_defaults(handler=handle)


def handle(args) -> int:
    from abawbench import __version__
    from abawbench.atomic import atomic_write_text
    from abawbench.boards import build_leaderboard, load_references, render
    from abawbench.plugins import get_host
    from abawbench.results import iter_results

    track = get_host().tracks.get(args.track)
    if args.output:
        output_file(args.output, "--output", f"leaderboard-{track.name}.{args.format}")
    # An empty table from a mistyped folder would be published as if it were the result.
    if not args.runs.is_dir():
        raise ConfigError(f"--runs {args.runs}: no such runs folder")
    folder = args.runs / track.name
    results = [result for _path, result in iter_results(folder, track.name)] if folder.is_dir() else []
    if not results:
        raise ConfigError(f"--runs {args.runs}: no result of track {track.name} "
                          f"(expected {folder}/<entry>/seed<k>.json)")
    references = [] if args.no_references else load_references(args.references)
    board = build_leaderboard(results, track=track.name, primary_metric=track.primary_metric,
                              higher_is_better=track.higher_is_better, references=references,
                              version=__version__)
    text = render(board, args.format)
    if args.output:
        atomic_write_text(args.output, text)
    else:
        print(text, end="")
    return 0
