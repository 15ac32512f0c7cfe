"""Run configuration: pydantic models at the boundary, loadable from TOML, overridable by flags.

An invalid configuration raises one :class:`ConfigError` that lists every bad field.
``abawbench config schema`` prints :func:`config_json_schema` for editors.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any, Literal, Mapping

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from abawbench.errors import ConfigError

ProtocolName = Literal["linear-probe", "finetune"]
HeadName = Literal["linear", "mlp"]
OptimizerName = Literal["adamw", "adam", "sgd"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ProtocolConfig(_Strict):
    """How heads (or whole networks) are trained and selected."""

    name: ProtocolName = Field("linear-probe", description="linear-probe: frozen backbone, cached features; finetune: end to end")
    head: HeadName = Field("linear", description="head on top of the backbone features")
    epochs: int = Field(20, ge=1, le=10_000)
    batch_size: int = Field(64, ge=1, le=65_536)
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    optimizer: OptimizerName = Field("adamw", description="adamw, adam, or sgd (momentum 0.9)")
    augmentation: str = Field("flip", description="finetune training augmentation: none, flip, or one a plugin registers (see abawbench list augmentations); validation never gets any")
    feature_fusion: Literal["concat", "mean"] = Field("concat", description="how a fused model 'a+b' combines its backbones' cached features (linear-probe only); mean needs equal widths")
    patience: int | None = Field(None, ge=1, description="stop after this many epochs without a better validation score")
    image_size: int | None = Field(112, ge=16, le=1024, description="input size in pixels (112: the size ABAW teams use and the embedded default is drawn at); None: the model's native size")
    num_workers: int = Field(0, ge=0, le=64, description="DataLoader workers for image decoding")
    pixel_cache: bool = Field(False, description="keep each split's decoded, resized eval pixels in the cache folder (3*H*W bytes per image): later extractions with the same geometry, and fine-tuning's validation passes after the first, decode nothing; features and scores are the same either way")
    bootstrap: int = Field(200, ge=0, le=100_000, description="bootstrap resamples for confidence intervals (0: none)")


class RunConfig(_Strict):
    """One ``abawbench run``: every entry is a (model, loss, protocol) combination, run per seed."""

    track: str = Field("lsd", description="track name, e.g. lsd or mtl")
    data: Path | None = Field(None, description="dataset root in the official layout; None: the embedded default")
    dataset: str | None = Field(None, description="dataset plugin; None: the one providing the embedded default (or reading the official layout when --data is given)")
    models: list[str] = Field(default_factory=list, description="model names; empty: the models plugins mark for the default run")
    weights: str = Field("random", description="random, hub, or a path to a local weights file")
    losses: list[str] = Field(default_factory=list, description="loss names; empty: the track's default loss")
    loss_options: dict[str, dict[str, Any]] = Field(default_factory=dict, description="per loss name, its options, e.g. {cross-entropy = {label_smoothing = 0.1}}")
    protocol: ProtocolConfig = Field(default_factory=ProtocolConfig)
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1)
    device: str = Field("auto", description="auto (CUDA when present, else CPU), cpu, cuda, cuda:N")
    output: Path = Field(Path("runs"), description="folder for result files")
    cache_dir: Path | None = Field(None, description="feature/data cache folder; None: $ABAWBENCH_CACHE or ~/.cache/abawbench")
    skip_bad: bool = Field(False, description="drop bad annotation rows instead of refusing the data")

    @field_validator("device")
    @classmethod
    def _device_known(cls, value: str) -> str:
        if value in {"auto", "cpu", "cuda", "mps"} or (value.startswith("cuda:") and value[5:].isdigit()):
            return value
        raise ValueError("must be auto, cpu, cuda, cuda:N or mps")

    @field_validator("seeds")
    @classmethod
    def _seeds_unique(cls, value: list[int]) -> list[int]:
        if len(set(value)) != len(value):
            raise ValueError("seeds must be distinct")
        return value


def format_validation_error(error: ValidationError, source: str) -> str:
    """One message listing every bad field, as ``field.path: problem``."""
    lines = [f"invalid configuration ({source}): {error.error_count()} problem(s)"]
    for item in error.errors():
        where = ".".join(str(part) for part in item["loc"]) or "(top level)"
        lines.append(f"  {where}: {item['msg']}")
    return "\n".join(lines)


def _merge(base: dict[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in overrides.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _merge(dict(merged[key]), value)
        else:
            merged[key] = value
    return merged


def load_config(path: Path | None = None, overrides: Mapping[str, Any] | None = None) -> RunConfig:
    """Read ``path`` (TOML) if given, apply ``overrides`` (flags; None values ignored), validate."""
    raw: dict[str, Any] = {}
    source = "flags"
    if path is not None:
        source = str(path)
        try:
            raw = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"{path}: configuration file not found") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    cleaned = _drop_none(dict(overrides or {}))
    try:
        return RunConfig.model_validate(_merge(raw, cleaned))
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, source)) from None


def _drop_none(values: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, Mapping):
            nested = _drop_none(value)
            if nested:
                out[key] = nested
        elif value is not None:
            out[key] = value
    return out


def config_json_schema() -> str:
    return json.dumps(RunConfig.model_json_schema(), indent=2)
