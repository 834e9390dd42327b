"""The background: a plain colour, random shapes, and distractors that look like the
small cues (bright dots, dark strokes, red blobs, dotted arcs) anywhere in the picture.

The distractors keep a whole-image network from answering "is there an earring-like
dot anywhere": it has to know where a dot sits relative to the face, which is what part
windows give.
"""

from __future__ import annotations

import math

import numpy as np

from paw_ray.data.synthfaces.canvas import Canvas
from paw_ray.data.synthfaces.colours import JEWEL, LIPSTICK, rgba
from paw_ray.data.synthfaces.geometry import TAU, ell, thick


def background_colour(g: np.random.Generator) -> tuple:
    """The canvas colour; drawn from the background generator before the clutter."""
    return tuple(int(v) for v in g.integers(20, 236, size=3))


def paint_clutter(cv: Canvas, g: np.random.Generator) -> None:
    """Background: random shapes, and distractors that look like small cues."""
    S = cv.S
    for _ in range(int(g.integers(8, 16))):
        kind = int(g.integers(4))
        col = rgba(g.integers(0, 256, size=3), g.uniform(0.5, 1.0))
        c = g.uniform(-0.1, 1.1, 2) * S
        w, h = g.uniform(0.05, 0.45, 2) * S
        rot = g.uniform(0, math.pi)
        if kind == 0:  # rotated rectangle
            pts = np.array([[-w, -h], [w, -h], [w, h], [-w, h]]) / 2
        elif kind == 1:  # ellipse
            pts = ell(0, 0, w / 2, h / 2, 20)
        elif kind == 2:  # bar
            pts = np.array([[-w, -0.02 * S], [w, -0.02 * S], [w, 0.02 * S], [-w, 0.02 * S]])
        else:  # triangle
            pts = np.array([[-w / 2, h / 2], [w / 2, h / 2], [0, -h / 2]])
        cr, sr = math.cos(rot), math.sin(rot)
        cv.raw(pts @ np.array([[cr, sr], [-sr, cr]]) + c, col)
    _paint_distractors(cv, g)


def _paint_distractors(cv: Canvas, g: np.random.Generator) -> None:
    S = cv.S
    for _ in range(int(g.integers(2, 7))):  # bright dots (earring-like)
        c, r = g.uniform(0, 1, 2) * S, g.uniform(0.006, 0.018) * S
        cv.raw(ell(c[0], c[1], r, r, 10), rgba(JEWEL[int(g.integers(len(JEWEL)))], 1.0))
    for _ in range(int(g.integers(1, 4))):  # short dark strokes (wrinkle/brow-like)
        c, L, a = g.uniform(0, 1, 2) * S, g.uniform(0.03, 0.08) * S, g.uniform(0, math.pi)
        seg = np.array([c - L * np.array([math.cos(a), math.sin(a)]), c + L * np.array([math.cos(a), math.sin(a)])])
        cv.raw(thick(seg, g.uniform(0.004, 0.012) * S), rgba((30, 25, 25), g.uniform(0.5, 0.9)))
    for _ in range(int(g.integers(0, 3))):  # red / pink blobs (lip/cheek-like)
        c, r = g.uniform(0, 1, 2) * S, g.uniform(0.015, 0.04) * S
        cv.raw(ell(c[0], c[1], r * 1.6, r, 14, rot=g.uniform(0, math.pi)),
               rgba(LIPSTICK[int(g.integers(len(LIPSTICK)))], g.uniform(0.5, 0.9)))
    if g.random() < 0.35:  # a dotted arc (necklace-like)
        c, R, a0 = g.uniform(0, 1, 2) * S, g.uniform(0.05, 0.12) * S, g.uniform(0, TAU)
        for a in a0 + np.linspace(0, 2.0, 9):
            p = c + R * np.array([math.cos(a), math.sin(a)])
            cv.raw(ell(p[0], p[1], 0.009 * S, 0.009 * S, 8), rgba(JEWEL[int(g.integers(3))], 1.0))
