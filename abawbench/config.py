"""Run configuration: pydantic models at the boundary, loadable from TOML, overridable by flags.

The models are the one description of a run: ``abawbench run`` generates one flag per field
from them (:mod:`abawbench.commands.config_flags`), and ``abawbench config schema`` prints
:func:`config_json_schema` for editors, so every field's description is its help text in both.
An invalid configuration raises one :class:`ConfigError` that names every bad field.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any, Literal, Mapping

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from abawbench.errors import ConfigError
from abawbench.registry import suggest

ProtocolName = Literal["linear-probe", "finetune", "zero-shot"]
HeadName = Literal["linear", "mlp"]
OptimizerName = Literal["adamw", "adam", "sgd"]
LABEL_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:+=@/-]*$"
"""A label is typed on command lines and listed comma-separated (``--members a,b``): no
spaces, no commas."""
LABEL_MAX_LENGTH = 100
LABEL_RULE = (f"a label is at most {LABEL_MAX_LENGTH} characters: a letter or digit, then letters, "
              "digits and _ . : + = @ / - (no spaces or commas)")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ProtocolConfig(_Strict):
    """How heads (or whole networks) are trained and selected."""

    name: ProtocolName = Field("linear-probe", description="linear-probe: frozen backbone, cached features; finetune: end to end; zero-shot: the model's own expression classifier, nothing trained (docs/pretrained.md)")
    head: HeadName = Field("linear", description="head on top of the backbone features: linear, or mlp (one hidden layer)")
    epochs: int = Field(20, ge=1, le=10_000, description="training epochs; the best validation epoch is kept")
    batch_size: int = Field(64, ge=1, le=65_536, description="batch size for training and for feature extraction")
    lr: float = Field(1e-3, gt=0, allow_inf_nan=False, description="initial learning rate, then as lr_schedule says (cosine-annealed by default)")
    weight_decay: float = Field(0.0, ge=0, allow_inf_nan=False, description="the optimizer's weight decay")
    optimizer: OptimizerName = Field("adamw", description="adamw, adam, or sgd (momentum 0.9)")
    augmentation: str = Field("flip", description="finetune training augmentation: none, flip, or one a plugin registers (see abawbench list augmentations); validation never gets any")
    feature_fusion: Literal["concat", "mean"] = Field("concat", description="how a fused model 'a+b' combines its backbones' cached features (linear-probe only); mean needs equal widths")
    patience: int | None = Field(None, ge=1, description="stop after this many epochs without a better validation score; unset: train every epoch")
    image_size: int | None = Field(112, ge=16, le=1024, description="input size in pixels (112: the size the embedded default is drawn at, common for face crops); unset (--image-size none): each model's native size")
    num_workers: int = Field(0, ge=0, le=64, description="DataLoader workers for image decoding")
    pixel_cache: bool = Field(False, description="keep each split's decoded, resized eval pixels in the cache folder (3*H*W bytes per image): later extractions with the same geometry, and fine-tuning's validation passes after the first, decode nothing; features and scores are the same either way")
    bootstrap: int = Field(1000, ge=0, le=100_000, description="bootstrap resamples for confidence intervals and the significance mark (0: none); the track names what one draw takes (a video for mtl, an image for lsd)")
    selection: Literal["train-holdout", "validation"] | None = Field(None, description="where epochs, early stopping and AU thresholds are chosen: train-holdout (a seeded part of the training split, never trained on) or validation (the reported split: optimistic); unset: the track's default (lsd: train-holdout, mtl: validation)")
    holdout_fraction: float = Field(0.1, gt=0, lt=0.5, allow_inf_nan=False, description="with selection train-holdout: the part of the training split held out to select on (stratified by class, or drawn by whole videos where the track groups images)")
    lr_schedule: Literal["cosine", "constant"] = Field("cosine", description="learning-rate schedule: cosine (annealed to 0 over schedule_period) or constant")
    schedule_step: Literal["epoch", "step"] = Field("epoch", description="when the schedule advances: once per epoch, or once per optimiser step (training batch)")
    schedule_period: int | None = Field(None, ge=1, le=10_000_000, description="cosine T_max in schedule steps (epochs or batches, see schedule_step); unset: the epochs, or the epochs times the batches per epoch")
    freeze_batchnorm: bool = Field(False, description="keep every BatchNorm layer in eval mode while training: running statistics never move, normalisation uses them")
    warm_start: str | None = Field(None, description="label or folder of a completed entry of this track under the run's output, same seed, whose saved weights initialise the network (finetune) or the heads (a linear-probe entry's heads, its standardisation folded in)")
    task_batching: Literal["mixed", "per-task"] = Field("mixed", description="finetune training batches: mixed (one shuffled loader over all rows, each loss term over the rows labelled for it) or per-task (each step one batch from each task's labelled rows, shorter tasks repeated, one forward pass per task)")

    @model_validator(mode="after")
    def _finetune_only_settings(self) -> "ProtocolConfig":
        """Warm start and per-task batches act on a network trained end to end; the linear
        probe trains heads on cached features, where they would silently do nothing."""
        if self.name == "linear-probe":
            given = [name for name, on in (("warm_start", self.warm_start is not None),
                                           ("task_batching", self.task_batching != "mixed")) if on]
            if given:
                raise ValueError(f"{' and '.join(given)}: only for protocol name 'finetune' (the linear probe "
                                 "trains heads on cached features)")
        return self


class RunConfig(_Strict):
    """One ``abawbench run``: every entry is a (model, loss, protocol) combination, run per seed."""

    track: str = Field("lsd", description="track to run (see 'abawbench list tracks')")
    data: Path | None = Field(None, description="dataset root in the official layout; unset: the embedded default")
    dataset: str | None = Field(None, description="dataset plugin to read the data with (see 'abawbench list datasets'); unset: the one providing the embedded default, or the one reading the official layout when data is given")
    models: list[str] = Field(default_factory=list, description="model names, e.g. resnet18,timm:convnext_atto (see 'abawbench list models'); empty: the models plugins mark for the default run")
    weights: str = Field("random", description="random, hub (downloaded when online), or a path to a local weights file (.safetensors / .pth)")
    losses: list[str] = Field(default_factory=list, description="loss names (see 'abawbench list losses'); empty: the track's default loss")
    loss_options: dict[str, dict[str, Any]] = Field(default_factory=dict, description="per loss name, its options, e.g. {cross-entropy = {label_smoothing = 0.1}}")
    protocol: ProtocolConfig = Field(default_factory=ProtocolConfig, description="how heads (or whole networks) are trained and selected")
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1, description="seeds, each entry runs once per seed (mean and std reported)")
    device: str = Field("auto", description="auto (CUDA when present, else CPU), cpu, cuda, cuda:N, or mps")
    output: Path = Field(Path("runs"), description="folder for result files (one JSON per entry and seed under <output>/<track>/)")
    cache_dir: Path | None = Field(None, description="feature and data cache folder; unset: $ABAWBENCH_CACHE, else ~/.cache/abawbench")
    skip_bad: bool = Field(False, description="drop bad annotation rows and undecodable images instead of refusing the data")
    test_images: str | None = Field(None, description="folder under the data root holding the test images, where the dataset cannot find them itself (unset: the dataset's plausible folders)")
    label: str | None = Field(None, max_length=LABEL_MAX_LENGTH, pattern=LABEL_PATTERN, description="a name for this run's entries in tables and wherever an entry is named (ensemble --members, predict); with several entries each is LABEL/<model>__<protocol>-<head>__<loss>; unset: <model>__<protocol>-<head>__<loss>")

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
    """One message naming every bad field as ``field.path: problem``: a single problem on one
    line (what a user fixing one typo wants to read), several as one line each under a count."""
    problems = [f"{'.'.join(str(part) for part in item['loc']) or '(top level)'}: {_problem(item)}"
                for item in error.errors()]
    if len(problems) == 1:
        return f"invalid configuration ({source}): {problems[0]}"
    return "\n".join([f"invalid configuration ({source}): {len(problems)} problem(s)",
                      *(f"  {problem}" for problem in problems)])


def _problem(item: Mapping[str, Any]) -> str:
    if item["type"] != "extra_forbidden":
        return item["msg"]
    # A typo is the usual reason for an unknown key: suggest the fields of the table it is in.
    model: Any = RunConfig
    for part in item["loc"][:-1]:
        field = getattr(model, "model_fields", {}).get(part)
        model = field.annotation if field is not None else None
    known = list(getattr(model, "model_fields", {}))
    return "unknown key" + suggest(str(item["loc"][-1]), known)


def _merge(base: dict[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in overrides.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _merge(dict(merged[key]), value)
        else:
            merged[key] = value
    return merged


def load_config(path: Path | None = None, overrides: Mapping[str, Any] | None = None, *,
                drop_none: bool = True) -> RunConfig:
    """Read ``path`` (TOML) if given, apply ``overrides`` (nested like the model), validate.

    By default a None override means "not given" and is ignored. The command line passes only
    the flags a user gave, so there None is a deliberate ``none`` (e.g. ``--image-size none``:
    the model's native size, which TOML, having no null, cannot say) and ``drop_none=False``
    keeps it."""
    raw: dict[str, Any] = {}
    if path is not None:
        try:
            raw = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"{path}: configuration file not found") from None
        except IsADirectoryError:
            raise ConfigError(f"{path}: is a folder; give the configuration file (TOML) itself") from None
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read the configuration file: {exc.strerror}") from None
        except UnicodeDecodeError as exc:
            raise ConfigError(f"{path}: not UTF-8 text (byte {exc.object[exc.start]:#04x} at offset "
                              f"{exc.start}); a configuration file is TOML, saved as UTF-8") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    cleaned = _drop_none(dict(overrides or {})) if drop_none else dict(overrides or {})
    try:
        return RunConfig.model_validate(_merge(raw, cleaned))
    except ValidationError as exc:
        # Name where the values came from, so a bad flag is not blamed on the file.
        sources = ([str(path)] if path is not None else []) + (["flags"] if cleaned else [])
        raise ConfigError(format_validation_error(exc, " with ".join(sources) or "defaults")) from None


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
