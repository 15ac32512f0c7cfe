"""``abawbench data check|synth|preview``: look at, generate and preview data trees.

A tree is read by a dataset plugin: the one named with ``--dataset``, else the one that reads
the track's data from a path (as ``abawbench run --data`` chooses).

``check`` exits 0 when the tree is clean (warnings such as duplicate names allowed), 2 when
problems were found; with ``--skip-bad`` only problems that skipping cannot fix (a missing
annotation file, a wrong header) count, i.e. "is this usable with --skip-bad?".
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


TRACK_HELP = "track name (see 'abawbench list tracks')"
DATASET_HELP = ("dataset plugin to read PATH with (default: the one that reads the track's data "
                "from a path; see 'abawbench list datasets')")


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "data",
        help="check, generate or preview a dataset tree",
        description="Work with data trees, read by dataset plugins (see 'abawbench list datasets').",
    )
    actions = parser.add_subparsers(dest="data_action", metavar="ACTION", required=True)

    check = actions.add_parser(
        "check",
        help="count samples and labels per split and list every problem (exit 2 if any)",
        description=(
            "Read every split of PATH and report counts per split, per class and per label "
            "availability, and every problem as file:line: problem. Every image is decoded (in "
            "parallel; --quick checks headers only). Exit 0 when clean, 2 when problems were found."
        ),
    )
    check.add_argument("path", type=Path, help="root of the dataset tree")
    check.add_argument("--track", required=True, help=TRACK_HELP)
    check.add_argument("--dataset", default=None, help=DATASET_HELP)
    check.add_argument("--skip-bad", action="store_true",
                       help="only fail on problems that skipping bad rows cannot fix")
    check.add_argument("--no-images", dest="check_images", action="store_false",
                       help="do not look at image files at all (missing or undecodable)")
    check.add_argument("--quick", action="store_true",
                       help="only parse each image's header instead of decoding it (finds files that "
                            "are not images, not truncated ones)")
    check.add_argument("--test-images", dest="test_images", default=None, metavar="FOLDER",
                       help="folder inside PATH that holds the test images (default: the first of "
                            "the dataset's plausible folders that exists, e.g. test_set_images/ or test_set/)")
    check.add_argument("--json", action="store_true", help="print the report as JSON")
    check.set_defaults(handler=handle_check)

    synth = actions.add_parser(
        "synth",
        help="write a synthetic dataset tree",
        description="Write a fresh tree with the generator of a registered dataset.",
    )
    synth.add_argument("--track", required=True, help=TRACK_HELP)
    synth.add_argument("--out", required=True, type=Path, help="folder to write the tree into")
    synth.add_argument("--size", type=_positive, default=None, help="number of images (default: the dataset's)")
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--dataset", default=None,
                       help="dataset plugin to generate with (default: the only one that can)")
    synth.set_defaults(handler=handle_synth)

    preview = actions.add_parser(
        "preview",
        help="a contact sheet: a row per class, columns per split/domain",
        description="Save a PNG contact sheet of PATH: one row per class, one column group per labelled split.",
    )
    preview.add_argument("path", type=Path, help="root of the dataset tree")
    preview.add_argument("--track", required=True, help=TRACK_HELP)
    preview.add_argument("--dataset", default=None, help=DATASET_HELP)
    preview.add_argument("--out", required=True, type=Path, help="image file to write (e.g. sheet.png)")
    preview.add_argument("--per-class", type=_positive, default=4, help="images per class and split")
    preview.add_argument("--thumb", type=_positive, default=64, help="thumbnail size in pixels")
    preview.set_defaults(handler=handle_preview)


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _track(name: str):
    from abawbench.plugins import get_host

    return get_host().tracks.get(name)


def _reader(name: str | None, track):
    """The dataset plugin that reads a tree of ``track`` at a path (the rule ``run --data`` uses)."""
    from abawbench.data.choice import choose_dataset
    from abawbench.plugins import get_host

    return choose_dataset(get_host(), track, name, from_path=True)


# --------------------------------------------------------------------------- check


def handle_check(args) -> int:
    from abawbench.data.check import check_dataset

    track = _track(args.track)
    report = check_dataset(
        args.path, track, _reader(args.dataset, track), check_images=args.check_images,
        decode="quick" if args.quick else "full", progress=not args.json and sys.stderr.isatty(),
        test_image_folder=args.test_images,
    )
    failed = report.failed(args.skip_bad)
    if args.json:
        print(json.dumps({**report.as_dict(), "ok": not failed}, indent=2))
    else:
        print(render_report(report, track, failed))
    return 2 if failed else 0


def render_report(report, track, failed: bool) -> str:
    """The text form of a :class:`CheckReport`: split table, class tables, problems."""
    from tabulate import tabulate

    tasks = list(track.task_names)
    present = [s for s in report.splits if s.present]
    lines = [f"{report.track} data at {report.root}", ""]
    rows = []
    for split in report.splits:
        if not split.present:
            rows.append([split.split, "not found"] + [""] * (2 + len(tasks)))
            continue
        labels = [split.label_counts.get(task, "-") for task in tasks]
        rows.append([split.split, split.rows, split.skipped, split.duplicates, *labels])
    headers = ["split", "rows", "skipped", "duplicates", *[f"{t} labels" for t in tasks]]
    lines.append(tabulate(rows, headers=headers))
    for task in tasks:
        spec = track.task(task)
        labelled = [s for s in present if task in s.class_counts]
        if spec.kind == "regression" or not labelled:
            continue
        what = "positives" if spec.kind == "multilabel" else "count"
        table = [[name] + [s.class_counts[task][name] for s in labelled] for name in spec.names]
        lines += ["", tabulate(table, headers=[f"{task} {what}"] + [s.split for s in labelled])]
    errors = [p for p in report.problems if p.severity != "warning"]
    warnings = len(report.problems) - len(errors)
    lines += ["", f"problems: {len(errors)} error(s), {warnings} warning(s)"]
    lines += [f"  {problem}" for problem in report.problems]
    lines += [f"note: {split.split}: {note}" for split in present for note in split.notes]
    lines.append("result: " + ("PROBLEMS FOUND" if failed else "ok"))
    return "\n".join(lines)


# --------------------------------------------------------------------------- synth


def handle_synth(args) -> int:
    from abawbench.errors import ConfigError
    from abawbench.plugins import get_host

    host = get_host()
    track = host.tracks.get(args.track)
    if args.dataset is not None:
        spec = host.datasets.get(args.dataset)
        if spec.generate is None:
            raise ConfigError(f"dataset {spec.name!r} cannot generate data (it only reads an existing tree)")
    else:
        able = [entry.item for entry in host.datasets.entries() if getattr(entry.item, "generate", None)]
        if not able:
            raise ConfigError("no registered dataset can generate data (the synthface plugin provides one)")
        if len(able) > 1:
            names = ", ".join(spec.name for spec in able)
            raise ConfigError(f"several datasets can generate data ({names}): pick one with --dataset")
        spec = able[0]
    if track.name not in spec.tracks:
        raise ConfigError(f"dataset {spec.name!r} has no {track.name!r} data; its tracks: {', '.join(spec.tracks)}")
    out = spec.generate(track.name, args.out, args.size, args.seed)
    print(f"wrote {track.name} data from {spec.name!r} (seed {args.seed}) to {out}")
    return 0


# --------------------------------------------------------------------------- preview


def handle_preview(args) -> int:
    from abawbench.data.preview import contact_sheet

    track = _track(args.track)
    sheet, notes = contact_sheet(args.path, track, _reader(args.dataset, track),
                                 per_class=args.per_class, thumb=args.thumb)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(args.out)
    for note in notes:
        print(f"note: {note}")
    print(f"wrote {args.out} ({sheet.width}x{sheet.height})")
    return 0
