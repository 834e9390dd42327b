"""Cues on the skin of the face: Double_Chin, Attractive's blemishes, 5_o_Clock_Shadow
and the beard (No_Beard = 0) over the jaw band, High_Cheekbones and Rosy_Cheeks, and
Young = 0's wrinkles.

The jaw band (:class:`Jaw`) is the beard region: from y = 0.2 down to the chin, between
the face outline and an inner curve. Shadow, stubble and beard share it, and it is the
box of 5_o_Clock_Shadow and No_Beard whatever is drawn there.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from paw_ray.data.synthfaces.canvas import INDEX, Canvas
from paw_ray.data.synthfaces.colours import rgba, scale
from paw_ray.data.synthfaces.geometry import ell, thick
from paw_ray.data.synthfaces.looks import Look


class Jaw(NamedTuple):
    outer: np.ndarray  # along the face outline, from one side at y = 0.2 to the other
    inner: np.ndarray  # the inner edge, point for point

    @property
    def band(self) -> np.ndarray:
        return np.concatenate([self.outer, self.inner[::-1]])


def jaw_band(look: Look) -> Jaw:
    ry, jaw_n = look.ry, look.jaw_n
    ta = math.asin(min(1.0, (0.2 / ry))) if jaw_n == 2 else math.asin(min(1.0, (0.2 / ry) ** (jaw_n / 2)))
    outer = look.outline(ta, math.pi - ta, 24, 0.985)
    inner = np.column_stack([outer[:, 0] * 0.7, 0.2 + (outer[:, 1] - 0.2) * 0.6])
    return Jaw(outer, inner)


def paint_double_chin(cv: Canvas, look: Look) -> None:
    """A skin crescent under the chin, outlined, and a crease arc above it."""
    ry, skin = look.ry, look.skin
    dc = ell(0, ry - 0.06, 0.44, 0.2, 20, 0.15, math.pi - 0.15)
    crease = ell(0, ry - 0.1, 0.36, 0.14, 14, 0.5, math.pi - 0.5)
    show = look.has("Double_Chin")
    DC = [INDEX["Double_Chin"]]
    cv.fill(dc, skin, attrs=DC, show=show)
    cv.fill(thick(dc[2:-2], 0.04), rgba(scale(skin, 0.5), 0.85), attrs=DC, show=show)
    cv.fill(thick(crease, 0.035), rgba(scale(skin, 0.55), 0.8), attrs=DC, show=show)


def paint_blemishes(cv: Canvas, look: Look, g: np.random.Generator) -> None:
    """Attractive = 0: 5-8 faint blemishes (drawn from ``g`` either way)."""
    pos = np.column_stack([g.uniform(-0.7, 0.7, 8), g.uniform(-0.8, 0.9, 8)])
    rads, nb = g.uniform(0.035, 0.06, 8), int(g.integers(5, 9))
    if not look.has("Attractive"):
        for (bx, by), r in list(zip(pos, rads))[:nb]:
            cv.fill(ell(bx, by, r, r * 0.9, 10), rgba((150, 70, 60), 0.35))


def paint_shadow(cv: Canvas, look: Look, jaw: Jaw, g: np.random.Generator) -> None:
    """5_o_Clock_Shadow: a tint and speckle over the jaw band; with No_Beard = 0 it is the
    beard itself (stubble, denser), as CelebA labels stubble "not No_Beard"."""
    sp_s, sp_d, sp_r = g.random(90), g.random(90), g.uniform(0.018, 0.026, 90)
    outer, inner = jaw
    cv.mark([INDEX["5_o_Clock_Shadow"], INDEX["No_Beard"]], jaw.band)
    if not look.has("5_o_Clock_Shadow"):
        return
    stubble = look.stubble
    if stubble:
        sp_r = sp_r * 1.15
    else:
        sp_s, sp_d, sp_r = sp_s[:50], sp_d[:50], sp_r[:50]
    cv.fill(jaw.band, rgba((55, 55, 65), 0.2 if stubble else 0.1))
    # each dot at a random place along the band and a random depth across it
    idx = sp_s * (len(outer) - 1)
    i0 = np.floor(idx).astype(int)
    fr = idx - i0
    i1 = np.minimum(i0 + 1, len(outer) - 1)
    po = outer[i0] * (1 - fr[:, None]) + outer[i1] * fr[:, None]
    pi = inner[i0] * (1 - fr[:, None]) + inner[i1] * fr[:, None]
    pts = po * (1 - sp_d[:, None] * 0.9) + pi * (sp_d[:, None] * 0.9)
    col = rgba((35, 30, 35), 0.4 if stubble else 0.3)
    for (x, y), r in zip(pts, sp_r):
        cv.fill(np.array([[x - r, y], [x, y - r], [x + r, y], [x, y + r]]), col)


def paint_beard(cv: Canvas, look: Look, jaw: Jaw, g: np.random.Generator) -> None:
    """No_Beard = 0 (and no stubble): a dark beard over the band with a ragged inner edge."""
    jag = g.uniform(-0.04, 0.04, len(jaw.inner))
    inner_j = jaw.inner + np.column_stack([np.zeros(len(jaw.inner)), jag])
    cv.fill(np.concatenate([jaw.outer, inner_j[::-1]]), rgba(look.dark_hair, 0.92), attrs=[INDEX["No_Beard"]],
            show=not look.has("No_Beard") and not look.stubble)


def paint_cheeks(cv: Canvas, look: Look, g: np.random.Generator) -> None:
    """High_Cheekbones: light highlights with a faint shadow beneath; Rosy_Cheeks: pink discs."""
    ch_rot = g.uniform(0.2, 0.45)
    show = look.has("High_Cheekbones")
    for s in (-1, 1):
        hl = ell(s * 0.55, 0.06, 0.21, 0.075, 16, rot=-s * ch_rot)
        sh = ell(s * 0.56, 0.1, 0.2, 0.1, 10, 0.3, math.pi - 0.3, rot=-s * ch_rot)
        cv.fill(hl, rgba((255, 246, 236), 0.38), attrs=[INDEX["High_Cheekbones"]], show=show)
        cv.fill(thick(sh, 0.04), rgba(scale(look.skin, 0.6), 0.3), attrs=[INDEX["High_Cheekbones"]], show=show)
        cv.fill(ell(s * 0.55, 0.36, 0.16, 0.15, 18), rgba((232, 78, 100), 0.42),
                attrs=[INDEX["Rosy_Cheeks"]], show=look.has("Rosy_Cheeks"))


def paint_wrinkles(cv: Canvas, look: Look, g: np.random.Generator) -> None:
    """Young = 0: three forehead lines (bangs may cover them later) and crow's feet."""
    wl = g.uniform(0.28, 0.42, 3)
    wc = g.uniform(-0.04, 0.04, 3)
    wcol = rgba(scale(look.skin, 0.55), 0.7)
    old = not look.has("Young")
    for j, y in enumerate((-0.64, -0.72, -0.8)):
        x = np.linspace(-wl[j], wl[j], 9)
        cv.fill(thick(np.column_stack([x, y + wc[j] * (x / wl[j]) ** 2 - 0.02 * np.cos(x * 3)]), 0.03), wcol,
                attrs=[INDEX["Young"]], show=old)
    for s in (-1, 1):
        for dy in (-0.09, 0.0, 0.09):
            cv.fill(thick(np.array([[s * 0.6, -0.15 + dy * 0.3], [s * 0.73, -0.15 + dy]]), 0.03), wcol,
                    attrs=[INDEX["Young"]], show=old)
