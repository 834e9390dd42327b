"""The drawing surface: a supersampled RGB image addressed in face units, a hair mask,
and the ground-truth box of every local attribute, grown by what each cue draws.

A cue is recorded (``mark``) whether it is shown or not, so an absent cue still has the
box of where it would be; the painters decide visibility with ``show``.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from paw_ray.attributes import ATTRIBUTES, LOCAL_MASK, NUM_ATTRIBUTES
from paw_ray.data.synthfaces.geometry import Pose

INDEX = {name: i for i, name in enumerate(ATTRIBUTES)}  # attribute name -> column
_LOCAL = np.array(LOCAL_MASK, dtype=bool)


def supersample(size: int) -> int:
    """How many times larger than ``size`` the face is drawn before it is box-filtered
    down: more for small images, where anti-aliasing matters most."""
    return 4 if size <= 64 else 3 if size <= 128 else 2


class Canvas:
    """A supersampled RGB image in face-frame coordinates, recording cue boxes."""

    def __init__(self, size: int, k: int, pose: Pose, bg):
        self.size, self.k = size, k
        self.S = size * k
        self.m = pose.matrix().T * k
        self.t = np.array([pose.cx, pose.cy]) * k
        self.img = Image.new("RGB", (self.S, self.S), bg)
        self.d = ImageDraw.Draw(self.img, "RGBA")
        self.hair = Image.new("L", (self.S, self.S), 0)
        self.hd = ImageDraw.Draw(self.hair)
        self.lo = np.full((NUM_ATTRIBUTES, 2), np.inf)
        self.hi = np.full((NUM_ATTRIBUTES, 2), -np.inf)

    def px(self, pts) -> np.ndarray:
        """Face-frame points -> supersampled pixel coordinates."""
        return np.asarray(pts, dtype=np.float64) @ self.m + self.t

    def mark(self, attrs, pts) -> None:
        """Grow the boxes of the attribute columns ``attrs`` to hold ``pts``."""
        q = self.px(pts)
        lo, hi = q.min(axis=0), q.max(axis=0)
        for a in attrs:
            np.minimum(self.lo[a], lo, out=self.lo[a])
            np.maximum(self.hi[a], hi, out=self.hi[a])

    def fill(self, pts, color, attrs=(), show=True, hair=None) -> None:
        """Fill the face-frame polygon ``pts``: its extent goes to the boxes of ``attrs``
        (drawn or not); drawn only with ``show``; ``hair`` (0-255) also paints the hair
        mask, 255 where the polygon is hair, 0 where it covers hair."""
        if attrs:
            self.mark(attrs, pts)
        if not show:
            return
        xy = (self.px(pts) - 0.5).ravel().tolist()
        self.d.polygon(xy, fill=color)
        if hair is not None:
            self.hd.polygon(xy, fill=hair)

    def raw(self, xy_px, color) -> None:
        """A polygon in supersampled pixel coordinates (background clutter)."""
        self.d.polygon((np.asarray(xy_px) - 0.5).ravel().tolist(), fill=color)

    def boxes(self) -> np.ndarray:
        """``float32[40, 4]``: ``x0, y0, x1, y1`` over the image side, clipped to [0, 1];
        zeros for global attributes and for boxes nothing was recorded in."""
        out = np.zeros((NUM_ATTRIBUTES, 4), dtype=np.float64)
        ok = np.isfinite(self.lo[:, 0])
        out[ok, :2] = self.lo[ok]
        out[ok, 2:] = self.hi[ok]
        out = np.clip(out / self.S, 0.0, 1.0)
        out[~_LOCAL] = 0.0
        return out.astype(np.float32)
