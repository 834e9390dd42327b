"""Things worn, painted over the face and hair: Wearing_Hat, Wearing_Earrings,
Wearing_Necklace and Wearing_Necktie.

The earring and necklace are the smallest cues of the set (a few pixels at 96 px), on
purpose: they are what a whole-image network at low resolution misses and a part
window can see.
"""

from __future__ import annotations

import math

import numpy as np

from paw_ray.data.synthfaces.body import Clothes
from paw_ray.data.synthfaces.canvas import INDEX, Canvas
from paw_ray.data.synthfaces.colours import JEWEL, mix, rgba, scale
from paw_ray.data.synthfaces.geometry import TAU, ell, ring, thick
from paw_ray.data.synthfaces.looks import Look


def paint_hat(cv: Canvas, look: Look, g: np.random.Generator) -> None:
    """A beanie (dome and fold) or a brimmed hat with a band, over the hair crown."""
    hat_col = tuple(int(v) for v in g.integers(10, 246, size=3))
    band_col = tuple(int(v) for v in g.integers(10, 246, size=3))
    beanie = g.random() < 0.4
    hat_h = g.uniform(0.0, 1.0)
    HAT = [INDEX["Wearing_Hat"]]
    show = look.has("Wearing_Hat")
    hw_hat = look.rx + 0.16 + look.volume  # covers the hair crown
    top = -0.35 - 1.28 - look.volume - 0.06 - hat_h * 0.3
    if beanie:
        dome = ell(0, -0.86, hw_hat, -0.86 - top, 28, math.pi, TAU)
        fold = np.array([[-hw_hat - 0.03, -0.78], [hw_hat + 0.03, -0.78], [hw_hat + 0.01, -1.0], [-hw_hat - 0.01, -1.0]])
        cv.fill(dome, hat_col, attrs=HAT, show=show, hair=0)
        cv.fill(fold, scale(hat_col, 0.8), attrs=HAT, show=show, hair=0)
    else:
        crown = np.array([[-hw_hat, -0.9], [-hw_hat * 0.9, top], [hw_hat * 0.9, top], [hw_hat, -0.9]])
        brim = ell(0, -0.92, hw_hat + 0.3, 0.13, 24)
        cv.fill(brim, scale(hat_col, 0.85), attrs=HAT, show=show, hair=0)
        cv.fill(crown, hat_col, attrs=HAT, show=show, hair=0)
        cv.fill(np.array([[-hw_hat, -0.92], [-hw_hat * 0.985, -1.08], [hw_hat * 0.985, -1.08], [hw_hat, -0.92]]), band_col,
                show=show)


def paint_earring(cv: Canvas, look: Look, g: np.random.Generator) -> None:
    """One earring at the lobe of a random side: a stud, a hoop or a drop."""
    side = 1 if g.random() < 0.5 else -1
    style, e_col = int(g.integers(3)), JEWEL[int(g.integers(len(JEWEL)))]
    lobe = np.array([side * (float(look.half_width(0.28)) + 0.05), 0.27])
    ER = [INDEX["Wearing_Earrings"]]
    show = look.has("Wearing_Earrings")
    cv.mark(ER, ell(lobe[0], lobe[1] + 0.03, 0.07, 0.07, 8))
    if style == 0:  # stud
        cv.fill(ell(lobe[0], lobe[1] + 0.02, 0.065, 0.065, 12), e_col, attrs=ER, show=show)
    elif style == 1:  # hoop
        cv.fill(ring(ell(lobe[0], lobe[1] + 0.1, 0.075, 0.09, 16), 0.035), e_col, attrs=ER, show=show)
    else:  # drop
        cv.fill(thick(np.array([lobe, lobe + [0, 0.1]]), 0.03), e_col, attrs=ER, show=show)
        cv.fill(ell(lobe[0], lobe[1] + 0.15, 0.06, 0.07, 12), e_col, attrs=ER, show=show)


def paint_necklace(cv: Canvas, look: Look, g: np.random.Generator) -> None:
    """9-13 beads on a thin chain, in an arc across the base of the neck."""
    bead_col = JEWEL[int(g.integers(3))]
    nb = int(g.integers(9, 14))
    sag = g.uniform(0.15, 0.22)
    NK = [INDEX["Wearing_Necklace"]]
    show = look.has("Wearing_Necklace")
    nw, ry = look.nw, look.ry
    phi = np.linspace(0.12, math.pi - 0.12, 24)
    arc = np.column_stack([nw * 1.02 * np.cos(phi), ry + 0.04 + sag * np.sin(phi)])
    cv.fill(thick(arc, 0.022), rgba(scale(bead_col, 0.8), 0.9), attrs=NK, show=show)
    pb = np.linspace(0.2, math.pi - 0.2, nb)
    for bx, by in zip(nw * 1.02 * np.cos(pb), ry + 0.04 + sag * np.sin(pb)):
        cv.fill(ell(bx, by, 0.05, 0.05, 8), bead_col, attrs=NK, show=show)


def paint_tie(cv: Canvas, look: Look, clothes: Clothes) -> None:
    """A knot and a blade below the collar, striped for some ties."""
    TIE = [INDEX["Wearing_Necktie"]]
    show = look.has("Wearing_Necktie")
    cy0, tie_col = look.collar_y, clothes.tie
    knot = np.array([[-0.1, cy0 - 0.02], [0.1, cy0 - 0.02], [0.065, cy0 + 0.15], [-0.065, cy0 + 0.15]])
    blade = np.array([[-0.065, cy0 + 0.15], [0.065, cy0 + 0.15], [0.15, cy0 + 0.75], [0, cy0 + 0.9], [-0.15, cy0 + 0.75]])
    cv.fill(blade, tie_col, attrs=TIE, show=show)
    if clothes.tie_stripes and show:
        for j in range(4):
            y0 = cy0 + 0.25 + 0.15 * j
            cv.fill(np.array([[-0.14, y0], [0.14, y0 + 0.1], [0.14, y0 + 0.14], [-0.14, y0 + 0.04]]) * [0.75 + 0.1 * j, 1],
                    rgba(mix(tie_col, (255, 255, 255), 0.5), 0.8))
    cv.fill(knot, scale(tie_col, 0.85), attrs=TIE, show=show)
