"""1,000 cluster-bootstrap resamples of P_MTL on a validation-sized mtl set (26,876 rows).

Times :func:`abawbench.evaluation.score_and_resample`: the official score, then every resample
scored from per-group sums (:mod:`abawbench.stats.clusters`), with the track's own unit (videos
of ``--frames`` frames each) and with every image its own unit (the worst case: one group per
row). Random predictions and labels, 40% of rows without an expression (as the official validation set).
Best-of-``--repeats`` wall and CPU time; one torch thread by default.

    .venv/bin/python benchmarks/bench_bootstrap.py [--rows 26876] [--resamples 1000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import time

import torch
from test_bench_scoring import mtl_case  # this folder: the suite's validation-like mtl data

from abawbench.evaluation import score_and_resample
from abawbench.plugins import load_plugins


def make_case(rows: int, frames: int, seed: int = 0):
    """The pytest-benchmark suite's mtl data, with image ids of videos of ``frames`` frames."""
    predictions, labels = mtl_case(rows, seed)
    ids = [f"cropped_aligned/video{row // frames}/{row % frames:05d}.jpg" for row in range(rows)]
    return predictions, labels, ids


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=26_876)
    parser.add_argument("--frames", type=int, default=500, help="frames per video (the resampling unit)")
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    mtl = load_plugins(strict=True).tracks.get("mtl")
    predictions, labels, ids = make_case(args.rows, args.frames)
    cases = {"videos": ids, "images": None}
    print(f"P_MTL, {args.rows} rows, {args.resamples} resamples, {args.threads} torch thread(s), "
          f"best of {args.repeats}")
    for name, sample_ids in cases.items():
        best_wall = best_cpu = float("inf")
        for _ in range(args.repeats):
            wall, cpu = time.perf_counter(), time.process_time()
            scored = score_and_resample(mtl, predictions, labels, n_resamples=args.resamples, seed=0,
                                        sample_ids=sample_ids)
            best_wall = min(best_wall, time.perf_counter() - wall)
            best_cpu = min(best_cpu, time.process_time() - cpu)
        record = scored.resampling
        print(f"unit {record.unit:>6} ({record.groups:>6} groups): wall {best_wall:.3f} s, cpu {best_cpu:.3f} s, "
              f"interval [{scored.primary.ci_low:.4f}, {scored.primary.ci_high:.4f}]")


if __name__ == "__main__":
    main()
