"""Identities: the parts of a face that do not move with expression.

An identity is drawn from its own seed so that every frame of an MTL "video" shows the same
person, and so that train and test identities can be kept disjoint (a model must generalise to
new people, as on s-Aff-Wild2).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

Colour = tuple[int, int, int]

# Skin tones from light to dark (roughly Fitzpatrick I..VI); jittered per identity.
_SKIN_TONES = np.array(
    [(247, 214, 190), (234, 192, 160), (214, 166, 128), (180, 128, 92), (140, 94, 62), (95, 62, 42)],
    dtype=np.float64,
)
_HAIR_COLOURS = np.array(
    [(25, 20, 18), (60, 40, 28), (110, 75, 45), (170, 130, 80), (215, 190, 140), (150, 60, 35),
     (140, 140, 140)],
    dtype=np.float64,
)
_IRIS_COLOURS = np.array([(60, 40, 25), (95, 65, 40), (70, 110, 150), (80, 120, 80)], dtype=np.float64)

HAIR_STYLES = ("bald", "short", "long", "fringe")


@dataclass(frozen=True)
class Identity:
    """Face shape, colours and accessories of one person, in unit-square proportions."""

    head_w: float  # half-width of the head
    head_h: float  # half-height of the head
    jaw_taper: float  # 0 round .. 0.3 pointed chin
    skin: Colour
    hair: Colour
    hair_style: str
    hairline: float  # how far down the forehead the hair reaches (0..1 of forehead)
    eye_dx: float  # horizontal distance of each eye from the face centre
    eye_w: float  # eye half-width
    eye_open: float  # neutral half-opening of the eye
    iris: Colour
    brow_thick: float
    nose_len: float
    nose_w: float
    mouth_w: float  # mouth half-width
    lip_thick: float
    lip: Colour
    glasses: bool
    glasses_round: bool
    glasses_colour: Colour
    beard: bool
    clothes: Colour
    background: Colour


def _colour(values: np.ndarray) -> Colour:
    c = np.clip(values, 0, 255).astype(int)
    return (int(c[0]), int(c[1]), int(c[2]))


def make_identity(rng: np.random.Generator) -> Identity:
    """Draw one identity. ``rng`` should be seeded from the identity's own key."""
    skin = _SKIN_TONES[rng.integers(len(_SKIN_TONES))] * rng.uniform(0.93, 1.05) + rng.normal(0, 5, 3)
    hair = _HAIR_COLOURS[rng.integers(len(_HAIR_COLOURS))] + rng.normal(0, 8, 3)
    lip = skin * np.array([0.82, 0.58, 0.58]) + np.array([30.0, 5.0, 5.0])
    style = HAIR_STYLES[int(rng.choice(len(HAIR_STYLES), p=[0.1, 0.4, 0.3, 0.2]))]
    return Identity(
        head_w=float(rng.uniform(0.27, 0.34)),
        head_h=float(rng.uniform(0.36, 0.42)),
        jaw_taper=float(rng.uniform(0.0, 0.3)),
        skin=_colour(skin),
        hair=_colour(hair),
        hair_style=style,
        hairline=float(rng.uniform(0.15, 0.55)),
        eye_dx=float(rng.uniform(0.125, 0.145)),
        eye_w=float(rng.uniform(0.06, 0.072)),
        eye_open=float(rng.uniform(0.026, 0.034)),
        iris=_colour(_IRIS_COLOURS[rng.integers(len(_IRIS_COLOURS))]),
        brow_thick=float(rng.uniform(0.024, 0.034)),
        nose_len=float(rng.uniform(0.11, 0.14)),
        nose_w=float(rng.uniform(0.03, 0.045)),
        mouth_w=float(rng.uniform(0.1, 0.125)),
        lip_thick=float(rng.uniform(0.018, 0.026)),
        lip=_colour(lip),
        glasses=bool(rng.random() < 0.25),
        glasses_round=bool(rng.random() < 0.5),
        glasses_colour=_colour(rng.uniform(0, 120, 3)),
        beard=bool(rng.random() < 0.15),
        clothes=_colour(rng.uniform(20, 230, 3)),
        background=_colour(rng.uniform(40, 220, 3)),
    )
