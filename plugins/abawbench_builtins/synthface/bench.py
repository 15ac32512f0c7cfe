"""Generator throughput, single process: ``python -m abawbench_builtins.synthface.bench``.

Counts everything an image costs except the file write: seeding, sampling the expression,
geometry, rasterising, the domain shift and JPEG encoding. Reports images per second of wall
time and of this process's CPU time (the per-core figure; on a shared machine the wall figure
also pays for other processes). Best of ``--repeats`` rounds, as ``timeit`` does, because
interference only ever slows a round down.
"""

from __future__ import annotations

import argparse
import time

from abawbench_builtins.synthface.domains import DOMAINS, face_jpeg
from abawbench_builtins.synthface.facs import sample_expression
from abawbench_builtins.synthface.tree import identity_for, seeded_rng


def one_round(domain_name: str, n: int, image_size: int) -> tuple[float, float]:
    """Seconds (wall, CPU) to make ``n`` JPEG images of one domain."""
    domain = DOMAINS[domain_name]
    wall, cpu = time.perf_counter(), time.process_time()
    for i in range(n):
        rng = seeded_rng((0, 9, 9, i))  # as tree.render_job seeds a job
        expr = sample_expression(rng, i % 8, domain.intensity)
        face_jpeg(rng, identity_for((0, 9, 9, i % 100)), expr.activations, domain, image_size)
    return time.perf_counter() - wall, time.process_time() - cpu


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000, help="images per round")
    parser.add_argument("--size", type=int, default=112, help="image side in pixels")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    for name in DOMAINS:
        one_round(name, 50, args.size)  # warm caches (identities, noise banks, imports)
        rounds = [one_round(name, args.images, args.size) for _ in range(args.repeats)]
        wall = min(r[0] for r in rounds)
        cpu = min(r[1] for r in rounds)
        print(f"{name:9s} {args.size}px: {args.images / wall:7.0f} img/s wall, {args.images / cpu:7.0f} img/s CPU"
              f"  ({1e3 * cpu / args.images:.2f} ms CPU per image, best of {args.repeats})")


if __name__ == "__main__":
    main()
