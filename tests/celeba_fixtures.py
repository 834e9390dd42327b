"""Tiny CelebA trees in CelebA's exact formats, for the reader's tests.

``make_celeba(root, n=12, layout=...)`` writes ``n`` small JPEGs (in the wild and aligned)
and the annotation files with every quirk of the real ones: the row-count first line,
the line of column names (with the real files' trailing space), right-aligned numbers
in runs of spaces, CRLF line ends, trailing blank lines, a partition file with neither
count nor names. Layouts: ``"official"`` (Anno/, Eval/, Img/), ``"flat"`` (all in one
folder, images in img_celeba/ and img_align_celeba/), ``"csv"`` (the Kaggle edition:
``.csv`` files with ``image_id,...`` headers, aligned images one level deeper in
``img_align_celeba/img_align_celeba/``, no in-the-wild images unless asked).

Each in-the-wild image is a blue field with the annotated face box painted red, so a
test can tell that the right region was cut. ``CelebaFixture`` knows every value it
wrote and the line each row is on, and ``rewrite`` lets a test corrupt a file line by
line.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

from paw_ray.attributes import ATTRIBUTES

BBOX_COLUMNS = ["image_id", "x_1", "y_1", "width", "height"]
LANDMARK_COLUMNS = ["lefteye_x", "lefteye_y", "righteye_x", "righteye_y", "nose_x", "nose_y",
                    "leftmouth_x", "leftmouth_y", "rightmouth_x", "rightmouth_y"]
BACKGROUND = (20, 40, 200)
FACE = (220, 30, 30)


@dataclass
class CelebaFixture:
    root: Path
    layout: str
    ids: list[str]
    labels: np.ndarray  # (n, 40) 0/1
    splits: list[str]
    bboxes: np.ndarray  # (n, 4) as written (x_1, y_1, width, height)
    landmarks: np.ndarray  # (n, 10) in-the-wild landmarks
    sizes: dict[str, tuple[int, int]]  # in-the-wild image sizes
    paths: dict[str, Path] = field(default_factory=dict)  # attr, bbox, landmarks, landmarks_align, partition, wild, aligned
    crlf: bool = True

    def lines(self, kind: str) -> list[str]:
        """The file's lines (without line ends)."""
        text = self.paths[kind].read_bytes().decode("utf-8")
        return text.replace("\r\n", "\n").split("\n")

    def line_of(self, kind: str, image_id: str) -> int:
        """1-based line of ``image_id``'s row in the file of ``kind``."""
        for i, line in enumerate(self.lines(kind)):
            if line.split(",")[0].split(" ")[0] == image_id:
                return i + 1
        raise KeyError(image_id)

    def rewrite(self, kind: str, fn: Callable[[list[str]], list[str]]) -> Path:
        """Replace the file of ``kind`` by ``fn(lines)`` (same line ends as before)."""
        nl = "\r\n" if self.crlf else "\n"
        self.paths[kind].write_bytes(nl.join(fn(self.lines(kind))).encode("utf-8"))
        return self.paths[kind]

    def set_line(self, kind: str, line: int, text: str) -> Path:
        def fn(lines):
            lines[line - 1] = text
            return lines
        return self.rewrite(kind, fn)

    def image_path(self, image_id: str, aligned: bool = False) -> Path:
        return self.paths["aligned" if aligned else "wild"] / image_id

    def split_of(self, image_id: str) -> str:
        return self.splits[self.ids.index(image_id)]


def jpeg_bytes(img: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=95, **kw)
    return buf.getvalue()


def wild_image(size: tuple[int, int], box, mode: str = "RGB") -> Image.Image:
    img = Image.new("RGB", size, BACKGROUND)
    x, y, w, h = (int(v) for v in box)
    if w > 0 and h > 0:
        img.paste(FACE, (x, y, x + w, y + h))
    return img if mode == "RGB" else img.convert(mode)


def huge_jpeg(width: int = 30000, height: int = 30000) -> bytes:
    """A tiny JPEG whose header claims ``width`` x ``height`` (a decompression bomb's header)."""
    data = bytearray(jpeg_bytes(Image.new("RGB", (8, 8), (1, 2, 3))))
    sof = data.index(b"\xff\xc0")
    data[sof + 5:sof + 7] = height.to_bytes(2, "big")
    data[sof + 7:sof + 9] = width.to_bytes(2, "big")
    return bytes(data)


def _txt(count: bool, header: str | None, rows: list[tuple[str, list[int]]], width: int, id_width: int = 0) -> list[str]:
    out = [str(len(rows))] if count else []
    if header is not None:
        out.append(header)
    for image_id, vals in rows:
        out.append(f"{image_id:<{id_width}}" + "".join(f" {v:>{width}}" for v in vals))
    return out


def _csv(header: list[str], rows: list[tuple[str, list[int]]]) -> list[str]:
    return [",".join(header)] + [",".join([image_id] + [str(v) for v in vals]) for image_id, vals in rows]


def make_celeba(root, n: int = 12, layout: str = "official", *, seed: int = 0, crlf: bool = True,
                wild_size: tuple[int, int] = (40, 50), aligned_size: tuple[int, int] = (36, 44),
                gray: tuple[int, ...] = (), cmyk: tuple[int, ...] = (), degenerate_box: tuple[int, ...] = (),
                sizes: dict[int, tuple[int, int]] | None = None, boxes: dict[int, tuple[int, int, int, int]] | None = None,
                wild_images: bool | None = None, aligned_images: bool = True) -> CelebaFixture:
    """Write a CelebA tree of ``n`` images under ``root`` and describe it.

    ``gray`` / ``cmyk``: 0-based indices of images saved as grayscale / CMYK JPEGs;
    ``degenerate_box``: indices whose annotated box is ``0 0 0 0`` (the landmarks must
    serve); ``sizes`` / ``boxes``: per-index overrides of the image size and the box."""
    root = Path(root)
    rng = np.random.default_rng(seed)
    ids = [f"{i + 1:06d}.jpg" for i in range(n)]
    labels = rng.integers(0, 2, size=(n, len(ATTRIBUTES)))
    n_val = max(1, n // 6) if n >= 3 else 0
    n_test = max(1, n // 6) if n >= 3 else 0
    part = [0] * (n - n_val - n_test) + [1] * n_val + [2] * n_test
    splits = [("train", "val", "test")[p] for p in part]
    sizes_out: dict[str, tuple[int, int]] = {}
    bboxes = np.zeros((n, 4), dtype=np.int64)
    lms = np.zeros((n, 10), dtype=np.int64)
    for i in range(n):
        W, H = (sizes or {}).get(i, wild_size)
        sizes_out[ids[i]] = (W, H)
        if boxes and i in boxes:
            x, y, w, h = boxes[i]
        else:
            w = int(rng.integers(W * 4 // 10, W * 6 // 10 + 1))
            h = int(rng.integers(H * 4 // 10, H * 6 // 10 + 1))
            x = int(rng.integers(1, W - w))
            y = int(rng.integers(1, H - h))
        bboxes[i] = (x, y, w, h)
        # 5 landmarks inside the box's central part (eyes, nose, mouth corners)
        ex0, ex1 = x + w // 4, x + 3 * w // 4
        lms[i] = (ex0, y + h // 3, ex1, y + h // 3, x + w // 2, y + h // 2,
                  ex0, y + 2 * h // 3, ex1, y + 2 * h // 3)
    written_boxes = bboxes.copy()
    for i in degenerate_box:
        written_boxes[i] = 0

    if layout == "official":
        anno, evald, imgd = root / "Anno", root / "Eval", root / "Img"
        wild_dir, aligned_dir = imgd / "img_celeba", imgd / "img_align_celeba"
        ext = "txt"
    elif layout == "flat":
        anno = evald = root
        wild_dir, aligned_dir = root / "img_celeba", root / "img_align_celeba"
        ext = "txt"
    elif layout == "csv":
        anno = evald = root
        wild_dir, aligned_dir = root / "img_celeba", root / "img_align_celeba" / "img_align_celeba"
        ext = "csv"
    else:
        raise ValueError(layout)
    if wild_images is None:
        wild_images = layout != "csv"
    for d in (anno, evald):
        d.mkdir(parents=True, exist_ok=True)

    paths = {
        "attr": anno / f"list_attr_celeba.{ext}",
        "bbox": anno / f"list_bbox_celeba.{ext}",
        "landmarks": anno / f"list_landmarks_celeba.{ext}",
        "landmarks_align": anno / f"list_landmarks_align_celeba.{ext}",
        "partition": evald / f"list_eval_partition.{ext}",
        "wild": wild_dir,
        "aligned": aligned_dir,
    }
    attr_rows = [(ids[i], [1 if v else -1 for v in labels[i]]) for i in range(n)]
    box_rows = [(ids[i], [int(v) for v in written_boxes[i]]) for i in range(n)]
    lm_rows = [(ids[i], [int(v) for v in lms[i]]) for i in range(n)]
    al_rows = [(ids[i], [69, 109, 106, 113, 77, 142, 73, 152, 108, 154]) for i in range(n)]
    part_rows = [(ids[i], [part[i]]) for i in range(n)]
    if ext == "txt":
        files = {
            # the real attr header ends with a space; values are " 1"/"-1" in runs of spaces
            "attr": _txt(True, " ".join(ATTRIBUTES) + " ", attr_rows, 2),
            "bbox": _txt(True, "image_id x_1 y_1 width height ", box_rows, 3, id_width=10),
            "landmarks": _txt(True, " ".join(LANDMARK_COLUMNS) + " ", lm_rows, 4, id_width=10),
            "landmarks_align": _txt(True, " ".join(LANDMARK_COLUMNS) + " ", al_rows, 4, id_width=10),
            "partition": [f"{s} {v[0]}" for s, v in part_rows],
        }
    else:
        files = {
            "attr": _csv(["image_id"] + list(ATTRIBUTES), attr_rows),
            "bbox": _csv(BBOX_COLUMNS, box_rows),
            "landmarks_align": _csv(["image_id"] + LANDMARK_COLUMNS, al_rows),
            "partition": _csv(["image_id", "partition"], part_rows),
        }
        # the Kaggle edition has no in-the-wild landmarks
        paths.pop("landmarks")
    nl = "\r\n" if crlf else "\n"
    for kind, lines in files.items():
        # trailing blank lines, as some copies of the real files have
        paths[kind].write_bytes((nl.join(lines) + nl + nl).encode("utf-8"))

    if wild_images:
        wild_dir.mkdir(parents=True, exist_ok=True)
    if aligned_images:
        aligned_dir.mkdir(parents=True, exist_ok=True)
    for i, s in enumerate(ids):
        mode = "L" if i in gray else "CMYK" if i in cmyk else "RGB"
        if wild_images:
            (wild_dir / s).write_bytes(jpeg_bytes(wild_image(sizes_out[s], bboxes[i], mode)))
        if aligned_images:
            img = Image.new("RGB", aligned_size, (30, 160, 90))
            img.paste((250, 250, 0), (0, 0, aligned_size[0] // 2, aligned_size[1]))  # left half yellow
            (aligned_dir / s).write_bytes(jpeg_bytes(img if mode == "RGB" else img.convert(mode)))
    return CelebaFixture(root=root, layout=layout, ids=ids, labels=labels.astype(np.int8), splits=splits,
                         bboxes=bboxes, landmarks=lms, sizes=sizes_out, paths=paths, crlf=crlf)
