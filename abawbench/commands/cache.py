"""``abawbench cache ls|verify|clear``: inspect, check and empty the feature cache."""

from __future__ import annotations

import json
import sys
from pathlib import Path


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "cache",
        help="list, verify or clear cached backbone features",
        description=(
            "Features are cached per backbone, weights, preprocessing, dataset fingerprint and "
            "split; pixel packs (run --pixel-cache) per geometry, dataset and split, listed under "
            "the backbone 'pixels'. A file that fails verification is rebuilt automatically on "
            "the next run."
        ),
    )
    actions = parser.add_subparsers(dest="cache_action", metavar="ACTION", required=True)

    ls = actions.add_parser("ls", help="list cached feature files (key, rows, dim, size, date)")
    ls.add_argument("--json", action="store_true", help="print JSON with the full keys")
    ls.set_defaults(handler=handle_ls)

    verify = actions.add_parser(
        "verify", help="check every file, checksums included; exit 2 when any is bad"
    )
    verify.set_defaults(handler=handle_verify)

    clear = actions.add_parser("clear", help="remove cached feature files")
    clear.add_argument("--backbone", metavar="NAME", help="only the files of this backbone")
    clear.add_argument("--all", action="store_true", help="every file in the cache")
    clear.add_argument(
        "--bad", action="store_true",
        help="only files that fail verification (as 'cache verify' reports them: corrupt, "
             "truncated, or left by an older cache format); with --backbone, only its files",
    )
    clear.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    clear.set_defaults(handler=handle_clear)

    for action in (ls, verify, clear):
        action.add_argument(
            "--cache-dir", type=Path, default=None,
            help="cache root (default: $ABAWBENCH_CACHE or ~/.cache/abawbench)",
        )


def _cache(args):
    from abawbench.cache import FeatureCache

    return FeatureCache(args.cache_dir)


def _size(num_bytes: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if num_bytes < 1024 or unit == "GiB":
            return f"{num_bytes:.0f} {unit}" if unit == "B" else f"{num_bytes:.1f} {unit}"
        num_bytes /= 1024
    raise AssertionError("unreachable")


def handle_ls(args) -> int:
    from tabulate import tabulate

    cache = _cache(args)
    entries = cache.entries()
    if args.json:
        print(json.dumps([entry.as_dict() for entry in entries], indent=2))
        return 0
    if not entries:
        print(f"no cached features in {cache.folder}")
        return 0
    rows = []
    for entry in entries:
        key = entry.key
        rows.append([
            key.backbone if key else entry.path.parent.name,
            key.split if key else "?",
            key.dataset_fingerprint[:12] if key else "?",
            key.weights_digest[:24] if key else "?",
            entry.num_rows if entry.num_rows is not None else "?",
            entry.feature_dim if entry.feature_dim is not None else "?",
            _size(entry.size_bytes),
            entry.modified.strftime("%Y-%m-%d %H:%M"),
            entry.problem or "",
        ])
    print(tabulate(rows, headers=["backbone", "split", "dataset", "weights", "rows", "dim",
                                  "size", "modified (UTC)", "problem"]))
    return 0


def handle_verify(args) -> int:
    cache = _cache(args)
    entries = cache.entries()
    if not entries:
        print(f"no cached features in {cache.folder}")
        return 0
    bad = 0
    for entry in entries:
        problems = cache.verify(entry.path)
        bad += bool(problems)
        print(f"{'BAD' if problems else 'ok '}  {entry.path}" + (f": {'; '.join(problems)}" if problems else ""))
    print(f"{len(entries) - bad} ok, {bad} bad")
    return 2 if bad else 0


def handle_clear(args) -> int:
    from abawbench.errors import ConfigError

    if not (args.all or args.bad) and args.backbone is None:
        raise ConfigError("cache clear: say what to remove: --backbone NAME, --bad or --all")
    cache = _cache(args)
    what = "every cached feature file" if args.all else f"the cached features of {args.backbone}"
    if args.bad:
        what = "the cached files that fail verification" + ("" if args.all or args.backbone is None
                                                             else f" among those of {args.backbone}")
    if not args.yes and not _confirm(f"Remove {what} in {cache.folder}?"):
        print("nothing removed")
        return 0
    removed, busy = cache.clear(backbone=None if args.all else args.backbone, only_bad=args.bad)
    for path in busy:
        print(f"busy (an extraction holds its lock), kept: {path}", file=sys.stderr)
    print(f"removed {len(removed)} file(s)")
    return 0


def _confirm(question: str) -> bool:
    from abawbench.errors import ConfigError

    if not sys.stdin.isatty():
        raise ConfigError("cache clear: not a terminal, cannot ask for confirmation; pass --yes")
    return input(f"{question} [y/N] ").strip().lower() in {"y", "yes"}

