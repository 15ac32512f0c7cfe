"""SMM-EmotionNet (HUST-ANT, arXiv 2207.09748): AU-token heads on a spatial CNN feature map.

Why a spatial map: each AU token reads the face through its own sigmoid attention map, so the
heads must read ``[N, C, H, W]`` rather than a pooled vector. The backbone is a timm network cut
at its last stride-16 stage (InceptionV3: ``Mixed_6e``, 768 x 17 x 17 at 299 px, as the paper);
:meth:`abawbench.specs.Backbone.make_heads` lets the fine-tuning protocol put these heads on it.

The structure is the seed code's (``MTL/SMM_EmotionNet.py``, ``Multitask_EmotionNet``; the
plugin's README lists each part with its place in that file):

- one shared attention branch for all tokens: conv3x3 C -> 4T, BN, ReLU; conv1x1 4T -> T, BN,
  ReLU; conv1x1 T -> T and a sigmoid: map k belongs to token k (T = 17 tokens);
- token k: ``x * map_k + x``, conv3x3 C -> 16, BN, ReLU; conv1x1 16 -> 16, BN, ReLU; global
  average pool; linear 16 -> 16 (16 is the seed's ``AU_metric_dim``);
- AU stream: sinusoidal positions with dropout 0.3, one transformer encoder layer (d 16, 8 heads,
  feed-forward 1024, GELU, torch's default dropout 0.1); token k's logit from row k of one
  linear layer over the labelled tokens (the seed's ``AUClassifier``);
- expression and VA stream: a per-token 16 x 16 linear map without bias on the embeddings
  *before* the transformer (no positions, no transformer), a linear output on every token,
  averaged over the tokens. VA is unbounded while training and clipped to its range when the
  network predicts (eval mode), as the seed's test step clips.

C is the backbone's width (768 for InceptionV3); the attention branch and the token convs take
whatever width the cut backbone has, so small CNNs work too.

Two ways of combining the expression/VA tokens: ``token`` (the seed's: outputs per token,
averaged) and ``featavg`` (embeddings averaged, one output). ``featavg`` is an option of the
original SMM-EmotionNet authors' code, not of HUST-ANT's. With linear outputs and no bound inside
the network, both compute the same function: the paper configuration runs ``token`` only.
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
"""The seed's ``AU_metric_dim``: the token convs' width and the embedding size."""
ATTENTION_WIDTH_PER_TOKEN = 4
TRANSFORMER_HEADS = 8
TRANSFORMER_FF = 1024
POSITION_DROPOUT = 0.3
DEFAULT_LABELLED_AUS = 12

Variant = Literal["token", "featavg"]


class CutBackbone(nn.Module):
    """A timm ``features_only`` network returning its single selected stage as a tensor."""

    def __init__(self, features: nn.Module) -> None:
        super().__init__()
        self.features = features

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.features(images)[0]


def _conv_bn_relu(channels_in: int, channels_out: int, kernel: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(channels_in, channels_out, kernel, padding=kernel // 2, bias=True),
                         nn.BatchNorm2d(channels_out), nn.ReLU())


class SharedAttention(nn.Module):
    """All tokens' attention maps from one branch: ``[N, C, H, W] -> [N, T, H, W]`` in (0, 1)."""

    def __init__(self, channels: int, tokens: int) -> None:
        super().__init__()
        self.convs = nn.Sequential(_conv_bn_relu(channels, ATTENTION_WIDTH_PER_TOKEN * tokens, 3),
                                   _conv_bn_relu(ATTENTION_WIDTH_PER_TOKEN * tokens, tokens, 1))
        self.maps = nn.Conv2d(tokens, tokens, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.maps(self.convs(x)))


class AUToken(nn.Module):
    """One AU token's embedding: ``x * attention + x`` (the residual keeps the whole face
    visible), conv3x3, conv1x1, global average pool, linear, all at width 16."""

    def __init__(self, channels: int, embed_dim: int = EMBED_DIM) -> None:
        super().__init__()
        self.conv3 = _conv_bn_relu(channels, embed_dim, 3)
        self.conv1 = _conv_bn_relu(embed_dim, embed_dim, 1)
        self.embed = nn.Linear(embed_dim, embed_dim)

    def forward(self, x: torch.Tensor, attention: torch.Tensor) -> torch.Tensor:
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
    """One ``dim x dim`` linear map without bias per token (no sharing across tokens), each
    initialised as ``nn.Linear`` is."""

    def __init__(self, tokens: int, dim: int) -> None:
        super().__init__()
        self.maps = nn.ModuleList(nn.Linear(dim, dim, bias=False) for _ in range(tokens))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return torch.stack([linear(tokens[:, k]) for k, linear in enumerate(self.maps)], dim=1)


class PerTokenScore(nn.Module):
    """Token k scored by row k of one linear layer: ``logit_k = <w_k, t_k> + b_k``."""

    def __init__(self, tokens: int, dim: int) -> None:
        super().__init__()
        self.fc = nn.Linear(dim, tokens)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return (tokens * self.fc.weight).sum(-1) + self.fc.bias


class SMMHeads(nn.Module):
    """Attention, AU tokens, transformer and task outputs on a ``[N, C, H, W]`` map.

    Builds an output for each task of the track that it can serve: the multilabel task (AUs:
    one token per label plus the hidden AUs), multiclass tasks (expression) and regression
    tasks (VA). A track without AUs (``lsd``) still gets 12 + 5 attention tokens, unsupervised.
    """

    def __init__(self, channels: int, tasks: tuple[TaskSpec, ...], variant: Variant = "token") -> None:
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
        self.attention = SharedAttention(channels, n_tokens)
        self.tokens = nn.ModuleList(AUToken(channels) for _ in range(n_tokens))
        self.register_buffer("positions", sinusoidal_positions(n_tokens, EMBED_DIM), persistent=False)
        self.position_dropout = nn.Dropout(POSITION_DROPOUT)
        self.transformer = nn.TransformerEncoderLayer(EMBED_DIM, TRANSFORMER_HEADS, dim_feedforward=TRANSFORMER_FF,
                                                      activation="gelu", batch_first=True)
        self.emotion_maps = PerTokenLinear(n_tokens, EMBED_DIM)
        self.au_classifier = PerTokenScore(self.labelled, EMBED_DIM) if multilabel else None
        self.outputs = nn.ModuleDict({t.name: nn.Linear(EMBED_DIM, t.width) for t in tasks if t.kind != "multilabel"})

    def forward(self, features: torch.Tensor) -> dict[str, torch.Tensor]:
        if features.dim() != 4:
            raise ValueError(f"SMM-EmotionNet heads need a [N, C, H, W] feature map, got {tuple(features.shape)}")
        maps = self.attention(features)
        embeddings = torch.stack([token(features, maps[:, k:k + 1]) for k, token in enumerate(self.tokens)],
                                 dim=1)  # [N, T, 16]
        raw: dict[str, torch.Tensor] = {}
        emotion = self.emotion_maps(embeddings)  # [N, T, 16], before the transformer, no positions
        for task in self.tasks:
            if task.kind == "multilabel":
                au_tokens = self.transformer(self.position_dropout(embeddings + self.positions))
                raw[task.name] = self.au_classifier(au_tokens[:, : self.labelled])
                continue
            head = self.outputs[task.name]
            out = head(emotion.mean(dim=1)) if self.variant == "featavg" else head(emotion).mean(dim=1)
            if task.kind == "regression" and not self.training:
                low, high = task.value_range or (-1.0, 1.0)
                out = out.clamp(low, high)  # unbounded in training; clipped when predicting
            raw[task.name] = out
        return raw


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
