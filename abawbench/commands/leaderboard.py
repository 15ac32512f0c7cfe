"""``abawbench leaderboard``: render the results under a runs folder (or a committed
leaderboard JSON) as a ranked table, or as an ablation against one reference row."""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

from abawbench.commands import DefaultsHelpFormatter, output_file
from abawbench.errors import ConfigError

# The repository's reference numbers; absent in an installed copy without the source tree.
DEFAULT_REFERENCES = Path(__file__).resolve().parents[2] / "leaderboards" / "references.json"


def add_board_inputs(parser: argparse.ArgumentParser) -> None:
    """The flags saying where a board's rows come from; shared with ``report``."""
    parser.add_argument("--track", required=True, help="a registered track ('abawbench list tracks')")
    parser.add_argument("--runs", type=Path, action="append",
                        help="runs folder (as written by 'abawbench run'); repeat to pool several "
                             "(default: runs)")
    parser.add_argument("--from", dest="from_json", type=Path, metavar="JSON",
                        help="render a leaderboard JSON ('--format json', e.g. leaderboards/lsd.json) "
                             "instead of reading runs")
    # No default on the parser: --from must tell a --references the user typed (refused there,
    # since the JSON's reported rows were fixed when it was written) from the default.
    parser.add_argument("--references", type=Path,
                        help="JSON list of reported reference rows (default: leaderboards/references.json "
                             "of the source tree; not with --from)")
    parser.add_argument("--no-references", action="store_true",
                        help="leave reported rows out (with --from too)")
    parser.add_argument("--reference", metavar="LABEL",
                        help="ablation view: every row of this row's section with its differences to it "
                             "(a label or an entry id)")


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
            "appear as 'reported', never ranked. With --reference, an ablation table instead."
        ),
        formatter_class=DefaultsHelpFormatter,
    )
    add_board_inputs(parser)
    parser.add_argument("--format", choices=formats, default="markdown")
    parser.add_argument("--output", type=Path, help="write here (atomically) instead of printing")
    parser.add_argument("--columns", help="latex only: comma-separated columns instead of the compact set "
                                          "(label, score, ci, rank, backbone, protocol, loss, seeds, "
                                          "selection, or a sub-score name such as ccc_mean)")
    parser.set_defaults(handler=handle)


def load_board(args, track):
    """The leaderboard the flags name: from ``--from`` JSON, else built from the runs folders
    with every entry's details (per-class scores, confusion, scatter, provenance)."""
    from abawbench import __version__
    from abawbench.boards import build_leaderboard, load_references
    from abawbench.boards.build import REPORTED
    from abawbench.boards.details import collect_details, with_recorded_origin
    from abawbench.boards.inputs import read_leaderboard
    from abawbench.results import iter_results

    if args.from_json is not None:
        if args.runs:
            raise ConfigError("--from renders a leaderboard JSON; give it or --runs, not both")
        if args.references is not None:
            raise ConfigError("--references reads reference rows for runs; a --from JSON keeps the reported "
                              "rows it was written with (use --no-references to leave them out)")
        if not args.from_json.is_file():
            raise ConfigError(f"--from {args.from_json}: no such file")
        board = read_leaderboard(args.from_json)
        if board.track != track.name:
            raise ConfigError(f"--from {args.from_json}: a leaderboard of track {board.track}, not {track.name}")
        if args.no_references:
            board = replace(board, sections=tuple(s for s in board.sections if s.kind != REPORTED))
        return board
    located = []
    for runs in args.runs or [Path("runs")]:
        # An empty table from a mistyped folder would be published as if it were the result.
        if not runs.is_dir():
            raise ConfigError(f"--runs {runs}: no such runs folder")
        folder = runs / track.name
        found = list(iter_results(folder, track.name)) if folder.is_dir() else []
        if not found:
            raise ConfigError(f"--runs {runs}: no result of track {track.name} "
                              f"(expected {folder}/<entry>/seed<k>.json)")
        located += found
    seen: dict[tuple[str, int], Path] = {}
    for path, result in located:
        # Pooled folders holding one run twice would count its seed twice in the mean.
        first = seen.setdefault((result.entry, result.seed), path)
        if first != path:
            raise ConfigError(f"{path}: entry {result.label}, seed {result.seed} is also in {first}; "
                              "pool runs folders that hold different runs")
    located = with_recorded_origin(located)
    results = [result for _path, result in located]
    references = [] if args.no_references else load_references(args.references or DEFAULT_REFERENCES)
    board = build_leaderboard(results, track=track.name, primary_metric=track.primary_metric,
                              higher_is_better=track.higher_is_better, references=references,
                              version=__version__)
    return replace(board, details=collect_details(located, track))


def handle(args) -> int:
    from abawbench.atomic import atomic_write_text
    from abawbench.boards import render
    from abawbench.boards.ablation import ABLATION_FORMATS, build_ablation
    from abawbench.boards.latex import render_latex
    from abawbench.plugins import get_host

    track = get_host().tracks.get(args.track)
    if args.output:
        output_file(args.output, "--output", f"leaderboard-{track.name}.{args.format}")
    if args.columns and (args.format != "latex" or args.reference):
        raise ConfigError("--columns chooses the columns of a LaTeX leaderboard (--format latex, no --reference)")
    board = load_board(args, track)
    if args.reference:
        text = ABLATION_FORMATS.render(build_ablation(board, args.reference), args.format)
    elif args.columns:
        text = render_latex(board, [name.strip() for name in args.columns.split(",") if name.strip()])
    else:
        text = render(board, args.format)
    if args.output:
        atomic_write_text(args.output, text)
    else:
        print(text, end="")
    return 0
