"""Expressions as FACS action-unit combinations, and the labels they imply.

A face is driven by AU *activations* (0..1). The labels a dataset row carries are derived from
them the way a human coder would: AU present when its activation clears a threshold (with a
little coder noise), valence/arousal placed on Russell's circumplex by the expression and scaled
by its intensity. Keeping the activations as the single cause makes labels and pixels agree.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# The 12 labelled AUs in the official ABAW4 column order, then two hidden ones the renderer uses
# but no label reports (ABAW4 teams model hidden AUs too): AU5 upper-lid raiser, AU9 nose wrinkler.
LABELLED_AUS: tuple[str, ...] = (
    "AU1", "AU2", "AU4", "AU6", "AU7", "AU10", "AU12", "AU15", "AU23", "AU24", "AU25", "AU26",
)
HIDDEN_AUS: tuple[str, ...] = ("AU5", "AU9")
ALL_AUS: tuple[str, ...] = LABELLED_AUS + HIDDEN_AUS
AU = {name: i for i, name in enumerate(ALL_AUS)}
N_LABELLED = len(LABELLED_AUS)

# MTL expression order (s-Aff-Wild2); LSD uses the six basic ones, in its own order.
MTL_EXPRESSIONS: tuple[str, ...] = (
    "Neutral", "Anger", "Disgust", "Fear", "Happiness", "Sadness", "Surprise", "Other",
)
LSD_CLASSES: tuple[str, ...] = ("ANGER", "DISGUST", "FEAR", "HAPPINESS", "SADNESS", "SURPRISE")
LSD_TO_MTL: tuple[int, ...] = (1, 2, 3, 4, 5, 6)

# Prototype activations at full intensity (classic FACS/EMFACS combinations).
PROTOTYPES: dict[str, dict[str, float]] = {
    "Neutral": {},
    "Anger": {"AU4": 1.0, "AU7": 0.85, "AU23": 0.8, "AU24": 0.7},
    "Disgust": {"AU9": 0.9, "AU10": 1.0, "AU25": 0.6, "AU4": 0.3},
    "Fear": {"AU1": 0.9, "AU2": 0.8, "AU4": 0.7, "AU5": 0.9, "AU7": 0.5, "AU25": 0.8},
    "Happiness": {"AU6": 0.9, "AU12": 1.0, "AU25": 0.35},
    "Sadness": {"AU1": 0.9, "AU4": 0.8, "AU15": 1.0},
    "Surprise": {"AU1": 1.0, "AU2": 1.0, "AU5": 0.8, "AU25": 0.9, "AU26": 0.9},
}

# Circumplex centres (valence, arousal) at full intensity.
VA_CENTRES: dict[str, tuple[float, float]] = {
    "Neutral": (0.0, 0.0),
    "Anger": (-0.6, 0.7),
    "Disgust": (-0.65, 0.35),
    "Fear": (-0.55, 0.75),
    "Happiness": (0.75, 0.45),
    "Sadness": (-0.65, -0.35),
    "Surprise": (0.2, 0.8),
}

AU_THRESHOLD = 0.35
"""An AU is coded present when its activation exceeds this."""


def _prototype_vectors() -> dict[str, tuple[float, ...]]:
    return {
        name: tuple(units.get(unit, 0.0) for unit in ALL_AUS) for name, units in PROTOTYPES.items()
    }


PROTOTYPE_VECTORS = _prototype_vectors()
BASIC = tuple(name for name in MTL_EXPRESSIONS if name not in ("Neutral", "Other"))


@dataclass(frozen=True)
class Expression:
    """One sampled facial state: what drives the pixels and what the labels say."""

    mtl_class: int
    intensity: float
    activations: list[float]  # [14], labelled AUs then hidden ones
    au_labels: list[int]  # [12], 0/1 (after coder noise)
    valence: float
    arousal: float


def sample_expression(
    rng: np.random.Generator,
    mtl_class: int,
    intensity_range: tuple[float, float] = (0.3, 1.0),
    label_noise: float = 0.03,
) -> Expression:
    """Sample activations for an expression class and derive AU and VA labels from them.

    ``Other`` is a blend of two basic prototypes or a random subset of AUs: the real "Other"
    class is a catch-all for compound and unclear faces, so it must overlap the basic ones.
    Each prototype AU is dropped with a small probability because people rarely show the full
    textbook combination; that keeps AU and expression labels related but not redundant.
    """
    name = MTL_EXPRESSIONS[mtl_class]
    n = len(ALL_AUS)
    # One batch of uniforms, then plain Python on 14 numbers: numpy's per-call overhead on
    # arrays this small cost more than the rest of the image (profiled).
    u = rng.random(1 + 4 * n).tolist()
    lo, hi = intensity_range
    intensity = lo + (hi - lo) * u[0]
    jitter, dropped, spontaneous, flips = (u[1 + k * n : 1 + (k + 1) * n] for k in range(4))
    if name == "Other":
        if rng.random() < 0.5:
            first, second = rng.choice(len(BASIC), size=2, replace=False).tolist()
            weight = float(rng.uniform(0.35, 0.65))
            pa, pb = PROTOTYPE_VECTORS[BASIC[first]], PROTOTYPE_VECTORS[BASIC[second]]
            base = [1.3 * (weight * a + (1 - weight) * b) for a, b in zip(pa, pb)]
            (va, aa), (vb, ab) = VA_CENTRES[BASIC[first]], VA_CENTRES[BASIC[second]]
            centre = (weight * va + (1 - weight) * vb, weight * aa + (1 - weight) * ab)
        else:
            base = [0.0] * n
            chosen = rng.choice(n, size=int(rng.integers(2, 5)), replace=False).tolist()
            for unit, value in zip(chosen, rng.uniform(0.5, 1.0, size=len(chosen)).tolist()):
                base[unit] = value
            centre = (float(rng.uniform(-0.3, 0.3)), float(rng.uniform(0.0, 0.5)))
    else:
        base = [b if d >= 0.08 else 0.0 for b, d in zip(PROTOTYPE_VECTORS[name], dropped)]
        centre = VA_CENTRES[name]
    # Spontaneous low-level movement anywhere on the face (below threshold mostly).
    activations = [
        min(1.0, b * intensity * (0.8 + 0.4 * j) + (s / 0.12 * 0.4 if s < 0.12 else 0.0))
        for b, j, s in zip(base, jitter, spontaneous)
    ]
    au_labels = [
        int((a > AU_THRESHOLD) != (f < label_noise)) for a, f in zip(activations[:N_LABELLED], flips)
    ]
    noise_v, noise_a = rng.normal(0.0, 0.08, 2).tolist()

    # Arousal also rises with overall facial activity; noise keeps VA from being a lookup table.
    valence = centre[0] * intensity + noise_v
    arousal = centre[1] * intensity + 0.1 * (sum(activations) / 3.0 - 0.3) + noise_a
    return Expression(
        mtl_class=mtl_class,
        intensity=intensity,
        activations=activations,
        au_labels=au_labels,
        valence=min(1.0, max(-1.0, float(valence))),
        arousal=min(1.0, max(-1.0, float(arousal))),
    )
