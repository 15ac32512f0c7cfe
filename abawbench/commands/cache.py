"""``abawbench cache ls|verify|clear``: inspect, check and empty the feature cache and pixel packs."""

from __future__ import annotations

import json
import sys
from pathlib import Path


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "cache",
        help="list, verify or clear cached backbone features and pixel packs",
        description=(
            "Features are cached per backbone, weights, model code (torch, timm and plugin "
            "versions), preprocessing, image decoder, dataset fingerprint and split; pixel packs "
            "(run --pixel-cache) per geometry, image decoder, dataset and split, in a store of "
            "their own. A file that fails verification is rebuilt automatically on the next run."
        ),
    )
    actions = parser.add_subparsers(dest="cache_action", metavar="ACTION", required=True)

    ls = actions.add_parser("ls", help="list cached feature files and pixel packs (key, rows, dim, size, date)")
    ls.add_argument("--json", action="store_true", help="print JSON with the full keys")
    ls.set_defaults(handler=handle_ls)

    verify = actions.add_parser(
        "verify", help="check every file, checksums included; exit 2 when any is bad"
    )
    verify.set_defaults(handler=handle_verify)

    clear = actions.add_parser("clear", help="remove cached feature files or pixel packs")
    clear.add_argument("--backbone", metavar="NAME", help="only the feature files of this backbone")
    clear.add_argument("--pixel-packs", action="store_true", help="only the pixel packs")
    clear.add_argument("--all", action="store_true",
                       help="every file in the cache, pixel packs, leftover temporaries of killed "
                            "writes and lock files of absent entries included")
    clear.add_argument(
        "--bad", action="store_true",
        help="only files that fail verification (as 'cache verify' reports them: corrupt, "
             "truncated, or left by an older cache format) and unfinished writes; with "
             "--backbone or --pixel-packs, only among those",
    )
    clear.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    clear.set_defaults(handler=handle_clear)

    for action in (ls, verify, clear):
        action.add_argument(
            "--cache-dir", type=Path, default=None,
            help="cache root (default: $ABAWBENCH_CACHE or ~/.cache/abawbench)",
        )


def _stores(args):
    from abawbench.features.pixel_packs import PixelPackStore
    from abawbench.features.store import FeatureCache

    return FeatureCache(args.cache_dir), PixelPackStore(args.cache_dir)


def _size(num_bytes: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if num_bytes < 1024 or unit == "GiB":
            return f"{num_bytes:.0f} {unit}" if unit == "B" else f"{num_bytes:.1f} {unit}"
        num_bytes /= 1024
    raise AssertionError("unreachable")


def _counts(entry) -> list:
    return ["?" if entry.num_rows is None else entry.num_rows, "?" if entry.row_dim is None else entry.row_dim,
            _size(entry.size_bytes), entry.modified.strftime("%Y-%m-%d %H:%M"), entry.problem or ""]


def handle_ls(args) -> int:
    from tabulate import tabulate

    features, packs = _stores(args)
    feature_entries, pack_entries = features.entries(), packs.entries()
    if args.json:
        print(json.dumps([entry.as_dict() for entry in feature_entries + pack_entries], indent=2))
        return 0
    if not feature_entries:
        print(f"no cached features in {features.folder}")
    else:
        rows = [[key.backbone if key else entry.path.parent.name, key.split if key else "?",
                 key.dataset_fingerprint[:12] if key else "?", key.weights_digest[:24] if key else "?",
                 *_counts(entry)] for entry in feature_entries for key in [entry.key]]
        print(tabulate(rows, headers=["backbone", "split", "dataset", "weights", "rows", "dim", "size",
                                      "modified (UTC)", "problem"]))
    if pack_entries:
        rows = [[key.summary() if key else entry.path.parent.name, key.split if key else "?",
                 key.dataset_fingerprint[:12] if key else "?", *_counts(entry)]
                for entry in pack_entries for key in [entry.key]]
        print(f"\npixel packs in {packs.folder}:")
        print(tabulate(rows, headers=["geometry", "split", "dataset", "images", "pixels", "size",
                                      "modified (UTC)", "problem"]))
    _print_leftovers(features, packs)
    return 0


def _print_leftovers(*stores) -> None:
    """Files that are no entry, each on a line: they take space and no table lists them."""
    unfinished = [path for store in stores for path in store.unfinished()]
    stale = [path for store in stores for path in store.stale_locks()]
    if unfinished:
        print(f"\n{len(unfinished)} unfinished write(s) (running, or killed mid-write; "
              "'cache clear --bad' removes those no process is writing):")
        for path in unfinished:
            print(f"  {path} ({_size(_file_size(path))})")
    if stale:
        print(f"\n{len(stale)} lock file(s) of entries that do not exist ('cache clear --all' removes them):")
        for path in stale:
            print(f"  {path}")


def _file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:  # finished or removed since it was listed
        return 0


def handle_verify(args) -> int:
    checked = bad = 0
    for store in _stores(args):
        for entry in store.entries():
            problems = store.verify(entry.path)
            checked += 1
            bad += bool(problems)
            detail = f": {'; '.join(problems)}" if problems else ""
            print(f"{'BAD' if problems else 'ok '}  {entry.path}{detail}")
    _print_leftovers(*_stores(args))
    if not checked:
        print(f"no cached features in {_stores(args)[0].folder}")
        return 0
    print(f"{checked - bad} ok, {bad} bad")
    return 2 if bad else 0


def handle_clear(args) -> int:
    from abawbench.errors import ConfigError

    if not (args.all or args.bad or args.pixel_packs) and args.backbone is None:
        raise ConfigError("cache clear: say what to remove: --backbone NAME, --pixel-packs, --bad or --all")
    if args.backbone is not None and args.pixel_packs:
        raise ConfigError("cache clear: pixel packs belong to no backbone; give --backbone NAME or --pixel-packs")
    backbone = None if args.all else args.backbone
    clear_features = args.all or not args.pixel_packs
    clear_packs = args.all or backbone is None
    if backbone is not None:
        what = f"the cached features of {backbone}"
    else:
        what = "every cached file" if clear_features else "the pixel packs"
    if args.bad:
        what = f"the files that fail verification among {what}"
    features, packs = _stores(args)
    if not args.yes and not _confirm(f"Remove {what} in {features.root}?"):
        print("nothing removed")
        return 0
    removed: list[Path] = []
    busy: list[Path] = []
    for store, wanted, options in ((features, clear_features, {"backbone": backbone}), (packs, clear_packs, {})):
        if wanted:
            try:
                gone, held = store.clear(only_bad=args.bad, **options)
            except OSError as exc:  # a read-only or foreign-owned cache: say so, not a traceback
                raise ConfigError(f"cache clear: cannot remove {exc.filename or store.folder}: "
                                  f"{exc.strerror or exc}; {len(removed)} file(s) removed before it "
                                  "(check the cache folder's permissions, or point --cache-dir elsewhere)") from None
            removed += gone
            busy += held
    for path in busy:
        print(f"busy (an extraction holds its lock), kept: {path}", file=sys.stderr)
    locks = sum(path.name.endswith(".lock") for path in removed)
    print(f"removed {len(removed) - locks} file(s)" + (f" and {locks} lock file(s)" if locks else ""))
    return 0


def _confirm(question: str) -> bool:
    from abawbench.errors import ConfigError

    if not sys.stdin.isatty():
        raise ConfigError("cache clear: not a terminal, cannot ask for confirmation; pass --yes")
    return input(f"{question} [y/N] ").strip().lower() in {"y", "yes"}
