"""Rasterise a scene with PIL and encode it as JPEG.

PIL's polygon fill is C code and a 112 px face is a few dozen primitives, so one image costs
well under a millisecond. Drawing at twice the size and halving (``Image.reduce``, a box
filter) gives anti-aliased edges for a small fraction of that cost.
"""

from __future__ import annotations

import io
import itertools
import math

import numpy as np
from PIL import Image, ImageDraw

from abawbench_synthface.geometry import Shape
from abawbench_synthface.identities import Colour

SUPERSAMPLE = 2


def rasterise(
    shapes: list[Shape], size: int, background: Colour, matrix: np.ndarray, supersample: int = SUPERSAMPLE
) -> Image.Image:
    """Draw ``shapes`` (unit coordinates), posed by the 2x3 affine ``matrix``, onto a
    ``size`` x ``size`` RGB image, drawn ``supersample`` times larger and box-filtered down.

    Posing the scene before rasterising is exact and free, unlike resampling the pixels. All
    points go through one matrix product and one ``tolist``: per-shape numpy calls would cost
    more than the drawing itself."""
    big = size * supersample
    points = np.fromiter(
        itertools.chain.from_iterable(shape.points for shape in shapes), dtype=np.float64
    ).reshape(-1, 2)
    flat = (points @ (matrix[:, :2].T * big) + matrix[:, 2] * big).ravel().tolist()
    (m00, m01, _), (m10, m11, _) = matrix.tolist()
    width_scale = big * math.sqrt(abs(m00 * m11 - m01 * m10))
    image = Image.new("RGB", (big, big), background)
    draw = ImageDraw.Draw(image)
    start = 0
    for shape in shapes:
        stop = start + len(shape.points)
        if shape.kind == "poly":
            draw.polygon(flat[start:stop], fill=shape.colour)
        else:
            draw.line(flat[start:stop], fill=shape.colour, width=max(1, int(round(shape.width * width_scale))))
        start = stop
    return image.reduce(supersample) if supersample > 1 else image


def pose_matrix(angle_deg: float, scale: float, shift: tuple[float, float]) -> np.ndarray:
    """2x3 affine map: rotation by ``angle_deg`` and scaling about the image centre, then a
    shift. Plain ``math``: numpy's call overhead is larger than this arithmetic."""
    a = math.radians(angle_deg)
    c, s = math.cos(a) * scale, math.sin(a) * scale
    return np.array([[c, -s, 0.5 - 0.5 * c + 0.5 * s + shift[0]], [s, c, 0.5 - 0.5 * s - 0.5 * c + shift[1]]])


def encode_jpeg(image: Image.Image, quality: int) -> bytes:
    """JPEG bytes; fixed settings (no optimise pass, 4:2:0) so bytes depend only on pixels."""
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=int(quality), optimize=False, subsampling=2)
    return buffer.getvalue()
