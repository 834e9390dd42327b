"""CelebA's own files -> Parquet shards (``paw-ray prepare-celeba``), on Ray Data.

Layouts (``find_files``; each file is looked for in this order, the first found wins):

- the official tree: ``Anno/list_attr_celeba.txt``, ``Anno/list_bbox_celeba.txt``,
  ``Anno/list_landmarks_celeba.txt`` (in-the-wild landmarks; the ``_align_`` file holds
  aligned-image coordinates and is never used for in-the-wild boxes),
  ``Eval/list_eval_partition.txt``, images in ``Img/img_celeba/`` (in the wild) and
  ``Img/img_align_celeba/`` or ``img_align_celeba/`` (aligned);
- the same files flat in one folder (images in ``img_celeba/``, ``img_align_celeba/``
  or the folder itself);
- the CSV edition: ``list_attr_celeba.csv``, ``list_bbox_celeba.csv``,
  ``list_eval_partition.csv`` (``image_id,partition``), ``list_landmarks_*.csv``, with a
  header row ``image_id,...``; its images often sit one level deeper
  (``img_align_celeba/img_align_celeba/``), which is found too.

Required: the attribute and partition files, and the image folder; in the wild also a
box source: ``list_bbox_celeba`` and/or ``list_landmarks_celeba`` (both when present).
With ``split_fraction`` (``--split-fraction 0.8,0.1,0.1``) no partition file is needed
(one there is not read): each image's split follows from its id alone (``split_by_id``),
and ``dataset.json`` records the shares and the rule (``source["split"]``).

The annotation files are read by ``paw_ray.data.annotations`` (the real files' quirks
and the CSV variants that circulate); here they are cross-checked.

Bad input (``CelebAError``, a ``ValueError``) names the file and the 1-based line:
a row count that disagrees with the rows, a header that is not the expected names,
an image id in one file but not another, a row with the wrong number of values, a
value outside its set (-1/1; 0/1/2), a non-integer, a duplicate id, an id that is not
an image file name, a missing or undecodable image (zero bytes, truncated, not an
image, over ``MAX_IMAGE_PIXELS``), a face with no usable box. With
``allow_partial=True`` rows with such problems are dropped instead and counted by
reason: printed, and returned in ``DatasetInfo.source["dropped"]`` (with one example
message per reason in ``source["dropped_examples"]``). Counts are of images left out
(an id written twice is one image), plus rows of the other files that name no image
of the attribute file. A row count that disagrees is a warning there
(``source["warnings"]``). A file-level problem (missing file, wrong header, text that
is not UTF-8) is an error in both modes.

Images: grayscale, CMYK, palette and alpha images are converted to RGB; EXIF
orientation is *not* applied (CelebA's annotations are in stored-pixel coordinates).
Images over ``MAX_IMAGE_PIXELS`` (64 Mpx; CelebA's largest photos are far smaller)
are refused before decoding (decompression-bomb guard). In the wild, the face square
of ``facebox.face_square`` is cut (padded with black where it is larger than the
image) and resized with LANCZOS; a JPEG whose square is at least twice ``image_size``
is decoded at 1/2, 1/4 or 1/8 scale first (libjpeg's DCT scaling, as
``PIL.Image.thumbnail`` does), never below ``image_size``. Aligned: the whole image is
resized to ``image_size`` x ``image_size`` *squashed* (178x218 -> square: every pixel
kept, faces 22% narrower), ``face_box`` = the whole image.

Work: annotations are parsed and cross-checked in the driver; then one Ray Data task
per chunk (``chunk_size`` images of one split, ``num_cpus=0.25``) reads the images from
``root`` (a path every node sees), cuts, encodes JPEG (quality 95) and writes one shard
atomically; tasks report per-image problems as records, so a bad image becomes a
``CelebAError`` naming the file, not a wall of ``RayTaskError``. ``dataset.json`` is
written last.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import sys
import time
import warnings
from collections import Counter
from dataclasses import dataclass

import numpy as np

from paw_ray import storage
from paw_ray.attributes import ATTRIBUTES
from paw_ray.data import shards
from paw_ray.data.annotations import Annotation, CelebAError, file_name, parse_annotation
from paw_ray.data.facebox import FaceBoxError, cut_square, face_square

__all__ = [
    "CelebAError",
    "CelebAFiles",
    "Plan",
    "MAX_IMAGE_PIXELS",
    "JPEG_QUALITY",
    "SPLIT_RULE",
    "find_files",
    "split_shares",
    "split_by_id",
    "load_annotations",
    "prepare_celeba",
]

MAX_IMAGE_PIXELS = 64 * 1024 * 1024  # decompression-bomb guard (CelebA's largest photos are far smaller)
JPEG_QUALITY = 95
DEFAULT_CHUNK_SIZE = 2000


# --------------------------------------------------------------------------- layout

_FILE_CANDIDATES = {
    "attr": ["Anno/list_attr_celeba.txt", "list_attr_celeba.txt", "Anno/list_attr_celeba.csv", "list_attr_celeba.csv"],
    "partition": ["Eval/list_eval_partition.txt", "list_eval_partition.txt", "Anno/list_eval_partition.txt",
                  "Eval/list_eval_partition.csv", "list_eval_partition.csv", "Anno/list_eval_partition.csv"],
    "bbox": ["Anno/list_bbox_celeba.txt", "list_bbox_celeba.txt", "Anno/list_bbox_celeba.csv", "list_bbox_celeba.csv"],
    "landmarks": ["Anno/list_landmarks_celeba.txt", "list_landmarks_celeba.txt",
                  "Anno/list_landmarks_celeba.csv", "list_landmarks_celeba.csv"],
}
_IMAGE_DIRS = {
    False: ["Img/img_celeba", "img_celeba", "Img/img_celeba/img_celeba", "img_celeba/img_celeba", "."],
    True: ["Img/img_align_celeba", "img_align_celeba", "img_align_celeba/img_align_celeba",
           "Img/img_align_celeba/img_align_celeba", "."],
}
_ARCHIVES = ("img_celeba.7z", "img_celeba.zip", "img_align_celeba.zip", "img_align_celeba.7z",
             "Img/img_celeba.7z", "Img/img_align_celeba.zip", "Img/img_celeba.7z.001", "celeba.zip")


@dataclass
class CelebAFiles:
    """Where each CelebA file of ``root`` is (``None``: not there)."""

    root: str
    aligned: bool
    attr: str
    partition: str | None
    bbox: str | None
    landmarks: str | None
    image_dirs: list[str]  # candidate image folders that exist, in order of preference

    @property
    def layout(self) -> str:
        if self.attr.lower().endswith(".csv"):
            return "csv"
        return "official" if "/Anno/" in self.attr.replace("\\", "/") else "flat"


def _is_dir(location: str) -> bool:
    import pyarrow.fs as pafs

    fs, path = storage.resolve(location)
    return fs.get_file_info(path).type == pafs.FileType.Directory


def _is_file(location: str) -> bool:
    import pyarrow.fs as pafs

    fs, path = storage.resolve(location)
    return fs.get_file_info(path).type == pafs.FileType.File


def find_files(root: str, aligned: bool = False, *, need_partition: bool = True) -> CelebAFiles:
    """Locate CelebA's files under ``root`` (official tree, flat, or CSV edition); a
    ``CelebAError`` lists, for every required file not found, the places looked in.
    ``need_partition=False``: the partition file may be missing (a split by image id)."""
    if not storage.exists(root):
        raise CelebAError(f"{root}: CelebA folder does not exist")
    if not _is_dir(root):
        raise CelebAError(f"{root}: not a folder (expected CelebA's folder, with Anno/, Eval/ and Img/ or the files flat)")
    found: dict[str, str | None] = {}
    for key, rels in _FILE_CANDIDATES.items():
        found[key] = next((storage.join(root, r) for r in rels if _is_file(storage.join(root, r))), None)
    missing = [k for k in (("attr", "partition") if need_partition else ("attr",)) if found[k] is None]
    if not aligned and found["bbox"] is None and found["landmarks"] is None:
        missing.append("bbox or landmarks")
    dirs = [storage.join(root, d) if d != "." else root for d in _IMAGE_DIRS[aligned]]
    dirs = [d for d in dirs if _is_dir(d)]
    if missing:
        lines = []
        for k in missing:
            keys = ["bbox", "landmarks"] if k == "bbox or landmarks" else [k]
            rels = [r for kk in keys for r in _FILE_CANDIDATES[kk]]
            what = {"attr": "the attribute file",
                    "partition": "the partition file (without one, --split-fraction 0.8,0.1,0.1 splits by image id)",
                    "bbox or landmarks": "a face-box source (in-the-wild mode needs the boxes or the in-the-wild landmarks)"}[k]
            lines.append(f"  {what}: looked for {', '.join(rels)}")
        raise CelebAError(f"{root}: CelebA files not found:\n" + "\n".join(lines))
    return CelebAFiles(root=root, aligned=aligned, attr=found["attr"], partition=found["partition"],
                       bbox=None if aligned else found["bbox"], landmarks=None if aligned else found["landmarks"],
                       image_dirs=dirs)


def _list_names(location: str) -> set[str]:
    if storage.is_local(location):
        try:
            return set(os.listdir(storage.local_path(location)))
        except OSError:
            return set()
    return set(storage.listdir(location))


def _choose_image_dir(files: CelebAFiles, ids: list[str]) -> tuple[str, set[str]]:
    """The first candidate image folder holding any of ``ids``, with its file names."""
    sample = ids[: min(len(ids), 1000)]
    for d in files.image_dirs:
        names = _list_names(d)
        if any(s in names for s in sample) or any(s in names for s in ids):
            return d, names
    mode = "aligned" if files.aligned else "in-the-wild"
    looked = [storage.join(files.root, d) if d != "." else files.root for d in _IMAGE_DIRS[files.aligned]]
    hint = ""
    archives = [a for a in _ARCHIVES if _is_file(storage.join(files.root, a))]
    if archives:
        hint += f"; found {', '.join(archives)}: unpack it first"
    other = [storage.join(files.root, d) for d in _IMAGE_DIRS[not files.aligned] if d != "." and _is_dir(storage.join(files.root, d))]
    if other:
        hint += (f"; there is an {'in-the-wild' if files.aligned else 'aligned'} image folder ({other[0]}): "
                 f"{'drop' if files.aligned else 'add'} --aligned to use it")
    raise CelebAError(f"{files.root}: no folder of {mode} CelebA images holding the images named in "
                      f"{files.attr} (looked in {', '.join(looked)}){hint}")


# --------------------------------------------------------------------------- split by image id

SPLIT_RULE = ("the first 8 bytes of the SHA-256 of the image id, over 2**64: below the train share -> train, "
              "below train + val -> val, else test")


def split_shares(value) -> tuple[float, float, float]:
    """The train, val and test shares of ``--split-fraction`` (``"0.8,0.1,0.1"`` or three
    numbers): each above 0, together 1; anything else is a ``CelebAError``."""
    text = value if isinstance(value, str) else ",".join(str(v) for v in value)
    try:
        shares = tuple(float(t) for t in text.split(","))
    except ValueError:
        shares = ()
    if len(shares) != 3 or not all(0 < v < 1 for v in shares) or abs(sum(shares) - 1) > 1e-6:
        raise CelebAError(f"--split-fraction {text}: expected three shares train,val,test, each above 0 "
                          "and together 1, like 0.8,0.1,0.1")
    return shares


def split_by_id(ids: list[str], shares: tuple[float, float, float]) -> np.ndarray:
    """Each image's split from its id alone (``SPLIT_RULE``): the same id lands in the same
    split whatever the order of the rows and whichever other images are kept or dropped."""
    u = np.fromiter((int.from_bytes(hashlib.sha256(s.encode()).digest()[:8], "big") for s in ids),
                    dtype=np.float64, count=len(ids)) / 2.0**64
    bounds = np.cumsum(shares[:2])
    return np.asarray(shards.SPLITS, dtype=object)[np.searchsorted(bounds, u, side="right")]


# --------------------------------------------------------------------------- cross-checks


class _Drops:
    """Dropped rows by reason, with the first message of each reason."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.examples: dict[str, str] = {}

    def add(self, key: str, message: str, n: int = 1) -> None:
        self.counts[key] += n
        self.examples.setdefault(key, message)

    @property
    def total(self) -> int:
        return int(sum(self.counts.values()))


@dataclass
class Plan:
    """The consistent rows to prepare, in attribute-file order."""

    files: CelebAFiles
    ids: list[str]
    splits: np.ndarray  # (n,) str
    labels: np.ndarray  # (n, 40) int8 0/1
    attr_lines: np.ndarray  # (n,)
    bbox: np.ndarray | None  # (n, 4) x, y, w, h
    bbox_lines: np.ndarray | None
    landmarks: np.ndarray | None  # (n, 10)
    landmark_lines: np.ndarray | None
    dropped: _Drops
    warnings: list[str]


def load_annotations(files: CelebAFiles, *, allow_partial: bool = False, limit: int = 0,
                     split_fraction: tuple[float, float, float] | None = None) -> Plan:
    """Parse the annotation files ``files`` names and keep the images consistent across
    all of them. Strict (default): the first problem raises ``CelebAError``. With
    ``allow_partial`` inconsistent images are dropped and counted by reason. With
    ``split_fraction`` (checked shares, ``split_shares``) the split is by image id and the
    partition file is not read.

    ``limit`` > 0 keeps the first ``limit`` data rows of the attribute file; then only
    problems that touch those images count (ids of other files beyond them are not
    reported as extra). In strict mode every file must be valid as a whole."""
    strict = not allow_partial
    drops = _Drops()
    warns: list[str] = []
    attr = parse_annotation(files.attr, "attr", strict=False)
    if strict:
        attr.raise_first()
    warns += attr.warnings
    limit_line = int(attr.row_lines[limit - 1]) if 0 < limit <= attr.num_rows else None
    in_limit = (lambda line: True) if limit_line is None else (lambda line: line <= limit_line)
    sel = np.ones(len(attr.ids), dtype=bool) if limit_line is None else attr.lines <= limit_line
    keep: dict[str, int] = {s: r for r, s in enumerate(attr.ids) if sel[r]}
    attr_ids_all = set(attr.ids) | {p.image_id for p in attr.problems if p.image_id}
    counted: set[str] = set()
    for p in attr.problems:
        if in_limit(p.line) and not (p.image_id and p.image_id in counted):
            drops.add(p.key, p.message)  # once per image (a duplicated id is one image)
            if p.image_id:
                counted.add(p.image_id)

    others = [] if split_fraction else [("partition", files.partition)]
    if not files.aligned:
        others += [(k, p) for k, p in (("bbox", files.bbox), ("landmarks", files.landmarks)) if p]
    per_file: dict[str, tuple[Annotation, dict[str, int]]] = {}
    attr_name = file_name(files.attr)
    for key, path in others:
        ann = parse_annotation(path, key, strict=False)
        if strict:
            ann.raise_first()
        warns += ann.warnings
        name = file_name(path)
        for p in ann.problems:
            if p.image_id in keep:
                del keep[p.image_id]
                drops.add(p.key, p.message)
            elif limit_line is None and (p.image_id is None or p.image_id not in attr_ids_all):
                drops.add(p.key, p.message)  # a bad row naming no image we know
        index = {s: r for r, s in enumerate(ann.ids)}
        bad_ids = {p.image_id for p in ann.problems if p.image_id}
        for s in list(keep):
            if s not in index and s not in bad_ids:
                line = int(attr.lines[keep[s]])
                msg = f"{files.attr}, line {line}: image {s} is not in {path}"
                if strict:
                    raise CelebAError(msg)
                del keep[s]
                drops.add(f"{attr_name}: image not in {name}", msg)
        if limit_line is None:
            for r, s in enumerate(ann.ids):
                if s not in attr_ids_all:
                    msg = f"{path}, line {int(ann.lines[r])}: image {s} is not in {files.attr}"
                    if strict:
                        raise CelebAError(msg)
                    drops.add(f"{name}: image not in {attr_name}", msg)
        per_file[key] = (ann, index)

    ids = list(keep)
    rows = np.fromiter(keep.values(), dtype=np.int64, count=len(ids))
    labels = (attr.values[rows] > 0).astype(np.int8) if len(ids) else np.zeros((0, len(ATTRIBUTES)), np.int8)

    def take(key: str):
        if key not in per_file:
            return None, None
        ann, index = per_file[key]
        r = np.fromiter((index[s] for s in ids), dtype=np.int64, count=len(ids))
        return ann.values[r], ann.lines[r]

    if split_fraction:
        splits = split_by_id(ids, split_fraction)
    else:
        part, _ = take("partition")
        splits = np.asarray(shards.SPLITS, dtype=object)[part[:, 0]] if len(ids) else np.zeros(0, dtype=object)
    bbox, bbox_lines = take("bbox")
    lms, lm_lines = take("landmarks")
    return Plan(files=files, ids=ids, splits=splits, labels=labels, attr_lines=attr.lines[rows],
                bbox=bbox, bbox_lines=bbox_lines, landmarks=lms, landmark_lines=lm_lines,
                dropped=drops, warnings=warns)


# --------------------------------------------------------------------------- images (runs in Ray tasks)


class _ImageProblem(Exception):
    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


def _open_image(data: bytes):
    """Open (lazily) with the size guard; returns a PIL image not yet decoded."""
    from PIL import Image, UnidentifiedImageError

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
    from PIL import ImageFile

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


def _face_image(data: bytes, row: list, spec: dict):
    """(face image, face_box, box source) for one image, or ``_ImageProblem``."""
    from PIL import Image

    size = spec["size"]
    im = _open_image(data)
    W, H = im.size
    if spec["aligned"]:
        img = _decode_rgb(im)
        return img.resize((size, size), Image.Resampling.LANCZOS), [0.0, 0.0, float(W), float(H)], "whole"
    bbox, lms = row[3], row[5]
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
    if inside and getattr(im, "format", None) == "JPEG" and s >= 2 * size:
        reduce = next(f for f in (8, 4, 2, 1) if s / f >= size)
        if reduce > 1:
            res = im.draft(None, (W // reduce, H // reduce))
            if res is not None:
                scale = res[1][2] / W
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
    rel = ""
    if ids and not (spec["strict"] and errors):
        table = shards.rows_to_table({"image_id": ids, "split": splits, "image": images,
                                      "labels": labels, "face_box": boxes})
        try:
            rel = shards.write_shard(table, spec["out"], spec["split"], spec["index"])
        except Exception as e:  # noqa: BLE001 - reported to the driver, which raises
            errors.append({"reason": "shard write failed",
                           "message": f"{storage.join(spec['out'], spec['split'])}: writing shard {spec['index']} failed: "
                                      f"{type(e).__name__}: {e}"})
            rel = ""
    return {"split": spec["split"], "index": spec["index"], "path": rel, "rows": len(ids) if rel else 0,
            "images": len(spec["rows"]), "errors": json.dumps(errors), "sources": json.dumps(dict(sources)),
            "seconds": time.perf_counter() - t0}


def _chunk_task(item: dict) -> dict:
    return _process_chunk(json.loads(item["spec"]))


# --------------------------------------------------------------------------- driver


def _print_progress(msg: str) -> None:
    print(f"prepare-celeba: {msg}", file=sys.stderr, flush=True)


def _prepare_out(out: str) -> list[str]:
    """Make ``out`` ready for new shards; return the shard files of a previous data set
    there (removed at the end if not rewritten). ``dataset.json`` is removed *first*, so
    a half-rewritten folder never passes for a complete data set."""
    info_path = storage.join(out, shards.DATASET_INFO_FILE)
    if not storage.exists(out):
        storage.makedirs(out)
        return []
    if not _is_dir(out):
        raise CelebAError(f"{out}: output location exists and is not a folder")
    names = [n for n in storage.listdir(out) if not n.startswith(".")]
    if shards.DATASET_INFO_FILE not in names:
        foreign = [n for n in names if n not in shards.SPLITS]
        if foreign:
            raise CelebAError(f"{out}: output folder is not empty and is not a prepared data set "
                              f"(holds {', '.join(foreign[:5])}); choose an empty or new folder")
    old = []
    for split in shards.SPLITS:
        old += [f"{split}/{n}" for n in storage.listdir(storage.join(out, split))
                if n.startswith("shard-") and n.endswith(".parquet")]
    if storage.exists(info_path):
        storage.remove_tree(info_path)
    return old


def _chunk_specs(plan: Plan, images_dir: str, out: str, *, aligned: bool, size: int, margin: float,
                 strict: bool, chunk_size: int) -> list[dict]:
    specs = []
    files = {"attr": plan.files.attr, "bbox": plan.files.bbox, "landmarks": plan.files.landmarks}
    for split in shards.SPLITS:
        idx = np.flatnonzero(plan.splits == split)
        for c, lo in enumerate(range(0, len(idx), chunk_size)):
            rows = []
            for r in idx[lo:lo + chunk_size]:
                rows.append([
                    plan.ids[r], int(plan.attr_lines[r]), "".join("01"[v] for v in plan.labels[r]),
                    None if plan.bbox is None else [float(v) for v in plan.bbox[r]],
                    0 if plan.bbox_lines is None else int(plan.bbox_lines[r]),
                    None if plan.landmarks is None else [float(v) for v in plan.landmarks[r]],
                    0 if plan.landmark_lines is None else int(plan.landmark_lines[r]),
                ])
            specs.append({"split": split, "index": c, "out": out, "images": images_dir, "aligned": aligned,
                          "size": size, "margin": margin, "strict": strict, "files": files, "rows": rows})
    return specs


def _out_hint(specs: list[dict]) -> str:
    return specs[0]["out"] if specs else "CelebA"


def _run_chunks(specs: list[dict], *, strict: bool, drops: _Drops, total: int,
                _say=_print_progress) -> tuple[list[dict], Counter]:
    """Run the chunk tasks on Ray Data; one progress line per finished chunk."""
    import ray
    import ray.data.exceptions

    if not ray.is_initialized():
        ray.init(address="local" if not os.environ.get("RAY_ADDRESS") else None)
    ctx = ray.data.DataContext.get_current()
    old_bars = ctx.enable_progress_bars
    ctx.enable_progress_bars = False  # one line per chunk instead (below)
    results: list[dict] = []
    sources: Counter[str] = Counter()
    rows = None
    try:
        items = [{"spec": json.dumps(s, separators=(",", ":"))} for s in specs]
        ds = ray.data.from_items(items, override_num_blocks=len(items)).map(_chunk_task, num_cpus=0.25)
        t0 = time.perf_counter()
        done = 0
        ray_errors = (ray.exceptions.RayError, ray.data.exceptions.UserCodeException,
                      ray.data.exceptions.SystemException)
        rows = iter(ds.iter_rows())
        while True:
            try:
                res = next(rows)
            except StopIteration:
                break
            except ray_errors as e:  # a worker died, ran out of memory, ...: say so in one line
                cause = [ln for ln in str(e).strip().splitlines() if ln.strip()]
                raise CelebAError(f"preparing {_out_hint(specs)} failed in a Ray task: "
                                  f"{cause[-1] if cause else type(e).__name__}") from e
            errors = json.loads(res["errors"])
            write_errors = [e for e in errors if e["reason"] == "shard write failed"]
            if write_errors:
                raise CelebAError(write_errors[0]["message"])
            if errors and strict:
                more = len(errors) - 1
                tail = f" ({more} more bad image{'s' if more != 1 else ''} in this chunk)" if more else ""
                raise CelebAError(errors[0]["message"] + tail +
                                  "; --allow-partial skips bad images and reports how many")
            for e in errors:
                drops.add(e["reason"], e["message"])
            sources.update(json.loads(res["sources"]))
            results.append(res)
            done += int(res["images"])
            rate = done / max(time.perf_counter() - t0, 1e-9)
            _say(f"{done}/{total} images, {len(results)}/{len(specs)} shards "
                 f"({res['path'] or res['split'] + ' chunk ' + str(res['index']) + ': no rows'}), {rate:.0f} images/s"
                 + (f", {len(errors)} dropped" if errors else ""))
    finally:
        if rows is not None and hasattr(rows, "close"):
            rows.close()  # stop the execution now (strict mode stops at the first bad chunk)
        ctx.enable_progress_bars = old_bars
    return results, sources


def prepare_celeba(root: str, out: str, aligned: bool = False, allow_partial: bool = False,
                   image_size: int = 224, margin: float = 0.0, limit: int = 0, *,
                   split_fraction: str | tuple[float, ...] | None = None, chunk_size: int = DEFAULT_CHUNK_SIZE,
                   progress=None) -> shards.DatasetInfo:
    """Convert CelebA under ``root`` into shards under ``out`` (see the module docstring).

    ``aligned`` uses ``img_align_celeba`` as it is; otherwise the in-the-wild face box
    is cut (``facebox``) with ``margin``. ``allow_partial`` drops inconsistent rows and
    counts them instead of raising ``CelebAError``. ``limit`` > 0 keeps the first
    ``limit`` images of the attribute file. ``split_fraction`` (``"0.8,0.1,0.1"`` or three
    shares, see ``split_shares``) splits by image id instead of the partition file.
    ``chunk_size`` images per Ray task and shard.
    ``progress(line)`` receives the progress lines (default: printed to stderr).
    Returns the ``DatasetInfo`` written to ``out/dataset.json``."""
    _say = progress or _print_progress
    if not isinstance(image_size, int) or image_size < 1:
        raise CelebAError(f"image_size must be a positive integer, got {image_size!r}")
    if not (isinstance(margin, (int, float)) and math.isfinite(margin) and margin > -0.5):
        raise CelebAError(f"margin must be a number above -0.5 (a share of the box side), got {margin!r}")
    if not isinstance(limit, int) or limit < 0:
        raise CelebAError(f"limit must be 0 (all) or a positive number of images, got {limit!r}")
    if not isinstance(chunk_size, int) or chunk_size < 1:
        raise CelebAError(f"chunk_size must be a positive integer, got {chunk_size!r}")
    shares = None if split_fraction is None else split_shares(split_fraction)
    strict = not allow_partial
    # Tasks on other nodes resolve paths against their own working folder: make local ones absolute.
    root = storage.local_path(root) if storage.is_local(root) else root
    out = storage.local_path(out) if storage.is_local(out) else out
    t0 = time.perf_counter()
    files = find_files(root, aligned, need_partition=shares is None)
    if shares and files.partition:
        _say(f"--split-fraction: splitting by image id; {files.partition} is not read")
    plan = load_annotations(files, allow_partial=allow_partial, limit=limit, split_fraction=shares)
    for w in plan.warnings:
        _say(f"warning: {w}")
    if not plan.ids:
        raise CelebAError(f"{root}: no consistent images to prepare"
                          + (f" (dropped: {dict(plan.dropped.counts)})" if plan.dropped.total else ""))
    images_dir, names = _choose_image_dir(files, plan.ids)
    present = np.fromiter((s in names for s in plan.ids), dtype=bool, count=len(plan.ids))
    if not present.all():
        missing = np.flatnonzero(~present)
        r = int(missing[0])
        msg = (f"{storage.join(images_dir, plan.ids[r])}: image file not found "
               f"(image listed at {files.attr}, line {int(plan.attr_lines[r])})")
        if strict:
            more = len(missing) - 1
            raise CelebAError(msg + (f" ({more} more images missing)" if more else ""))
        for r in missing:
            plan.dropped.add("missing image", f"{storage.join(images_dir, plan.ids[r])}: image file not found "
                                              f"(image listed at {files.attr}, line {int(plan.attr_lines[r])})")
        _keep_rows(plan, present)
    _say(f"{len(plan.ids)} images to prepare from {root} ({files.layout} layout, "
         f"{'aligned' if aligned else 'in the wild'}), annotations read in {time.perf_counter() - t0:.1f} s"
         + (f", {plan.dropped.total} rows dropped so far" if plan.dropped.total else ""))

    old_shards = _prepare_out(out)
    specs = _chunk_specs(plan, images_dir, out, aligned=aligned, size=image_size, margin=float(margin),
                         strict=strict, chunk_size=chunk_size)
    results, sources = _run_chunks(specs, strict=strict, drops=plan.dropped, total=len(plan.ids), _say=_say)

    num_rows = {s: 0 for s in shards.SPLITS}
    out_files: dict[str, list[str]] = {s: [] for s in shards.SPLITS}
    for res in sorted(results, key=lambda r: (shards.SPLITS.index(r["split"]), r["index"])):
        if res["path"]:
            num_rows[res["split"]] += int(res["rows"])
            out_files[res["split"]].append(res["path"])
    if not any(num_rows.values()):
        raise CelebAError(f"{root}: every image was dropped ({dict(plan.dropped.counts)}); nothing written")
    source = {
        "root": root, "aligned": aligned, "margin": float(margin), "allow_partial": allow_partial, "limit": limit,
        "layout": files.layout,
        "files": {"attr": files.attr, "partition": None if shares else files.partition, "bbox": files.bbox,
                  "landmarks": files.landmarks, "images": images_dir},
        "split": ({"by": "image id", "split_fraction": dict(zip(shards.SPLITS, shares)), "rule": SPLIT_RULE}
                  if shares else {"by": "partition file"}),
        "dropped": dict(plan.dropped.counts), "dropped_total": plan.dropped.total,
        "dropped_examples": dict(plan.dropped.examples), "warnings": list(plan.warnings),
        "box_source": dict(sources),
        "crop": ("whole image squashed to a square" if aligned else
                 "face square (facebox.face_square), padded with black outside the image"),
        "resize": "lanczos", "jpeg_quality": JPEG_QUALITY,
    }
    info = shards.DatasetInfo(name="celeba-aligned" if aligned else "celeba", image_size=image_size,
                              num_rows=num_rows, files=out_files, source=source)
    shards.write_info(info, out)
    written = {p for fs in out_files.values() for p in fs}
    for rel in old_shards:
        if rel not in written:
            storage.remove_tree(storage.join(out, rel))
    secs = time.perf_counter() - t0
    total = sum(num_rows.values())
    _say(f"wrote {total} images ({', '.join(f'{s} {n}' for s, n in num_rows.items())}) to {out} in {secs:.1f} s")
    if plan.dropped.total:
        _say(f"dropped {plan.dropped.total} rows: "
             + "; ".join(f"{n} x {k}" for k, n in plan.dropped.counts.most_common()))
    try:
        shards.check_splits(out, info)
    except shards.ShardError as e:  # written all the same: the rows are good, only train refuses them
        _say(f"warning: {e}")
    return info


def _keep_rows(plan: Plan, mask: np.ndarray) -> None:
    plan.ids = [s for s, m in zip(plan.ids, mask) if m]
    plan.splits = plan.splits[mask]
    plan.labels = plan.labels[mask]
    plan.attr_lines = plan.attr_lines[mask]
    for name in ("bbox", "bbox_lines", "landmarks", "landmark_lines"):
        v = getattr(plan, name)
        if v is not None:
            setattr(plan, name, v[mask])
