"""``abawbench run``: the main job. Trains and scores every (model, loss) entry per seed.

Its configuration flags are generated from :class:`abawbench.config.RunConfig`
(:mod:`abawbench.commands.config_flags`): every field is a flag with the field's description
and default, so the command line and the TOML configuration cannot drift apart.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from abawbench.commands.config_flags import add_config_flags, config_flags, overrides_from_args
from abawbench.config import RunConfig, load_config

# Flags users already type under names that differ from their field's.
FLAG_RENAMES = {("protocol", "name"): "protocol", ("protocol", "num_workers"): "workers"}
# The command's own flags, which are not configuration fields.
COMMAND_FLAGS = ("--help", "--config", "--no-progress")

RUN_FLAGS = config_flags(RunConfig, renames=FLAG_RENAMES, reserved=COMMAND_FLAGS)


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "run",
        help="train and score models on a track (the embedded default when no --data)",
        description=(
            "Run the fixed protocol: extract features once (HDF5 cache), train heads (or fine-tune), "
            "select on validation, score exactly as the challenge does and write one result JSON per "
            "entry and seed under --output. Re-running skips entries already completed, so an "
            "interrupted run resumes. Every configuration field is a flag: a flag given overrides "
            "the --config file, which overrides the defaults shown."
        ),
    )
    parser.add_argument("--config", type=Path, metavar="FILE",
                        help="TOML run configuration (see 'abawbench config schema'; check one with "
                             "'abawbench config validate FILE')")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_config_flags(parser, RunConfig, RUN_FLAGS, title="the --config file")
    parser.set_defaults(handler=handle)


def config_from_args(args: argparse.Namespace) -> RunConfig:
    """The run configuration a command line asks for: model defaults, then the --config file,
    then the flags given (a ``none`` given unsets an optional field)."""
    return load_config(args.config, overrides_from_args(args, RUN_FLAGS), drop_none=False)


def handle(args) -> int:
    from abawbench.commands.plugins import warn_about_plugins
    from abawbench.parallel.context import shutdown
    from abawbench.run.runner import Runner

    warn_about_plugins()
    config = config_from_args(args)
    runner = Runner(config, progress=not args.no_progress)
    try:
        summary = runner.run()
    finally:
        shutdown()
    if runner.context.is_main:  # under torchrun, one summary for the job
        print(render_summary(runner.track, config, summary))
    return 1 if summary.failed else 0


def render_summary(track, config, summary) -> str:
    from tabulate import tabulate

    from abawbench.run.runner import mean_std

    folder = Path(config.output) / track.name
    by_entry: dict[str, list] = {}
    for result in summary.results:
        by_entry.setdefault(result.entry, []).append(result)
    for skipped in summary.skipped_results:
        by_entry.setdefault(skipped.entry, []).append(skipped)
    rows = []
    for entry, results in sorted(by_entry.items()):
        done = [r for r in results if r.status == "completed" and r.primary is not None]
        failed = [r for r in results if r.status == "failed"]
        if done:
            mean, std = mean_std(r.primary.value for r in done)
            score = f"{mean:.4f} ± {std:.4f}" if len(done) > 1 else f"{mean:.4f}"
            ci = done[0].primary
            interval = f"[{ci.ci_low:.3f}, {ci.ci_high:.3f}]" if len(done) == 1 and ci.ci_low is not None else ""
        else:
            score, interval = "failed", ""
        note = f"{len(failed)} failed: {failed[0].error}" if failed else ""
        rows.append([results[0].label, score, interval, len(done), note])
    lines = [f"track {track.name}: {track.primary_metric} on validation (results in {folder})"]
    if summary.skipped:
        lines.append(f"skipped {len(summary.skipped)} completed (entry, seed) pair(s); delete their JSON to redo")
    if summary.elsewhere:
        lines.append(f"left {len(summary.elsewhere)} (entry, seed) pair(s) to another job sharing {folder}: "
                     + ", ".join(summary.elsewhere))
    lines.append(tabulate(rows, headers=["label", track.primary_metric, "95% CI", "seeds", "notes"]))
    return "\n".join(lines)
