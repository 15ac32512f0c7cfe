"""Device choice and the per-device settings that go with it, in one place.

Why: the seed paper's code hard-coded ``cuda`` and its settings; here every command asks this
module, so a run on a laptop CPU and on a GPU differ only where they must (bf16 autocast,
channels_last, pinned memory), and a wrong request fails with one clear line instead of a
CUDA traceback deep inside a DataLoader.
"""

from __future__ import annotations

import contextlib
import random
import re
from typing import TYPE_CHECKING, Any, Callable, ContextManager

from abawbench.errors import ConfigError

if TYPE_CHECKING:
    import torch
    from torch import nn

DEVICE_CHOICES = ("auto", "cpu", "cuda", "cuda:N", "mps")
_CUDA_INDEX = re.compile(r"^cuda:(\d+)$")


def resolve_device(name: "str | torch.device" = "auto") -> "torch.device":
    """The ``torch.device`` for a user's ``--device`` value.

    ``auto`` picks CUDA when present, else the CPU (never MPS implicitly: its op coverage still
    changes numbers). Asking for an accelerator that is not there is a :class:`ConfigError`
    rather than a silent fall back, because a benchmark that quietly ran on the CPU reports
    timings nobody asked for.
    """
    import torch

    text = str(name).strip().lower()
    if text == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if text == "cpu":
        return torch.device("cpu")
    if text == "cuda" or _CUDA_INDEX.match(text):
        if not torch.cuda.is_available():
            raise ConfigError(f"device {text!r} requested but CUDA is not available here; use --device cpu or auto")
        match = _CUDA_INDEX.match(text)
        if match:
            index, count = int(match.group(1)), torch.cuda.device_count()
            if index >= count:
                raise ConfigError(f"device {text!r} requested but only {count} CUDA device(s) exist")
        return torch.device(text)
    if text == "mps":
        if not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
            raise ConfigError("device 'mps' requested but Apple MPS is not available here")
        return torch.device("mps")
    raise ConfigError(f"unknown device {str(name)!r}; choose one of {', '.join(DEVICE_CHOICES)}")


def autocast_context(device: "torch.device") -> ContextManager[Any]:
    """bf16 autocast on CUDA (no loss scaling needed, unlike fp16); plain fp32 elsewhere.

    CPU bf16 autocast is left off on purpose: on most CPUs it is slower than fp32 and it would
    make CPU results differ from the reference numbers for no gain.
    """
    import torch

    if device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def prepare_module(module: "nn.Module", device: "torch.device") -> "nn.Module":
    """Move ``module`` to ``device``; on CUDA also use channels_last, which lets cuDNN pick
    tensor-core convolution kernels without layout transposes (a large win under bf16)."""
    import torch

    module = module.to(device)
    if device.type == "cuda":
        module = module.to(memory_format=torch.channels_last)
    return module


def prepare_batch(batch: "torch.Tensor", device: "torch.device",
                  normalize: "Callable[[torch.Tensor], torch.Tensor] | None" = None) -> "torch.Tensor":
    """Move an image batch ``[N, C, H, W]`` to ``device`` in the layout :func:`prepare_module` chose.

    ``normalize`` (a :meth:`abawbench.features.preprocess.Preprocessing.normalize`) turns a uint8 batch
    into model input after the copy, so a GPU receives a quarter of the bytes and does the
    float arithmetic itself.
    """
    import torch

    non_blocking = device.type == "cuda"
    batch = batch.to(device, non_blocking=non_blocking)
    if normalize is not None:
        batch = normalize(batch)
    if device.type == "cuda" and batch.dim() == 4:
        batch = batch.contiguous(memory_format=torch.channels_last)
    return batch


def loader_kwargs(device: "torch.device") -> dict[str, Any]:
    """DataLoader settings that depend on the device: pinned host memory only helps (and only
    works without a warning) when batches are copied to a CUDA device."""
    return {"pin_memory": device.type == "cuda"}


def seed_everything(seed: int, deterministic: bool = True) -> int:
    """Seed Python, NumPy and torch (all CUDA devices too) and return ``seed`` for the record.

    With ``deterministic`` (default) cuDNN autotuning is turned off and cuDNN is asked for
    deterministic kernels: free on the CPU, a small cost on CUDA, and it makes two identical
    runs agree. ``torch.use_deterministic_algorithms`` is not forced: on CUDA it needs
    ``CUBLAS_WORKSPACE_CONFIG`` set before start-up and errors on some ops.
    """
    import numpy as np
    import torch

    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ConfigError(f"seed must be a non-negative integer, got {seed!r}")
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)  # also seeds every CUDA device
    if deterministic:
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
    return seed
