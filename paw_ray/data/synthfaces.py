"""SynthFaces: the embedded default data set — unaligned synthetic faces whose 40 CelebA
attributes are drawn as visible cues at known places (``docs/synthfaces.md``).

Generator (``GENERATOR_VERSION`` 2)
=================================

Labels. ``paw_ray.data.labels.sample_labels`` draws the 40 labels of a face from a
dichotomised Gaussian fitted to CelebA's marginal and pairwise statistics. The picture
follows these *clean* labels; the stored label is after ``apply_label_noise`` (each label
flipped with probability ``label_noise``), as CelebA's own labels are noisy.

Randomness. Image ``i`` of a data set with seed ``s`` uses only
``SeedSequence([s, i])``, spawned into a label stream, a noise stream and a render
stream, so its bytes do not depend on how the set is split into tasks or on
``label_noise``. Inside :func:`render_face` every component (pose, background, skin,
hair, each cue, ...) gets its own child generator, drawn in a fixed order whatever the
labels: flipping one label changes only that cue's pixels (the tests rely on this).
Pixels are reproducible for the same numpy and Pillow versions (PNG bytes also need the
same zlib); the tests check identity within one environment.

Geometry. Everything is drawn in a canonical face frame and mapped to the image by a
similarity transform (:class:`Pose`: centre, scale, in-plane rotation). Frame: the face
is an ellipse centred at (0, 0), half-width ``rx`` ~ 1, half-height ``ry`` ~ 1.3, +y
down; eyes at (+-0.4, -0.15), brows at y = -0.45, nose tip (0, 0.3), mouth (0, 0.7),
chin (0, ry), ears at the face edge at y = 0.05, hair line at y ~ -0.93, neck below the
chin, collar at y = ry + 0.38, tie below it. Pose: the face ellipse's height is
35-75 % of the image side (uniform), rotation uniform in +-30 degrees, and the centre
uniform over the positions that keep the head top, both ears and the tie's centre inside
the image (so every local cue is at least partly in the picture; hat tops, long hair and
shoulders are often cut). The image is drawn at ``k`` x the size (k = 4 up to 64 px, 3
up to 128 px, else 2) and box-filtered down, for anti-aliasing that scales with size.

Image pipeline. Background clutter (random rectangles, ellipses, bars, triangles, and
*distractors* that mimic small cues: bright dots like earrings, dotted arcs like
necklaces, short dark strokes like wrinkles, red and pink blobs like lips and cheeks) ->
long hair panels -> torso (shirt, collar) -> neck -> hair crown or bald scalp -> ears ->
face (skin tone, shading) -> jaw and skin cues -> eyes, brows, nose, mouth -> hair line,
bangs, sideburns -> hair strand texture -> glasses -> hat -> earring, necklace, tie ->
downsample -> global lighting (a linear brightness gradient in a random direction,
overall brightness, a per-channel colour cast) -> Blurry -> Gaussian sensor noise
(sigma 1-4 levels). The distractors
are there so that a whole-image network cannot answer "is there a bright dot anywhere":
it has to know where the dot is relative to the face, which is what part windows give.

Cues (sizes in face units; at 96 px one unit is 13-28 px, 20 px on average):
- 5_o_Clock_Shadow (subtle): a faint grey tint (alpha 0.1) and 50 tiny dark dots
  (radius 0.018-0.026, alpha 0.3) over the jaw band (the beard region). With
  No_Beard = 0 the face gets this stubble, denser (tint 0.2, 90 dots, alpha 0.4),
  instead of a full beard: in CelebA 72 % of 5_o_Clock_Shadow faces are labelled
  No_Beard = 0, i.e. stubble counts as a beard. (A change from the first design, see
  docs/synthfaces.md; in version 1 the beard hid the shadow, which made most positives
  invisible.)
- Arched_Eyebrows: brow centre line raised by 0.12 in an arch peaking at 55 % of the
  brow's length, outer end dropping (else nearly flat, 0.03).
- Attractive (global, subtle): positive = symmetric face and clean skin; negative =
  eyes, brows and mouth offset by up to 0.04 and 5-8 faint blemishes on the face.
- Bags_Under_Eyes (subtle): dark purple-brown crescents (0.09 thick, alpha 0.55) below
  each eye, ~1.8 px thick and 6 px wide at 96 px.
- Bald: no crown hair and no hair line; a skin scalp with a shine highlight; a short
  fringe of hair remains at the sides (keeps hair colour/texture visible).
- Bangs: a fringe with a jagged edge over the forehead down to y ~ -0.58.
- Big_Lips: lips 0.09/0.115 thick (upper/lower) and 12 % wider, vs 0.05/0.065.
- Big_Nose: nose body 0.38 wide and longer (tip at 0.36) vs 0.24 (tip at 0.3).
- Black_Hair, Blond_Hair, Brown_Hair, Gray_Hair: hair colour; none of them: auburn,
  ginger or dark red. Box: the visible hair (mask bounding box).
- Blurry (global): Gaussian blur of the whole image, radius 1.1-2 % of the side.
- Bushy_Eyebrows: brows 0.11 thick (vs 0.05) with a ragged top.
- Chubby (global): face 12 % wider, cheek bulge at the jaw.
- Double_Chin: a skin crescent 0.14 below the chin, outlined, with a dark crease arc.
- Eyeglasses: two rims (0.05 thick) around the eyes, a bridge and short arms; 25 % of
  them with tinted lenses.
- Goatee: a dark patch (0.34 x 0.3) on the chin.
- Heavy_Makeup: coloured eye shadow above each eye (alpha 0.75) and a thick liner.
- High_Cheekbones (subtle): light highlights (alpha 0.35) on the upper cheeks with a
  faint shadow line beneath.
- Male (global): squarer jaw (super-ellipse), neck 30 % thicker; also (not a label) a
  long-hair probability of 0.2 vs 0.8.
- Mouth_Slightly_Open: a dark gap (0.08 at the centre) between the lips, teeth showing
  when also Smiling.
- Mustache: a dark band (~0.09 thick, 0.6 wide) above the upper lip.
- Narrow_Eyes: eye openings 0.035/0.03 high (upper/lower) vs 0.08/0.065.
- No_Beard: negative = a dark beard over the jaw band and chin, or dense stubble when
  5_o_Clock_Shadow is also positive (the region box in both cases: the jaw band from
  y = 0.2 to the chin).
- Oval_Face (global): face 8 % narrower and 10 % longer.
- Pale_Skin (global): skin from the palest tones (else from a dark-to-light range that
  stops short of them).
- Pointy_Nose: a shaded triangular tip reaching 0.15 below the nose tip line (else a
  rounded U with a light highlight on the tip).
- Receding_Hairline: the hair line pulled back 0.3 at the temples, showing skin notches.
- Rosy_Cheeks: pink discs (radius 0.16, alpha 0.4) on the cheeks.
- Sideburns: dark strips 0.15 wide along the face edge in front of the ears.
- Smiling: mouth corners raised by 0.09 (else flat or down by up to 0.03).
- Straight_Hair / Wavy_Hair: straight or wavy strand lines (lighter or darker than the
  hair) over the hair mask; neither: plain hair.
- Wearing_Earrings (small): ONE earring, at the ear lobe of a random side: a stud
  (radius 0.065), hoop or drop, in gold, silver or a bright colour; ~2-4 px at 96 px.
  (A change from the first design, see docs/synthfaces.md: one visible earring, as in
  CelebA's partly turned faces, so its box is tight around the small cue instead of
  spanning the whole face.)
- Wearing_Hat: a brimmed hat or a beanie over the head top.
- Wearing_Lipstick: red, deep red or pink lips (else lips a little darker than skin).
- Wearing_Necklace (small): 9-13 beads (radius 0.05, ~1 px at 96 px) on a thin chain in
  an arc across the neck's base.
- Wearing_Necktie: knot and blade below the collar, in a colour contrasting the shirt.
- Young (subtle): negative = three forehead lines and crow's feet at both eye corners
  (0.03 wide, alpha 0.7); positive = none.

Conflict priority (the drawing follows one; the stored label stays what was sampled):
hair colour Gray_Hair > Blond_Hair > Brown_Hair > Black_Hair; texture Wavy_Hair >
Straight_Hair; Bald hides Bangs and Receding_Hairline (and forces short hair);
Wearing_Hat covers the crown (hair or bald scalp) and the top of the hair line;
5_o_Clock_Shadow with No_Beard = 0 is drawn as stubble, not a full beard; the Goatee and
Mustache patches are drawn over a beard (and merge into it); Bangs cover
the forehead wrinkle lines of Young = 0 (the crow's feet stay).

Data check (2026-11, one H200, generator version 2; the script is not in the repo).
SNet3 (0.31M parameters, GAP) on the whole 96 px image vs 34 part SNet3s on 28 x 28
windows centred on the ground-truth boxes (oracle localisation), late fusion fitted on
val; mean test accuracy over the 34 local attributes: 16,000 images / 25 epochs: whole
0.968, parts 0.973, fused 0.989 (balanced 0.909 / 0.942 / 0.972); 6,000 images / 10
epochs (demo-like): whole 0.900, parts 0.967, fused 0.977 (balanced 0.690 / 0.920 /
0.939). Biggest part gains: Wearing_Earrings (the whole net stays near the majority
rate), Big_Lips, Mouth_Slightly_Open, Smiling, Pointy_Nose, Goatee, necklace, bags; the
whole net wins on hair colour and texture (large regions), which fusion keeps. Whole
net on the global attributes (16,000 / 25): Attractive 0.79, Oval_Face 0.90, Male 0.96.

Boxes (``part_boxes_gt``). For every local attribute: the image-space bounding box of
what the cue draws, or, when the cue is absent or hidden, of the geometry it would have
drawn (a negative Eyeglasses still gets the eye region, No_Beard positive the jaw band).
Hair attributes get the bounding box of the visible hair. Bilateral cues (eyes, brows,
cheeks, sideburns, temples) get one box around both sides. Boxes are normalised to [0, 1]
over the image and clipped to it; global attributes get [0, 0, 0, 0].
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageChops, ImageDraw, ImageFilter

from paw_ray.attributes import ATTRIBUTES, LOCAL_MASK, NUM_ATTRIBUTES
from paw_ray.data import labels as label_model
from paw_ray.data import shards
from paw_ray.errors import PawRayError

__all__ = [
    "GENERATOR_VERSION",
    "SynthError",
    "Pose",
    "sample_pose",
    "render_face",
    "render_example",
    "encode_png",
    "synthesize",
    "split_sizes",
]

GENERATOR_VERSION = 2
DEFAULT_CHUNK = 500
_TAU = 2.0 * math.pi
_I = {name: i for i, name in enumerate(ATTRIBUTES)}
_LOCAL = np.array(LOCAL_MASK, dtype=bool)


class SynthError(PawRayError, ValueError):
    """A bad argument to SynthFaces; the message names it."""


# --------------------------------------------------------------------------- pose

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


# --------------------------------------------------------------------------- shapes

def _ell(cx, cy, rx, ry, n=28, t0=0.0, t1=_TAU, rot=0.0) -> np.ndarray:
    closed = abs((t1 - t0) - _TAU) < 1e-9
    t = np.linspace(t0, t1, n, endpoint=not closed)
    x, y = rx * np.cos(t), ry * np.sin(t)
    if rot:
        c, s = math.cos(rot), math.sin(rot)
        x, y = c * x - s * y, s * x + c * y
    return np.column_stack([cx + x, cy + y])


def _rect(x0, y0, x1, y1) -> np.ndarray:
    return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], dtype=np.float64)


def _thick(pts, width) -> np.ndarray:
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


def _ring(pts, width) -> np.ndarray:
    """A closed ring (even-odd fill) of ``width`` along the closed polyline ``pts``."""
    p = np.asarray(pts, dtype=np.float64)
    d = np.roll(p, -1, axis=0) - np.roll(p, 1, axis=0)
    d /= np.maximum(np.linalg.norm(d, axis=1, keepdims=True), 1e-9)
    nrm = np.column_stack([-d[:, 1], d[:, 0]]) * (width / 2)
    a, b = p + nrm, p - nrm
    return np.concatenate([a, a[:1], b[:1], b[::-1]])


def _mix(c1, c2, t) -> tuple:
    return tuple(int(round(a + (b - a) * t)) for a, b in zip(c1, c2))


def _scale(c, f) -> tuple:
    return tuple(int(min(255, max(0, round(v * f)))) for v in c)


def _rgba(c, a) -> tuple:
    return (int(c[0]), int(c[1]), int(c[2]), int(round(255 * a)))


def _lum(c) -> float:
    return 0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2]


def _jit(g: np.random.Generator, c, amount=14) -> tuple:
    return tuple(int(min(255, max(0, v + g.integers(-amount, amount + 1)))) for v in c)


class _Canvas:
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
        return np.asarray(pts, dtype=np.float64) @ self.m + self.t

    def mark(self, attrs, pts) -> None:
        q = self.px(pts)
        lo, hi = q.min(axis=0), q.max(axis=0)
        for a in attrs:
            np.minimum(self.lo[a], lo, out=self.lo[a])
            np.maximum(self.hi[a], hi, out=self.hi[a])

    def fill(self, pts, color, attrs=(), show=True, hair=None) -> None:
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
        out = np.zeros((NUM_ATTRIBUTES, 4), dtype=np.float64)
        ok = np.isfinite(self.lo[:, 0])
        out[ok, :2] = self.lo[ok]
        out[ok, 2:] = self.hi[ok]
        out = np.clip(out / self.S, 0.0, 1.0)
        out[~_LOCAL] = 0.0
        return out.astype(np.float32)


# --------------------------------------------------------------------------- palettes

_HAIR = {
    "black": (24, 21, 20),
    "brown": (98, 60, 34),
    "blond": (222, 186, 104),
    "gray": (168, 168, 164),
}
_HAIR_OTHER = ((136, 48, 26), (186, 92, 42), (110, 30, 36))
_EYE = ((70, 45, 25), (50, 90, 150), (70, 110, 60), (30, 25, 25))
_LIPSTICK = ((200, 22, 42), (150, 10, 45), (225, 60, 110), (185, 30, 70))
_SHADOW = ((120, 60, 140), (60, 90, 175), (150, 90, 50), (205, 90, 135), (70, 55, 70))
_JEWEL = ((235, 195, 70), (230, 230, 236), (250, 250, 240), (60, 200, 230), (230, 60, 160))
_SKIN_DARK, _SKIN_MID, _SKIN_LIGHT = (92, 58, 40), (192, 140, 104), (236, 196, 168)
_SKIN_PALE = (248, 226, 214)
_COMPONENTS = (
    "pose", "bg", "skin", "geom", "hair", "texture", "eyes", "brows", "nose", "mouth",
    "beard", "shadow", "cheeks", "wrinkles", "blemish", "glasses", "hat", "earring",
    "necklace", "clothes", "light", "blur",
)


def _supersample(size: int) -> int:
    return 4 if size <= 64 else 3 if size <= 128 else 2


# --------------------------------------------------------------------------- renderer

def render_face(rng: np.random.Generator, labels, size: int, pose: Pose | None = None):
    """Draw one face whose cues follow ``labels`` (40 x 0/1, CelebA order).

    Returns ``(image, boxes)``: a ``size`` x ``size`` RGB ``PIL.Image`` and
    ``float32[40, 4]`` normalised ``x0, y0, x1, y1`` ground-truth cue boxes (zeros for
    global attributes). ``pose`` overrides the random pose (the rest stays as ``rng``
    draws it)."""
    lab = np.asarray(labels).astype(bool).ravel()
    if lab.shape != (NUM_ATTRIBUTES,):
        raise SynthError(f"labels must hold {NUM_ATTRIBUTES} values, got {lab.size}")
    A = lambda name: bool(lab[_I[name]])  # noqa: E731
    seeds = rng.integers(0, 2**63 - 1, size=len(_COMPONENTS))
    G = {name: np.random.default_rng(int(s)) for name, s in zip(_COMPONENTS, seeds)}
    g = G["pose"]
    p = sample_pose(g, size)
    if pose is None:
        pose = p
    k = _supersample(size)

    # ---- colours and global geometry
    g = G["skin"]
    t = g.random()
    if A("Pale_Skin"):
        skin = _jit(g, _mix(_SKIN_LIGHT, _SKIN_PALE, 0.55 + 0.45 * t), 5)
    else:
        skin = _jit(g, _mix(_SKIN_DARK, _SKIN_MID, t * 2) if t < 0.5 else _mix(_SKIN_MID, _SKIN_LIGHT, (t - 0.5) * 1.6), 8)
    g = G["hair"]
    other_hair = _HAIR_OTHER[int(g.integers(len(_HAIR_OTHER)))]
    hair_jit = g.integers(-12, 13, size=3)
    long_u, vol, crown_dy, bang_slant, bang_u = g.random(), g.uniform(0, 0.12), g.uniform(-0.04, 0.04), g.uniform(-0.12, 0.12), g.random()
    hair_len = g.uniform(0.5, 1.0)
    for name in ("Gray_Hair", "Blond_Hair", "Brown_Hair", "Black_Hair"):
        if A(name):
            hair_col = _HAIR[name.split("_")[0].lower()]
            break
    else:
        hair_col = other_hair
    hair_col = tuple(int(min(255, max(0, v + j))) for v, j in zip(hair_col, hair_jit))
    dark_hair = _mix(hair_col, (15, 10, 8), 0.35)  # brows, beard, sideburns
    if _lum(skin) - _lum(dark_hair) < 45:
        dark_hair = _scale(skin, 0.42)

    g = G["geom"]
    rx = g.uniform(0.96, 1.04) * (1.12 if A("Chubby") else 1.0) * (0.92 if A("Oval_Face") else 1.0)
    ry = 1.3 * g.uniform(0.97, 1.03) * (1.1 if A("Oval_Face") else 1.0)
    jaw_n = g.uniform(3.0, 3.6) if A("Male") else g.uniform(1.9, 2.2)
    nw = g.uniform(0.36, 0.42) * (1.3 if A("Male") else 1.0)
    asym = g.uniform(-1, 1, size=4) * 0.04 * (0.0 if A("Attractive") else 1.0)
    bulge = 0.09 if A("Chubby") else 0.0

    def half_width(y):
        y = np.asarray(y, dtype=np.float64)
        n = np.where(y > 0, jaw_n, 2.0)
        u = np.clip(np.abs(y) / ry, 0, 1)
        return rx * (1 - u**n) ** (1 / n) * (1 + bulge * np.exp(-(((y - 0.55) / 0.4) ** 2)))

    def outline(t0, t1, n, shrink=1.0):
        tt = np.linspace(t0, t1, n)
        c, s = np.cos(tt), np.sin(tt)
        ne = np.where(s > 0, jaw_n, 2.0)
        x = rx * np.sign(c) * np.abs(c) ** (2 / ne)
        y = ry * np.sign(s) * np.abs(s) ** (2 / ne)
        x = x * (1 + bulge * np.exp(-(((y - 0.55) / 0.4) ** 2)))
        return np.column_stack([x * shrink, y * shrink])

    # ---- background
    g = G["bg"]
    bg = tuple(int(v) for v in g.integers(20, 236, size=3))
    cv = _Canvas(size, k, pose, bg)
    _clutter(cv, g)

    long_hair = (not A("Bald")) and long_u < (0.2 if A("Male") else 0.8)
    HAIR = [_I[n] for n in ("Black_Hair", "Blond_Hair", "Brown_Hair", "Gray_Hair", "Straight_Hair", "Wavy_Hair")]

    # ---- long hair (side panels behind everything of the figure but the background)
    bot = ry + 0.5 + hair_len
    if long_hair:
        for s in (-1, 1):
            panel = np.array([[s * 0.6, -0.6], [s * (rx + 0.28), -0.15], [s * (rx + 0.36), bot - 0.3],
                              [s * (rx + 0.22), bot], [s * (nw + 0.1), bot - 0.1], [s * (nw + 0.05), 0.2]])
            cv.fill(panel, hair_col, hair=255)

    # ---- torso, collar
    g = G["clothes"]
    shirt = tuple(int(v) for v in g.integers(20, 236, size=3))
    tie_col = tuple(int(v) for v in g.integers(0, 256, size=3))
    if abs(_lum(tie_col) - _lum(shirt)) < 70:
        tie_col = _scale(tie_col, 0.3) if _lum(shirt) > 120 else _mix(tie_col, (255, 255, 255), 0.7)
    tie_stripes = g.random() < 0.4
    cy0 = ry + 0.38
    torso = np.array([[-nw - 0.05, cy0], [-1.45, cy0 + 0.22], [-2.1, cy0 + 0.6], [-2.4, cy0 + 3.0],
                      [2.4, cy0 + 3.0], [2.1, cy0 + 0.6], [1.45, cy0 + 0.22], [nw + 0.05, cy0]])
    cv.fill(torso, shirt, hair=0)
    neck_col = _scale(skin, 0.86)
    # open collar (a skin V) without a tie: part of the tie's region
    cv.fill(np.array([[-nw * 0.85, cy0 - 0.02], [0, cy0 + 0.42], [nw * 0.85, cy0 - 0.02]]), neck_col,
            attrs=[_I["Wearing_Necktie"]], show=not A("Wearing_Necktie"))
    collar = _mix(shirt, (255, 255, 255), 0.55)
    for s in (-1, 1):
        cv.fill(np.array([[s * (nw + 0.12), cy0 - 0.06], [s * 0.05, cy0 + 0.06], [s * 0.2, cy0 + 0.32],
                          [s * (nw + 0.2), cy0 + 0.18]]), collar)

    # ---- neck
    neck = np.array([[-nw, 0.4], [nw, 0.4], [nw * 1.06, cy0 + 0.02], [-nw * 1.06, cy0 + 0.02]])
    cv.fill(neck, neck_col, hair=0)

    # ---- hair crown (behind the face) or bald scalp
    crown = _ell(0, -0.35 + crown_dy, rx + 0.14 + vol, 1.28 + vol, 40)
    if A("Bald"):
        scalp = _ell(0, -0.35, rx + 0.04, 1.13, 40)
        for s in (-1, 1):  # side fringe
            cv.fill(_ell(s * (rx - 0.02), -0.1, 0.2, 0.42, 20), hair_col, hair=255)
        cv.fill(scalp, skin, hair=0)
    elif long_hair:
        cv.fill(crown, hair_col, hair=255)
    else:
        cv.fill(crown[crown[:, 1] < 0.05], hair_col, hair=255)
    bald_region = _ell(0, -0.35, rx + 0.04, 1.13, 40)
    cv.mark([_I["Bald"]], bald_region[bald_region[:, 1] < -0.8])

    # ---- ears
    ear_y = 0.05
    for s in (-1, 1):
        ex = s * (float(half_width(ear_y)) + 0.03)
        cv.fill(_ell(ex, ear_y, 0.13, 0.23, 18), _scale(skin, 0.93), hair=0)
        cv.fill(_thick(_ell(ex, ear_y + 0.01, 0.07, 0.14, 10, -1.9 if s > 0 else -1.2, 1.9 if s > 0 else 4.4), 0.025),
                _rgba(_scale(skin, 0.6), 0.7))

    # ---- face
    face = outline(0, _TAU, 72)
    cv.fill(face, skin, hair=0)
    cv.fill(outline(0, _TAU, 48, 0.8) + [0.08, -0.1], _rgba(_mix(skin, (255, 255, 255), 0.25), 0.3))
    # jaw band (beard region): outer along the outline from y = 0.2, inner curve
    ta = math.asin(min(1.0, (0.2 / ry))) if jaw_n == 2 else math.asin(min(1.0, (0.2 / ry) ** (jaw_n / 2)))
    outer = outline(ta, math.pi - ta, 24, 0.985)
    inner = np.column_stack([outer[:, 0] * 0.7, 0.2 + (outer[:, 1] - 0.2) * 0.6])
    band = np.concatenate([outer, inner[::-1]])

    # Double_Chin: skin crescent under the chin and a crease
    dc_y = ry - 0.06
    dc = _ell(0, dc_y, 0.44, 0.2, 20, 0.15, math.pi - 0.15)
    crease = _ell(0, ry - 0.1, 0.36, 0.14, 14, 0.5, math.pi - 0.5)
    dc_show = A("Double_Chin")
    cv.fill(dc, skin, attrs=[_I["Double_Chin"]], show=dc_show)
    cv.fill(_thick(dc[2:-2], 0.04), _rgba(_scale(skin, 0.5), 0.85), attrs=[_I["Double_Chin"]], show=dc_show)
    cv.fill(_thick(crease, 0.035), _rgba(_scale(skin, 0.55), 0.8), attrs=[_I["Double_Chin"]], show=dc_show)

    # Attractive = 0: blemishes
    g = G["blemish"]
    pos = np.column_stack([g.uniform(-0.7, 0.7, 8), g.uniform(-0.8, 0.9, 8)])
    rads, nb = g.uniform(0.035, 0.06, 8), int(g.integers(5, 9))
    if not A("Attractive"):
        for (bx, by), r in list(zip(pos, rads))[:nb]:
            cv.fill(_ell(bx, by, r, r * 0.9, 10), _rgba((150, 70, 60), 0.35))

    # 5 o'clock shadow: tint and speckle over the jaw band; with No_Beard = 0 it is the
    # beard itself (stubble, denser), as CelebA labels stubble "not No_Beard"
    g = G["shadow"]
    sp_s, sp_d, sp_r = g.random(90), g.random(90), g.uniform(0.018, 0.026, 90)
    cv.mark([_I["5_o_Clock_Shadow"], _I["No_Beard"]], band)
    stubble = A("5_o_Clock_Shadow") and not A("No_Beard")
    if A("5_o_Clock_Shadow"):
        if stubble:
            sp_s, sp_d, sp_r = sp_s, sp_d, sp_r * 1.15
        else:
            sp_s, sp_d, sp_r = sp_s[:50], sp_d[:50], sp_r[:50]
        cv.fill(band, _rgba((55, 55, 65), 0.2 if stubble else 0.1))
        idx = sp_s * (len(outer) - 1)
        i0 = np.floor(idx).astype(int)
        fr = idx - i0
        i1 = np.minimum(i0 + 1, len(outer) - 1)
        po = outer[i0] * (1 - fr[:, None]) + outer[i1] * fr[:, None]
        pi = inner[i0] * (1 - fr[:, None]) + inner[i1] * fr[:, None]
        pts = po * (1 - sp_d[:, None] * 0.9) + pi * (sp_d[:, None] * 0.9)
        col = _rgba((35, 30, 35), 0.4 if stubble else 0.3)
        for (x, y), r in zip(pts, sp_r):
            cv.fill(np.array([[x - r, y], [x, y - r], [x + r, y], [x, y + r]]), col)

    # beard (No_Beard = 0)
    g = G["beard"]
    jag = g.uniform(-0.04, 0.04, len(inner))
    inner_j = inner + np.column_stack([np.zeros(len(inner)), jag])
    cv.fill(np.concatenate([outer, inner_j[::-1]]), _rgba(dark_hair, 0.92), attrs=[_I["No_Beard"]],
            show=not A("No_Beard") and not stubble)

    # cheeks
    g = G["cheeks"]
    ch_rot = g.uniform(0.2, 0.45)
    for s in (-1, 1):
        hl = _ell(s * 0.55, 0.06, 0.21, 0.075, 16, rot=-s * ch_rot)
        sh = _ell(s * 0.56, 0.1, 0.2, 0.1, 10, 0.3, math.pi - 0.3, rot=-s * ch_rot)
        show = A("High_Cheekbones")
        cv.fill(hl, _rgba((255, 246, 236), 0.38), attrs=[_I["High_Cheekbones"]], show=show)
        cv.fill(_thick(sh, 0.04), _rgba(_scale(skin, 0.6), 0.3), attrs=[_I["High_Cheekbones"]], show=show)
        cv.fill(_ell(s * 0.55, 0.36, 0.16, 0.15, 18), _rgba((232, 78, 100), 0.42),
                attrs=[_I["Rosy_Cheeks"]], show=A("Rosy_Cheeks"))

    # Young = 0: wrinkles (forehead lines may be covered by bangs later)
    g = G["wrinkles"]
    wl = g.uniform(0.28, 0.42, 3)
    wc = g.uniform(-0.04, 0.04, 3)
    wcol = _rgba(_scale(skin, 0.55), 0.7)
    old = not A("Young")
    for j, y in enumerate((-0.64, -0.72, -0.8)):
        x = np.linspace(-wl[j], wl[j], 9)
        cv.fill(_thick(np.column_stack([x, y + wc[j] * (x / wl[j]) ** 2 - 0.02 * np.cos(x * 3)]), 0.03), wcol,
                attrs=[_I["Young"]], show=old)
    for s in (-1, 1):
        for dy in (-0.09, 0.0, 0.09):
            cv.fill(_thick(np.array([[s * 0.6, -0.15 + dy * 0.3], [s * 0.73, -0.15 + dy]]), 0.03), wcol,
                    attrs=[_I["Young"]], show=old)

    # ---- eyes
    g = G["eyes"]
    iris_col = _EYE[int(g.integers(len(_EYE)))]
    gaze = g.uniform(-0.03, 0.03, 2)
    sh_col = _SHADOW[int(g.integers(len(_SHADOW)))]
    narrow = A("Narrow_Eyes")
    h_up, h_lo, ew = (0.035, 0.03, 0.16) if narrow else (0.08, 0.065, 0.16)
    xs = np.linspace(-ew, ew, 15)
    prof = (1 - (xs / ew) ** 2) ** 0.8
    for s, dy in ((-1, asym[0]), (1, -asym[0])):
        ecx, ecy = s * 0.4, -0.15 + dy
        up = np.column_stack([ecx + xs, ecy - h_up * prof])
        lo = np.column_stack([ecx + xs, ecy + h_lo * prof])
        # Heavy_Makeup: eye shadow above the lid
        xw = np.linspace(-ew * 1.15, ew * 1.25, 15) * 1.0
        pw = (1 - np.clip(xw / (ew * 1.25), -1, 1) ** 2) ** 0.5
        top = np.column_stack([ecx + s * xw, ecy - h_up * np.interp(xw, xs, prof) - 0.02 - 0.1 * pw])
        bottom = np.column_stack([ecx + s * xw, ecy - h_up * np.interp(xw, xs, prof) + 0.01])
        cv.fill(np.concatenate([top, bottom[::-1]]), _rgba(sh_col, 0.75), attrs=[_I["Heavy_Makeup"]],
                show=A("Heavy_Makeup"))
        # Bags_Under_Eyes
        xb = xs * 0.95
        pb = (1 - (xb / ew) ** 2) ** 0.7
        b_top = np.column_stack([ecx + xb, ecy + h_lo * pb + 0.025])
        b_bot = np.column_stack([ecx + xb, ecy + h_lo * pb + 0.025 + 0.09 * pb])
        cv.fill(np.concatenate([b_top, b_bot[::-1]]), _rgba(_mix(_scale(skin, 0.5), (90, 40, 90), 0.3), 0.6), attrs=[_I["Bags_Under_Eyes"]],
                show=A("Bags_Under_Eyes"))
        # the eye
        almond = np.concatenate([up, lo[::-1]])
        # the eye region whatever its opening
        cv.mark([_I["Narrow_Eyes"]], _rect(ecx - ew, ecy - 0.08 - 0.0125, ecx + ew, ecy + 0.065))
        cv.fill(almond, (238, 236, 230), attrs=[_I["Narrow_Eyes"]])
        cc = _ell(ecx + gaze[0], ecy + gaze[1] * 0.3, 0.062, 0.062, 14)
        lim_up = np.interp(cc[:, 0] - ecx, xs, ecy - h_up * prof)
        lim_lo = np.interp(cc[:, 0] - ecx, xs, ecy + h_lo * prof)
        cc[:, 1] = np.clip(cc[:, 1], lim_up, lim_lo)
        cv.fill(cc, iris_col)
        pc = _ell(ecx + gaze[0], ecy + gaze[1] * 0.3, 0.028, min(0.028, h_up), 10)
        cv.fill(pc, (12, 10, 10))
        liner = _thick(up, 0.05 if A("Heavy_Makeup") else 0.025)
        cv.fill(liner, (30, 22, 22), attrs=[_I["Narrow_Eyes"], _I["Heavy_Makeup"]])
        cv.mark([_I["Eyeglasses"]], almond)

    # ---- brows
    g = G["brows"]
    bjag = g.uniform(-0.015, 0.015, 13)
    for s, dy in ((-1, asym[1]), (1, -asym[1])):
        u = np.linspace(0, 1, 13)
        x = s * (0.16 + 0.5 * u)
        if A("Arched_Eyebrows"):
            y = -0.45 - 0.12 * np.sin(math.pi * np.clip(u / 1.1, 0, 1) ** 0.75) + 0.06 * u
        else:
            y = -0.45 - 0.03 * np.sin(math.pi * u)
        y = y + dy
        th = (0.11 if A("Bushy_Eyebrows") else 0.05) * (1 - 0.45 * u)
        jj = bjag * (2.0 if A("Bushy_Eyebrows") else 0.0)
        poly = np.concatenate([np.column_stack([x, y - th / 2 + jj]), np.column_stack([x, y + th / 2])[::-1]])
        cv.fill(poly, _rgba(dark_hair, 0.95), attrs=[_I["Arched_Eyebrows"], _I["Bushy_Eyebrows"]])

    # ---- nose
    g = G["nose"]
    nose_dark = _scale(skin, 0.62)
    big = A("Big_Nose")
    w, tip = (0.19, 0.36) if big else (0.12, 0.3)
    NOSE = [_I["Big_Nose"], _I["Pointy_Nose"]]
    pointy = A("Pointy_Nose")
    if pointy:
        bottom = np.array([[w * 0.55, tip + 0.02], [0, tip + 0.15], [-w * 0.55, tip + 0.02]])
    else:
        bottom = _ell(0, tip + 0.01, w * 0.55, 0.05, 9, 0.0, math.pi)
    body = np.concatenate([np.array([[-0.04, -0.05], [0.04, -0.05], [w, tip - 0.01]]), bottom, np.array([[-w, tip - 0.01]])])
    cv.fill(body, _rgba(_scale(skin, 0.86), 0.55), attrs=NOSE)
    for s in (-1, 1):
        cv.fill(_thick(np.array([[s * 0.04, -0.05], [s * w * 0.8, tip - 0.1], [s * w, tip - 0.01]]), 0.03),
                _rgba(nose_dark, 0.45), attrs=NOSE)
        cv.fill(_ell(s * w * 0.55, tip, 0.045, 0.026, 10), _rgba((40, 25, 25), 0.75), attrs=NOSE)
    if pointy:  # a shaded triangular tip
        cv.fill(np.array([[w * 0.45, tip + 0.02], [0, tip + 0.14], [-w * 0.45, tip + 0.02]]), _rgba(nose_dark, 0.6),
                attrs=NOSE)
    else:  # a round, lit tip
        cv.fill(_ell(0, tip - 0.03, 0.07, 0.055, 12), _rgba((255, 246, 236), 0.4), attrs=NOSE)
    cv.fill(_thick(bottom, 0.035), _rgba(nose_dark, 0.85), attrs=NOSE)

    # ---- mouth
    g = G["mouth"]
    lipstick, flat = _LIPSTICK[int(g.integers(len(_LIPSTICK)))], g.uniform(-0.03, 0.01)
    lip_col = lipstick if A("Wearing_Lipstick") else _scale(_mix(skin, (170, 80, 80), 0.35), 0.85)
    curve = 0.09 if A("Smiling") else flat
    mx = asym[2]
    mw = 0.27 if A("Big_Lips") else 0.24
    tu, tl = (0.09, 0.115) if A("Big_Lips") else (0.05, 0.065)
    gap = 0.08 if A("Mouth_Slightly_Open") else 0.0
    xm = np.linspace(-mw, mw, 17)
    um = xm / mw
    cen = 0.7 + asym[3] * 0.5 - curve * um**2
    gp = gap * (1 - um**2)
    MOUTH = [_I[n] for n in ("Big_Lips", "Mouth_Slightly_Open", "Smiling", "Wearing_Lipstick")]
    # the mouth region whatever its shape: corners anywhere from raised to lowered
    cv.mark(MOUTH, _rect(mx - mw, 0.7 + asym[3] * 0.5 - 0.09 - tu, mx + mw, 0.7 + asym[3] * 0.5 + 0.03 + tl + gap))
    up_bot = np.column_stack([mx + xm, cen - gp / 2])
    up_top = np.column_stack([mx + xm, cen - gp / 2 - tu * (1 - um**2) ** 0.5 * (1 - 0.3 * np.exp(-((xm / 0.05) ** 2)))])
    lo_top = np.column_stack([mx + xm, cen + gp / 2])
    lo_bot = np.column_stack([mx + xm, cen + gp / 2 + tl * (1 - um**2) ** 0.6])
    if gap:
        cv.fill(np.concatenate([up_bot, lo_top[::-1]]), (45, 15, 20), attrs=MOUTH)
        if A("Smiling"):
            teeth_bot = up_bot[3:-3] * 0.55 + lo_top[3:-3] * 0.45
            cv.fill(np.concatenate([up_bot[3:-3], teeth_bot[::-1]]), (235, 232, 225))
    cv.fill(np.concatenate([up_top, up_bot[::-1]]), lip_col, attrs=MOUTH)
    cv.fill(np.concatenate([lo_top, lo_bot[::-1]]), _scale(lip_col, 1.06), attrs=MOUTH)
    cv.fill(_thick(up_bot if not gap else up_bot[1:-1], 0.018), _rgba((60, 25, 25), 0.8))

    # Mustache, Goatee
    must = np.array([[-0.31, 0.66], [-0.2, 0.58], [0, 0.54], [0.2, 0.58], [0.31, 0.66],
                     [0.2, 0.645], [0, 0.625], [-0.2, 0.645]]) + [mx, 0]
    cv.fill(must, _rgba(dark_hair, 0.93), attrs=[_I["Mustache"]], show=A("Mustache"))
    gy = 0.7 + (ry - 0.7) * 0.55
    cv.fill(_ell(mx * 0.5, gy, 0.17, 0.15, 18), _rgba(dark_hair, 0.93), attrs=[_I["Goatee"]], show=A("Goatee"))

    # ---- hair line, bangs, sideburns
    xh = np.linspace(-0.97, 0.97, 31) * rx
    yh = -0.93 + 0.38 * (np.abs(xh) / rx) ** 3
    recede = 0.3 * np.exp(-(((np.abs(xh) - 0.55) / 0.17) ** 2))
    top_y = -ry * np.sqrt(np.clip(1 - (xh / rx) ** 2, 0, 1))
    cap_region = None
    notch = np.abs(xh) > 0.25
    cv.mark([_I["Receding_Hairline"]], np.column_stack([xh[notch], (yh - recede)[notch]]))
    cv.mark([_I["Receding_Hairline"]], np.column_stack([xh[notch], yh[notch]]))
    if not A("Bald"):
        yl = yh - (recede if A("Receding_Hairline") else 0.0)
        yl = np.maximum(yl, top_y * 1.02)
        cap_top = np.column_stack([xh[::-1] * 1.02, top_y[::-1] * 1.03 - 0.01])
        cap_region = np.concatenate([np.column_stack([xh, yl]), cap_top])
        cv.fill(cap_region, hair_col, hair=255)
    # bangs
    nt = 9
    xb = np.linspace(-0.8, 0.8, 2 * nt + 1)
    yb = -0.58 + bang_slant * xb + np.where(np.arange(2 * nt + 1) % 2 == 0, 0.05, -0.04) + 0.02 * np.sin(xb * 7 + bang_u * 6)
    ybt = -0.93 + 0.38 * (np.abs(xb) / rx) ** 3 - 0.05
    bangs = np.concatenate([np.column_stack([xb, yb]), np.column_stack([xb[::-1], ybt[::-1]])])
    cv.fill(bangs, hair_col, attrs=[_I["Bangs"]], show=A("Bangs") and not A("Bald"), hair=255)
    # sideburns
    ys = np.linspace(-0.5, 0.42, 10)
    hw = half_width(ys)
    tap = np.linspace(0.15, 0.1, 10)
    for s in (-1, 1):
        sb = np.concatenate([np.column_stack([s * (hw - 0.01), ys]), np.column_stack([s * (hw - 0.01 - tap), ys])[::-1]])
        cv.fill(sb, _rgba(dark_hair, 0.95), attrs=[_I["Sideburns"]], show=A("Sideburns"))

    # ---- hair strand texture over the hair mask
    g = G["texture"]
    phase = g.uniform(0, _TAU, 40)
    light = g.random() < 0.5
    if A("Wavy_Hair") or A("Straight_Hair"):
        wavy = A("Wavy_Hair")
        tex = Image.new("L", (cv.S, cv.S), 0)
        td = ImageDraw.Draw(tex)
        yy = np.linspace(-2.2, ry + 1.6, 40)
        x0 = np.arange(-1.9, 1.91, 0.13)[:, None]
        x = x0 * (1 + 0.12 * (yy + 2.2)) * 0.8
        if wavy:
            x = x + 0.075 * np.sin(yy * _TAU / 0.42 + phase[: len(x0), None])
        # strands as thick polylines: offset along the normal of each strand (all at once)
        dx = np.gradient(x, yy, axis=1)
        ln = np.sqrt(1 + dx * dx)
        nx, ny = 0.0225 / ln, -0.0225 * dx / ln
        left = np.stack([x + nx, yy + ny], axis=-1)
        right = np.stack([x - nx, yy - ny], axis=-1)[:, ::-1]
        polys = cv.px(np.concatenate([left, right], axis=1).reshape(-1, 2)).reshape(len(x0), -1) - 0.5
        for poly in polys.tolist():
            td.polygon(poly, fill=190)
        strand = _scale(hair_col, 1.45) if (light and _lum(hair_col) < 150) or _lum(hair_col) < 60 else _scale(hair_col, 0.55)
        cv.img.paste(strand, mask=ImageChops.multiply(tex, cv.hair))

    # ---- glasses
    g = G["glasses"]
    frame = ((20, 20, 20), (90, 55, 30), (160, 160, 170), (140, 20, 30))[int(g.integers(4))]
    tinted, lens_ry, lens_n = g.random() < 0.25, g.uniform(0.18, 0.23), g.uniform(2.0, 4.0)
    GL = [_I["Eyeglasses"]]
    show = A("Eyeglasses")
    for s in (-1, 1):
        tt = np.linspace(0, _TAU, 32, endpoint=False)
        c, sn = np.cos(tt), np.sin(tt)
        lens = np.column_stack([s * 0.4 + 0.25 * np.sign(c) * np.abs(c) ** (2 / lens_n),
                                -0.14 + lens_ry * np.sign(sn) * np.abs(sn) ** (2 / lens_n)])
        if tinted:
            cv.fill(lens, _rgba((25, 25, 35), 0.75), show=show)
        cv.fill(_ring(lens, 0.05), frame, attrs=GL, show=show)
        cv.fill(_thick(np.array([[s * 0.65, -0.17], [s * 0.84, -0.15]]), 0.045), frame, attrs=GL, show=show)
    cv.fill(_thick(_ell(0, -0.1, 0.16, 0.07, 9, math.pi + 0.2, _TAU - 0.2), 0.04), frame, attrs=GL, show=show)

    # ---- hat
    g = G["hat"]
    hat_col = tuple(int(v) for v in g.integers(10, 246, size=3))
    band_col = tuple(int(v) for v in g.integers(10, 246, size=3))
    beanie = g.random() < 0.4
    hat_h = g.uniform(0.0, 1.0)
    HAT = [_I["Wearing_Hat"]]
    show = A("Wearing_Hat")
    hw_hat = rx + 0.16 + vol  # covers the hair crown
    top = -0.35 - 1.28 - vol - 0.06 - hat_h * 0.3
    if beanie:
        dome = _ell(0, -0.86, hw_hat, -0.86 - top, 28, math.pi, _TAU)
        fold = np.array([[-hw_hat - 0.03, -0.78], [hw_hat + 0.03, -0.78], [hw_hat + 0.01, -1.0], [-hw_hat - 0.01, -1.0]])
        cv.fill(dome, hat_col, attrs=HAT, show=show, hair=0)
        cv.fill(fold, _scale(hat_col, 0.8), attrs=HAT, show=show, hair=0)
    else:
        crown_h = np.array([[-hw_hat, -0.9], [-hw_hat * 0.9, top], [hw_hat * 0.9, top], [hw_hat, -0.9]])
        brim = _ell(0, -0.92, hw_hat + 0.3, 0.13, 24)
        cv.fill(brim, _scale(hat_col, 0.85), attrs=HAT, show=show, hair=0)
        cv.fill(crown_h, hat_col, attrs=HAT, show=show, hair=0)
        cv.fill(np.array([[-hw_hat, -0.92], [-hw_hat * 0.985, -1.08], [hw_hat * 0.985, -1.08], [hw_hat, -0.92]]), band_col,
                show=show)

    # ---- earring (one visible side), necklace, tie
    g = G["earring"]
    side = 1 if g.random() < 0.5 else -1
    style, e_col = int(g.integers(3)), _JEWEL[int(g.integers(len(_JEWEL)))]
    lobe = np.array([side * (float(half_width(0.28)) + 0.05), 0.27])
    ER = [_I["Wearing_Earrings"]]
    show = A("Wearing_Earrings")
    cv.mark(ER, _ell(lobe[0], lobe[1] + 0.03, 0.07, 0.07, 8))
    if style == 0:  # stud
        cv.fill(_ell(lobe[0], lobe[1] + 0.02, 0.065, 0.065, 12), e_col, attrs=ER, show=show)
    elif style == 1:  # hoop
        cv.fill(_ring(_ell(lobe[0], lobe[1] + 0.1, 0.075, 0.09, 16), 0.035), e_col, attrs=ER, show=show)
    else:  # drop
        cv.fill(_thick(np.array([lobe, lobe + [0, 0.1]]), 0.03), e_col, attrs=ER, show=show)
        cv.fill(_ell(lobe[0], lobe[1] + 0.15, 0.06, 0.07, 12), e_col, attrs=ER, show=show)

    g = G["necklace"]
    bead_col = _JEWEL[int(g.integers(3))]
    nb = int(g.integers(9, 14))
    sag = g.uniform(0.15, 0.22)
    NK = [_I["Wearing_Necklace"]]
    show = A("Wearing_Necklace")
    phi = np.linspace(0.12, math.pi - 0.12, 24)
    arc = np.column_stack([nw * 1.02 * np.cos(phi), ry + 0.04 + sag * np.sin(phi)])
    cv.fill(_thick(arc, 0.022), _rgba(_scale(bead_col, 0.8), 0.9), attrs=NK, show=show)
    pb = np.linspace(0.2, math.pi - 0.2, nb)
    for bx, by in zip(nw * 1.02 * np.cos(pb), ry + 0.04 + sag * np.sin(pb)):
        cv.fill(_ell(bx, by, 0.05, 0.05, 8), bead_col, attrs=NK, show=show)

    TIE = [_I["Wearing_Necktie"]]
    show = A("Wearing_Necktie")
    knot = np.array([[-0.1, cy0 - 0.02], [0.1, cy0 - 0.02], [0.065, cy0 + 0.15], [-0.065, cy0 + 0.15]])
    blade = np.array([[-0.065, cy0 + 0.15], [0.065, cy0 + 0.15], [0.15, cy0 + 0.75], [0, cy0 + 0.9], [-0.15, cy0 + 0.75]])
    cv.fill(blade, tie_col, attrs=TIE, show=show)
    if tie_stripes and show:
        for j in range(4):
            y0 = cy0 + 0.25 + 0.15 * j
            cv.fill(np.array([[-0.14, y0], [0.14, y0 + 0.1], [0.14, y0 + 0.14], [-0.14, y0 + 0.04]]) * [0.75 + 0.1 * j, 1],
                    _rgba(_mix(tie_col, (255, 255, 255), 0.5), 0.8))
    cv.fill(knot, _scale(tie_col, 0.85), attrs=TIE, show=show)

    # ---- hair boxes: the visible hair
    bb = cv.hair.getbbox()
    if bb is None:  # cannot happen (bald keeps a fringe); fall back to the crown region
        cv.mark(HAIR, crown)
    else:
        q = np.array([[bb[0], bb[1]], [bb[2], bb[3]]], dtype=np.float64)
        for a in HAIR:
            cv.lo[a], cv.hi[a] = q[0], q[1]

    # ---- downsample, light, blur, noise
    img = cv.img.reduce(k) if k > 1 else cv.img
    g = G["light"]
    ang, strength, bright = g.uniform(0, _TAU), g.uniform(0.0, 0.4), g.uniform(0.78, 1.15)
    cast = g.uniform(0.84, 1.16, 3)
    sigma = g.uniform(1.0, 4.0)
    noise_seed = int(g.integers(0, 2**63 - 1))
    r = np.linspace(-0.5, 0.5, size)
    ramp = 1.0 + strength * (math.cos(ang) * r[None, :] + math.sin(ang) * r[:, None])
    arr = np.asarray(img, dtype=np.float32) * (ramp * bright)[..., None].astype(np.float32) * cast.astype(np.float32)
    g = G["blur"]
    radius = g.uniform(0.011, 0.02) * size
    if A("Blurry"):
        img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(radius))
        arr = np.asarray(img, dtype=np.float32)
    arr = arr + np.random.default_rng(noise_seed).standard_normal(arr.shape, dtype=np.float32) * np.float32(sigma)
    img = Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8), "RGB")
    return img, cv.boxes()


def _clutter(cv: _Canvas, g: np.random.Generator) -> None:
    """Background: random shapes, and distractors that look like small cues."""
    S = cv.S
    for _ in range(int(g.integers(8, 16))):
        kind = int(g.integers(4))
        col = _rgba(g.integers(0, 256, size=3), g.uniform(0.5, 1.0))
        c = g.uniform(-0.1, 1.1, 2) * S
        w, h = g.uniform(0.05, 0.45, 2) * S
        rot = g.uniform(0, math.pi)
        if kind == 0:  # rotated rectangle
            pts = np.array([[-w, -h], [w, -h], [w, h], [-w, h]]) / 2
        elif kind == 1:  # ellipse
            pts = _ell(0, 0, w / 2, h / 2, 20)
        elif kind == 2:  # bar
            pts = np.array([[-w, -0.02 * S], [w, -0.02 * S], [w, 0.02 * S], [-w, 0.02 * S]])
        else:  # triangle
            pts = np.array([[-w / 2, h / 2], [w / 2, h / 2], [0, -h / 2]])
        cr, sr = math.cos(rot), math.sin(rot)
        cv.raw(pts @ np.array([[cr, sr], [-sr, cr]]) + c, col)
    # distractors
    for _ in range(int(g.integers(2, 7))):  # bright dots (earring-like)
        c, r = g.uniform(0, 1, 2) * S, g.uniform(0.006, 0.018) * S
        cv.raw(_ell(c[0], c[1], r, r, 10), _rgba(_JEWEL[int(g.integers(len(_JEWEL)))], 1.0))
    for _ in range(int(g.integers(1, 4))):  # short dark strokes (wrinkle/brow-like)
        c, L, a = g.uniform(0, 1, 2) * S, g.uniform(0.03, 0.08) * S, g.uniform(0, math.pi)
        seg = np.array([c - L * np.array([math.cos(a), math.sin(a)]), c + L * np.array([math.cos(a), math.sin(a)])])
        cv.raw(_thick(seg, g.uniform(0.004, 0.012) * S), _rgba((30, 25, 25), g.uniform(0.5, 0.9)))
    for _ in range(int(g.integers(0, 3))):  # red / pink blobs (lip/cheek-like)
        c, r = g.uniform(0, 1, 2) * S, g.uniform(0.015, 0.04) * S
        cv.raw(_ell(c[0], c[1], r * 1.6, r, 14, rot=g.uniform(0, math.pi)),
               _rgba(_LIPSTICK[int(g.integers(len(_LIPSTICK)))], g.uniform(0.5, 0.9)))
    if g.random() < 0.35:  # a dotted arc (necklace-like)
        c, R, a0 = g.uniform(0, 1, 2) * S, g.uniform(0.05, 0.12) * S, g.uniform(0, _TAU)
        for a in a0 + np.linspace(0, 2.0, 9):
            p = c + R * np.array([math.cos(a), math.sin(a)])
            cv.raw(_ell(p[0], p[1], 0.009 * S, 0.009 * S, 8), _rgba(_JEWEL[int(g.integers(3))], 1.0))


# --------------------------------------------------------------------------- examples and shards

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


def encode_png(img: Image.Image) -> bytes:
    import io

    buf = io.BytesIO()
    img.save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def _render_rows(seed: int, start: int, stop: int, size: int, split: str, label_noise: float) -> dict:
    rows = {k: [] for k in ("image_id", "split", "image", "labels", "face_box", "part_boxes_gt")}
    for i in range(start, stop):
        img, _, stored, boxes = render_example(seed, i, size, label_noise)
        rows["image_id"].append(f"synth-{i:07d}")
        rows["split"].append(split)
        rows["image"].append(encode_png(img))
        rows["labels"].append(stored)
        rows["face_box"].append([0.0, 0.0, float(size), float(size)])
        rows["part_boxes_gt"].append(boxes.ravel())
    return rows


def _render_shard(out: str, seed: int, start: int, stop: int, size: int, split: str, index: int,
                  label_noise: float) -> tuple[str, str, int]:
    rows = _render_rows(seed, start, stop, size, split, label_noise)
    rel = shards.write_shard(shards.rows_to_table(rows), out, split, index)
    return split, rel, stop - start


def split_sizes(n: int) -> dict[str, int]:
    """First 80 % train, next 10 % val, the rest test (each >= 1 for n >= 30)."""
    n_train = int(n * 0.8)
    n_val = max(1, int(n * 0.1))
    return {"train": n_train, "val": n_val, "test": n - n_train - n_val}


def _plan(n: int, num_tasks: int) -> list[tuple[str, int, int, int]]:
    """``(split, start, stop, shard_index)`` chunks; chunks never straddle splits."""
    chunk = DEFAULT_CHUNK if num_tasks <= 1 else max(1, math.ceil(n / num_tasks))
    plan, start = [], 0
    for split, m in split_sizes(n).items():
        pieces = max(1, math.ceil(m / chunk))
        bounds = np.linspace(start, start + m, pieces + 1).round().astype(int)
        for j in range(pieces):
            plan.append((split, int(bounds[j]), int(bounds[j + 1]), j))
        start += m
    return plan


def _check_int(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise SynthError(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        raise SynthError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def synthesize(n: int, size: int, seed: int, out: str, label_noise: float = 0.0,
               num_tasks: int = 0) -> shards.DatasetInfo:
    """Render ``n`` SynthFaces of ``size`` x ``size`` into shards under ``out`` and write
    ``dataset.json`` last. ``num_tasks`` 1 renders in this process; otherwise Ray tasks
    render chunks (~500 images each for 0, about ``n / num_tasks`` each else), each
    writing its own shard. Image ``i`` depends only on ``(seed, i, size)``."""
    n = _check_int("n", n, 30)
    size = _check_int("size", size, 32)
    seed = _check_int("seed", seed, 0)
    num_tasks = _check_int("num_tasks", num_tasks, 0)
    try:
        label_noise = float(label_noise)
    except (TypeError, ValueError):
        raise SynthError(f"label_noise must be a number, got {label_noise!r}") from None
    if not 0.0 <= label_noise < 0.5:
        raise SynthError(f"label_noise must be in [0, 0.5), got {label_noise}")
    if not isinstance(out, str) or not out:
        raise SynthError(f"out must be a folder path or URI, got {out!r}")

    from paw_ray import storage

    if storage.is_local(out):  # Ray tasks run in other folders (other nodes, a job's working dir)
        out = storage.local_path(out)
    info_loc = storage.join(out, shards.DATASET_INFO_FILE)
    if storage.exists(info_loc):  # the set is being replaced: never leave an old, mixed index
        storage.remove_tree(info_loc)
    plan = _plan(n, num_tasks)
    if num_tasks == 1:
        results = [_render_shard(out, seed, a, b, size, split, j, label_noise) for split, a, b, j in plan]
    else:
        import ray

        if not ray.is_initialized():
            address = None if os.environ.get("RAY_ADDRESS") else "local"
            kwargs = {"configure_logging": False, "log_to_driver": False}
            if address == "local":
                kwargs["include_dashboard"] = False
            ray.init(address=address, **kwargs)
        task = ray.remote(num_cpus=1)(_render_shard)
        refs = [task.remote(out, seed, a, b, size, split, j, label_noise) for split, a, b, j in plan]
        results = ray.get(refs)

    files = {s: [] for s in shards.SPLITS}
    num_rows = {s: 0 for s in shards.SPLITS}
    for split, rel, count in results:
        files[split].append(rel)
        num_rows[split] += count
    info = shards.DatasetInfo(
        name="synthfaces",
        image_size=size,
        num_rows=num_rows,
        files=files,
        has_part_boxes_gt=True,
        source={"seed": seed, "n": n, "size": size, "label_noise": label_noise,
                "generator_version": GENERATOR_VERSION},
    )
    shards.write_info(info, out)
    return info
