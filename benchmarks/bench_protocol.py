"""Protocol benchmarks (issue 5), each a ratio measured in one run on one machine.

1. Extraction throughput: ``extract_features`` (decode + preprocess + forward + stream to the
   writer) against the bare forward pass of the same model on the same, already decoded batches;
   also with a pixel pack (``--pixel-cache``: decoded pixels read from the cache, as every
   backbone after the first with the same geometry does) and the first extraction that writes
   the pack (into a fresh cache folder each round).
2. A linear probe of ``--epochs`` epochs with the feature cache (extract once, then train heads
   on cached features) against the same probe recomputing features every epoch, as the seed
   paper's code does.

    python benchmarks/bench_protocol.py --model resnet10t --images 600 --epochs 20
    python benchmarks/bench_protocol.py --model timm:resnet50 --device cuda --workers 8 --batch-size 256

On a GPU both sides run with abawbench's device settings (bf16 autocast, channels_last), the
bare side on batches already normalised and resident on the card.

Prints JSON; docs/BENCHMARKS.md records the numbers with this command.
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="resnet10t")
    parser.add_argument("--images", type=int, default=600, help="size of the generated LSD tree (train+val)")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--image-size", type=int, default=112)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=0, help="DataLoader workers for decoding (protocol.num_workers)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto")
    parser.add_argument("--skip-probe", action="store_true", help="measure extraction only")
    parser.add_argument("--rounds", type=int, default=3, help="alternating extraction rounds; the best of each, and the median of per-round ratios, are reported")
    args = parser.parse_args()

    from abawbench.features.pixel_packs import PixelPackStore
    from abawbench.config import load_config
    from abawbench.device import autocast_context, prepare_batch, prepare_module, resolve_device
    from abawbench.features.device_decode import choose_device_decoding
    from abawbench.features.extract import decoded_batches, eval_transform, extract_features
    from abawbench.plugins import load_plugins
    from abawbench.run.features import RunFeatures
    from abawbench.run.plan import prepare_data
    from abawbench.specs import ModelOptions
    from abawbench.training.heads import TaskHeads
    from abawbench.training.loop import labels_as_tensors, loss_context

    torch.manual_seed(0)
    host = load_plugins(strict=True)
    work = Path(tempfile.mkdtemp(prefix="abawbench-bench-"))
    atexit.register(shutil.rmtree, work, ignore_errors=True)  # the generated tree, caches and packs
    root = host.datasets.get("synthface").generate("lsd", work / "tree", args.images, 0)
    config = load_config(None, {"track": "lsd", "data": root, "models": [args.model], "output": work / "runs",
                                "cache_dir": work / "cache", "device": args.device,
                                "protocol": {"epochs": args.epochs, "image_size": args.image_size,
                                             "batch_size": args.batch_size, "bootstrap": 0}})
    track = host.tracks.get(config.track)
    data = prepare_data(host, config, track, work / "cache")
    backbone = host.models.get(args.model).build(ModelOptions(image_size=args.image_size, extra={"seed": 0}))
    backbone.module.eval()
    train = data.splits["train"]
    device = resolve_device(args.device)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    # 1. extraction vs bare forward on the same batches (decoded, normalised, on the device).
    # The three measurements alternate for --rounds rounds and the best of each is kept, so
    # that a burst of load on a shared machine hits them alike.
    preprocessing = eval_transform(backbone.data_config)

    def decoded() -> object:  # the protocol's own loader: decode + resize (in the workers, if any), collate
        return decoded_batches(train, preprocessing, device, batch_size=args.batch_size, num_workers=args.workers)

    batches = [prepare_batch(images, device, preprocessing.normalize) for _, images in decoded()]
    module = prepare_module(backbone.module, device)
    sink = np.empty((len(train), backbone.feature_dim), dtype=np.float32)

    def write(start: int, features: np.ndarray) -> None:
        sink[start:start + len(features)] = features

    @torch.inference_mode()
    def bare_forward() -> None:
        for images in batches:
            with autocast_context(device):
                module(images).float().cpu()
        sync()

    def loader_alone() -> None:  # the ceiling of extraction from files
        for _ in decoded():
            pass

    def extraction(pack_cache: PixelPackStore | None = None) -> None:
        extract_features(backbone, train, device, write, batch_size=args.batch_size, num_workers=args.workers,
                         progress=False, pixel_pack=None if pack_cache is None else (pack_cache, "train"))
        sync()

    pack_cache = PixelPackStore(work / "pixel-cache")
    extraction(pack_cache)  # writes the pack the timed rounds read
    written_packs: list[Path] = []  # removed after each round, outside the timing

    def extraction_writing_pack() -> None:
        written_packs.append(Path(tempfile.mkdtemp(dir=work, prefix="fresh-pack-")))
        extraction(PixelPackStore(written_packs[-1]))

    with torch.inference_mode():
        for images in batches[:2]:  # warm-up (cuDNN picks its kernels)
            with autocast_context(device):
                module(images)
    actions = {"bare": bare_forward, "loader": loader_alone, "pipeline": extraction,
               "pack": lambda: extraction(pack_cache), "pack_write": extraction_writing_pack}
    # On CUDA the protocol decodes and resizes JPEGs on the card (abawbench.features.device_decode):
    # "pipeline" is then the CPU-decoding path, "device_decode" what a run does.
    device_decoding = choose_device_decoding(preprocessing, device)
    if device_decoding is not None:
        actions["device_decode"] = lambda: (extract_features(
            backbone, train, device, write, batch_size=args.batch_size, num_workers=args.workers, progress=False,
            device_decoding=device_decoding), sync())
    timings: dict[str, list[float]] = {name: [] for name in actions}
    for _ in range(args.rounds):
        for name, action in actions.items():
            t0 = time.perf_counter()
            action()
            timings[name].append(time.perf_counter() - t0)
        while written_packs:
            shutil.rmtree(written_packs.pop())
    bare, loader_only, pipeline_s = (min(timings[name]) for name in ("bare", "loader", "pipeline"))
    report = {
        "model": args.model, "device": str(device), "image_size": args.image_size, "workers": args.workers,
        "batch_size": args.batch_size, "train_images": len(train), "torch_threads": torch.get_num_threads(),
        "rounds": args.rounds, "bare_forward_s": round(bare, 3), "extraction_pipeline_s": round(pipeline_s, 3),
        "bare_forward_img_per_s": round(len(train) / bare, 1),
        "extraction_img_per_s": round(len(train) / pipeline_s, 1),
        "loader_only_img_per_s": round(len(train) / loader_only, 1),
        "extraction_vs_bare_throughput": round(bare / pipeline_s, 3),
        "extraction_from_pixel_pack_img_per_s": round(len(train) / min(timings["pack"]), 1),
        "extraction_from_pixel_pack_vs_bare_throughput": round(bare / min(timings["pack"]), 3),
        "extraction_writing_pixel_pack_vs_bare_throughput": round(bare / min(timings["pack_write"]), 3),
        # The same ratios per round (bare and extraction measured back to back), median over
        # rounds: less at the mercy of one lucky round of either side than best against best.
        **{f"{name}_vs_bare_median_of_rounds": round(float(np.median(
            [b / t for b, t in zip(timings["bare"], timings[key])])), 3)
           for name, key in (("extraction", "pipeline"), ("extraction_from_pixel_pack", "pack"),
                             ("extraction_writing_pixel_pack", "pack_write"))},
    }
    if device_decoding is not None:
        report["extraction_device_decode_img_per_s"] = round(len(train) / min(timings["device_decode"]), 1)
        report["extraction_device_decode_vs_bare_throughput"] = round(bare / min(timings["device_decode"]), 3)
    if device.type == "cuda":
        report["gpu"] = torch.cuda.get_device_name(device)
    if args.skip_probe:
        print(json.dumps(report, indent=2))
        return

    # 2. cached linear probe vs recompute-every-epoch probe (same head, same epochs)
    loss_fn = host.losses.get(track.default_loss).build(track, loss_context(track, train.labels, {}))
    targets = labels_as_tensors(train.labels)

    def train_epoch(heads, optimiser, features: torch.Tensor) -> None:
        order = torch.randperm(features.shape[0])
        for start in range(0, len(order), args.batch_size):
            rows = order[start:start + args.batch_size]
            loss = loss_fn(heads(features[rows]), {t: (v[rows], m[rows]) for t, (v, m) in targets.items()})
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()

    t0 = time.perf_counter()  # the protocol's own path: key, miss, extraction, HDF5 write, read
    run_features = RunFeatures(host, config, data.splits, device, work / "cache", progress=False)
    features = torch.from_numpy(run_features.features(args.model, "train"))
    heads = TaskHeads(backbone.feature_dim, track.tasks)
    optimiser = torch.optim.AdamW(heads.parameters(), lr=1e-3)
    for _ in range(args.epochs):
        train_epoch(heads, optimiser, features)
    with_cache = time.perf_counter() - t0

    t0 = time.perf_counter()
    heads = TaskHeads(backbone.feature_dim, track.tasks)
    optimiser = torch.optim.AdamW(heads.parameters(), lr=1e-3)
    for _ in range(args.epochs):
        extract_features(backbone, train, device, write, batch_size=args.batch_size, progress=False)
        train_epoch(heads, optimiser, torch.from_numpy(sink))
    recompute = time.perf_counter() - t0

    print(json.dumps(report | {
        "epochs": args.epochs,
        "probe_with_cache_s": round(with_cache, 3), "probe_recompute_s": round(recompute, 3),
        "cache_speedup": round(recompute / with_cache, 1),
    }, indent=2))


if __name__ == "__main__":
    main()
