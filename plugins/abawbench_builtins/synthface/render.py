"""Rasterise a scene with PIL and encode it as JPEG.

PIL's polygon fill is C code and a face is a few dozen primitives, so drawing is cheap
(docs/bench/synthface.md). Drawing at twice the size and halving (``Image.reduce``, a box
filter) gives anti-aliased edges for a small fraction of that cost.
"""

from __future__ import annotations

import io
import math
import struct
from functools import lru_cache
from typing import Callable

import numpy as np
from PIL import Image, ImageDraw

from abawbench_builtins.synthface.geometry import Shape
from abawbench_builtins.synthface.identities import Colour

SUPERSAMPLE = 2


@lru_cache(maxsize=256)
def _pack_doubles(count: int) -> Callable[..., bytes]:
    """``struct`` packer of ``count`` native doubles (a scene has a few hundred points, and
    their number varies with the expression and the accessories)."""
    return struct.Struct(f"{count}d").pack


def rasterise(
    shapes: list[Shape], size: int, background: Colour, matrix: np.ndarray, supersample: int = SUPERSAMPLE
) -> Image.Image:
    """Draw ``shapes`` (unit coordinates), posed by the 2x3 affine ``matrix``, onto a
    ``size`` x ``size`` RGB image, drawn ``supersample`` times larger and box-filtered down.

    Posing the scene before rasterising is exact and free, unlike resampling the pixels. All
    points go through one matrix product and one ``tolist``: per-shape numpy calls would cost
    more than the drawing itself.

    Speed, with the pixels unchanged (tests/test_synthface.py pins them):

    - the points enter numpy through ``struct``: native doubles, bit for bit the Python
      floats, in one C loop, at a third of ``np.fromiter``'s cost per value. The bytes
      object's buffer is 16-byte aligned, so the matrix product sees an aligned, C-contiguous
      array as before and takes the same (BLAS) path;
    - shapes go straight to the C drawing object behind ``ImageDraw.Draw`` with the calls its
      ``polygon(xy, fill=colour)`` and ``line(xy, fill=colour, width=w)`` make for an RGB
      image, fill only and no joints (Pillow 13.0's ImageDraw): ``draw_ink(colour)``, then
      ``draw_polygon(xy, ink, 1)`` or ``draw_lines(xy, ink, w)``. The Python wrappers cost
      a noticeable share of this step (docs/bench/synthface.md); a test checks that both routes draw the same pixels, so a Pillow that changes either
      shows up there."""
    big = size * supersample
    coords: list[float] = []
    for shape in shapes:
        coords += shape.points
    points = np.frombuffer(_pack_doubles(len(coords))(*coords), dtype=np.float64).reshape(-1, 2)
    flat = (points @ (matrix[:, :2].T * big) + matrix[:, 2] * big).ravel().tolist()
    (m00, m01, _), (m10, m11, _) = matrix.tolist()
    width_scale = big * math.sqrt(abs(m00 * m11 - m01 * m10))
    image = Image.new("RGB", (big, big), background)
    draw_polygon, draw_line = _drawing_route(image)
    start = 0
    for kind, shape_points, colour, width in shapes:
        stop = start + len(shape_points)
        if kind == "poly":
            draw_polygon(flat[start:stop], colour)
        else:
            draw_line(flat[start:stop], colour, max(1, int(round(width * width_scale))))
        start = stop
    return image.reduce(supersample) if supersample > 1 else image


def _drawing_route(image: Image.Image) -> tuple[Callable, Callable]:
    """``(polygon(xy, colour), line(xy, colour, width))`` drawing on ``image``: straight through
    Pillow's C drawing object where it draws what ImageDraw's public methods draw (probed
    once), else through those methods, so another Pillow can cost speed but never pictures."""
    draw = ImageDraw.Draw(image)
    if not _direct_drawing_matches():
        return (lambda xy, colour: draw.polygon(xy, fill=colour),
                lambda xy, colour, width: draw.line(xy, fill=colour, width=width))
    canvas, ink = draw.draw, draw.draw.draw_ink
    return (lambda xy, colour: canvas.draw_polygon(xy, ink(colour), 1),
            lambda xy, colour, width: canvas.draw_lines(xy, ink(colour), width))


@lru_cache(maxsize=1)
def _direct_drawing_matches() -> bool:
    polygon = [1.5, 2.0, 13.2, 4.7, 9.1, 14.3, 2.2, 11.8]
    line = [0.5, 15.0, 7.7, 3.3, 15.2, 9.9]
    public = Image.new("RGB", (16, 16), (10, 20, 30))
    draw = ImageDraw.Draw(public)
    draw.polygon(polygon, fill=(200, 100, 50))
    draw.line(line, fill=(5, 250, 90), width=3)
    direct = Image.new("RGB", (16, 16), (10, 20, 30))
    try:
        canvas = ImageDraw.Draw(direct).draw
        canvas.draw_polygon(polygon, canvas.draw_ink((200, 100, 50)), 1)
        canvas.draw_lines(line, canvas.draw_ink((5, 250, 90)), 3)
    except (AttributeError, TypeError, ValueError):
        return False
    return direct.tobytes() == public.tobytes()


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
