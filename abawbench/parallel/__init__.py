"""Runs across processes with torch.distributed: the engine users already launch with
``torchrun`` (NCCL on GPUs, gloo on CPUs), never a process pool of our own.

- :mod:`.context`: which rank this process is, the device it owns, and the few collectives used.
- :mod:`.sharded`: feature extraction split across ranks and written once into one cache entry.
- :mod:`.claims`: whole entries claimed under a lock, so ranks (or separate jobs sharing a
  results folder) never run one entry twice.
- :mod:`.ddp`: fine-tuning with DistributedDataParallel and a distributed sampler.

A run started without ``torchrun`` is a world of one process and none of this changes it.
"""

from abawbench.parallel.context import DistContext, distributed_context

__all__ = ["DistContext", "distributed_context"]
