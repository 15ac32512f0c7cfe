"""``abawbench run``: the main job. Trains and scores every (model, loss) entry per seed."""

from __future__ import annotations

import argparse
from pathlib import Path

from abawbench.errors import ConfigError


def _csv(kind: str):
    def parse(value: str) -> list[str]:
        items = [part.strip() for part in value.split(",") if part.strip()]
        if not items:
            raise argparse.ArgumentTypeError(f"expected a comma-separated list of {kind}")
        return items
    return parse


def _seeds(value: str) -> list[int]:
    try:
        return [int(part) for part in _csv("seeds")(value)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"seeds must be integers, got {value!r}") from None


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "run",
        help="train and score models on a track (the embedded default when no --data)",
        description=(
            "Run the fixed protocol: extract features once (HDF5 cache), train heads (or fine-tune), "
            "select on validation, score exactly as the challenge does and write one result JSON per "
            "entry and seed under --output. Re-running skips entries already completed, so an "
            "interrupted run resumes. Flags override the --config file."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--config", type=Path, help="TOML run configuration (see 'abawbench config schema')")
    parser.add_argument("--track", help="track: lsd or mtl (default from config, else lsd)")
    parser.add_argument("--data", type=Path, help="dataset root in the official ABAW4 layout; omit for the embedded synthetic default")
    parser.add_argument("--dataset", help="dataset plugin to read --data with (see 'abawbench list datasets')")
    parser.add_argument("--models", type=_csv("models"), help="comma-separated model names (e.g. resnet18,timm:convnext_atto)")
    parser.add_argument("--losses", type=_csv("losses"), help="comma-separated loss names (default: the track's)")
    parser.add_argument("--protocol", choices=["linear-probe", "finetune"], help="linear-probe (frozen, cached features) or finetune")
    parser.add_argument("--head", choices=["linear", "mlp"], help="head on the features")
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--lr", type=float)
    parser.add_argument("--image-size", type=int, help="input size in pixels (default 112; the config file may set null for each model's native size)")
    parser.add_argument("--workers", type=int, help="DataLoader workers for image decoding")
    parser.add_argument("--pixel-cache", action="store_const", const=True,
                        help="keep decoded, resized eval pixels in the cache folder (3*H*W bytes per image) so that "
                             "other backbones with the same geometry, and fine-tuning's validation after its first "
                             "epoch, skip JPEG decoding (same features and scores; off unless given)")
    parser.add_argument("--bootstrap", type=int, help="bootstrap resamples for confidence intervals (0: off)")
    parser.add_argument("--weights", help="random, hub, or a local weights file (.safetensors / .pth)")
    parser.add_argument("--seeds", type=_seeds, help="comma-separated seeds, e.g. 0,1,2 (mean and std reported)")
    parser.add_argument("--device", help="auto, cpu, cuda, cuda:N")
    parser.add_argument("--output", type=Path, help="folder for result files (default: runs)")
    parser.add_argument("--cache-dir", type=Path, help="cache folder (default: $ABAWBENCH_CACHE or ~/.cache/abawbench)")
    parser.add_argument("--skip-bad", action="store_const", const=True, help="drop bad annotation rows instead of refusing the data")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.set_defaults(handler=handle)


def handle(args) -> int:
    from abawbench.config import load_config
    from abawbench.run.runner import Runner

    overrides = {
        "track": args.track, "data": args.data, "dataset": args.dataset, "models": args.models,
        "losses": args.losses, "weights": args.weights, "seeds": args.seeds, "device": args.device,
        "output": args.output, "cache_dir": args.cache_dir, "skip_bad": args.skip_bad,
        "protocol": {"name": args.protocol, "head": args.head, "epochs": args.epochs,
                     "batch_size": args.batch_size, "lr": args.lr, "image_size": args.image_size,
                     "num_workers": args.workers, "bootstrap": args.bootstrap, "pixel_cache": args.pixel_cache},
    }
    config = load_config(args.config, overrides)
    runner = Runner(config, progress=not args.no_progress)
    summary = runner.run()
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
        rows.append([entry, score, interval, len(done), note])
    lines = [f"track {track.name}: {track.primary_metric} on validation (results in {folder})"]
    if summary.skipped:
        lines.append(f"skipped {len(summary.skipped)} completed (entry, seed) pair(s); delete their JSON to redo")
    lines.append(tabulate(rows, headers=["entry", track.primary_metric, "95% CI", "seeds", "notes"]))
    return "\n".join(lines)
