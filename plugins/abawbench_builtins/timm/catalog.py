"""The timm architectures this project names, as data (no timm import: listing stays fast).

``default_run`` marks the models proposed when a configuration names none. They were chosen
for features that are usable with RANDOM weights (no hub access is assumed) at 112 px on a
2-core CPU; see docs/bench/gpu.md for the measurement.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class NamedArch:
    """A model name the project uses, the timm architecture behind it, and why it is here."""

    name: str
    arch: str
    description: str
    default_run: bool = False


NAMED_ARCHS: tuple[NamedArch, ...] = (
    NamedArch("resnet18", "resnet18", "timm ResNet-18 (512-d features)"),
    NamedArch("resnet50", "resnet50", "timm ResNet-50 (2048-d); seed paper's LSD backbone"),
    NamedArch("efficientnet_b0", "efficientnet_b0",
              "timm EfficientNet-B0 (1280-d); seed paper (LSD) and HSE-NN's backbone family"),
    NamedArch("vit_base_patch16_224", "vit_base_patch16_224",
              "timm ViT-B/16 (768-d); seed paper's LSD backbone; fixed input size, "
              "position embeddings follow --image-size"),
    NamedArch("inception_v3", "inception_v3",
              "timm Inception-v3 (2048-d, native 299 px); backbone of the seed paper's SMM-EmotionNet"),
    NamedArch("resnet10t", "resnet10t",
              "timm ResNet-10-T (512-d): small, CPU-friendly"),
    NamedArch("mobilenetv3_small_100", "mobilenetv3_small_100",
              "timm MobileNetV3-Small (1024-d): fastest on CPU", default_run=True),
)
