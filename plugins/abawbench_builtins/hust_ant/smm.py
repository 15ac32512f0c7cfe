"""SMM-EmotionNet (HUST-ANT, arXiv 2207.09748): AU-token heads on a spatial CNN feature map.

Why a spatial map: each AU token learns its own sigmoid attention over the face, so the heads
must read ``[N, C, H, W]`` rather than a pooled vector. The backbone is a timm network cut at
its last stride-16 stage (InceptionV3: ``Mixed_6e``, 768 x 17 x 17 at 299 px, as the paper);
:meth:`abawbench.specs.Backbone.make_heads` lets the fine-tuning protocol put these heads on it.

Two prediction variants for expression and VA (both in the original design):

- ``token``: a linear layer on every token, predictions averaged over the 17 tokens;
- ``featavg``: token embeddings averaged first, then one linear layer.

Interpretation where the public description is silent: the per-token 16x16 maps turn the AU
embeddings into an expression/VA sequence that goes through the *same* transformer layer (one
layer, as described) as the AU sequence; the AU classifier keeps one weight row per labelled AU
token (the original ``AUClassifier``), applied to token k only.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import nn

from abawbench.errors import ConfigError
from abawbench.labels import TaskSpec

HIDDEN_AUS = ("AU5", "AU9", "AU14", "AU16", "AU17")
"""Unlabelled AUs the paper adds as extra tokens: they give attention room for face regions
the 12 labelled AUs do not cover."""

EMBED_DIM = 16
TRANSFORMER_HEADS = 8
TRANSFORMER_FF = 1024
TRANSFORMER_DROPOUT = 0.3
DEFAULT_LABELLED_AUS = 12

Variant = Literal["token", "featavg"]


class CutBackbone(nn.Module):
    """A timm ``features_only`` network returning its single selected stage as a tensor."""

    def __init__(self, features: nn.Module) -> None:
        super().__init__()
        self.features = features

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.features(images)[0]


class AUToken(nn.Module):
    """One AU token: sigmoid attention map, ``x * att + x`` (the residual keeps the whole face
    visible), conv3x3, conv1x1, global average pool, linear to a 16-d embedding."""

    def __init__(self, channels: int, hidden: int, embed_dim: int = EMBED_DIM) -> None:
        super().__init__()
        self.attention = nn.Conv2d(channels, 1, kernel_size=1)
        self.conv3 = nn.Sequential(nn.Conv2d(channels, hidden, 3, padding=1, bias=False),
                                   nn.BatchNorm2d(hidden), nn.ReLU(inplace=True))
        self.conv1 = nn.Sequential(nn.Conv2d(hidden, hidden, 1, bias=False),
                                   nn.BatchNorm2d(hidden), nn.ReLU(inplace=True))
        self.embed = nn.Linear(hidden, embed_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        attention = torch.sigmoid(self.attention(x))
        y = self.conv1(self.conv3(x * attention + x))
        return self.embed(y.mean(dim=(2, 3)))


def sinusoidal_positions(length: int, dim: int) -> torch.Tensor:
    """The fixed sine/cosine table of Vaswani et al. ``[length, dim]`` (dim even)."""
    position = torch.arange(length, dtype=torch.float32).unsqueeze(1)
    scale = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    table = torch.zeros(length, dim)
    table[:, 0::2] = torch.sin(position * scale)
    table[:, 1::2] = torch.cos(position * scale)
    return table


class PerTokenLinear(nn.Module):
    """One learned ``dim x dim`` linear map per token (no sharing across tokens)."""

    def __init__(self, tokens: int, dim: int) -> None:
        super().__init__()
        # identity plus noise: at start the expression stream sees the AU embeddings as they are
        self.weight = nn.Parameter(torch.eye(dim).repeat(tokens, 1, 1) + 0.01 * torch.randn(tokens, dim, dim))
        self.bias = nn.Parameter(torch.zeros(tokens, dim))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return torch.einsum("ntd,tde->nte", tokens, self.weight) + self.bias


class PerTokenScore(nn.Module):
    """Token k scored by weight row k: ``logit_k = <w_k, t_k> + b_k`` (one AU per token)."""

    def __init__(self, tokens: int, dim: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(tokens, dim) / math.sqrt(dim))
        self.bias = nn.Parameter(torch.zeros(tokens))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return (tokens * self.weight).sum(-1) + self.bias


class SMMHeads(nn.Module):
    """AU tokens, transformer and task outputs on a ``[N, C, H, W]`` map.

    Builds an output for each task of the track that it can serve: the multilabel task (AUs:
    one token per label plus the hidden AUs), multiclass tasks (expression) and regression
    tasks (VA, bounded to the task's value range by tanh). A track without AUs (``lsd``) still
    gets 12 + 5 attention tokens, unsupervised.
    """

    def __init__(self, channels: int, tasks: tuple[TaskSpec, ...], variant: Variant = "token",
                 hidden: int | None = None) -> None:
        super().__init__()
        if variant not in ("token", "featavg"):
            raise ConfigError(f"SMM-EmotionNet variant must be 'token' or 'featavg', got {variant!r}")
        multilabel = [t for t in tasks if t.kind == "multilabel"]
        if len(multilabel) > 1:
            raise ConfigError(f"SMM-EmotionNet serves one AU task, the track has {[t.name for t in multilabel]}")
        self.tasks = tasks
        self.variant = variant
        self.labelled = multilabel[0].width if multilabel else DEFAULT_LABELLED_AUS
        n_tokens = self.labelled + len(HIDDEN_AUS)
        hidden = hidden or max(16, channels // 8)
        self.tokens = nn.ModuleList(AUToken(channels, hidden) for _ in range(n_tokens))
        self.register_buffer("positions", sinusoidal_positions(n_tokens, EMBED_DIM), persistent=False)
        self.transformer = nn.TransformerEncoderLayer(
            EMBED_DIM, TRANSFORMER_HEADS, dim_feedforward=TRANSFORMER_FF, dropout=TRANSFORMER_DROPOUT,
            activation="gelu", batch_first=True)
        self.emotion_maps = PerTokenLinear(n_tokens, EMBED_DIM)
        self.au_classifier = PerTokenScore(self.labelled, EMBED_DIM) if multilabel else None
        self.outputs = nn.ModuleDict({t.name: nn.Linear(EMBED_DIM, t.width) for t in tasks if t.kind != "multilabel"})

    def forward(self, features: torch.Tensor) -> dict[str, torch.Tensor]:
        if features.dim() != 4:
            raise ValueError(f"SMM-EmotionNet heads need a [N, C, H, W] feature map, got {tuple(features.shape)}")
        embeddings = torch.stack([token(features) for token in self.tokens], dim=1)  # [N, T, 16]
        raw: dict[str, torch.Tensor] = {}
        if self.au_classifier is not None:
            au_tokens = self.transformer(embeddings + self.positions)
            raw_au = self.au_classifier(au_tokens[:, : self.labelled])
        emotion = self.transformer(self.emotion_maps(embeddings) + self.positions)  # [N, T, 16]
        for task in self.tasks:
            if task.kind == "multilabel":
                raw[task.name] = raw_au
                continue
            head = self.outputs[task.name]
            # token: every token predicts (bounded), the predictions are averaged;
            # featavg: the embeddings are averaged, one prediction is made
            out = head(emotion.mean(dim=1)) if self.variant == "featavg" else head(emotion)
            if task.kind == "regression":
                out = _bounded(out, task.value_range or (-1.0, 1.0))
            raw[task.name] = out if self.variant == "featavg" else out.mean(dim=1)
        return raw


def _bounded(values: torch.Tensor, value_range: tuple[float, float]) -> torch.Tensor:
    low, high = value_range
    return low + (torch.tanh(values) + 1) * (high - low) / 2


# --------------------------------------------------------------------------- building


def cut_stage_index(feature_info: list[dict]) -> int:
    """Index of the last stage at stride 16 (InceptionV3: ``Mixed_6e``); the last stage when a
    network never reaches stride 16. Stride 16 keeps a map large enough for AU attention."""
    at_16 = [i for i, info in enumerate(feature_info) if info["reduction"] == 16]
    return at_16[-1] if at_16 else len(feature_info) - 1


def build_smm(arch: str, options, variant: Variant, name: str):
    """A :class:`Backbone` whose module is ``arch`` cut at stride 16 and whose ``make_heads``
    builds :class:`SMMHeads`. Weights (random / hub / file) are loaded into the full timm
    model by the timm plugin, then copied into the cut network, so every weights source the
    timm plugin accepts works here too."""
    import timm

    from abawbench_builtins.timm.build import build_backbone

    full = build_backbone(arch, options)
    # The full model lists its stages already (timm's feature_info, the same list a
    # features_only model reports), so only the cut network itself is built a second time.
    stage = cut_stage_index(full.module.feature_info)
    with torch.random.fork_rng(devices=[]):
        features = timm.create_model(arch, pretrained=False, features_only=True, out_indices=(stage,))
    missing, _unused = features.load_state_dict(full.module.state_dict(), strict=False)
    if missing:
        raise ConfigError(f"{name}: cannot copy {arch} weights into the cut network; missing {missing[:3]}")
    channels = int(features.feature_info.channels()[0])
    module = CutBackbone(features).eval()

    def make_heads(tasks: tuple[TaskSpec, ...], head_kind: str) -> nn.Module:
        return SMMHeads(channels, tasks, variant=variant)

    from abawbench.specs import Backbone

    return Backbone(
        name=name, module=module, feature_dim=channels, data_config=full.data_config,
        weights_digest=f"{full.weights_digest}|cut:{stage}", make_heads=make_heads,
    )
