"""One example of a data set: image ``i`` of seed ``s`` with its labels and boxes, and
its PNG bytes.

Image ``i`` uses only ``SeedSequence([s, i])``, spawned into a label stream, a
label-noise stream and a render stream. So its pixels do not depend on how a set is cut
into tasks, nor on ``label_noise``, which changes the stored labels only. The labels come
from ``paw_ray.data.labels`` (CelebA-like marginals and correlations); the picture
follows the clean labels.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from paw_ray.attributes import NUM_ATTRIBUTES
from paw_ray.data import labels as label_model
from paw_ray.data.synthfaces.render import render_face

# The version of everything that decides an example's bytes (labels, streams, painters).
# A change to any of them bumps it: the version is in every set's dataset.json and in
# the run directory's cache name, so old sets are never mixed with new ones.
GENERATOR_VERSION = 2


def _streams(seed: int, i: int) -> tuple[np.random.Generator, np.random.Generator, np.random.Generator]:
    ss = np.random.SeedSequence([int(seed), int(i)])
    a, b, c = ss.spawn(3)
    return np.random.default_rng(a), np.random.default_rng(b), np.random.default_rng(c)


def render_example(seed: int, i: int, size: int, label_noise: float = 0.0):
    """Image ``i`` of the data set with ``seed``: ``(image, clean_labels, stored_labels,
    boxes)``, a function of ``(seed, i, size)`` only (and ``label_noise`` for the stored
    labels)."""
    lab_rng, noise_rng, render_rng = _streams(seed, i)
    clean = label_model.sample_labels(lab_rng, 1)[0]
    stored = label_model.apply_label_noise(noise_rng, clean, label_noise) if label_noise > 0 else clean.copy()
    img, boxes = render_face(render_rng, clean, size)
    return img, clean, stored, boxes


def image_id(i: int) -> str:
    """The ``image_id`` of image ``i`` in a shard."""
    return f"synth-{i:07d}"


def clean_labels(seed: int, image_ids) -> np.ndarray:
    """The noise-free labels (N, 40) of the images with these ids, from their label streams
    alone (nothing is rendered): what the pictures show when ``label_noise`` flipped some of
    the stored labels."""
    out = []
    for name in image_ids:
        prefix, _, number = str(name).partition("-")
        if prefix != "synth" or not number.isdigit():
            raise ValueError(f"{name!r} is not a SynthFaces image id")
        out.append(label_model.sample_labels(_streams(seed, int(number))[0], 1)[0])
    return np.array(out, dtype=bool).reshape(-1, NUM_ATTRIBUTES)


def encode_png(img: Image.Image) -> bytes:
    """The PNG bytes a shard stores (compress level 1: fast to write)."""
    buf = io.BytesIO()
    img.save(buf, format="PNG", compress_level=1)
    return buf.getvalue()
