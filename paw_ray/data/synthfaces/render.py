"""One face from its labels: :func:`render_face` samples the look and calls the region
painters in drawing order, back to front.

The order of the painter calls is part of the output (later paint covers earlier
paint), and each painter draws from its own component generator, so the calls below
may not be reordered, merged or skipped without a new ``GENERATOR_VERSION``.
"""

from __future__ import annotations

import numpy as np

from paw_ray.attributes import NUM_ATTRIBUTES
from paw_ray.data.synthfaces import accessories, body, eyes, hair, mouth, skin
from paw_ray.data.synthfaces.background import background_colour, paint_clutter
from paw_ray.data.synthfaces.canvas import Canvas, supersample
from paw_ray.data.synthfaces.geometry import Pose, sample_pose
from paw_ray.data.synthfaces.looks import component_rngs, sample_look
from paw_ray.data.synthfaces.photo import develop
from paw_ray.errors import PawRayError


class SynthError(PawRayError, ValueError):
    """A bad argument to SynthFaces; the message names it."""


def render_face(rng: np.random.Generator, labels, size: int, pose: Pose | None = None):
    """Draw one face whose cues follow ``labels`` (40 x 0/1, CelebA order).

    Returns ``(image, boxes)``: a ``size`` x ``size`` RGB ``PIL.Image`` and
    ``float32[40, 4]`` normalised ``x0, y0, x1, y1`` ground-truth cue boxes (zeros for
    global attributes). ``pose`` overrides the random pose (the rest stays as ``rng``
    draws it)."""
    lab = np.asarray(labels).astype(bool).ravel()
    if lab.shape != (NUM_ATTRIBUTES,):
        raise SynthError(f"labels must hold {NUM_ATTRIBUTES} values, got {lab.size}")
    G = component_rngs(rng)
    drawn_pose = sample_pose(G["pose"], size)  # drawn even when overridden
    look = sample_look(lab, G)
    cv = Canvas(size, supersample(size), drawn_pose if pose is None else pose, background_colour(G["bg"]))
    paint_clutter(cv, G["bg"])

    # the figure, back to front
    clothes = body.sample_clothes(G["clothes"])
    hair.paint_long_hair(cv, look)
    body.paint_torso(cv, look, clothes)
    body.paint_neck(cv, look)
    hair.paint_crown(cv, look)
    body.paint_ears(cv, look)
    body.paint_face(cv, look)

    # cues on the skin, then the features
    jaw = skin.jaw_band(look)
    skin.paint_double_chin(cv, look)
    skin.paint_blemishes(cv, look, G["blemish"])
    skin.paint_shadow(cv, look, jaw, G["shadow"])
    skin.paint_beard(cv, look, jaw, G["beard"])
    skin.paint_cheeks(cv, look, G["cheeks"])
    skin.paint_wrinkles(cv, look, G["wrinkles"])
    eyes.paint_eyes(cv, look, G["eyes"])
    eyes.paint_brows(cv, look, G["brows"])
    mouth.paint_nose(cv, look)
    mouth.paint_mouth(cv, look, G["mouth"])
    mouth.paint_mustache_goatee(cv, look)

    # hair over the face, then what is worn over everything
    hair.paint_hair_line(cv, look)
    hair.paint_bangs(cv, look)
    hair.paint_sideburns(cv, look)
    hair.paint_texture(cv, look, G["texture"])
    eyes.paint_glasses(cv, look, G["glasses"])
    accessories.paint_hat(cv, look, G["hat"])
    accessories.paint_earring(cv, look, G["earring"])
    accessories.paint_necklace(cv, look, G["necklace"])
    accessories.paint_tie(cv, look, clothes)

    hair.mark_hair_boxes(cv, look)
    img = develop(cv, look.has("Blurry"), G["light"], G["blur"])
    return img, cv.boxes()
