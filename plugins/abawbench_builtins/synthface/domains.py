"""The two image domains, and the one function that turns a face into JPEG bytes.

``synthetic`` is what a renderer gives: evenly lit, sharp, clean background, strong
expressions, high-quality JPEG. Head pose varies in both domains, because the real LSD
synthetic set manipulates expressions in Aff-Wild2 frames, whose poses it keeps. ``real``
imitates in-the-wild frames: stronger pose jitter, side lighting and colour casts, defocus
blur, sensor noise, heavy JPEG compression, background clutter, hands or objects over part of
the face, and subtler expressions. The LSD track trains on the first and tests on the second,
so it measures a real domain gap rather than a relabelled copy of the training set.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Sequence

import numpy as np
from PIL import Image

from abawbench_builtins.synthface.geometry import Shape, build_face, ellipse, lerp, rect
from abawbench_builtins.synthface.identities import Colour, Identity
from abawbench_builtins.synthface.render import encode_jpeg, pose_matrix, rasterise


@dataclass(frozen=True)
class Domain:
    """How images of one domain are posed, degraded and encoded."""

    name: str
    intensity: tuple[float, float]  # expression intensity range
    max_angle: float  # degrees of in-plane rotation
    scale: tuple[float, float]
    max_shift: float  # unit coordinates
    max_yaw: float  # see geometry.build_face
    jpeg_quality: tuple[int, int]  # inclusive range
    photometric: bool
    occlusion_p: float
    clutter: bool
    supersample: int  # 2: anti-aliased edges; 1 where blur, noise and JPEG hide the steps anyway


SYNTHETIC = Domain("synthetic", (0.6, 1.0), 10.0, (0.92, 1.06), 0.04, 0.5, (90, 95), False, 0.0, False, 2)
# Weaker-but-similar intensities, occasional occlusion and moderate degradations: the domain
# shift must be real, but an expression it erases would make the LSD score measure noise.
REAL = Domain("real", (0.5, 1.0), 15.0, (0.88, 1.1), 0.05, 0.6, (40, 85), True, 0.15, True, 1)
DOMAINS = {d.name: d for d in (SYNTHETIC, REAL)}

FACE_ZOOM = 1.25
"""Crop like the challenge's aligned faces: the head fills most of the frame."""


def _random_colour(rng: np.random.Generator) -> Colour:
    r, g, b = rng.integers(0, 256, 3).tolist()
    return (r, g, b)


def _clutter(rng: np.random.Generator) -> list[Shape]:
    """Background objects: a few boxes and blobs behind the person."""
    shapes = []
    for _ in range(int(rng.integers(1, 4))):
        x, y, rx, ry, kind = rng.random(5).tolist()
        rx, ry = 0.08 + 0.22 * rx, 0.08 + 0.22 * ry
        pts = rect(x - rx, y - ry, x + rx, y + ry) if kind < 0.5 else ellipse(x, y, rx, ry)
        shapes.append(Shape("poly", pts, _random_colour(rng)))
    return shapes


def _occluder(rng: np.random.Generator, skin: Colour) -> list[Shape]:
    """A hand, an object or a bar over the mouth and chin, or over one eye: never over both
    eyes and the mouth at once (its vertical half-extent, at most 0.17, cannot reach from the
    eye line to the mouth line), so an occluded face still shows part of its expression."""
    where, dx, ry, rr, kind = rng.random(5).tolist()
    if where < 0.6:  # mouth and chin
        x, y = 0.5 + 0.2 * (dx - 0.5), 0.72 + 0.1 * ry
    else:  # one eye: centred beside the midline, so a bar ends near the other eye
        x, y = 0.5 + (0.1 + 0.06 * dx) * (1 if ry < 0.5 else -1), 0.45
    r = 0.07 + 0.06 * rr
    if kind < 1 / 3:  # a hand: skin coloured, with finger gaps
        shade = lerp(skin, (40, 30, 25), 0.4)
        shapes = [Shape("poly", ellipse(x, y, r * 1.1, r * 0.8), skin)]
        for k in (-1, 0, 1):
            fx = x + k * r * 0.35
            shapes.append(Shape("line", [fx, y - r * 0.6, fx, y + r * 0.3], shade, 0.006))
        return shapes
    if kind < 2 / 3:
        return [Shape("poly", rect(x - r * 1.6, y - r * 0.35, x + r * 1.6, y + r * 0.35), _random_colour(rng))]
    return [Shape("poly", ellipse(x, y, r, r * 1.3), _random_colour(rng))]


@lru_cache(maxsize=8)
def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates in [-0.5, 0.5]: x as one interleaved RGB row (each value three
    times, once per channel), y as a column."""
    axis = (np.arange(size, dtype=np.float32) + 0.5) / size - 0.5
    return np.repeat(axis, 3)[None, :], axis[:, None]


NOISE_LEVELS = (1.0, 2.0, 3.0, 4.0, 5.5)
"""Sensor noise standard deviations (grey levels); one is picked per image."""
NOISE_BANK_IMAGES = 4
"""Length of each noise bank, in images' worth of samples."""


def _noise_banks(size: int) -> tuple[np.ndarray, ...]:
    """Gaussian noise pre-scaled to each of :data:`NOISE_LEVELS`, made from a fixed seed.
    Drawing 37k normals per image would cost more than rendering it; a random window into a
    bank four images long hides fine detail just as well, stays deterministic, and being
    pre-scaled costs one pass over the pixels instead of two. A window starting at ``start``
    gives channel ``c`` of pixel ``p`` the sample ``bank[start + c * size * size + p]`` (the
    window laid over planar [3, size * size] pixels)."""
    unit = np.random.default_rng(20220717).standard_normal(size * size * 3 * NOISE_BANK_IMAGES, dtype=np.float32)
    return tuple(unit * np.float32(level) for level in NOISE_LEVELS)


@lru_cache(maxsize=4)
def _interleaved_noise_banks(size: int) -> tuple[np.ndarray, ...]:
    """:func:`_noise_banks` re-laid for interleaved RGB pixels, made once per size: row ``j``
    holds ``bank[j + c * size * size]`` for c = 0, 1, 2, so the window starting at ``start``
    is the contiguous run ``[3 * start, 3 * (start + size * size))`` of the flattened rows, with
    exactly the samples the planar window gives each channel of each pixel. Rows run to the
    last ``start`` a window can have (``start + size * size`` rows <= bank length - 2 planes).
    1.5 MB per level at 112 px."""
    m = size * size
    return tuple(
        np.stack([bank[c * m : bank.size - (2 - c) * m] for c in range(3)], axis=1).ravel()
        for bank in _noise_banks(size)
    )


@lru_cache(maxsize=8)
def _workspace(size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Two float32 image buffers, a uint8 one and a float32 row of channel gains, reused by
    every call of :func:`degrade` in this process. Fresh arrays per image cost more in page
    faults than the arithmetic (docs/bench/synthface.md).
    Not thread-safe; the generator is one thread per process."""
    n = size * size * 3
    return np.empty(n, np.float32), np.empty(n, np.float32), np.empty(n, np.uint8), np.empty(3 * size, np.float32)


def degrade(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Optics, then light, then sensor: mild defocus blur (a 2x2 box blended in), a lighting
    gradient with a colour cast, Gaussian noise.

    Flat float32 buffers of interleaved RGB pixels, in place, about ten passes over the
    pixels. Every pass is one contiguous run: neighbours one row or one pixel away are slices
    of the buffer (the wrap-around at the left edge touches one column); the lighting map is
    computed per channel (each x three times) and the colour cast is a row of the three gains
    repeated, so no operation broadcasts along a short trailing axis of 3 (numpy's inner loop
    would then be three elements long, once most of this step: docs/bench/synthface.md).
    Interleaved rather than planar because the pixels come from and go back to PIL
    interleaved: planar needed a transposing copy in and a merge of three planes out. Each pixel value goes through the same float32
    operations, in the same order, as in the planar version that generated the pinned
    renders (tests/test_synthface.py), so the bytes are the same."""
    size = image.size[0]
    flat, tmp, pixels, gains = _workspace(size)
    n = flat.size
    amount, theta, strength, level, g0, g1, g2, noise = rng.random(8).tolist()
    banks = _interleaved_noise_banks(size)
    bank = banks[min(int(noise * len(banks)), len(banks) - 1)]
    start = int(rng.integers(0, (NOISE_BANK_IMAGES - 1) * n))

    # Blur: x + amount * (box(x) - x) = keep * (x + weight * (sum of the 3 neighbours)),
    # with the factor ``keep`` folded into the lighting map below. At most 45 % of the box:
    # enough to soften edges, not enough to erase a thin brow or lip line.
    amount *= 0.6
    keep = 1.0 - 0.75 * amount
    np.copyto(flat, np.frombuffer(image.tobytes(), dtype=np.uint8), casting="unsafe")
    up, left = 3 * size, 3  # one row, one pixel back
    first = up + left  # the first row and pixel have no upper-left neighbours
    np.add(flat[first - up : n - up], flat[first - left : n - left], out=tmp[first:])
    tmp[first:] += flat[: n - first]
    tmp[first:] *= np.float32(0.25 * amount / keep)
    flat[first:] += tmp[first:]
    flat[:first] *= np.float32(1.0 / keep)  # the unblurred first row must not darken

    # Lighting: brightness * (1 + a * x + b * y) per pixel, times the channel's gain. Built in
    # ``tmp`` in place (a fresh 150 kB array per step would cost page faults); each product
    # is one rounding of the same two factors as before, whichever comes first.
    gx, gy = _grid(size)
    theta *= 2.0 * np.pi
    strength = 0.2 + 0.6 * strength
    light = tmp.reshape(size, 3 * size)
    np.add(1.0 + np.float32(strength * np.cos(theta)) * gx, np.float32(strength * np.sin(theta)) * gy, out=light)
    light *= np.float32((0.7 + 0.5 * level) * keep)
    gains.reshape(size, 3)[...] = np.array([g0, g1, g2], dtype=np.float32) * np.float32(0.3) + np.float32(0.85)
    light *= gains
    flat *= tmp
    flat += bank[3 * start : 3 * start + n]
    np.clip(flat, 0, 255, out=flat)
    np.copyto(pixels, flat, casting="unsafe")
    return Image.frombytes("RGB", (size, size), pixels)  # a copy: ``pixels`` is reused


def face_jpeg(
    rng: np.random.Generator, ident: Identity, activations: Sequence[float], domain: Domain, size: int
) -> bytes:
    """Render one face of ``ident`` showing ``activations`` in ``domain``: JPEG bytes.

    Every random choice comes from ``rng`` in a fixed order, so the bytes are a pure function
    of the seed that made ``rng`` (and of the Pillow/libjpeg build). Scalars are drawn in one
    batch: a numpy call per scalar would cost more than the rest of this function."""
    yaw, angle, scale, sx, sy, occlude, quality, bg_r, bg_g, bg_b = rng.random(10).tolist()
    shapes = build_face(ident, activations, domain.max_yaw * (2 * yaw - 1))
    background = ident.background
    if domain.clutter:
        shapes = _clutter(rng) + shapes
        background = tuple(  # type: ignore[assignment]
            min(255, max(0, int(c + 60 * (u - 0.5)))) for c, u in zip(background, (bg_r, bg_g, bg_b))
        )
    if occlude < domain.occlusion_p:
        shapes = shapes + _occluder(rng, ident.skin)
    low, high = domain.scale
    matrix = pose_matrix(
        domain.max_angle * (2 * angle - 1),
        FACE_ZOOM * (low + (high - low) * scale),
        (domain.max_shift * (2 * sx - 1), domain.max_shift * (2 * sy - 1)),
    )
    image = rasterise(shapes, size, background, matrix, domain.supersample)
    if domain.photometric:
        image = degrade(image, rng)
    q_low, q_high = domain.jpeg_quality
    return encode_jpeg(image, q_low + int(quality * (q_high - q_low + 1)))
