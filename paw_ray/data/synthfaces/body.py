"""The figure under the cues: shirt and collar, neck, ears and the bare face.

These carry no label of their own except the open collar, which is where
Wearing_Necktie's box lies when there is no tie. The tie itself is painted last, with
the other accessories (``accessories.py``), from the same :class:`Clothes`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from paw_ray.data.synthfaces.canvas import INDEX, Canvas
from paw_ray.data.synthfaces.colours import lum, mix, rgba, scale
from paw_ray.data.synthfaces.geometry import TAU, ell, thick
from paw_ray.data.synthfaces.looks import Look


@dataclass(frozen=True)
class Clothes:
    shirt: tuple
    tie: tuple  # contrasts the shirt
    tie_stripes: bool


def sample_clothes(g: np.random.Generator) -> Clothes:
    shirt = tuple(int(v) for v in g.integers(20, 236, size=3))
    tie = tuple(int(v) for v in g.integers(0, 256, size=3))
    if abs(lum(tie) - lum(shirt)) < 70:
        tie = scale(tie, 0.3) if lum(shirt) > 120 else mix(tie, (255, 255, 255), 0.7)
    return Clothes(shirt=shirt, tie=tie, tie_stripes=g.random() < 0.4)


def neck_colour(look: Look) -> tuple:
    return scale(look.skin, 0.86)


def paint_torso(cv: Canvas, look: Look, clothes: Clothes) -> None:
    """The shirt, the open collar (a skin V, hidden under a tie) and the collar flaps."""
    nw, cy0 = look.nw, look.collar_y
    torso = np.array([[-nw - 0.05, cy0], [-1.45, cy0 + 0.22], [-2.1, cy0 + 0.6], [-2.4, cy0 + 3.0],
                      [2.4, cy0 + 3.0], [2.1, cy0 + 0.6], [1.45, cy0 + 0.22], [nw + 0.05, cy0]])
    cv.fill(torso, clothes.shirt, hair=0)
    # open collar (a skin V) without a tie: part of the tie's region
    cv.fill(np.array([[-nw * 0.85, cy0 - 0.02], [0, cy0 + 0.42], [nw * 0.85, cy0 - 0.02]]), neck_colour(look),
            attrs=[INDEX["Wearing_Necktie"]], show=not look.has("Wearing_Necktie"))
    collar = mix(clothes.shirt, (255, 255, 255), 0.55)
    for s in (-1, 1):
        cv.fill(np.array([[s * (nw + 0.12), cy0 - 0.06], [s * 0.05, cy0 + 0.06], [s * 0.2, cy0 + 0.32],
                          [s * (nw + 0.2), cy0 + 0.18]]), collar)


def paint_neck(cv: Canvas, look: Look) -> None:
    nw, cy0 = look.nw, look.collar_y
    neck = np.array([[-nw, 0.4], [nw, 0.4], [nw * 1.06, cy0 + 0.02], [-nw * 1.06, cy0 + 0.02]])
    cv.fill(neck, neck_colour(look), hair=0)


def paint_ears(cv: Canvas, look: Look) -> None:
    ear_y = 0.05
    for s in (-1, 1):
        ex = s * (float(look.half_width(ear_y)) + 0.03)
        cv.fill(ell(ex, ear_y, 0.13, 0.23, 18), scale(look.skin, 0.93), hair=0)
        cv.fill(thick(ell(ex, ear_y + 0.01, 0.07, 0.14, 10, -1.9 if s > 0 else -1.2, 1.9 if s > 0 else 4.4), 0.025),
                rgba(scale(look.skin, 0.6), 0.7))


def paint_face(cv: Canvas, look: Look) -> None:
    """The face's skin over the hair crown, with a soft highlight up and to the right."""
    cv.fill(look.outline(0, TAU, 72), look.skin, hair=0)
    cv.fill(look.outline(0, TAU, 48, 0.8) + [0.08, -0.1], rgba(mix(look.skin, (255, 255, 255), 0.25), 0.3))
