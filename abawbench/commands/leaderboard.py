"""``abawbench leaderboard``: render the results under a runs folder as a ranked table."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from abawbench.errors import DataFormatError

# The repository's reference numbers; absent in an installed copy without the source tree.
DEFAULT_REFERENCES = Path(__file__).resolve().parents[2] / "leaderboards" / "references.json"


def add_parser(subparsers) -> None:
    from abawbench.leaderboard import FORMATS

    parser = subparsers.add_parser(
        "leaderboard",
        help="rank the results of a runs folder (markdown, latex, html, csv, json)",
        description=(
            "Rank every entry under RUNS/TRACK by the track's primary score: mean ± std over seeds, "
            "bootstrap interval, sub-scores. Results on different data (validation fingerprints) get "
            "separate sections and ranks; failed entries are listed, not ranked; published numbers "
            "appear as 'reported', never ranked."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--track", required=True, help="track: lsd or mtl")
    parser.add_argument("--format", choices=FORMATS, default="markdown")
    parser.add_argument("--runs", type=Path, default=Path("runs"), help="runs folder (as written by 'abawbench run')")
    parser.add_argument("--output", type=Path, help="write here instead of printing")
    parser.add_argument("--references", type=Path, default=DEFAULT_REFERENCES,
                        help="JSON list of reported reference rows")
    parser.add_argument("--no-references", action="store_true", help="leave reported rows out")
    parser.set_defaults(handler=handle)


def load_references(path: Path | None) -> list[dict]:
    """Reported rows from a JSON file (a list of objects); a missing default file means none."""
    if path is None or not path.exists():
        return []
    try:
        rows = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DataFormatError(f"{path}: line {exc.lineno}: not valid JSON: {exc.msg}") from None
    required = {"track", "entry", "split", "score", "source", "data"}
    if not isinstance(rows, list):
        raise DataFormatError(f"{path}: expected a JSON list of reference rows")
    for position, row in enumerate(rows):
        missing = required - set(row) if isinstance(row, dict) else required
        if missing:
            raise DataFormatError(f"{path}: reference row {position} lacks {sorted(missing)}")
    return rows


def handle(args) -> int:
    from abawbench import __version__
    from abawbench.leaderboard import build_leaderboard, render
    from abawbench.plugins import get_host
    from abawbench.results import iter_results

    track = get_host().tracks.get(args.track)
    folder = args.runs / track.name
    results = [result for _path, result in iter_results(folder, track.name)] if folder.is_dir() else []
    references = [] if args.no_references else load_references(args.references)
    board = build_leaderboard(results, track=track.name, primary_metric=track.primary_metric,
                              higher_is_better=track.higher_is_better, references=references,
                              version=__version__)
    text = render(board, args.format)
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(text, encoding="utf-8")
    else:
        print(text, end="")
    return 0
