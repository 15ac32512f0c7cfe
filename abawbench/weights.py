"""Loading weights from local files, safely, for any model plugin.

Why this lives in the core: every model plugin that accepts ``--weights /path`` needs the same
three things -- read a safetensors or torch file without executing code from it, know exactly
which bytes were read (the digest goes into every feature-cache key), and load the tensors into
a module with an error a user can act on. Nothing here names a concrete model.
"""

from __future__ import annotations

import hashlib
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping

from abawbench.errors import ConfigError

if TYPE_CHECKING:
    import torch
    from torch import nn

SAFETENSORS_SUFFIXES = (".safetensors",)
# Keys under which training scripts commonly wrap the state dict in a checkpoint.
WRAPPER_KEYS = ("state_dict", "model", "model_state_dict", "state_dict_ema", "model_ema")
_DIGEST_CHUNK = 1 << 20


def file_digest(path: str | Path) -> str:
    """SHA-256 of a file's bytes, read in chunks so a multi-GB checkpoint needs no extra RAM."""
    path = Path(path)
    digest = hashlib.sha256()
    try:
        with path.open("rb") as handle:
            for chunk in iter(lambda: handle.read(_DIGEST_CHUNK), b""):
                digest.update(chunk)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read weights file: {exc.strerror or exc}") from exc
    return digest.hexdigest()


def load_state_dict_file(path: str | Path) -> dict[str, "torch.Tensor"]:
    """Tensors of a safetensors file or a torch state dict / checkpoint, on the CPU.

    Torch files are read with ``weights_only=True``: a pickle that would run code is refused,
    never executed. A checkpoint wrapping the tensors under ``state_dict``/``model`` (and the
    like) is unwrapped. Anything unreadable becomes a :class:`ConfigError` naming the file.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: weights file not found")
    if path.suffix.lower() in SAFETENSORS_SUFFIXES:
        raw: Any = _read_safetensors(path)
    else:
        raw = _read_torch(path)
    return _tensor_dict(_unwrap(raw), path)


def _read_safetensors(path: Path) -> dict[str, "torch.Tensor"]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as exc:
        raise ConfigError(f"{path}: not a readable safetensors file: {exc}") from exc


def _read_torch(path: Path) -> Any:
    import torch

    try:
        return torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        # weights_only refuses globals it does not know: the file wants to run code.
        raise ConfigError(
            f"{path}: refused to load: the file is not a plain tensor state dict "
            f"(loading it would execute code from the pickle). Re-save it as "
            f"safetensors or as torch.save(model.state_dict()). Detail: {first_line(exc)}"
        ) from exc
    except Exception as exc:  # zip/pickle corruption surfaces as many types
        raise ConfigError(
            f"{path}: not a readable torch weights file: {type(exc).__name__}: {first_line(exc)}"
        ) from exc


def _unwrap(raw: Any) -> Any:
    """The state dict inside a training checkpoint (``{"state_dict": {...}, "epoch": 3}``)."""
    if isinstance(raw, Mapping):
        for key in WRAPPER_KEYS:
            inner = raw.get(key)
            if isinstance(inner, Mapping) and inner:
                return inner
    return raw


def _tensor_dict(raw: Any, path: Path) -> dict[str, "torch.Tensor"]:
    import torch

    if not isinstance(raw, Mapping) or not raw:
        raise ConfigError(
            f"{path}: expected a mapping of parameter names to tensors, got {type(raw).__name__}"
        )
    bad = [str(k) for k, v in raw.items() if not (isinstance(k, str) and isinstance(v, torch.Tensor))]
    if bad:
        raise ConfigError(
            f"{path}: {len(bad)} entries are not name -> tensor pairs (first: {bad[:3]}); "
            f"expected a state dict, optionally under one of {list(WRAPPER_KEYS)}"
        )
    return _strip_common_prefix(dict(raw))


def _strip_common_prefix(state: dict[str, "torch.Tensor"]) -> dict[str, "torch.Tensor"]:
    """Drop a ``module.`` prefix shared by every key (DataParallel / DDP checkpoints)."""
    prefix = "module."
    if state and all(key.startswith(prefix) for key in state):
        return {key[len(prefix):]: value for key, value in state.items()}
    return state


@dataclass(frozen=True)
class LoadReport:
    """What happened when a state dict was loaded into a module.

    ``dropped`` are checkpoint keys under an ignorable prefix (typically the classifier of a
    checkpoint trained with another head): a feature extractor has no head, so they are dropped
    on purpose and reported, not treated as an error.
    """

    source: str
    loaded: int
    dropped: tuple[str, ...] = field(default_factory=tuple)

    def summary(self) -> str:
        text = f"{self.source}: loaded {self.loaded} tensors"
        if self.dropped:
            text += f"; dropped {len(self.dropped)} classifier tensors ({', '.join(self.dropped[:4])})"
        return text


def load_into_module(
    module: "nn.Module",
    state: Mapping[str, "torch.Tensor"],
    source: str,
    ignorable_prefixes: Iterable[str] = (),
) -> LoadReport:
    """Load ``state`` into ``module`` strictly, except for keys under ``ignorable_prefixes``.

    Missing keys, unexpected keys and shape mismatches all raise :class:`ConfigError` naming
    ``source`` and the first offending keys, because silently keeping random weights for part
    of a network produces plausible-looking but meaningless benchmark numbers.
    """
    prefixes = tuple(p if p.endswith(".") else p + "." for p in ignorable_prefixes if p)
    own = module.state_dict()
    dropped = tuple(sorted(k for k in state if k not in own and k.startswith(prefixes)))
    kept = {k: v for k, v in state.items() if k not in dropped}

    missing = sorted(set(own) - set(kept))
    unexpected = sorted(set(kept) - set(own))
    mismatched = [
        f"{k} (file {tuple(kept[k].shape)}, model {tuple(own[k].shape)})"
        for k in sorted(set(kept) & set(own))
        if tuple(kept[k].shape) != tuple(own[k].shape)
    ]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing keys (first: {_first(missing)})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected keys (first: {_first(unexpected)})")
    if mismatched:
        problems.append(f"{len(mismatched)} shape mismatches (first: {_first(mismatched)})")
    if problems:
        raise ConfigError(
            f"{source}: weights do not fit the model: " + "; ".join(problems)
            + ". Is the file for this architecture?"
        )
    module.load_state_dict(kept, strict=True)
    return LoadReport(source=source, loaded=len(kept), dropped=dropped)


def _first(items: list[str], n: int = 3) -> str:
    return ", ".join(items[:n]) + (", ..." if len(items) > n else "")


def first_line(exc: BaseException) -> str:
    """The first line of an exception message: errors shown to users stay one line."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
