"""This process's place in a torch.distributed run, read from what ``torchrun`` sets.

``torchrun`` exports ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` to every worker (and the
rendezvous address, across nodes too); a process started without it is rank 0 of 1. The
process group is initialised once, with NCCL when this rank has a CUDA device and gloo
otherwise, so the same command runs on a GPU node and on a laptop.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch

from abawbench.errors import ConfigError

COLLECTIVE_TIMEOUT = timedelta(minutes=30)
"""How long a rank waits for the others at a collective: long enough for one rank to extract
or train alone while the others wait, short enough that a hung job ends. A rank that dies is
noticed sooner: torchrun stops the other workers when one exits with an error."""


@dataclass(frozen=True)
class DistContext:
    """Rank ``rank`` of ``world_size`` processes; ``local_rank`` picks this node's GPU.

    ``distributed`` is true under ``torchrun`` even with one process: such a run takes the
    distributed paths (sampler, DDP, sharded extraction), so ``--nproc-per-node 1`` is the
    single-process reference of a multi-process run with the same global batch."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    distributed: bool = False

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that writes results and prints progress."""
        return self.rank == 0

    def device_for(self, requested: torch.device) -> torch.device:
        """The device this rank computes on: with several ranks on CUDA, its own local GPU."""
        if self.distributed and requested.type == "cuda":
            return torch.device("cuda", self.local_rank)
        return requested

    def barrier(self) -> None:
        if self.distributed:
            torch.distributed.barrier()

    def broadcast(self, value: Any) -> Any:
        """Rank 0's ``value`` on every rank (any picklable object)."""
        if not self.distributed:
            return value
        box = [value]
        torch.distributed.broadcast_object_list(box, src=0)
        return box[0]

    def gather(self, value: Any) -> list[Any] | None:
        """Every rank's ``value`` in rank order on rank 0; None on the other ranks."""
        if not self.distributed:
            return [value]
        received: list[Any] | None = [None] * self.world_size if self.is_main else None
        torch.distributed.gather_object(value, received, dst=0)
        return received

    def all_gather(self, value: Any) -> list[Any]:
        """Every rank's ``value`` in rank order, on every rank."""
        if not self.distributed:
            return [value]
        received: list[Any] = [None] * self.world_size
        torch.distributed.all_gather_object(received, value)
        return received


_CONTEXT: DistContext | None = None
LAUNCHER_VARIABLES = {"WORLD_SIZE", "RANK", "MASTER_ADDR", "MASTER_PORT"}
"""What ``torchrun`` (or any launcher of ``init_method="env://"``) sets: all of them, or a plain run."""


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"environment variable {name}={raw!r} is not an integer (torchrun sets it)") from None


def distributed_context() -> DistContext:
    """This process's context; the first call under ``torchrun`` joins the process group."""
    global _CONTEXT
    if _CONTEXT is not None:
        return _CONTEXT
    context = DistContext(rank=_env_int("RANK", 0), world_size=_env_int("WORLD_SIZE", 1),
                          local_rank=_env_int("LOCAL_RANK", 0), distributed=LAUNCHER_VARIABLES <= os.environ.keys())
    if context.distributed and not torch.distributed.is_initialized():
        use_nccl = torch.cuda.is_available() and torch.distributed.is_nccl_available()
        if use_nccl:
            torch.cuda.set_device(context.local_rank)
        torch.distributed.init_process_group(backend="nccl" if use_nccl else "gloo", timeout=COLLECTIVE_TIMEOUT)
    _CONTEXT = context
    return context


def shutdown() -> None:
    """Leave the process group (at the end of a command), so the process exits cleanly."""
    global _CONTEXT
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
    _CONTEXT = None
