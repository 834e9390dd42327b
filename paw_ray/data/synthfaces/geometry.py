"""The face frame and its placement: :class:`Pose`, the random pose, and the polygon
shapes the painters draw in face units (``docs/synthfaces.md``, "Geometry").

Every painter works in one canonical frame (face centred at (0, 0), about 1 unit
half-wide, +y down); only the pose says where that frame lands in the picture.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

TAU = 2.0 * math.pi


@dataclass(frozen=True)
class Pose:
    """Where the face frame lies in the image: ``cx, cy`` its centre in pixels of the
    final image, ``scale`` pixels per face unit (face half-width ~ 1 unit), ``angle``
    in-plane rotation in degrees (positive turns the face clockwise on screen)."""

    cx: float
    cy: float
    scale: float
    angle: float

    def matrix(self) -> np.ndarray:
        a = math.radians(self.angle)
        c, s = math.cos(a), math.sin(a)
        return self.scale * np.array([[c, -s], [s, c]])

    def to_image(self, pts) -> np.ndarray:
        """Face-frame points ``(N, 2)`` -> image pixel coordinates ``(N, 2)``."""
        return np.asarray(pts, dtype=np.float64) @ self.matrix().T + np.array([self.cx, self.cy])


# head top, both ears, chin, the tie's centre: kept inside the image
_ANCHORS = np.array([[0.0, -1.35], [-1.12, 0.05], [1.12, 0.05], [0.0, 1.3], [0.0, 2.0]])


def sample_pose(rng: np.random.Generator, size: int) -> Pose:
    """A random pose: face height 35-75 % of the side, +-30 degrees, anchors inside."""
    frac, angle, ux, uy = rng.uniform(0.35, 0.75), rng.uniform(-30.0, 30.0), rng.random(), rng.random()
    scale = frac * size / 2.6
    off = Pose(0.0, 0.0, scale, angle).to_image(_ANCHORS)
    margin = 0.03 * size
    lo = margin - off.min(axis=0)
    hi = size - margin - off.max(axis=0)
    c = np.where(hi > lo, lo + np.array([ux, uy]) * (hi - lo), (lo + hi) / 2)
    return Pose(float(c[0]), float(c[1]), float(scale), float(angle))


def ell(cx, cy, rx, ry, n=28, t0=0.0, t1=TAU, rot=0.0) -> np.ndarray:
    """``n`` points of an ellipse (or of its arc from angle ``t0`` to ``t1``), turned by
    ``rot`` radians about its centre."""
    closed = abs((t1 - t0) - TAU) < 1e-9
    t = np.linspace(t0, t1, n, endpoint=not closed)
    x, y = rx * np.cos(t), ry * np.sin(t)
    if rot:
        c, s = math.cos(rot), math.sin(rot)
        x, y = c * x - s * y, s * x + c * y
    return np.column_stack([cx + x, cy + y])


def rect(x0, y0, x1, y1) -> np.ndarray:
    return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], dtype=np.float64)


def thick(pts, width) -> np.ndarray:
    """The outline polygon of a polyline of (per-vertex) ``width``."""
    p = np.asarray(pts, dtype=np.float64)
    d = np.empty_like(p)
    d[1:-1] = p[2:] - p[:-2]
    d[0] = p[1] - p[0]
    d[-1] = p[-1] - p[-2]
    ln = np.maximum(np.hypot(d[:, 0], d[:, 1]), 1e-9)
    half = np.asarray(width, dtype=np.float64) / (2 * ln)
    nrm = np.column_stack([-d[:, 1] * half, d[:, 0] * half])
    return np.concatenate([p + nrm, (p - nrm)[::-1]])


def ring(pts, width) -> np.ndarray:
    """A closed ring (even-odd fill) of ``width`` along the closed polyline ``pts``."""
    p = np.asarray(pts, dtype=np.float64)
    d = np.roll(p, -1, axis=0) - np.roll(p, 1, axis=0)
    d /= np.maximum(np.linalg.norm(d, axis=1, keepdims=True), 1e-9)
    nrm = np.column_stack([-d[:, 1], d[:, 0]]) * (width / 2)
    a, b = p + nrm, p - nrm
    return np.concatenate([a, a[:1], b[:1], b[::-1]])
