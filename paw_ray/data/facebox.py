"""The face-box rule for in-the-wild CelebA (docs/data-format.md, "Face boxes"), as small pure functions.

Boxes are ``x, y, w, h`` in source-image pixels, with the pixel grid convention that
pixel ``i`` covers ``[i, i + 1)``; every function takes arrays of shape ``(..., 4)``
(landmarks ``(..., 5, 2)``) so that a whole annotation file can go through at once.

The rule, step by step (``face_square`` runs them in order):

1. **Choose** (``choose_box``): the annotated box of ``list_bbox_celeba`` (``x_1 y_1
   width height``) when it is usable (``usable_box``: finite, ``w > 1``, ``h > 1``, and
   overlapping the image by more than one pixel each way); otherwise the bounding box
   of the 5 landmarks expanded 2x about its centre (``landmark_box``), the paper's
   fallback for images where its detector found no face. Neither usable: ``FaceBoxError``.
2. **Margin** (``add_margin``): ``margin`` times the width (height) is added on the
   left and on the right (top and bottom): ``margin = 0.1`` makes the box 1.2x as wide.
3. **Square** (``to_square``): side ``max(w, h)``, same centre.
4. **Snap** (``snap_square``): to whole pixels (side rounded, at least 1; the top-left
   corner rounded from the exact centre).
5. **Clamp** (``clamp_square``): on each axis separately, a square that fits in the
   image is *shifted* inside it (never shrunk: the face keeps its scale); a square
   larger than the image along an axis covers that whole axis, keeping the face
   centred as far as possible, and the part outside the image is *padded* with black
   by ``cut_square``. Shrinking instead would change the face's scale image by image;
   padding keeps it, at the cost of black borders on the rare close-ups.

``face_square`` returns the square actually cut (``x, y, side, side``, integers,
possibly reaching outside the image only where the image is smaller than the square):
it is the ``face_box`` column of the shards. ``cut_square`` cuts it and resizes it.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

__all__ = [
    "FaceBoxError",
    "PAD_FILL",
    "usable_box",
    "landmark_box",
    "choose_box",
    "add_margin",
    "to_square",
    "snap_square",
    "clamp_square",
    "face_square",
    "cut_square",
]

PAD_FILL = (0, 0, 0)  # colour of the padding where a square reaches past the image


class FaceBoxError(ValueError):
    """Neither the annotated box nor the landmarks give a usable face box."""


def _boxes(box) -> np.ndarray:
    b = np.asarray(box, dtype=np.float64)
    if b.shape[-1:] != (4,):
        raise ValueError(f"a box is x, y, w, h: expected shape (..., 4), got {b.shape}")
    return b


def usable_box(box, width: float, height: float) -> np.ndarray:
    """True where ``box`` can serve as a face box in a ``width`` x ``height`` image:
    finite, ``w > 1`` and ``h > 1``, and overlapping the image by more than one pixel
    in each direction (a box partly outside the image is usable; one wholly outside,
    or touching it only along an edge, is not)."""
    b = _boxes(box)
    x, y, w, h = np.moveaxis(b, -1, 0)
    finite = np.isfinite(b).all(axis=-1)
    with np.errstate(invalid="ignore"):
        overlap_w = np.minimum(x + w, width) - np.maximum(x, 0.0)
        overlap_h = np.minimum(y + h, height) - np.maximum(y, 0.0)
        return finite & (w > 1) & (h > 1) & (overlap_w > 1) & (overlap_h > 1)


def landmark_box(landmarks, scale: float = 2.0) -> np.ndarray:
    """The bounding box of the 5 landmarks (``(..., 5, 2)`` as x, y, or the flat
    ``(..., 10)`` of ``list_landmarks_celeba``) expanded ``scale`` times about its
    centre: the paper's fallback face box."""
    p = np.asarray(landmarks, dtype=np.float64)
    if p.shape[-1] == 10:
        p = p.reshape(*p.shape[:-1], 5, 2)
    if p.shape[-2:] != (5, 2):
        raise ValueError(f"landmarks are 5 (x, y) points: expected (..., 5, 2), got {p.shape}")
    lo = p.min(axis=-2)
    hi = p.max(axis=-2)
    centre = (lo + hi) / 2.0
    size = (hi - lo) * scale
    return np.concatenate([centre - size / 2.0, size], axis=-1)


def choose_box(bbox, landmarks, width: float, height: float) -> tuple[np.ndarray, str]:
    """The face box of one image before margin and squaring, and where it came from:
    ``(box, "bbox")`` when the annotated box is usable, else ``(landmark box,
    "landmarks")``. Either input may be ``None`` (not annotated). Raises
    ``FaceBoxError`` when neither gives a usable box."""
    if bbox is not None and bool(usable_box(bbox, width, height)):
        return _boxes(bbox).copy(), "bbox"
    if landmarks is not None:
        lm = landmark_box(landmarks)
        if bool(usable_box(lm, width, height)):
            return lm, "landmarks"
    what = []
    if bbox is not None:
        what.append(f"the annotated box {_fmt(bbox)} is degenerate or outside the image")
    else:
        what.append("there is no annotated box")
    if landmarks is not None:
        what.append(f"the landmarks' box {_fmt(landmark_box(landmarks))} is degenerate or outside the image")
    else:
        what.append("there are no landmarks")
    raise FaceBoxError(f"no usable face box in the {width:g}x{height:g} image: " + "; ".join(what))


def _fmt(box) -> str:
    return "(" + ", ".join(f"{v:g}" for v in np.asarray(box, dtype=np.float64).ravel()) + ")"


def add_margin(box, margin: float) -> np.ndarray:
    """``box`` grown by ``margin`` times its width (height) on each side."""
    b = _boxes(box)
    x, y, w, h = np.moveaxis(b, -1, 0)
    return np.stack([x - margin * w, y - margin * h, w * (1 + 2 * margin), h * (1 + 2 * margin)], axis=-1)


def to_square(box) -> np.ndarray:
    """The square with side ``max(w, h)`` and the same centre as ``box``."""
    b = _boxes(box)
    x, y, w, h = np.moveaxis(b, -1, 0)
    side = np.maximum(w, h)
    return np.stack([x + (w - side) / 2, y + (h - side) / 2, side, side], axis=-1)


def _round(v: np.ndarray) -> np.ndarray:
    return np.floor(v + 0.5)  # half up, the same on every platform (np.round is half-even)


def snap_square(square) -> np.ndarray:
    """A square on whole pixels: side rounded (at least 1), corner rounded from the centre."""
    b = _boxes(square)
    x, y, w, h = np.moveaxis(b, -1, 0)
    side = np.maximum(_round(np.maximum(w, h)), 1.0)
    cx, cy = x + w / 2, y + h / 2
    return np.stack([_round(cx - side / 2), _round(cy - side / 2), side, side], axis=-1)


def clamp_square(square, width: int, height: int) -> np.ndarray:
    """Move ``square`` (``x, y, s, s``) into a ``width`` x ``height`` image, each axis alone:
    where ``s`` fits, the square is shifted inside (``0 <= x <= width - s``); where it
    does not, it covers the whole axis (``width - s <= x <= 0``), moved as little as
    possible, and ``cut_square`` pads what lies outside."""
    b = _boxes(square)
    x, y, w, h = np.moveaxis(b, -1, 0)
    room_x, room_y = width - w, height - h
    x = np.clip(x, np.minimum(0.0, room_x), np.maximum(0.0, room_x))
    y = np.clip(y, np.minimum(0.0, room_y), np.maximum(0.0, room_y))
    return np.stack([x, y, w, h], axis=-1)


def face_square(bbox, landmarks, width: int, height: int, margin: float = 0.0) -> tuple[np.ndarray, str]:
    """The whole rule for one image: choose, margin, square, snap, clamp.

    Returns ``(square, source)`` with ``square = [x, y, s, s]`` (whole pixels) the
    region ``cut_square`` cuts, and ``source`` ``"bbox"`` or ``"landmarks"``."""
    box, source = choose_box(bbox, landmarks, width, height)
    sq = clamp_square(snap_square(to_square(add_margin(box, margin))), width, height)
    return sq, source


def cut_square(image, square, size: int, resample=None, scale: float = 1.0):
    """Cut ``square`` (``x, y, s, s`` in source pixels) out of the PIL ``image`` and
    resize it to ``size`` x ``size`` (LANCZOS by default). Parts of the square outside
    the image are filled with ``PAD_FILL``. ``scale`` is the size of ``image`` relative
    to the source (``1/2``, ``1/4``, ``1/8`` after a JPEG draft decode)."""
    if resample is None:
        resample = Image.Resampling.LANCZOS
    x, y, s, _ = (float(v) for v in np.asarray(square, dtype=np.float64).ravel())
    W, H = image.size
    x0, y0, x1, y1 = x * scale, y * scale, (x + s) * scale, (y + s) * scale
    eps = 1e-6
    if x0 >= -eps and y0 >= -eps and x1 <= W + eps and y1 <= H + eps:
        box = (max(x0, 0.0), max(y0, 0.0), min(x1, float(W)), min(y1, float(H)))
        return image.resize((size, size), resample, box=box)
    # Padding: paste the part inside the image onto a canvas the size of the square.
    side = max(1, int(round(s * scale)))
    canvas = Image.new(image.mode, (side, side), PAD_FILL if image.mode == "RGB" else 0)
    ix0, iy0 = int(round(max(x0, 0))), int(round(max(y0, 0)))
    ix1, iy1 = int(round(min(x1, W))), int(round(min(y1, H)))
    if ix1 > ix0 and iy1 > iy0:
        canvas.paste(image.crop((ix0, iy0, ix1, iy1)), (ix0 - int(round(x0)), iy0 - int(round(y0))))
    return canvas.resize((size, size), resample)
