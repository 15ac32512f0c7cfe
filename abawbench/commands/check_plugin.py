"""``abawbench check-plugin NAME``: run everything a plugin registers through the conformance
checks (:mod:`abawbench.conformance`) on tiny generated data, one line per check.

Exit 0 when nothing failed (skipped checks say why they were skipped), 1 when a check failed.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from abawbench.commands import DefaultsHelpFormatter
from abawbench.conformance.core import DEFAULT_IMAGE_SIZE


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "check-plugin",
        help="check that a plugin keeps the hooks' contracts, on tiny generated data",
        formatter_class=DefaultsHelpFormatter,
        description=(
            "Run every model, loss, dataset, ensemble, track and augmentation a plugin registers "
            "through a fast conformance suite: models build and map [N, 3, H, W] to "
            "[N, feature_dim], deterministically, with a weights digest that follows the "
            "weights; losses return a finite scalar, ignore masked rows and pass gradients; "
            "datasets read their own generated tree (or --data) with labels in range, a stable "
            "fingerprint and bad rows reported as file:line; ensembles fit and combine; tracks "
            "score random predictions inside their ranges. One line per check; exit 1 when any "
            "fails. A model family is checked by name lookups; name members with --models."
        ),
    )
    parser.add_argument("name", help="the plugin's name as 'abawbench plugins' lists it (e.g. "
                                     "builtin.losses, an entry-point name, or local:<module> for --plugin)")
    parser.add_argument("--data", type=Path, default=None, metavar="PATH",
                        help="dataset tree to read (default: the tree each dataset generates; "
                             "a dataset that cannot generate one is skipped without it)")
    parser.add_argument("--track", action="append", default=[], metavar="NAME",
                        help="check datasets on this track only (repeatable; use with --data; default: every "
                             "track the dataset serves)")
    parser.add_argument("--models", default="", metavar="A,B",
                        help="check only these models (the plugin's own, or members of a family such "
                             "as timm:resnet18); default: every model the plugin registers")
    parser.add_argument("--image-size", type=int, default=DEFAULT_IMAGE_SIZE,
                        help="image size models are built and run at")
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    import tempfile

    from abawbench.commands.plugins import warn_about_plugins
    from abawbench.conformance.plan import ConformanceOptions, plugin_checks
    from abawbench.conformance.runner import run_all, summary
    from abawbench.plugins import get_host

    host = get_host()
    warn_about_plugins(host)
    with tempfile.TemporaryDirectory(prefix="abawbench-check-") as workdir:
        options = ConformanceOptions(
            data=args.data, tracks=tuple(args.track), image_size=args.image_size,
            models=tuple(name.strip() for name in args.models.split(",") if name.strip()),
            workdir=Path(workdir),
        )
        outcomes = run_all(plugin_checks(host, args.name, options))
    print(summary(outcomes))
    return 1 if any(outcome.status == "FAIL" for outcome in outcomes) else 0
