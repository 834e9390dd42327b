"""From the drawn canvas to the final photo: box-filter down to the image size, then
global lighting (a brightness ramp in a random direction, overall brightness, a colour
cast), Blurry's Gaussian blur, and Gaussian sensor noise.

These effects touch every pixel, so no part window can single them out; Blurry is the
only label among them.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageFilter

from paw_ray.data.synthfaces.canvas import Canvas
from paw_ray.data.synthfaces.geometry import TAU


def develop(cv: Canvas, blurry: bool, g_light: np.random.Generator, g_blur: np.random.Generator) -> Image.Image:
    """The ``size`` x ``size`` RGB image of ``cv``; the lighting and noise come from
    ``g_light`` and the blur radius from ``g_blur``, drawn whether used or not."""
    size, k = cv.size, cv.k
    img = cv.img.reduce(k) if k > 1 else cv.img
    g = g_light
    ang, strength, bright = g.uniform(0, TAU), g.uniform(0.0, 0.4), g.uniform(0.78, 1.15)
    cast = g.uniform(0.84, 1.16, 3)
    sigma = g.uniform(1.0, 4.0)
    noise_seed = int(g.integers(0, 2**63 - 1))
    r = np.linspace(-0.5, 0.5, size)
    ramp = 1.0 + strength * (math.cos(ang) * r[None, :] + math.sin(ang) * r[:, None])
    arr = np.asarray(img, dtype=np.float32) * (ramp * bright)[..., None].astype(np.float32) * cast.astype(np.float32)
    radius = g_blur.uniform(0.011, 0.02) * size
    if blurry:
        img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(radius))
        arr = np.asarray(img, dtype=np.float32)
    arr = arr + np.random.default_rng(noise_seed).standard_normal(arr.shape, dtype=np.float32) * np.float32(sigma)
    return Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8), "RGB")
