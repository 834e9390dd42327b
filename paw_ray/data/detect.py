"""Finding faces in a photo, for ``predict`` and ``prepare-celeba --face-source detector``.

The paper found each face with a detector (MTCNN) and fell back to the landmarks' box.
paw_ray uses dlib's frontal-face detector (HOG features and a linear SVM over an image
pyramid): its model is compiled into the ``dlib-bin`` wheel, so it needs no download, no
network and no change to the pinned torch. It gives boxes, not landmarks; a box goes
through the same face-box rule as an annotated one (``facebox.face_square``).

The detector's window is ``WINDOW`` pixels square, so the image is rescaled by
``WINDOW / min_face`` before detection: a face of ``min_face`` pixels then fills the window,
and smaller ones are not found. The rescaled image is capped at ``MAX_DETECT_PIXELS``;
a bigger photo is detected at the cap, and its smallest findable face grows accordingly
(``FaceDetector.smallest_face``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image

__all__ = ["DETECT_MODES", "DETECTOR_NAME", "FaceDetection", "DetectedFace", "FaceDetector", "best_match"]

DETECT_MODES = ("auto", "none")  # auto: detect where no box was given; none: the whole image is the face
DETECTOR_NAME = "dlib HOG frontal face detector (dlib-bin)"
WINDOW = 80  # side of the detector's sliding window, in pixels
MAX_DETECT_PIXELS = 16_000_000  # bound on the rescaled image: detection time grows with its area


@dataclass(frozen=True)
class FaceDetection:
    """The detector's settings: the smallest face side to find, in the photo's pixels, and
    the SVM score a detection must exceed (higher: fewer false faces, more missed ones)."""

    min_face: int = 40
    threshold: float = 0.3

    def __post_init__(self):
        if not (isinstance(self.min_face, int) and self.min_face >= 8):
            raise ValueError(f"min_face must be a whole number of pixels >= 8, got {self.min_face!r}")
        if not (isinstance(self.threshold, (int, float)) and math.isfinite(self.threshold)):
            raise ValueError(f"the detection threshold must be a finite number, got {self.threshold!r}")

    def to_json(self) -> dict:
        return {"detector": DETECTOR_NAME, "min_face": self.min_face, "threshold": self.threshold}


@dataclass(frozen=True)
class DetectedFace:
    box: tuple[float, float, float, float]  # x, y, w, h in the photo's pixels
    score: float  # the SVM's margin: above the threshold, larger is surer


class FaceDetector:
    """``detector(image)`` -> the faces in a PIL image, left to right."""

    def __init__(self, settings: FaceDetection | None = None):
        import dlib  # a compiled extension: loaded only where faces are found

        self.settings = settings or FaceDetection()
        self._detector = dlib.get_frontal_face_detector()

    def _scale(self, width: int, height: int) -> float:
        scale = WINDOW / self.settings.min_face
        return min(scale, math.sqrt(MAX_DETECT_PIXELS / max(1, width * height)))

    def smallest_face(self, width: int, height: int) -> float:
        """The smallest face side found in a ``width`` x ``height`` photo (``min_face`` unless capped)."""
        return WINDOW / self._scale(width, height)

    def __call__(self, image: Image.Image) -> list[DetectedFace]:
        image = image.convert("RGB")
        width, height = image.size
        scale = self._scale(width, height)
        if scale != 1.0:
            size = (max(1, round(width * scale)), max(1, round(height * scale)))
            image = image.resize(size, Image.Resampling.BILINEAR)
        sx, sy = image.width / width, image.height / height
        rects, scores, _ = self._detector.run(np.ascontiguousarray(np.asarray(image)), 0, self.settings.threshold)
        faces = [DetectedFace((r.left() / sx, r.top() / sy, r.width() / sx, r.height() / sy), float(s))
                 for r, s in zip(rects, scores)]
        return sorted(faces, key=lambda f: (f.box[0], f.box[1]))


def _iou(a, b) -> float:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    w = min(ax + aw, bx + bw) - max(ax, bx)
    h = min(ay + ah, by + bh) - max(ay, by)
    if w <= 0 or h <= 0:
        return 0.0
    inter = w * h
    return inter / (aw * ah + bw * bh - inter)


def best_match(faces: list[DetectedFace], reference) -> DetectedFace | None:
    """The face overlapping ``reference`` (an annotated ``x, y, w, h``) most, as the paper chose
    among several detections; None when none overlaps it. Without a reference, the surest face."""
    if not faces:
        return None
    if reference is None:
        return max(faces, key=lambda f: f.score)
    overlaps = [_iou(f.box, tuple(float(v) for v in reference)) for f in faces]
    best = int(np.argmax(overlaps))
    return faces[best] if overlaps[best] > 0 else None
