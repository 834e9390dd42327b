"""Cues of the lower face's centre: the nose (Big_Nose, Pointy_Nose), the mouth
(Big_Lips, Mouth_Slightly_Open, Smiling, Wearing_Lipstick) and the facial hair that
sits around it (Mustache, Goatee).

The nose tip is at (0, 0.3) and the mouth at (0, 0.7); Attractive = 0 shifts the mouth
(``Look.asym[2:]``), and the moustache and goatee follow it.
"""

from __future__ import annotations

import math

import numpy as np

from paw_ray.data.synthfaces.canvas import INDEX, Canvas
from paw_ray.data.synthfaces.colours import LIPSTICK, mix, rgba, scale
from paw_ray.data.synthfaces.geometry import ell, rect, thick
from paw_ray.data.synthfaces.looks import Look

_MOUTH = [INDEX[n] for n in ("Big_Lips", "Mouth_Slightly_Open", "Smiling", "Wearing_Lipstick")]


def paint_nose(cv: Canvas, look: Look) -> None:
    """A translucent body with two side lines, nostrils, and a pointed or a rounded tip."""
    skin = look.skin
    nose_dark = scale(skin, 0.62)
    w, tip = (0.19, 0.36) if look.has("Big_Nose") else (0.12, 0.3)
    NOSE = [INDEX["Big_Nose"], INDEX["Pointy_Nose"]]
    pointy = look.has("Pointy_Nose")
    if pointy:
        bottom = np.array([[w * 0.55, tip + 0.02], [0, tip + 0.15], [-w * 0.55, tip + 0.02]])
    else:
        bottom = ell(0, tip + 0.01, w * 0.55, 0.05, 9, 0.0, math.pi)
    body = np.concatenate([np.array([[-0.04, -0.05], [0.04, -0.05], [w, tip - 0.01]]), bottom, np.array([[-w, tip - 0.01]])])
    cv.fill(body, rgba(scale(skin, 0.86), 0.55), attrs=NOSE)
    for s in (-1, 1):
        cv.fill(thick(np.array([[s * 0.04, -0.05], [s * w * 0.8, tip - 0.1], [s * w, tip - 0.01]]), 0.03),
                rgba(nose_dark, 0.45), attrs=NOSE)
        cv.fill(ell(s * w * 0.55, tip, 0.045, 0.026, 10), rgba((40, 25, 25), 0.75), attrs=NOSE)
    if pointy:  # a shaded triangular tip
        cv.fill(np.array([[w * 0.45, tip + 0.02], [0, tip + 0.14], [-w * 0.45, tip + 0.02]]), rgba(nose_dark, 0.6),
                attrs=NOSE)
    else:  # a round, lit tip
        cv.fill(ell(0, tip - 0.03, 0.07, 0.055, 12), rgba((255, 246, 236), 0.4), attrs=NOSE)
    cv.fill(thick(bottom, 0.035), rgba(nose_dark, 0.85), attrs=NOSE)


def paint_mouth(cv: Canvas, look: Look, g: np.random.Generator) -> None:
    """Two lips bent by the smile, an open gap (teeth when also smiling), lip colour."""
    lipstick, flat = LIPSTICK[int(g.integers(len(LIPSTICK)))], g.uniform(-0.03, 0.01)
    lip_col = lipstick if look.has("Wearing_Lipstick") else scale(mix(look.skin, (170, 80, 80), 0.35), 0.85)
    curve = 0.09 if look.has("Smiling") else flat
    mx, my = look.asym[2], 0.7 + look.asym[3] * 0.5
    big = look.has("Big_Lips")
    mw = 0.27 if big else 0.24
    tu, tl = (0.09, 0.115) if big else (0.05, 0.065)
    gap = 0.08 if look.has("Mouth_Slightly_Open") else 0.0
    xm = np.linspace(-mw, mw, 17)
    um = xm / mw
    cen = my - curve * um**2
    gp = gap * (1 - um**2)
    # the mouth region whatever its shape: corners anywhere from raised to lowered
    cv.mark(_MOUTH, rect(mx - mw, my - 0.09 - tu, mx + mw, my + 0.03 + tl + gap))
    up_bot = np.column_stack([mx + xm, cen - gp / 2])
    up_top = np.column_stack([mx + xm, cen - gp / 2 - tu * (1 - um**2) ** 0.5 * (1 - 0.3 * np.exp(-((xm / 0.05) ** 2)))])
    lo_top = np.column_stack([mx + xm, cen + gp / 2])
    lo_bot = np.column_stack([mx + xm, cen + gp / 2 + tl * (1 - um**2) ** 0.6])
    if gap:
        cv.fill(np.concatenate([up_bot, lo_top[::-1]]), (45, 15, 20), attrs=_MOUTH)
        if look.has("Smiling"):
            teeth_bot = up_bot[3:-3] * 0.55 + lo_top[3:-3] * 0.45
            cv.fill(np.concatenate([up_bot[3:-3], teeth_bot[::-1]]), (235, 232, 225))
    cv.fill(np.concatenate([up_top, up_bot[::-1]]), lip_col, attrs=_MOUTH)
    cv.fill(np.concatenate([lo_top, lo_bot[::-1]]), scale(lip_col, 1.06), attrs=_MOUTH)
    cv.fill(thick(up_bot if not gap else up_bot[1:-1], 0.018), rgba((60, 25, 25), 0.8))


def paint_mustache_goatee(cv: Canvas, look: Look) -> None:
    """Mustache: a dark band above the upper lip; Goatee: a dark patch on the chin."""
    mx = look.asym[2]
    must = np.array([[-0.31, 0.66], [-0.2, 0.58], [0, 0.54], [0.2, 0.58], [0.31, 0.66],
                     [0.2, 0.645], [0, 0.625], [-0.2, 0.645]]) + [mx, 0]
    cv.fill(must, rgba(look.dark_hair, 0.93), attrs=[INDEX["Mustache"]], show=look.has("Mustache"))
    gy = 0.7 + (look.ry - 0.7) * 0.55
    cv.fill(ell(mx * 0.5, gy, 0.17, 0.15, 18), rgba(look.dark_hair, 0.93), attrs=[INDEX["Goatee"]],
            show=look.has("Goatee"))
