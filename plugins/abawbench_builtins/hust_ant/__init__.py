"""Built-in abawbench plugin: the seed paper's methods (HUST-ANT, arXiv 2207.09748).

Registers, lazily (nothing heavy is imported until a model is built):

- models ``smm-emotionnet`` and ``smm-emotionnet-featavg`` (InceptionV3 cut after Mixed_6e,
  AU-token heads), the families ``smm-emotionnet:<timm arch>`` and
  ``smm-emotionnet-featavg:<timm arch>`` (any timm CNN cut at stride 16: small ones for CPUs),
  ``dln:<timm arch>`` (deviation learning network), and ``synthstats:<model>`` (any model
  normalised by the synthetic LSD training statistics, as the seed's LSD code);
- datasets ``synthface-oversampled`` and ``abaw4-oversampled`` (RandAugment oversampling);
- loss ``hust-ant-mtl``;
- augmentation ``paper`` (the seed paper's training transform, for fine-tuning).

Label smoothing and class weights are the losses plugin's presets; the four-backbone ensemble
is the ensembles plugin's ``mean-prob``; configurations live in ``configs/`` (see README.md).
"""

from __future__ import annotations

from typing import Callable

from abawbench.hookspecs import hookimpl
from abawbench.specs import ModelFamily, ModelOptions, ModelSpec

SMM_ARCH = "inception_v3"
SMM_VARIANTS = {"smm-emotionnet": "token", "smm-emotionnet-featavg": "featavg"}
DLN_PREFIX = "dln:"


def smm_spec(name: str, arch: str, variant: str) -> ModelSpec:
    def build(options: ModelOptions):
        from abawbench_builtins.hust_ant.smm import build_smm

        return build_smm(arch, options, variant, name)  # type: ignore[arg-type]

    how = "per-token predictions averaged" if variant == "token" else "token embeddings averaged, one classifier"
    return ModelSpec(name=name, build=build,
                     description=f"SMM-EmotionNet ({how}) on {arch} cut at stride 16; finetune only")


def dln_spec(arch: str) -> ModelSpec:
    name = DLN_PREFIX + arch

    def build(options: ModelOptions):
        from abawbench_builtins.hust_ant.dln import build_dln

        return build_dln(arch, options, name)

    return ModelSpec(name=name, build=build,
                     description=f"deviation learning network: trained {arch} minus frozen {arch}; finetune only")


def _checked(arch: str) -> str:
    from abawbench_builtins.timm.build import check_architecture

    return check_architecture(arch)


def _known() -> list[str]:
    from abawbench_builtins.timm.build import known_architectures

    return known_architectures()


def _smm_family(name: str, variant: str) -> ModelFamily:
    prefix = name + ":"
    return ModelFamily(prefix=prefix, resolve=lambda arch: smm_spec(prefix + arch, _checked(arch), variant),
                       known_names=_known,
                       description=f"{name} on any timm CNN cut at stride 16, e.g. {prefix}resnet10t")


@hookimpl
def abawbench_register_models(register: Callable) -> None:
    for name, variant in SMM_VARIANTS.items():
        register(smm_spec(name, SMM_ARCH, variant))
        register(_smm_family(name, variant))
    register(ModelFamily(prefix=DLN_PREFIX, resolve=lambda arch: dln_spec(_checked(arch)), known_names=_known,
                         description="deviation learning network on any timm model, e.g. dln:resnet50"))
    from abawbench_builtins.hust_ant.normalisation import FAMILY

    register(FAMILY)


@hookimpl
def abawbench_register_datasets(register: Callable) -> None:
    from abawbench_builtins.hust_ant.datasets import DATASETS

    for spec in DATASETS:
        register(spec)


@hookimpl
def abawbench_register_losses(register: Callable) -> None:
    from abawbench_builtins.hust_ant.loss import SPEC

    register(SPEC)


@hookimpl
def abawbench_register_augmentations(register: Callable) -> None:
    from abawbench_builtins.hust_ant.augmentation import SPEC

    register(SPEC)
