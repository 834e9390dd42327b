"""Palettes and small colour arithmetic shared by the painters.

Colours are plain ``(r, g, b)`` int tuples (``(r, g, b, a)`` for a translucent fill), as
Pillow's drawing calls take them; the helpers round and clip so that every painter mixes
colours the same way.
"""

from __future__ import annotations

import numpy as np

HAIR = {
    "black": (24, 21, 20),
    "brown": (98, 60, 34),
    "blond": (222, 186, 104),
    "gray": (168, 168, 164),
}
HAIR_OTHER = ((136, 48, 26), (186, 92, 42), (110, 30, 36))  # auburn, ginger, dark red
EYE = ((70, 45, 25), (50, 90, 150), (70, 110, 60), (30, 25, 25))
LIPSTICK = ((200, 22, 42), (150, 10, 45), (225, 60, 110), (185, 30, 70))
SHADOW = ((120, 60, 140), (60, 90, 175), (150, 90, 50), (205, 90, 135), (70, 55, 70))
JEWEL = ((235, 195, 70), (230, 230, 236), (250, 250, 240), (60, 200, 230), (230, 60, 160))
SKIN_DARK, SKIN_MID, SKIN_LIGHT = (92, 58, 40), (192, 140, 104), (236, 196, 168)
SKIN_PALE = (248, 226, 214)


def mix(c1, c2, t) -> tuple:
    """``c1`` moved a share ``t`` of the way to ``c2``."""
    return tuple(int(round(a + (b - a) * t)) for a, b in zip(c1, c2))


def scale(c, f) -> tuple:
    """``c`` brightened (``f`` > 1) or darkened (``f`` < 1), clipped to 0-255."""
    return tuple(int(min(255, max(0, round(v * f)))) for v in c)


def rgba(c, a) -> tuple:
    """``c`` with opacity ``a`` in [0, 1]."""
    return (int(c[0]), int(c[1]), int(c[2]), int(round(255 * a)))


def lum(c) -> float:
    """Luma (Rec. 601 weights), for contrast checks between two colours."""
    return 0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2]


def jitter(g: np.random.Generator, c, amount=14) -> tuple:
    """``c`` with each channel moved by a random integer in +-``amount``."""
    return tuple(int(min(255, max(0, v + g.integers(-amount, amount + 1)))) for v in c)
