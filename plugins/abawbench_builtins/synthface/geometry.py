"""Face geometry: identity + AU activations -> a scene of 2-D primitives in the unit square.

Every AU moves something a coder would look at (Ekman & Friesen's FACS descriptions, reduced to
what a 112 px face can show): brows (AU1 inner raise, AU2 outer raise, AU4 lower and knit),
lids (AU5 widen, AU7 tighten), cheeks (AU6 raise, crow's feet), nose (AU9 wrinkle, AU10 upper
lip raise and deep folds), lip corners (AU12 up and out, AU15 down), lips (AU23 tighten, AU24
press, AU25 part) and jaw (AU26 drop). Geometry is pure: no pixels, no randomness, so the
renderer and the domain shift stay independent and cheap to test.

Points are flat Python lists ``[x0, y0, x1, y1, ...]``, not numpy arrays: a face is ~40 shapes
of 2-24 points, and at that size numpy's per-call overhead costs several times the arithmetic
(this function dominated the generator's profile before). What depends on the identity alone
(hair, shoulders, neck, the head outline, a few colours) is built once per identity.
"""

from __future__ import annotations

import math
from functools import lru_cache
from operator import itemgetter
from typing import NamedTuple, Sequence

from abawbench_builtins.synthface.facs import AU
from abawbench_builtins.synthface.identities import Colour, Identity

Flat = list[float]


class Shape(NamedTuple):
    """One primitive. ``kind`` is ``"poly"`` (filled polygon) or ``"line"`` (open polyline);
    ``points`` flat ``[x0, y0, ...]`` in unit coordinates (a tuple where the shape is cached
    and shared, see ``_identity_parts``); ``width`` in unit coordinates."""

    kind: str
    points: Sequence[float]
    colour: Colour
    width: float = 0.0


def _circle(n: int) -> tuple[tuple[float, float], ...]:
    return tuple((math.cos(2 * math.pi * k / n), math.sin(2 * math.pi * k / n)) for k in range(n))


_C12 = _circle(12)
_C24 = _circle(24)
# Half circle from the left corner over the top to the right corner (y up = negative sin).
_ARC = tuple((math.cos(math.pi * (1 - k / 6)), math.sin(math.pi * (1 - k / 6))) for k in range(7))
_BEZ = tuple(((1 - t) ** 2, 2 * (1 - t) * t, t * t) for t in (k / 6 for k in range(7)))

_DARK = (45, 30, 25)


def lerp(a: Colour, b: Colour, t: float) -> Colour:
    """Colour between ``a`` (t=0) and ``b`` (t=1); faint features fade into the skin this way."""
    t = min(max(t, 0.0), 1.0)
    return (
        int(a[0] + (b[0] - a[0]) * t),
        int(a[1] + (b[1] - a[1]) * t),
        int(a[2] + (b[2] - a[2]) * t),
    )


def ellipse(cx: float, cy: float, rx: float, ry: float, fine: bool = False) -> Flat:
    """Ellipse as a polygon (polygons rotate with the pose; PIL's ellipses cannot)."""
    points: Flat = []
    for c, s in _C24 if fine else _C12:
        points += (cx + rx * c, cy + ry * s)
    return points


def rect(x0: float, y0: float, x1: float, y1: float) -> Flat:
    return [x0, y0, x1, y0, x1, y1, x0, y1]


def arc(cx: float, cy: float, rx: float, ry: float) -> Flat:
    """Half ellipse from the left point to the right one; ``ry`` > 0 bulges upwards."""
    points: Flat = []
    for c, s in _ARC:
        points += (cx + rx * c, cy - ry * s)
    return points


def curve(left: Sequence[float], right: Sequence[float], mid_y: float) -> Flat:
    """Quadratic curve between two corners whose midpoint lies at height ``mid_y``: a lip
    line. Corners above the midpoint give a smile, below it a frown."""
    x0, y0 = left
    x2, y2 = right
    x1, y1 = 0.5 * (x0 + x2), 2.0 * mid_y - 0.5 * (y0 + y2)
    points: Flat = []
    for w0, w1, w2 in _BEZ:
        points += (w0 * x0 + w1 * x1 + w2 * x2, w0 * y0 + w1 * y1 + w2 * y2)
    return points


def backwards(flat: Flat) -> Flat:
    """The same points in reverse order (to close a band between two curves)."""
    points = flat[::-1]  # y_n, x_n, ..., y_0, x_0: swap each pair back
    points[0::2], points[1::2] = points[1::2], points[0::2]
    return points


def shifted(flat: Flat, dx: float, dy: float) -> Flat:
    points = flat[:]
    points[0::2] = [x + dx for x in flat[0::2]]
    points[1::2] = [y + dy for y in flat[1::2]]
    return points


class _IdentityParts(NamedTuple):
    """What :func:`build_face` draws the same way for every expression and pose of one person."""

    behind: tuple[Shape, ...]  # long hair behind the head, shoulders, neck: drawn first
    head: tuple[float, ...]  # head outline with the jaw closed
    hair_cap: Shape | None
    shade: Colour
    line: Colour
    brow: Colour
    lip_line: Colour


# The head points whose height follows the jaw: (index of the y value, sin) for the lower half.
_HEAD_LOWER = tuple((2 * k + 1, s) for k, (c, s) in enumerate(_C24) if s > 0)
_HX, _HY = 0.5, 0.47  # head centre
_SHOULDERS = tuple(ellipse(_HX, 1.12, 0.5, 0.26, fine=True))  # centred under the head
# The activations build_face reads, in the order it unpacks them.
_AU_ORDER = ("AU1", "AU2", "AU4", "AU6", "AU7", "AU10", "AU12", "AU15", "AU23", "AU24", "AU25", "AU26", "AU5", "AU9")
_activations_in_order = itemgetter(*(AU[name] for name in _AU_ORDER))
_EYE_Y = _HY - 0.015


@lru_cache(maxsize=4096)
def _identity_parts(ident: Identity) -> _IdentityParts:
    """The identity-only part of :func:`build_face`, computed once per identity: a dataset
    draws each person many times (an MTL video, an LSD class folder), and these shapes and
    colours read nothing but the identity's own fields and constants (a frozen dataclass, so
    a cached value cannot go stale). The expressions are the ones build_face evaluated for
    every face before, operation for operation, so the floats and pixels are the same. Point
    sequences are tuples: they are shared by every face of the person and must not change."""
    hx, hy, eye_y = _HX, _HY, _EYE_Y
    skin = ident.skin
    shade = lerp(skin, _DARK, 0.25)
    behind = []
    # --- hair behind the head, shoulders, neck (the ears, next, move with the yaw)
    if ident.hair_style == "long":
        back = ellipse(hx, hy - 0.02, ident.head_w * 1.22, ident.head_h * 1.12, fine=True)
        # Hair falls to the shoulders: the lower half becomes a straight cut.
        back = [hy + 0.42 if i % 2 and v > hy else v for i, v in enumerate(back)]
        behind.append(Shape("poly", tuple(back), ident.hair))
    behind.append(Shape("poly", _SHOULDERS, ident.clothes))
    neck_w = ident.head_w * 0.55
    behind.append(Shape("poly", tuple(rect(hx - neck_w, hy + 0.2, hx + neck_w, 0.98)), shade))

    # --- head: an ellipse whose lower half narrows to the chin (and drops with the jaw, in
    # build_face)
    head: Flat = []
    for c, s in _C24:
        if s > 0:
            head += (hx + ident.head_w * c * (1.0 - ident.jaw_taper * s * s), hy + ident.head_h * s)
        else:
            head += (hx + ident.head_w * c, hy + ident.head_h * s)

    # --- hair cap, cut at the hairline
    hair_cap = None
    if ident.hair_style != "bald":
        top_y = hy - ident.head_h
        hairline_y = top_y + (eye_y - 0.19 - top_y) * ident.hairline
        rx, ry = ident.head_w * 1.06, ident.head_h * 1.08
        t0 = math.pi - math.asin((hairline_y - hy) / ry)
        step = (3 * math.pi - 2 * t0) / 12
        cap = [v for k in range(13) for v in (hx + rx * math.cos(t0 + k * step), hy + ry * math.sin(t0 + k * step))]
        if ident.hair_style == "fringe":
            # Short enough never to reach a raised brow (AU1/AU2 must stay visible).
            cap += (hx + ident.head_w * 0.5, hairline_y + 0.03, hx, hairline_y + 0.05,
                    hx - ident.head_w * 0.6, hairline_y + 0.025)
        hair_cap = Shape("poly", tuple(cap), ident.hair)
    return _IdentityParts(
        behind=tuple(behind),
        head=tuple(head),
        hair_cap=hair_cap,
        shade=shade,
        line=lerp(skin, _DARK, 0.55),
        brow=lerp(ident.hair, _DARK, 0.7),
        lip_line=lerp(ident.lip, _DARK, 0.8),
    )


def build_face(ident: Identity, act: Sequence[float], yaw: float = 0.0) -> list[Shape]:
    """The scene of one face, back to front. ``act``: AU activations (see ``facs.ALL_AUS``);
    ``yaw`` in [-1, 1] shifts the features sideways inside the head, a cheap turn of the head."""
    a1, a2, a4, a6, a7, a10, a12, a15, a23, a24, a25, a26, a5, a9 = map(float, _activations_in_order(act))
    fixed = _identity_parts(ident)

    skin = ident.skin
    shade, line = fixed.shade, fixed.line
    hx = _HX
    cx = hx + 0.05 * yaw
    eye_y = _EYE_Y
    jaw = 0.07 * a26
    shapes: list[Shape] = list(fixed.behind)
    add = shapes.append

    # --- ears
    for sgn in (-1.0, 1.0):
        ear_x = hx + sgn * ident.head_w * (0.98 - 0.12 * yaw * sgn)
        add(Shape("poly", ellipse(ear_x, eye_y + 0.04, 0.026, 0.052), shade))

    # --- head: the jaw drops the lower half (with the jaw closed, jaw == 0.0 and
    # head_h + 0.0 == head_h, so the cached outline is already exact)
    head = list(fixed.head)
    if jaw:
        hy, height = _HY, ident.head_h + jaw
        for i, s in _HEAD_LOWER:
            head[i] = hy + height * s
    add(Shape("poly", head, skin))

    nose_tip_y = eye_y + ident.nose_len
    mouth_y = nose_tip_y + 0.085 + 0.15 * jaw
    if ident.beard:
        # The head outline below the nose (contiguous, right to left through the chin),
        # closed by a moustache line.
        beard = [v for i in range(0, len(head), 2) if head[i + 1] > nose_tip_y + 0.01
                 for v in (head[i], head[i + 1])]
        beard += (cx - 0.06, nose_tip_y + 0.025, cx + 0.06, nose_tip_y + 0.025)
        add(Shape("poly", beard, ident.hair))

    if fixed.hair_cap is not None:
        add(fixed.hair_cap)

    # --- forehead wrinkles from raised brows (AU1/AU2)
    lift = 0.5 * (a1 + a2)
    if lift > 0.05:
        wrinkle = lerp(skin, _DARK, 0.6 * lift)
        for k in range(2):
            y = eye_y - 0.15 - 0.028 * k
            add(Shape("line", curve((cx - 0.1, y + 0.01), (cx + 0.1, y + 0.01), y), wrinkle, 0.011))

    # Colours of the AU6 cheek bulge, its line and crow's feet: the same on both sides.
    if a6 > 0.05:
        cheek = lerp(skin, (235, 120, 110), 0.45 * a6)
        cheek_line = lerp(skin, _DARK, 0.6 * a6)
        crows_feet = lerp(skin, _DARK, 0.7 * a6)

    for sgn in (-1.0, 1.0):
        ex = cx + sgn * ident.eye_dx
        # --- brows: inner end up (AU1), outer end up (AU2), down and together (AU4)
        # Thick, dark and far-travelling: at 112 px (and 64) the brow's slant is the single
        # clearest cue separating anger (down, knitted) from fear, sadness and surprise (up).
        base = eye_y - 0.07
        ix, iy = ex - sgn * (ident.eye_w * 0.85 - 0.03 * a4), base - 0.07 * a1 + 0.045 * a4
        ox, oy = ex + sgn * ident.eye_w * 1.3, base - 0.06 * a2 + 0.015 * a4 + 0.008
        mx, my = 0.5 * (ix + ox), 0.5 * (iy + oy) - 0.01 - 0.015 * lift
        th = ident.brow_thick * 0.5
        brow = [ix, iy - th, mx, my - th, ox, oy - th * 0.6, ox, oy + th * 0.4, mx, my + th, ix, iy + th]
        add(Shape("poly", brow, fixed.brow))

        # --- eye: lids open with AU5, close from above/below with AU7 and AU6
        upper = ident.eye_open * (1 + 1.0 * a5 + 0.2 * a1) * (1 - 0.6 * a7) * (1 - 0.3 * a6 - 0.25 * a4)
        lower = ident.eye_open * 0.8 * (1 - 0.6 * a7 - 0.55 * a6 + 0.4 * a5)
        up_arc = arc(ex, eye_y, ident.eye_w, upper)
        low_arc = backwards(arc(ex, eye_y, ident.eye_w, -lower))
        add(Shape("poly", up_arc + low_arc, (236, 234, 228)))
        r = ident.eye_w * 0.5
        gaze = ex + 0.24 * yaw * ident.eye_w
        add(Shape("poly", ellipse(gaze, eye_y, r, r), ident.iris))
        add(Shape("poly", ellipse(gaze, eye_y, r * 0.45, r * 0.45), (15, 12, 12)))
        # Lid skin drawn over the iris clips it to the eye opening.
        left_x, right_x = ex - ident.eye_w, ex + ident.eye_w
        add(Shape("poly", up_arc + [right_x, eye_y - 0.07, left_x, eye_y - 0.07], skin))
        add(Shape("poly", low_arc + [left_x, eye_y + 0.07, right_x, eye_y + 0.07], skin))
        add(Shape("line", up_arc, _DARK, 0.013 + 0.008 * a7))

        # --- cheeks raised (AU6): a bulge under the eye and crow's feet
        if a6 > 0.05:
            add(Shape("poly", ellipse(ex + sgn * 0.012, eye_y + 0.075 - 0.015 * a6, 0.06, 0.032), cheek))
            add(Shape("line", shifted(low_arc, 0.0, 0.014), cheek_line, 0.009))
            corner = ex + sgn * (ident.eye_w + 0.008)
            for dy in (-0.022, 0.0, 0.022):
                add(Shape("line", [corner, eye_y, corner + sgn * 0.03, eye_y + dy], crows_feet, 0.008))

    # --- brow furrows (AU4)
    if a4 > 0.1:
        furrow = lerp(skin, _DARK, 0.8 * a4)
        for dx in (-0.016, 0.016):
            add(Shape("line", [cx + dx, eye_y - 0.09, cx + dx * 0.6, eye_y - 0.035], furrow, 0.011))

    # --- nose: wrinkled (AU9), wings raised and widened (AU9/AU10)
    tip_y = nose_tip_y - 0.02 * a9 - 0.012 * a10
    nw = ident.nose_w * (1 + 0.35 * a9 + 0.2 * a10)
    add(Shape("line", [cx + 0.012, eye_y + 0.015, cx + nw * 0.7, tip_y - 0.012], shade, 0.008))
    add(Shape("line", curve((cx - nw, tip_y - 0.008), (cx + nw, tip_y - 0.008), tip_y + 0.012), line, 0.008))
    for sgn in (-1.0, 1.0):
        add(Shape("poly", ellipse(cx + sgn * nw * 0.45, tip_y + 0.002, 0.011, 0.006), _DARK))
    if a9 > 0.05:
        wrinkle = lerp(skin, _DARK, 0.8 * a9)
        for k in range(3):
            y = eye_y + 0.02 + 0.018 * k
            add(Shape("line", [cx - 0.03, y, cx + 0.03, y], wrinkle, 0.009))

    # --- mouth
    w = ident.mouth_w * (1 + 0.3 * a12 - 0.3 * a23 - 0.25 * a24 + 0.1 * a25)
    corner_y = mouth_y - 0.065 * a12 + 0.06 * a15 - 0.01 * a10
    left, right = (cx - w, corner_y), (cx + w, corner_y)
    gap = (0.035 * a25 + 0.07 * a26 * min(1.0, a25 + 0.3)) * (1 - 0.8 * a24)
    up_in_y = mouth_y - 0.025 * a10 - 0.3 * gap
    low_in_y = up_in_y + gap
    tu = ident.lip_thick * (1 - 0.5 * a23 - 0.55 * a24) * (1 + 0.2 * a10)
    tl = ident.lip_thick * 1.25 * (1 - 0.45 * a23 - 0.5 * a24)
    up_in = curve(left, right, up_in_y)
    low_in = curve(left, right, low_in_y)
    # Nasolabial folds deepen with AU10, AU12 and AU9.
    fold = 0.25 + 0.6 * max(a10, a12, a9)
    fold_colour, fold_width = lerp(skin, _DARK, fold), 0.006 + 0.004 * fold
    for sgn, (kx, ky) in ((-1.0, left), (1.0, right)):
        pts = [cx + sgn * (nw + 0.008), tip_y - 0.004, kx + sgn * 0.012, 0.5 * (tip_y + ky), kx + sgn * 0.012, ky + 0.012]
        add(Shape("line", pts, fold_colour, fold_width))
    add(Shape("poly", up_in + backwards(low_in), (70, 22, 28)))
    teeth_h = min(gap * 0.55 + 0.015 * a10, 0.025)
    if teeth_h > 0.002:
        add(Shape("poly", up_in + backwards(curve(left, right, up_in_y + teeth_h)), (240, 238, 230)))
    add(Shape("poly", curve(left, right, up_in_y - tu) + backwards(up_in), ident.lip))
    add(Shape("poly", low_in + backwards(curve(left, right, low_in_y + tl)), ident.lip))
    add(Shape("line", up_in, fixed.lip_line, 0.012))

    # --- glasses last: they sit in front of everything
    if ident.glasses:
        gc = ident.glasses_colour
        for sgn in (-1.0, 1.0):
            ex = cx + sgn * ident.eye_dx
            if ident.glasses_round:
                ring = ellipse(ex, eye_y, ident.eye_w * 1.5, ident.eye_w * 1.25)
            else:
                ring = rect(ex - ident.eye_w * 1.5, eye_y - ident.eye_w * 1.05,
                            ex + ident.eye_w * 1.5, eye_y + ident.eye_w * 1.05)
            add(Shape("line", ring + ring[:2], gc, 0.008))
        inner = ident.eye_dx - ident.eye_w * 1.5
        add(Shape("line", [cx - inner, eye_y - 0.005, cx + inner, eye_y - 0.005], gc, 0.008))
    return shapes
