#!/usr/bin/env python
"""Feature-extraction throughput: abawbench's Backbone path versus timm's bare forward pass.

Why: feature extraction is the one GPU-heavy step of a benchmark run. This script answers two
questions on a GPU in one short run: (1) does going through abawbench (plugin build,
``prepare_module``, ``autocast_context``, ``prepare_batch``) cost anything against the same
settings written by hand, and (2) what bf16 autocast + channels_last buy against timm's plain
fp32 forward pass. All variants see the same batches, already on the device (data loading
and host-to-device copies are excluded on purpose), in alternating rounds so clock and
thermal drift hit every variant alike; the median round is reported.

Runs on a CPU too (``--device cpu --batches 2``) so it can be tested without a GPU.
Prints one JSON object.

    python scripts/gpu_check.py                      # resnet50, 112 px, batch 256, auto device
    python scripts/gpu_check.py --device cpu --arch resnet10t --batch-size 8 --batches 2
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import time
from typing import Any, Callable, Sequence

import timm
import torch

from abawbench.device import autocast_context, prepare_batch, prepare_module, resolve_device, seed_everything
from abawbench.plugins import load_plugins
from abawbench.specs import ModelOptions


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", default="resnet50", help="timm architecture (default resnet50)")
    parser.add_argument("--image-size", type=int, default=112)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--batches", type=int, default=30, help="timed batches per variant and round")
    parser.add_argument("--warmup", type=int, default=5, help="untimed batches per variant first")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds; the median is kept")
    parser.add_argument("--pool", type=int, default=4, help="distinct random batches, cycled")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    for name in ("image_size", "batch_size", "batches", "rounds", "pool"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    return args


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _bare_matched_context(device: torch.device) -> contextlib.AbstractContextManager[Any]:
    """What a user would write by hand for the same settings abawbench chooses."""
    if device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def make_variants(args: argparse.Namespace, device: torch.device) -> dict[str, Callable[[torch.Tensor], torch.Tensor]]:
    """name -> forward function; all three share the same weights."""
    host = load_plugins(strict=True, allowed=["builtin.timm"])
    backbone = host.models.get(f"timm:{args.arch}").build(
        ModelOptions(weights="random", image_size=args.image_size, extra={"seed": args.seed})
    )
    ours = prepare_module(backbone.module, device)

    bare_fp32 = timm.create_model(args.arch, pretrained=False, num_classes=0)
    bare_fp32.load_state_dict(backbone.module.state_dict())
    bare_fp32 = bare_fp32.to(device).eval()

    bare_matched = timm.create_model(args.arch, pretrained=False, num_classes=0)
    bare_matched.load_state_dict(backbone.module.state_dict())
    bare_matched = bare_matched.to(device).eval()
    if device.type == "cuda":
        bare_matched = bare_matched.to(memory_format=torch.channels_last)

    def abawbench_backbone(x: torch.Tensor) -> torch.Tensor:
        with autocast_context(device):
            return ours(prepare_batch(x, device))

    def timm_bare_matched(x: torch.Tensor) -> torch.Tensor:
        if device.type == "cuda":
            x = x.contiguous(memory_format=torch.channels_last)
        with _bare_matched_context(device):
            return bare_matched(x)

    def timm_bare_fp32(x: torch.Tensor) -> torch.Tensor:
        return bare_fp32(x)

    return {
        "abawbench_backbone": abawbench_backbone,
        "timm_bare_matched": timm_bare_matched,
        "timm_bare_fp32": timm_bare_fp32,
    }


def time_variant(fn: Callable[[torch.Tensor], torch.Tensor], pool: list[torch.Tensor],
                 batches: int, device: torch.device) -> tuple[float, float]:
    """Wall seconds and process CPU seconds for ``batches`` forward passes, device work
    included. On a shared CPU the wall time grows with other people's load; the CPU time
    much less, so both are reported (on a GPU only the wall time means anything)."""
    _sync(device)
    start, cpu_start = time.perf_counter(), time.process_time()
    for i in range(batches):
        fn(pool[i % len(pool)])
    _sync(device)
    return time.perf_counter() - start, time.process_time() - cpu_start


def run(args: argparse.Namespace) -> dict[str, Any]:
    device = resolve_device(args.device)
    seed_everything(args.seed)
    variants = make_variants(args, device)
    generator = torch.Generator().manual_seed(args.seed)
    shape = (args.batch_size, 3, args.image_size, args.image_size)
    pool = [torch.randn(shape, generator=generator).to(device) for _ in range(args.pool)]

    with torch.inference_mode():
        outputs = {name: fn(pool[0]).float() for name, fn in variants.items()}
        for fn in variants.values():
            for i in range(args.warmup):
                fn(pool[i % len(pool)])
        seconds: dict[str, list[float]] = {name: [] for name in variants}
        cpu_seconds: dict[str, list[float]] = {name: [] for name in variants}
        for _ in range(args.rounds):
            for name, fn in variants.items():
                wall, cpu = time_variant(fn, pool, args.batches, device)
                seconds[name].append(wall)
                cpu_seconds[name].append(cpu)

    images = args.batches * args.batch_size
    results = {
        name: {
            "images_per_s": round(images / statistics.median(times), 1),
            "ms_per_batch": round(1000 * statistics.median(times) / args.batches, 3),
            "images_per_cpu_s": round(images / max(statistics.median(cpu_seconds[name]), 1e-9), 1),
            "rounds_s": [round(t, 4) for t in times],
        }
        for name, times in seconds.items()
    }
    ours = results["abawbench_backbone"]["images_per_s"]
    reference = outputs["timm_bare_fp32"]
    return {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "device_type": device.type,
        "torch": torch.__version__,
        "timm": timm.__version__,
        "settings": vars(args),
        "torch_threads": torch.get_num_threads(),
        "load_average_1min": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
        "autocast": "bf16" if device.type == "cuda" else "off",
        "channels_last": device.type == "cuda",
        "results": results,
        "ratio_abawbench_vs_bare_matched": round(ours / results["timm_bare_matched"]["images_per_s"], 3),
        "ratio_abawbench_vs_bare_fp32": round(ours / results["timm_bare_fp32"]["images_per_s"], 3),
        "max_abs_diff_vs_bare_matched": float((outputs["abawbench_backbone"] - outputs["timm_bare_matched"]).abs().max()),
        "max_rel_diff_vs_fp32": float(
            (outputs["abawbench_backbone"] - reference).abs().max() / reference.abs().max().clamp_min(1e-12)
        ),
        "feature_dim": int(reference.shape[1]),
    }


def main(argv: Sequence[str] | None = None) -> int:
    report = run(parse_args(argv))
    json.dump(report, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
