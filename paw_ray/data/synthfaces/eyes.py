"""Cues around the eyes: Narrow_Eyes, Heavy_Makeup (eye shadow and liner),
Bags_Under_Eyes, the brows (Arched_Eyebrows, Bushy_Eyebrows) and Eyeglasses.

Eyes sit at (+-0.4, -0.15) and brows at y = -0.45 in face units; Attractive = 0 moves
each pair a little off the symmetric place (``Look.asym``).
"""

from __future__ import annotations

import math

import numpy as np

from paw_ray.data.synthfaces.canvas import INDEX, Canvas
from paw_ray.data.synthfaces.colours import EYE, SHADOW, mix, rgba, scale
from paw_ray.data.synthfaces.geometry import TAU, ell, rect, ring, thick
from paw_ray.data.synthfaces.looks import Look

_EW = 0.16  # eye half-width
_XS = np.linspace(-_EW, _EW, 15)


def paint_eyes(cv: Canvas, look: Look, g: np.random.Generator) -> None:
    iris_col = EYE[int(g.integers(len(EYE)))]
    gaze = g.uniform(-0.03, 0.03, 2)
    sh_col = SHADOW[int(g.integers(len(SHADOW)))]
    h_up, h_lo = (0.035, 0.03) if look.has("Narrow_Eyes") else (0.08, 0.065)
    prof = (1 - (_XS / _EW) ** 2) ** 0.8
    for s, dy in ((-1, look.asym[0]), (1, -look.asym[0])):
        ecx, ecy = s * 0.4, -0.15 + dy
        _paint_eye_shadow(cv, look, s, ecx, ecy, h_up, prof, sh_col)
        _paint_bags(cv, look, ecx, ecy, h_lo)
        up = np.column_stack([ecx + _XS, ecy - h_up * prof])
        lo = np.column_stack([ecx + _XS, ecy + h_lo * prof])
        almond = np.concatenate([up, lo[::-1]])
        # the eye region whatever its opening
        cv.mark([INDEX["Narrow_Eyes"]], rect(ecx - _EW, ecy - 0.08 - 0.0125, ecx + _EW, ecy + 0.065))
        cv.fill(almond, (238, 236, 230), attrs=[INDEX["Narrow_Eyes"]])
        cc = ell(ecx + gaze[0], ecy + gaze[1] * 0.3, 0.062, 0.062, 14)
        lim_up = np.interp(cc[:, 0] - ecx, _XS, ecy - h_up * prof)
        lim_lo = np.interp(cc[:, 0] - ecx, _XS, ecy + h_lo * prof)
        cc[:, 1] = np.clip(cc[:, 1], lim_up, lim_lo)  # the iris stays inside the lids
        cv.fill(cc, iris_col)
        pc = ell(ecx + gaze[0], ecy + gaze[1] * 0.3, 0.028, min(0.028, h_up), 10)
        cv.fill(pc, (12, 10, 10))
        liner = thick(up, 0.05 if look.has("Heavy_Makeup") else 0.025)
        cv.fill(liner, (30, 22, 22), attrs=[INDEX["Narrow_Eyes"], INDEX["Heavy_Makeup"]])
        cv.mark([INDEX["Eyeglasses"]], almond)


def _paint_eye_shadow(cv: Canvas, look: Look, s: int, ecx, ecy, h_up, prof, colour) -> None:
    """Heavy_Makeup: coloured shadow above the upper lid, wider towards the outer corner."""
    xw = np.linspace(-_EW * 1.15, _EW * 1.25, 15) * 1.0
    pw = (1 - np.clip(xw / (_EW * 1.25), -1, 1) ** 2) ** 0.5
    top = np.column_stack([ecx + s * xw, ecy - h_up * np.interp(xw, _XS, prof) - 0.02 - 0.1 * pw])
    bottom = np.column_stack([ecx + s * xw, ecy - h_up * np.interp(xw, _XS, prof) + 0.01])
    cv.fill(np.concatenate([top, bottom[::-1]]), rgba(colour, 0.75), attrs=[INDEX["Heavy_Makeup"]],
            show=look.has("Heavy_Makeup"))


def _paint_bags(cv: Canvas, look: Look, ecx, ecy, h_lo) -> None:
    """Bags_Under_Eyes: a dark purple-brown crescent below the lower lid."""
    xb = _XS * 0.95
    pb = (1 - (xb / _EW) ** 2) ** 0.7
    b_top = np.column_stack([ecx + xb, ecy + h_lo * pb + 0.025])
    b_bot = np.column_stack([ecx + xb, ecy + h_lo * pb + 0.025 + 0.09 * pb])
    colour = rgba(mix(scale(look.skin, 0.5), (90, 40, 90), 0.3), 0.6)
    cv.fill(np.concatenate([b_top, b_bot[::-1]]), colour, attrs=[INDEX["Bags_Under_Eyes"]],
            show=look.has("Bags_Under_Eyes"))


def paint_brows(cv: Canvas, look: Look, g: np.random.Generator) -> None:
    bjag = g.uniform(-0.015, 0.015, 13)
    bushy = look.has("Bushy_Eyebrows")
    for s, dy in ((-1, look.asym[1]), (1, -look.asym[1])):
        u = np.linspace(0, 1, 13)
        x = s * (0.16 + 0.5 * u)
        if look.has("Arched_Eyebrows"):
            y = -0.45 - 0.12 * np.sin(math.pi * np.clip(u / 1.1, 0, 1) ** 0.75) + 0.06 * u
        else:
            y = -0.45 - 0.03 * np.sin(math.pi * u)
        y = y + dy
        th = (0.11 if bushy else 0.05) * (1 - 0.45 * u)
        jj = bjag * (2.0 if bushy else 0.0)  # a ragged top edge when bushy
        poly = np.concatenate([np.column_stack([x, y - th / 2 + jj]), np.column_stack([x, y + th / 2])[::-1]])
        cv.fill(poly, rgba(look.dark_hair, 0.95), attrs=[INDEX["Arched_Eyebrows"], INDEX["Bushy_Eyebrows"]])


def paint_glasses(cv: Canvas, look: Look, g: np.random.Generator) -> None:
    """Eyeglasses: two super-elliptic rims (a quarter with tinted lenses), arms and a bridge."""
    frame = ((20, 20, 20), (90, 55, 30), (160, 160, 170), (140, 20, 30))[int(g.integers(4))]
    tinted, lens_ry, lens_n = g.random() < 0.25, g.uniform(0.18, 0.23), g.uniform(2.0, 4.0)
    GL = [INDEX["Eyeglasses"]]
    show = look.has("Eyeglasses")
    for s in (-1, 1):
        tt = np.linspace(0, TAU, 32, endpoint=False)
        c, sn = np.cos(tt), np.sin(tt)
        lens = np.column_stack([s * 0.4 + 0.25 * np.sign(c) * np.abs(c) ** (2 / lens_n),
                                -0.14 + lens_ry * np.sign(sn) * np.abs(sn) ** (2 / lens_n)])
        if tinted:
            cv.fill(lens, rgba((25, 25, 35), 0.75), show=show)
        cv.fill(ring(lens, 0.05), frame, attrs=GL, show=show)
        cv.fill(thick(np.array([[s * 0.65, -0.17], [s * 0.84, -0.15]]), 0.045), frame, attrs=GL, show=show)
    cv.fill(thick(ell(0, -0.1, 0.16, 0.07, 9, math.pi + 0.2, TAU - 0.2), 0.04), frame, attrs=GL, show=show)
