"""Real photographs for the face-detection tests, from scikit-image's bundled data (no
download): the astronaut (one face), two of her pasted side by side (two faces, the second
mirrored), and a cup of coffee (no face)."""

from __future__ import annotations

from PIL import Image
from skimage import data

ASTRONAUT_FACE_CENTRE = (221, 122)  # where her face is in the 512 x 512 photo, by eye


def astronaut() -> Image.Image:
    return Image.fromarray(data.astronaut())


def two_faces() -> Image.Image:
    """1024 x 512: the astronaut, then her mirror image."""
    one = astronaut()
    canvas = Image.new("RGB", (2 * one.width, one.height))
    canvas.paste(one, (0, 0))
    canvas.paste(one.transpose(Image.Transpose.FLIP_LEFT_RIGHT), (one.width, 0))
    return canvas


def no_face() -> Image.Image:
    return Image.fromarray(data.coffee())
