"""The deviation learning network (DLN) of HUST-ANT's LSD entry.

``output = trained(x) - frozen(x)``: two copies of the same pretrained backbone, one trained
and one frozen. The classifier sees only how far fine-tuning moved the features away from the
pretrained ones, which the paper uses to keep fine-tuning on synthetic faces from destroying
what the pretrained features knew (its "fine-tuning limitations" problem).

The frozen copy must really be frozen: no gradients (``requires_grad`` False, so the
optimiser never gets its parameters) and BatchNorm statistics that never move, which is why
:meth:`DeviationNetwork.train` keeps it in eval mode whatever mode the wrapper is put in.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


class DeviationNetwork(nn.Module):
    """``trained(x) - frozen(x)`` with ``frozen`` a fixed copy of ``trained``'s start."""

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        self.trained = backbone
        self.frozen = copy.deepcopy(backbone)
        for parameter in self.frozen.parameters():
            parameter.requires_grad_(False)
        self.frozen.eval()

    def train(self, mode: bool = True) -> "DeviationNetwork":
        super().train(mode)
        self.frozen.eval()  # BN running stats and dropout of the reference never change
        return self

    def load_warm_start(self, state: dict[str, torch.Tensor]) -> None:
        """Another entry's backbone weights (``protocol.warm_start``): a DLN's own state as it
        is, a plain network's into both copies (the seed's DLN runs that start both copies from
        one checkpoint), so the difference starts at zero again."""
        if any(key.startswith(("trained.", "frozen.")) for key in state):
            self.load_state_dict(state, strict=True)
            return
        self.trained.load_state_dict(state, strict=True)
        self.frozen.load_state_dict(state, strict=True)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            reference = self.frozen(images)
        return self.trained(images) - reference


def build_dln(arch: str, options, name: str):
    """A :class:`Backbone` wrapping timm ``arch`` (built by the timm plugin, so weights and
    preprocessing are the timm model's) as a deviation network; the generic heads go on top."""
    from abawbench.specs import Backbone
    from abawbench_builtins.timm.build import build_backbone

    inner = build_backbone(arch, options)
    return Backbone(
        name=name, module=DeviationNetwork(inner.module), feature_dim=inner.feature_dim,
        data_config=inner.data_config, weights_digest=f"dln|{inner.weights_digest}",
    )
