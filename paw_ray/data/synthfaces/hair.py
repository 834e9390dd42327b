"""Hair: long side panels, the crown (or Bald's scalp), the hair line
(Receding_Hairline), Bangs, Sideburns, the strand texture (Straight_Hair, Wavy_Hair),
and the boxes of the hair attributes.

Hair is painted in layers around the face (panels and crown behind it, hair line and
bangs over it), and every hair polygon also paints the canvas's hair mask, which others
clear where they cover hair. The colour and texture attributes then get the box of the
mask, i.e. of the hair that is visible in the end.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageChops, ImageDraw

from paw_ray.data.synthfaces.canvas import INDEX, Canvas
from paw_ray.data.synthfaces.colours import lum, rgba, scale
from paw_ray.data.synthfaces.geometry import TAU, ell
from paw_ray.data.synthfaces.looks import Look

HAIR_ATTRS = [INDEX[n] for n in ("Black_Hair", "Blond_Hair", "Brown_Hair", "Gray_Hair", "Straight_Hair", "Wavy_Hair")]


def crown_outline(look: Look) -> np.ndarray:
    return ell(0, -0.35 + look.crown_dy, look.rx + 0.14 + look.volume, 1.28 + look.volume, 40)


def paint_long_hair(cv: Canvas, look: Look) -> None:
    """Side panels down past the shoulders, behind everything but the background."""
    if not look.long_hair:
        return
    rx, nw = look.rx, look.nw
    bot = look.ry + 0.5 + look.hair_len
    for s in (-1, 1):
        panel = np.array([[s * 0.6, -0.6], [s * (rx + 0.28), -0.15], [s * (rx + 0.36), bot - 0.3],
                          [s * (rx + 0.22), bot], [s * (nw + 0.1), bot - 0.1], [s * (nw + 0.05), 0.2]])
        cv.fill(panel, look.hair, hair=255)


def paint_crown(cv: Canvas, look: Look) -> None:
    """The hair crown behind the face (cut at ear height for short hair), or for Bald a
    skin scalp with a short fringe at the sides."""
    rx = look.rx
    crown = crown_outline(look)
    if look.has("Bald"):
        scalp = ell(0, -0.35, rx + 0.04, 1.13, 40)
        for s in (-1, 1):  # side fringe
            cv.fill(ell(s * (rx - 0.02), -0.1, 0.2, 0.42, 20), look.hair, hair=255)
        cv.fill(scalp, look.skin, hair=0)
    elif look.long_hair:
        cv.fill(crown, look.hair, hair=255)
    else:
        cv.fill(crown[crown[:, 1] < 0.05], look.hair, hair=255)
    bald_region = ell(0, -0.35, rx + 0.04, 1.13, 40)
    cv.mark([INDEX["Bald"]], bald_region[bald_region[:, 1] < -0.8])


def paint_hair_line(cv: Canvas, look: Look) -> None:
    """The hair over the top of the face down to the hair line, pulled back at the
    temples for Receding_Hairline (none when Bald); the temples are that cue's box."""
    rx, ry = look.rx, look.ry
    xh = np.linspace(-0.97, 0.97, 31) * rx
    yh = -0.93 + 0.38 * (np.abs(xh) / rx) ** 3
    recede = 0.3 * np.exp(-(((np.abs(xh) - 0.55) / 0.17) ** 2))
    top_y = -ry * np.sqrt(np.clip(1 - (xh / rx) ** 2, 0, 1))
    notch = np.abs(xh) > 0.25
    cv.mark([INDEX["Receding_Hairline"]], np.column_stack([xh[notch], (yh - recede)[notch]]))
    cv.mark([INDEX["Receding_Hairline"]], np.column_stack([xh[notch], yh[notch]]))
    if look.has("Bald"):
        return
    yl = yh - (recede if look.has("Receding_Hairline") else 0.0)
    yl = np.maximum(yl, top_y * 1.02)
    cap_top = np.column_stack([xh[::-1] * 1.02, top_y[::-1] * 1.03 - 0.01])
    cv.fill(np.concatenate([np.column_stack([xh, yl]), cap_top]), look.hair, hair=255)


def paint_bangs(cv: Canvas, look: Look) -> None:
    """Bangs: a fringe with a jagged lower edge over the forehead (not when Bald)."""
    nt = 9
    xb = np.linspace(-0.8, 0.8, 2 * nt + 1)
    yb = (-0.58 + look.bang_slant * xb + np.where(np.arange(2 * nt + 1) % 2 == 0, 0.05, -0.04)
          + 0.02 * np.sin(xb * 7 + look.bang_phase * 6))
    ybt = -0.93 + 0.38 * (np.abs(xb) / look.rx) ** 3 - 0.05
    bangs = np.concatenate([np.column_stack([xb, yb]), np.column_stack([xb[::-1], ybt[::-1]])])
    cv.fill(bangs, look.hair, attrs=[INDEX["Bangs"]], show=look.has("Bangs") and not look.has("Bald"), hair=255)


def paint_sideburns(cv: Canvas, look: Look) -> None:
    """Sideburns: dark strips along the face edge in front of the ears, tapering down."""
    ys = np.linspace(-0.5, 0.42, 10)
    hw = look.half_width(ys)
    tap = np.linspace(0.15, 0.1, 10)
    for s in (-1, 1):
        sb = np.concatenate([np.column_stack([s * (hw - 0.01), ys]), np.column_stack([s * (hw - 0.01 - tap), ys])[::-1]])
        cv.fill(sb, rgba(look.dark_hair, 0.95), attrs=[INDEX["Sideburns"]], show=look.has("Sideburns"))


def paint_texture(cv: Canvas, look: Look, g: np.random.Generator) -> None:
    """Straight_Hair / Wavy_Hair (wavy wins): strand lines, lighter or darker than the
    hair, over the hair mask; neither leaves the hair plain."""
    phase = g.uniform(0, TAU, 40)
    light = g.random() < 0.5
    if not (look.has("Wavy_Hair") or look.has("Straight_Hair")):
        return
    tex = Image.new("L", (cv.S, cv.S), 0)
    td = ImageDraw.Draw(tex)
    yy = np.linspace(-2.2, look.ry + 1.6, 40)
    x0 = np.arange(-1.9, 1.91, 0.13)[:, None]
    x = x0 * (1 + 0.12 * (yy + 2.2)) * 0.8
    if look.has("Wavy_Hair"):
        x = x + 0.075 * np.sin(yy * TAU / 0.42 + phase[: len(x0), None])
    # strands as thick polylines: offset along the normal of each strand (all at once)
    dx = np.gradient(x, yy, axis=1)
    ln = np.sqrt(1 + dx * dx)
    nx, ny = 0.0225 / ln, -0.0225 * dx / ln
    left = np.stack([x + nx, yy + ny], axis=-1)
    right = np.stack([x - nx, yy - ny], axis=-1)[:, ::-1]
    polys = cv.px(np.concatenate([left, right], axis=1).reshape(-1, 2)).reshape(len(x0), -1) - 0.5
    for poly in polys.tolist():
        td.polygon(poly, fill=190)
    hair_col = look.hair
    lighter = (light and lum(hair_col) < 150) or lum(hair_col) < 60
    strand = scale(hair_col, 1.45) if lighter else scale(hair_col, 0.55)
    cv.img.paste(strand, mask=ImageChops.multiply(tex, cv.hair))


def mark_hair_boxes(cv: Canvas, look: Look) -> None:
    """The hair attributes' boxes: the bounding box of the visible hair (the mask)."""
    bb = cv.hair.getbbox()
    if bb is None:  # cannot happen (bald keeps a fringe); fall back to the crown region
        cv.mark(HAIR_ATTRS, crown_outline(look))
    else:
        q = np.array([[bb[0], bb[1]], [bb[2], bb[3]]], dtype=np.float64)
        for a in HAIR_ATTRS:
            cv.lo[a], cv.hi[a] = q[0], q[1]
