"""``paw-ray predict``: the trained cascade on image files, folders of images, or prepared
shard folders, on this machine (no Ray needed).

Inputs, in the order given:

- an image file (any format Pillow reads; EXIF orientation applied);
- a folder: every image file under it (``IMAGE_SUFFIXES``, recursively, sorted);
- a shard folder (a prepared data set: it holds ``dataset.json``): the rows of its
  ``split`` (default ``test``; ``all`` = every split). Shard images are face boxes
  already cut, so they go through the training pipeline's own decode (``decode_batch``).

Face boxes. The networks were trained on face boxes cut, squared and resized
(``paw_ray.data.facebox``); an in-the-wild photo needs one too. ``box`` (one ``x, y, w, h``
for every image) or ``boxes`` (``{image name or path: box}``, from ``--boxes CSV``) give it.
An image without one goes to the face detector (``detect="auto"``, ``paw_ray.data.detect``):
**every face found is a prediction of its own** (``Face.face_index``, left to right), its box
cut by the same face-box rule, with the margin the run's training faces were cut with; a
photo with no face found is an error naming it. With ``detect="none"`` the image is taken
whole as the face, squared by padding as the face-box rule does, and ``Predictor.notes``
says so (the CLI prints the notes on stderr).

Per image: the 40 probabilities and decisions under the run's decision rule
(``TrainedRun.decision_rule``: by default the temperature and threshold per attribute
that the evaluation fitted on the validation split; ``fixed`` is probability > 0.5), and
the 40 part boxes ``x, y, w, h`` in the **input image's pixels**
(the window in the network input mapped back through the face square, clipped to the
image). An input that cannot be read is reported in ``Predictor.errors`` (its path and
why) and the others are still predicted.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from paw_ray import storage
from paw_ray.attributes import ATTRIBUTES, NUM_ATTRIBUTES
from paw_ray.data import facebox, shards
from paw_ray.data.detect import DETECT_MODES, FaceDetection, FaceDetector
from paw_ray.data.stream import decode_batch
from paw_ray.errors import PawRayError
from paw_ray.metrics import DecisionRule
from paw_ray.train.trained_run import fell_back

__all__ = ["IMAGE_SUFFIXES", "InputError", "Face", "Prediction", "Predictor", "open_image", "parse_box",
           "read_boxes_csv", "expand_inputs", "write_jsonl", "write_csv", "write_explanation", "DEFAULT_EXPLAIN"]

DEFAULT_EXPLAIN = ("Smiling", "Eyeglasses", "Wearing_Hat")

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm")


class InputError(PawRayError):
    """One input that cannot be predicted, and which problem (``problem``: missing, not an
    image, too large, does not decode, no face, unusable face box): for callers that answer
    each kind differently (the HTTP service's ``STATUS``)."""

    def __init__(self, message: str, problem: str):
        super().__init__(message)
        self.problem = problem


def parse_box(text: str, where: str = "--box") -> tuple[float, float, float, float]:
    """``"x,y,w,h"`` -> four floats; a clear error otherwise."""
    parts = [p.strip() for p in str(text).split(",")]
    try:
        values = tuple(float(p) for p in parts)
    except ValueError:
        values = ()
    if len(values) != 4 or not all(np.isfinite(values)) or values[2] <= 0 or values[3] <= 0:
        raise PawRayError(f"{where}: expected x,y,w,h with w, h > 0, got {text!r}")
    return values  # type: ignore[return-value]


def read_boxes_csv(path: str) -> dict[str, tuple[float, float, float, float]]:
    """A CSV of ``image name,x,y,w,h`` lines (a header line is allowed) -> ``{name: box}``."""
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.reader(f))
    except OSError as e:
        raise PawRayError(f"--boxes {path}: {e.strerror or e}") from None
    boxes = {}
    for n, row in enumerate(rows, 1):
        if not row or not "".join(row).strip() or row[0].lstrip().startswith("#"):
            continue
        if len(row) != 5:
            raise PawRayError(f"{path}:{n}: expected 5 fields (image name,x,y,w,h), got {len(row)}")
        try:
            boxes[row[0].strip()] = parse_box(",".join(row[1:]), f"{path}:{n}")
        except PawRayError:
            if n == 1 and not boxes:
                continue  # a header line
            raise
    return boxes


@dataclass
class Face:
    """One input ready for the network."""

    source: str  # what the user named: a file path, or "<shard folder>#<image_id>"
    image_id: str
    pixels: np.ndarray  # uint8 (3, S, S)
    square: tuple[float, float, float, float]  # x, y, s, s: the face square in input pixels
    input_size: tuple[int, int]  # width, height of the input image
    box_source: str  # "--box" | "--boxes" | "detector" | "whole image" | "shard"
    face_index: int = 0  # which face of the image, left to right (several only when detected)
    detection_score: float | None = None  # the detector's score, for a detected face


@dataclass
class Prediction:
    face: Face
    probabilities: np.ndarray  # (40,)
    boxes: np.ndarray  # (40, 4) x, y, w, h in input pixels
    net_boxes: np.ndarray  # (40, 4) the same windows in network-input pixels (on ``face.pixels``)
    rule: DecisionRule = field(default_factory=DecisionRule.fixed, repr=False)  # the probabilities' calibration
    heatmaps: np.ndarray | None = field(default=None, repr=False)  # (40, h, w), with explain

    @property
    def decisions(self) -> np.ndarray:
        return self.rule.decide(self.probabilities)

    def to_json(self) -> dict:
        f = self.face
        return {
            "input": f.source,
            "image_id": f.image_id,
            "face_index": f.face_index,
            "input_size": list(f.input_size),
            "face_box": [round(float(v), 2) for v in f.square],
            "face_box_source": f.box_source,
            "detection_score": None if f.detection_score is None else round(f.detection_score, 4),
            "probabilities": {a: round(float(p), 6) for a, p in zip(ATTRIBUTES, self.probabilities)},
            "decisions": {a: bool(d) for a, d in zip(ATTRIBUTES, self.decisions)},
            "decision_rule": self.rule.rule,
            "part_boxes": {a: [round(float(v), 2) for v in b] for a, b in zip(ATTRIBUTES, self.boxes)},
        }


def expand_inputs(paths: Iterable[str]) -> list[tuple[str, str]]:
    """``[("image", path) | ("shards", folder) | ("empty", folder)]`` in order. A missing path is
    kept as an image and fails, naming itself, when it is read."""
    out = []
    for p in paths:
        if os.path.isdir(p):
            if os.path.exists(os.path.join(p, shards.DATASET_INFO_FILE)):
                out.append(("shards", p))
                continue
            found = storage.find_files(p, IMAGE_SUFFIXES)
            out += [("image", f) for f in found] if found else [("empty", p)]
        else:
            out.append(("image", p))
    return out


def open_image(source: str, data: bytes | None = None) -> Image.Image:
    """An image file (or its ``data``, read from ``source`` elsewhere) as an upright RGB image;
    a ``PawRayError`` naming ``source`` when it is missing, not an image, too large or torn."""
    try:
        with Image.open(source if data is None else io.BytesIO(data)) as im:
            return ImageOps.exif_transpose(im).convert("RGB")
    except FileNotFoundError:
        raise InputError(f"{source}: no such file", "missing") from None
    except UnidentifiedImageError:
        raise InputError(f"{source}: not an image (Pillow cannot identify its format)", "not an image") from None
    except Image.DecompressionBombError as e:
        raise InputError(f"{source}: image too large to decode safely ({e})", "too large") from None
    except (OSError, ValueError, SyntaxError) as e:
        raise InputError(f"{source}: the image does not decode ({e})", "does not decode") from None


class Predictor:
    """Runs a trained cascade over inputs; collects ``errors`` and ``notes`` for the user.

    ``run`` is where the cascade comes from: a run directory (``TrainedRun``, ``open_run``)
    or a model folder (``ModelFolder``, ``open_model_folder``); either gives the decision
    rule, the cascade and how the training faces were cut.

    ``detect`` (``DETECT_MODES``) and ``detection`` say how faces are found in a photo with no
    box; ``face_margin`` is the face-box rule's margin for a detected box (default: the
    margin the run's training faces were cut with, ``TrainedRun.face_cut``); ``device`` is where
    the cascade runs."""

    def __init__(self, run, box=None, boxes: dict | None = None, split: str = "test",
                 batch_size: int = 32, explain: bool = False, decision_rule: str = "fitted",
                 detect: str = "auto", detection: FaceDetection | None = None, face_margin: float | None = None,
                 device: str = "cpu"):
        if box is not None and boxes:
            raise PawRayError("give --box or --boxes, not both")
        if split not in (*shards.SPLITS, "all"):
            raise PawRayError(f"--split {split!r}: one of {', '.join(shards.SPLITS)}, all")
        if detect not in DETECT_MODES:
            raise PawRayError(f"--detect {detect!r}: one of {', '.join(DETECT_MODES)}")
        self.run = run
        self.rule = run.decision_rule(decision_rule)
        self.rule_fallback = fell_back(decision_rule, self.rule)
        self.device = torch.device(device)
        self.cascade = run.cascade(self.rule).to(self.device)
        self.image_size = self.cascade.image_size
        self.box, self.boxes = box, boxes or {}
        self.split, self.batch_size, self.explain = split, max(1, batch_size), explain
        self.detect = detect
        self._detector = FaceDetector(detection) if detect == "auto" else None
        self.detection = detection
        self.trained_cut, trained_margin = run.face_cut()
        self.face_margin = trained_margin if face_margin is None else float(face_margin)
        self.errors: list[str] = []
        self.whole_image: list[str] = []  # inputs taken whole as the face
        self.detected: list[str] = []  # inputs whose faces the detector found
        self.inputs_read = 0  # of the inputs ``predict`` was given

    @property
    def notes(self) -> list[str]:
        notes = ["the model holds no fitted decision rule (its run was evaluated without validation rows or by an "
                 "older paw_ray, or exported with --decision-rule fixed): decisions are probability > 0.5"
                 ] if self.rule_fallback else []
        if self.detected and self.trained_cut != "detector":
            how = {"synthfaces": "are whole SynthFaces frames", "annotations": "were cut from annotated boxes",
                   "unknown": "were cut in a way its data folder no longer records"}[self.trained_cut]
            notes.append(f"faces in {len(self.detected)} image(s) were found by the detector, but this run's "
                         f"training faces {how}: the crop's scale may differ from training. Prepare CelebA "
                         "with --face-source detector for matching crops, or adjust --face-margin.")
        if self.whole_image:
            shown = ", ".join(self.whole_image[:5]) + (", ..." if len(self.whole_image) > 5 else "")
            notes.append(f"no face box given for {len(self.whole_image)} image(s) ({shown}): the whole image is "
                         "taken as the face (padded to a square), as --detect none asks.")
        return notes

    # ------------------------------------------------------------------ inputs

    def _box_for(self, path: str, detect: str | None):
        if self.box is not None:
            return self.box, "--box"
        for key in (path, os.path.basename(path), os.path.normpath(path)):
            if key in self.boxes:
                return self.boxes[key], "--boxes"
        return None, "detector" if (detect or self.detect) == "auto" else "whole image"

    def load_faces(self, path: str) -> list[Face]:
        """Read and orient one image file; its faces (``faces_in``)."""
        return self.faces_in(open_image(path), path)

    def faces_in(self, im: Image.Image, path: str, detect: str | None = None) -> list[Face]:
        """Cut each face square of an RGB photo (given, detected, or the whole image) and resize
        it. A photo where the detector finds no face is an error naming ``path``. ``detect``
        overrides the predictor's mode for this photo (the HTTP service's per-request choice)."""
        if detect is not None and detect not in DETECT_MODES:
            raise PawRayError(f"detect {detect!r}: one of {', '.join(DETECT_MODES)}")
        width, height = im.size
        box, source = self._box_for(path, detect)
        found = [(box, None)]
        margin = 0.0
        if source == "detector":
            self._detector = self._detector or FaceDetector(self.detection)
            found = [(f.box, f.score) for f in self._detector(im)]
            if not found:
                raise InputError(
                    f"{path}: no face found (faces of at least {self._detector.smallest_face(width, height):.0f} px, "
                    f"score above {self._detector.settings.threshold:g}); give --box x,y,w,h, a smaller "
                    "--min-face, or --detect none to take the whole image as the face", "no face")
            self.detected.append(path)
            margin = self.face_margin
        elif source == "whole image":
            self.whole_image.append(path)
            found = [((0.0, 0.0, float(width), float(height)), None)]
        faces = []
        for index, (face_box, score) in enumerate(found):
            try:
                square, _ = facebox.face_square(face_box, None, width, height, margin)
            except facebox.FaceBoxError as e:
                raise InputError(f"{path}: face box {tuple(face_box)} unusable ({e})", "unusable face box") from None
            face = facebox.cut_square(im, square, self.image_size)
            pixels = np.ascontiguousarray(np.asarray(face, dtype=np.uint8).transpose(2, 0, 1))
            faces.append(Face(path, os.path.basename(path), pixels, tuple(float(v) for v in square),
                              (width, height), source, index, score))
        return faces

    def shard_faces(self, folder: str) -> Iterator[Face]:
        """The rows of a prepared data set's split, decoded as the training pipeline does."""
        info = shards.read_info(folder)
        splits = shards.SPLITS if self.split == "all" else (self.split,)
        for split in splits:
            for f in shards.shard_files(folder, info, split):
                fs, path = storage.resolve(f)
                pf = pq.ParquetFile(fs.open_input_file(path))
                for batch in pf.iter_batches(batch_size=256, columns=["image_id", "image", "labels"]):
                    decoded = decode_batch(pa.Table.from_batches([batch]), image_size=self.image_size)
                    for i, image_id in enumerate(decoded["image_id"]):
                        if not decoded["ok"][i]:
                            self.errors.append(f"{folder} ({split}, image_id {image_id}): the image does not decode")
                            continue
                        s = info.image_size
                        yield Face(f"{folder}#{image_id}", str(image_id), decoded["image"][i],
                                   (0.0, 0.0, float(s), float(s)), (s, s), "shard")

    def faces(self, inputs: list[tuple[str, str]]) -> Iterator[Face]:
        for n, (kind, p) in enumerate(inputs, 1):
            self.inputs_read = n
            if kind == "empty":
                self.errors.append(f"{p}: no image files in this folder ({', '.join(IMAGE_SUFFIXES)})")
                continue
            if kind == "shards":
                try:
                    yield from self.shard_faces(p)
                except PawRayError as e:
                    self.errors.append(str(e))
                continue
            try:
                yield from self.load_faces(p)
            except PawRayError as e:
                self.errors.append(str(e))

    # ------------------------------------------------------------------ model

    def predict_faces(self, faces: list[Face]) -> list[Prediction]:
        if not faces:
            return []
        with torch.no_grad():
            out = self.cascade.run(torch.from_numpy(np.stack([f.pixels for f in faces])).to(self.device))
        probs = out.probabilities.cpu().numpy().astype(np.float64)
        net_boxes = out.boxes.cpu().numpy().astype(np.float64)
        heat = out.heatmaps.cpu().numpy() if (self.explain and out.heatmaps is not None) else None
        preds = []
        for i, f in enumerate(faces):
            preds.append(Prediction(f, probs[i], self.to_input_pixels(net_boxes[i], f), net_boxes[i], self.rule,
                                    None if heat is None else heat[i]))
        return preds

    def to_input_pixels(self, boxes: np.ndarray, face: Face) -> np.ndarray:
        """Boxes in network-input pixels -> the input image's pixels, clipped to the image."""
        x, y, s, _ = face.square
        scale = s / self.image_size
        x0, y0 = x + boxes[:, 0] * scale, y + boxes[:, 1] * scale
        x1, y1 = x0 + boxes[:, 2] * scale, y0 + boxes[:, 3] * scale
        w, h = face.input_size
        x0, x1 = np.clip(x0, 0, w), np.clip(x1, 0, w)
        y0, y1 = np.clip(y0, 0, h), np.clip(y1, 0, h)
        return np.stack([x0, y0, x1 - x0, y1 - y0], axis=1)

    def predict(self, paths: Iterable[str], progress: Callable[[str], None] | None = None) -> Iterator[Prediction]:
        """Predictions for every readable input, in order, batch by batch; ``progress(line)``
        after each batch: faces predicted, inputs read of all, faces/s."""
        inputs = expand_inputs(paths)
        t0, done = time.perf_counter(), 0

        def predicted(batch: list[Face]) -> list[Prediction]:
            nonlocal done
            preds = self.predict_faces(batch)
            done += len(preds)
            if progress is not None and preds:
                rate = done / max(time.perf_counter() - t0, 1e-9)
                progress(f"{done} face(s) from {self.inputs_read}/{len(inputs)} input(s), {rate:.1f} faces/s")
            return preds

        batch: list[Face] = []
        for face in self.faces(inputs):
            batch.append(face)
            if len(batch) == self.batch_size:
                yield from predicted(batch)
                batch = []
        yield from predicted(batch)


# ---------------------------------------------------------------------- writers

def write_jsonl(preds: Iterable[Prediction], out: io.TextIOBase) -> int:
    n = 0
    for p in preds:
        out.write(json.dumps(p.to_json()) + "\n")
        n += 1
    return n


def csv_header() -> list[str]:
    head = ["input", "image_id", "face_index", "input_width", "input_height", "face_x", "face_y", "face_side",
            "face_box_source", "detection_score"]
    head += [f"p_{a}" for a in ATTRIBUTES] + list(ATTRIBUTES)
    head += [f"box_{a}_{k}" for a in ATTRIBUTES for k in ("x", "y", "w", "h")]
    return head


def write_csv(preds: Iterable[Prediction], out: io.TextIOBase) -> int:
    """One row per face: which face of its image, its box and the detector's score,
    ``p_<attribute>`` probabilities, 0/1 decisions under the attribute names, and
    ``box_<attribute>_{x,y,w,h}``."""
    w = csv.writer(out)
    w.writerow(csv_header())
    n = 0
    for p in preds:
        f = p.face
        row = [f.source, f.image_id, f.face_index, *f.input_size, *(round(float(v), 2) for v in f.square[:3]),
               f.box_source, "" if f.detection_score is None else f"{f.detection_score:.4f}"]
        row += [f"{v:.6f}" for v in p.probabilities] + [int(d) for d in p.decisions]
        row += [f"{v:.2f}" for v in p.boxes.reshape(NUM_ATTRIBUTES * 4)]
        w.writerow(row)
        n += 1
    return n


def write_explanation(pred: Prediction, folder: str, index: int, attributes: list[int], run_label: str) -> str:
    """``<folder>/<index>-<image id>.png``: the face as the network saw it, the FRL heatmap and
    part box of each chosen attribute, and all 40 part boxes (``overlays.explain_figure``)."""
    from matplotlib import pyplot as plt

    from paw_ray.eval.overlays import explain_figure  # matplotlib: only when a figure is asked for

    face = pred.face
    name = f"{index:04d}-{re.sub(r'[^A-Za-z0-9._-]+', '_', face.image_id)[:80]}.png"
    title = (f"{face.source} (face box: {face.box_source}); network input {face.pixels.shape[-1]}px\n"
             f"{run_label}")
    fig = explain_figure(face.pixels.transpose(1, 2, 0), pred.heatmaps, pred.net_boxes, pred.probabilities,
                         attributes, title)
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, name)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
