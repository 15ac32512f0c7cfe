"""``abawbench report``: one standalone HTML page of a track's results (abawbench.boards.report)."""

from __future__ import annotations

from pathlib import Path

from abawbench.commands import DefaultsHelpFormatter, output_file
from abawbench.commands.leaderboard import add_board_inputs, load_board


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "report",
        help="one HTML page: leaderboard, per-entry plots and provenance",
        description=(
            "Write one standalone HTML file (works offline) for a track: the leaderboard (sortable, "
            "intervals drawn), and per entry its per-class F1, confusion matrix, regression scatter "
            "with CCC, training curves and provenance. From runs folders, or from a leaderboard JSON "
            "with --from."
        ),
        formatter_class=DefaultsHelpFormatter,
    )
    add_board_inputs(parser)
    parser.add_argument("--out", type=Path, required=True, help="the HTML file to write (atomically)")
    parser.set_defaults(handler=handle)


def handle(args) -> int:
    from abawbench.atomic import atomic_write_text
    from abawbench.boards.report import render_report
    from abawbench.plugins import get_host

    track = get_host().tracks.get(args.track)
    output_file(args.out, "--out", f"report-{track.name}.html")
    board = load_board(args, track)
    atomic_write_text(args.out, render_report(board, args.reference))
    print(f"wrote {args.out}")
    return 0
