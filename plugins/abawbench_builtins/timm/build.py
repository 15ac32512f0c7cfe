"""Building a timm backbone: architecture check, weights, preprocessing.

Imported only when a model is looked up or built, never at registration, because importing
timm (and torch) costs seconds that ``abawbench list`` should not pay.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import timm
import torch
from torch import nn

from abawbench.errors import ConfigError, UnknownNameError
from abawbench.registry import suggest
from abawbench.specs import Backbone, ModelOptions
from abawbench.weights import file_digest, first_line, load_into_module, load_state_dict_file

PREFIX = "timm:"
WEIGHTS_HELP = (
    "pass a local file instead: --weights /path/to/file.safetensors "
    "(a .safetensors file or a torch state dict), or --weights random"
)


def known_architectures() -> list[str]:
    """Every architecture timm can create (for did-you-mean on a failed lookup)."""
    return timm.list_models()


def check_architecture(arch: str) -> str:
    """``arch`` if timm knows it (``name`` or ``name.pretrained_tag``), else UnknownNameError."""
    if arch and timm.is_model(arch):
        return arch
    hint = suggest(arch, known_architectures())
    raise UnknownNameError(
        f"unknown timm architecture {arch!r}{hint}; see timm.list_models() for all names"
    )


def build_backbone(arch: str, options: ModelOptions) -> Backbone:
    """A timm feature extractor ``[N, 3, H, W] -> [N, D]`` with its weights and preprocessing."""
    seed = _seed(options.extra)
    image_size = _image_size(options.image_size)
    kwargs = _size_kwargs(arch, image_size)
    weights = (options.weights or "random").strip()

    if weights == "hub":
        module = _create_from_hub(arch, kwargs)
        digest = _hub_digest(arch, module)
    else:
        module = create_random(arch, seed, kwargs)
        if weights == "random":
            digest = f"random:{arch}:seed{seed}"
        else:
            path = _weights_path(weights)
            _load_file(module, path, image_size)
            digest = "sha256:" + file_digest(path)

    module.eval()
    return Backbone(
        name=PREFIX + arch,
        module=module,
        feature_dim=feature_dim(module),
        data_config=data_config_for(module, image_size),
        weights_digest=digest,
    )


def create_random(arch: str, seed: int, kwargs: Mapping[str, Any] | None = None) -> nn.Module:
    """A headless model whose random init depends on ``seed`` only.

    The global RNG is forked so building a model neither depends on nor disturbs the caller's
    random state (two runs that build models in a different order still agree).
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return timm.create_model(arch, pretrained=False, num_classes=0, **dict(kwargs or {}))


def _create_from_hub(arch: str, kwargs: Mapping[str, Any]) -> nn.Module:
    try:
        return timm.create_model(arch, pretrained=True, num_classes=0, **kwargs)
    except Exception as exc:  # offline, no such weights, network or cache trouble: all the same to a user
        raise ConfigError(
            f"cannot get pretrained weights for timm:{arch} from the hub "
            f"({type(exc).__name__}: {first_line(exc)}); {WEIGHTS_HELP}"
        ) from exc


def _hub_digest(arch: str, module: nn.Module) -> str:
    """Hub weights are named by their source and tag (the files behind them are immutable)."""
    cfg = getattr(module, "pretrained_cfg", {}) or {}
    source = cfg.get("hf_hub_id") or cfg.get("url") or "unknown"
    tag = cfg.get("tag") or "default"
    return f"hub:{source}:{cfg.get('architecture', arch)}.{tag}"


def _weights_path(weights: str) -> Path:
    path = Path(weights).expanduser()
    if not path.is_file():
        raise ConfigError(
            f"weights {weights!r}: no such file; weights must be 'random', 'hub' or a path "
            f"to a .safetensors / torch state-dict file"
        )
    return path


def _load_file(module: nn.Module, path: Path, image_size: int | None) -> None:
    """Load a local checkpoint, adapting it the way timm adapts its own downloads.

    timm models that have a ``checkpoint_filter_fn`` use it to convert original-format
    checkpoints and to resample ViT position embeddings to another input size; applying it
    here makes ``--weights file --image-size 112`` work for the same models hub weights do.
    """
    state = load_state_dict_file(path)
    state = _filtered(module, state)
    classifier = (getattr(module, "pretrained_cfg", {}) or {}).get("classifier")
    heads = [classifier] if isinstance(classifier, str) else list(classifier or [])
    load_into_module(module, state, source=str(path), ignorable_prefixes=heads)


def _filtered(module: nn.Module, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    import sys

    filter_fn = getattr(sys.modules.get(type(module).__module__), "checkpoint_filter_fn", None)
    if filter_fn is None:
        return state
    try:
        return dict(filter_fn(state, module))
    except Exception:
        # A filter that cannot handle this file leaves it as it is; load_into_module then
        # reports exactly which keys or shapes do not fit.
        return state


def feature_dim(module: nn.Module) -> int:
    """Width of the pooled features. Models with a post-pool head layer (MobileNetV3's
    ``conv_head``) output ``head_hidden_size``, not ``num_features``."""
    return int(getattr(module, "head_hidden_size", None) or module.num_features)


def data_config_for(module: nn.Module, image_size: int | None) -> dict[str, Any]:
    """timm's resolved eval preprocessing, JSON-friendly (lists, not tuples), with
    ``image_size`` overriding ``input_size``. It goes into feature-cache keys verbatim."""
    from timm.data import resolve_model_data_config

    config = dict(resolve_model_data_config(module))
    if image_size is not None:
        config["input_size"] = (3, image_size, image_size)
    return {key: _jsonable(value) for key, value in sorted(config.items())}


def _jsonable(value: Any) -> Any:
    if isinstance(value, (tuple, list)):
        return [_jsonable(v) for v in value]
    if isinstance(value, float):
        return float(value)
    return value


def _size_kwargs(arch: str, image_size: int | None) -> dict[str, Any]:
    """``img_size`` for architectures built for one input size (ViT-like): their position
    embeddings are sized at creation. Convolutional nets take any size and refuse the kwarg."""
    if image_size is None:
        return {}
    from timm.models import get_pretrained_cfg_value

    fixed = get_pretrained_cfg_value(arch, "fixed_input_size")
    return {"img_size": image_size} if fixed else {}


def _seed(extra: Mapping[str, Any]) -> int:
    seed = (extra or {}).get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"model option 'seed' must be a non-negative integer, got {seed!r}")
    return seed


def _image_size(size: int | None) -> int | None:
    if size is None:
        return None
    if isinstance(size, bool) or not isinstance(size, int) or size < 16:
        raise ConfigError(f"image_size must be an integer >= 16, got {size!r}")
    return size

