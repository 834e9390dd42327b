"""One face's identity before any cue is drawn: its labels, skin and hair colours, hair
style and head shape (:class:`Look`), and the per-component random generators.

Each component of a face (pose, background, skin, hair, every cue, the lighting, ...)
draws from a generator of its own, all seeded at once from the face's render stream in
the fixed order of ``COMPONENTS``. So flipping one label changes only what that label
draws, and a painter may draw as much or as little as it needs without moving any other
component's numbers. Adding a component anywhere but at the end, or reordering them,
changes every image: that needs a new ``GENERATOR_VERSION``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from paw_ray.data.synthfaces import colours
from paw_ray.data.synthfaces.canvas import INDEX

COMPONENTS = (
    "pose", "bg", "skin", "geom", "hair", "texture", "eyes", "brows", "nose", "mouth",
    "beard", "shadow", "cheeks", "wrinkles", "blemish", "glasses", "hat", "earring",
    "necklace", "clothes", "light", "blur",
)


def component_rngs(rng: np.random.Generator) -> dict[str, np.random.Generator]:
    """One generator per name of ``COMPONENTS``, seeded from ``rng`` in that order."""
    seeds = rng.integers(0, 2**63 - 1, size=len(COMPONENTS))
    return {name: np.random.default_rng(int(s)) for name, s in zip(COMPONENTS, seeds)}


@dataclass(frozen=True)
class Look:
    """The sampled appearance that every painter shares (face units, colours as tuples)."""

    labels: np.ndarray  # bool[40], the clean labels the picture follows
    skin: tuple
    hair: tuple  # hair colour
    dark_hair: tuple  # brows, beard, sideburns, moustache
    long_hair: bool
    volume: float  # how far the hair crown stands off the head
    crown_dy: float
    bang_slant: float
    bang_phase: float
    hair_len: float  # length of long hair below the shoulders
    rx: float  # face half-width
    ry: float  # face half-height
    jaw_n: float  # super-ellipse exponent of the lower face (squarer when larger)
    nw: float  # neck half-width
    asym: np.ndarray  # offsets of eyes, brows, mouth x and mouth y (0 when Attractive)
    bulge: float  # cheek bulge at the jaw (Chubby)

    def has(self, name: str) -> bool:
        """Whether the attribute ``name`` is drawn as present."""
        return bool(self.labels[INDEX[name]])

    @property
    def stubble(self) -> bool:
        """5_o_Clock_Shadow with No_Beard = 0: the beard is drawn as dense stubble."""
        return self.has("5_o_Clock_Shadow") and not self.has("No_Beard")

    @property
    def collar_y(self) -> float:
        return self.ry + 0.38

    def half_width(self, y):
        """The face's half-width at height ``y`` (a number or an array)."""
        y = np.asarray(y, dtype=np.float64)
        n = np.where(y > 0, self.jaw_n, 2.0)
        u = np.clip(np.abs(y) / self.ry, 0, 1)
        return self.rx * (1 - u**n) ** (1 / n) * (1 + self.bulge * np.exp(-(((y - 0.55) / 0.4) ** 2)))

    def outline(self, t0, t1, n, shrink=1.0) -> np.ndarray:
        """``n`` points of the face outline from angle ``t0`` to ``t1``, scaled by ``shrink``."""
        tt = np.linspace(t0, t1, n)
        c, s = np.cos(tt), np.sin(tt)
        ne = np.where(s > 0, self.jaw_n, 2.0)
        x = self.rx * np.sign(c) * np.abs(c) ** (2 / ne)
        y = self.ry * np.sign(s) * np.abs(s) ** (2 / ne)
        x = x * (1 + self.bulge * np.exp(-(((y - 0.55) / 0.4) ** 2)))
        return np.column_stack([x * shrink, y * shrink])


def _skin_tone(g: np.random.Generator, pale: bool) -> tuple:
    t = g.random()
    if pale:
        return colours.jitter(g, colours.mix(colours.SKIN_LIGHT, colours.SKIN_PALE, 0.55 + 0.45 * t), 5)
    base = colours.mix(colours.SKIN_DARK, colours.SKIN_MID, t * 2) if t < 0.5 else colours.mix(colours.SKIN_MID, colours.SKIN_LIGHT, (t - 0.5) * 1.6)
    return colours.jitter(g, base, 8)


def _hair_colour(labels: np.ndarray, other: tuple, jit) -> tuple:
    """The first hair-colour label set in priority order (gray, blond, brown, black),
    else ``other``; jittered by ``jit``."""
    for name in ("Gray_Hair", "Blond_Hair", "Brown_Hair", "Black_Hair"):
        if labels[INDEX[name]]:
            col = colours.HAIR[name.split("_")[0].lower()]
            break
    else:
        col = other
    return tuple(int(min(255, max(0, v + j))) for v, j in zip(col, jit))


def sample_look(labels: np.ndarray, gens: dict[str, np.random.Generator]) -> Look:
    """The look of a face with ``labels`` (bool[40]) from the skin, hair and geom
    generators of ``gens``."""
    has = lambda name: bool(labels[INDEX[name]])  # noqa: E731
    skin = _skin_tone(gens["skin"], has("Pale_Skin"))

    g = gens["hair"]
    other_hair = colours.HAIR_OTHER[int(g.integers(len(colours.HAIR_OTHER)))]
    hair_jit = g.integers(-12, 13, size=3)
    long_u, vol, crown_dy = g.random(), g.uniform(0, 0.12), g.uniform(-0.04, 0.04)
    bang_slant, bang_u = g.uniform(-0.12, 0.12), g.random()
    hair_len = g.uniform(0.5, 1.0)
    hair = _hair_colour(labels, other_hair, hair_jit)
    dark_hair = colours.mix(hair, (15, 10, 8), 0.35)
    if colours.lum(skin) - colours.lum(dark_hair) < 45:  # brows and beard must stand out from the skin
        dark_hair = colours.scale(skin, 0.42)

    g = gens["geom"]
    rx = g.uniform(0.96, 1.04) * (1.12 if has("Chubby") else 1.0) * (0.92 if has("Oval_Face") else 1.0)
    ry = 1.3 * g.uniform(0.97, 1.03) * (1.1 if has("Oval_Face") else 1.0)
    jaw_n = g.uniform(3.0, 3.6) if has("Male") else g.uniform(1.9, 2.2)
    nw = g.uniform(0.36, 0.42) * (1.3 if has("Male") else 1.0)
    asym = g.uniform(-1, 1, size=4) * 0.04 * (0.0 if has("Attractive") else 1.0)
    return Look(
        labels=labels, skin=skin, hair=hair, dark_hair=dark_hair,
        long_hair=(not has("Bald")) and long_u < (0.2 if has("Male") else 0.8),
        volume=vol, crown_dy=crown_dy, bang_slant=bang_slant, bang_phase=bang_u, hair_len=hair_len,
        rx=rx, ry=ry, jaw_n=jaw_n, nw=nw, asym=asym, bulge=0.09 if has("Chubby") else 0.0,
    )
