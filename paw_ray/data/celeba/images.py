"""The per-image work of ``prepare-celeba``, run in Ray tasks: read, check, decode, find
the face (annotated box, or the detector with ``--face-source detector``), cut the face
square, encode JPEG, and write one shard per chunk.

A task never fails on a bad image: each problem becomes a record (a reason and a message
naming the file and the annotation line), which the driver raises in strict mode or
counts with ``allow_partial``. So a bad image is a ``CelebAError`` that names it, not a
wall of ``RayTaskError``.
"""

from __future__ import annotations

import io
import json
import time
import warnings
from collections import Counter

import numpy as np
from PIL import Image, ImageFile, UnidentifiedImageError

from paw_ray import storage
from paw_ray.data import shards
from paw_ray.data.detect import FaceDetection, FaceDetector, best_match
from paw_ray.data.facebox import FaceBoxError, choose_box, cut_square, face_square

MAX_IMAGE_PIXELS = 64 * 1024 * 1024  # decompression-bomb guard (CelebA's largest photos are far smaller)
JPEG_QUALITY = 95


class _ImageProblem(Exception):
    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def _open_image(data: bytes):
    """Open (lazily) with the size guard; returns a PIL image not yet decoded."""
    if not data:
        raise _ImageProblem("empty image file", "empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as e:
        raise _ImageProblem("image too large", f"image too large to decode safely ({e})") from None
    except (UnidentifiedImageError, SyntaxError, OSError, ValueError) as e:
        what = "truncated image" if "truncated" in str(e).lower() else "not a readable image"
        raise _ImageProblem("undecodable image", f"{what} ({type(e).__name__}: {e})") from None
    w, h = im.size
    if w < 1 or h < 1:
        raise _ImageProblem("undecodable image", f"image has size {w}x{h}")
    if w * h > MAX_IMAGE_PIXELS:
        raise _ImageProblem(
            "image too large",
            f"image is {w}x{h} = {w * h / 1e6:.0f} Mpx, over the {MAX_IMAGE_PIXELS / 1e6:.0f} Mpx limit "
            "(decompression-bomb guard; CelebA photos are far smaller)")
    return im


def _decode_rgb(im):
    old = ImageFile.LOAD_TRUNCATED_IMAGES
    ImageFile.LOAD_TRUNCATED_IMAGES = False  # a truncated file is an error, never grey pixels
    try:
        im.load()
    except Exception as e:  # noqa: BLE001 - PIL raises OSError, SyntaxError, ValueError, ...
        msg = str(e) or type(e).__name__
        what = "truncated image" if "truncated" in msg.lower() else "undecodable image"
        raise _ImageProblem("undecodable image", f"{what} ({msg})") from None
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = old
    if im.mode != "RGB":
        try:
            if im.mode in ("P", "PA") and "transparency" in im.info:
                im = im.convert("RGBA")
            im = im.convert("RGB")
        except Exception as e:  # noqa: BLE001 - an exotic mode PIL cannot convert
            raise _ImageProblem("undecodable image", f"cannot convert a {im.mode} image to RGB ({e})") from None
    return im


_detectors: dict[tuple, FaceDetector] = {}  # one per settings in each worker process: dlib's is built once


def _detected_box(img, bbox, lms, detection: dict):
    """``--face-source detector``: the detected face overlapping the annotated box (else the
    landmarks' box) most, as the paper chose; the surest face when the image has neither.
    None when the detector finds no face there."""
    settings = FaceDetection(**detection)
    key = (settings.min_face, settings.threshold)
    if key not in _detectors:
        _detectors[key] = FaceDetector(settings)
    try:
        reference, _ = choose_box(bbox, lms, *img.size)
    except FaceBoxError:
        reference = None
    match = best_match(_detectors[key](img), reference)
    return None if match is None else match.box


def _face_image(data: bytes, row: list, spec: dict):
    """(face image, face_box, box source) for one image, or ``_ImageProblem``."""
    size = spec["size"]
    im = _open_image(data)
    W, H = im.size
    if spec["aligned"]:
        img = _decode_rgb(im)
        return img.resize((size, size), Image.Resampling.LANCZOS), [0.0, 0.0, float(W), float(H)], "whole"
    bbox, lms = row[3], row[5]
    img = None
    if spec.get("face_source") == "detector":
        img = _decode_rgb(im)
        found = _detected_box(img, bbox, lms, spec["detection"])
        if found is not None:
            sq, _ = face_square(found, None, W, H, spec["margin"])
            return cut_square(img, sq, size), [float(v) for v in sq], "detector"
    try:
        sq, source = face_square(bbox, lms, W, H, spec["margin"])
    except FaceBoxError as e:
        where = []
        if bbox is not None:
            where.append(f"box at {spec['files']['bbox']}, line {row[4]}")
        if lms is not None:
            where.append(f"landmarks at {spec['files']['landmarks']}, line {row[6]}")
        raise _ImageProblem("no usable face box", f"{e} ({'; '.join(where)})") from None
    x, y, s, _ = (float(v) for v in sq)
    scale = 1.0
    inside = x >= 0 and y >= 0 and x + s <= W and y + s <= H
    if img is None and inside and getattr(im, "format", None) == "JPEG" and s >= 2 * size:
        reduce = next(f for f in (8, 4, 2, 1) if s / f >= size)
        if reduce > 1:
            res = im.draft(None, (W // reduce, H // reduce))
            if res is not None:
                scale = res[1][2] / W
    if img is None:
        img = _decode_rgb(im)
    return cut_square(img, sq, size, scale=scale), [x, y, s, s], source


def _process_chunk(spec: dict) -> dict:
    """One Ray task: read, cut and encode the images of one chunk, write its shard."""
    t0 = time.perf_counter()
    ids, splits, labels, boxes, images = [], [], [], [], []
    errors: list[dict] = []
    sources: Counter[str] = Counter()
    for row in spec["rows"]:
        image_id, attr_line = row[0], row[1]
        path = storage.join(spec["images"], image_id)
        try:
            try:
                data = storage.read_bytes(path)
            except FileNotFoundError:
                raise _ImageProblem("missing image", "image file not found") from None
            except OSError as e:
                raise _ImageProblem("missing image", f"cannot read the image ({e})") from None
            face, box, source = _face_image(data, row, spec)
            buf = io.BytesIO()
            face.save(buf, format="JPEG", quality=JPEG_QUALITY)
        except _ImageProblem as e:
            errors.append({"reason": e.reason,
                           "message": f"{path}: {e.detail} (image listed at {spec['files']['attr']}, line {attr_line})"})
            continue
        except Exception as e:  # noqa: BLE001 - whatever else an image does to PIL: reported, never a task crash
            errors.append({"reason": "image processing failed",
                           "message": f"{path}: {type(e).__name__}: {e} (image listed at {spec['files']['attr']}, "
                                      f"line {attr_line})"})
            continue
        ids.append(image_id)
        splits.append(spec["split"])
        labels.append(np.frombuffer(row[2].encode("ascii"), dtype=np.uint8) - 48)
        boxes.append(box)
        images.append(buf.getvalue())
        sources[source] += 1
    written = None
    if ids and not (spec["strict"] and errors):
        table = shards.rows_to_table({"image_id": ids, "split": splits, "image": images,
                                      "labels": labels, "face_box": boxes})
        try:
            written = shards.write_shard(table, spec["out"], spec["split"], spec["index"])
        except Exception as e:  # noqa: BLE001 - reported to the driver, which raises
            errors.append({"reason": "shard write failed",
                           "message": f"{storage.join(spec['out'], spec['split'])}: writing shard {spec['index']} failed: "
                                      f"{type(e).__name__}: {e}"})
    return {"split": spec["split"], "index": spec["index"], "path": written.path if written else "",
            "rows": len(ids) if written else 0, "bytes": written.bytes if written else 0,
            "sha256": written.sha256 if written else "", "images": len(spec["rows"]), "errors": json.dumps(errors), "sources": json.dumps(dict(sources)),
            "seconds": time.perf_counter() - t0}


def chunk_task(item: dict) -> dict:
    """The Ray Data map function: one row ``{"spec": json}`` -> the chunk's result row."""
    return _process_chunk(json.loads(item["spec"]))
