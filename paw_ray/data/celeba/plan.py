"""Which CelebA images to prepare: the annotation files parsed and cross-checked into a
:class:`Plan` (the rows consistent across all files, with their split), and the split by
image id of ``--split-fraction``.

The files are parsed by ``paw_ray.data.annotations`` (the real files' quirks and the
CSV variants); here they are checked against each other. Strict mode raises the first
problem as a ``CelebAError`` naming the file and line; with ``allow_partial`` the images
with a problem are dropped and counted by reason (:class:`Drops`).
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass

import numpy as np

from paw_ray.attributes import ATTRIBUTES
from paw_ray.data import shards
from paw_ray.data.annotations import Annotation, CelebAError, file_name, parse_annotation
from paw_ray.data.celeba.layout import CelebAFiles

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


class Drops:
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
    dropped: Drops
    warnings: list[str]

    def keep_rows(self, mask: np.ndarray) -> None:
        """Keep only the rows where ``mask`` is true."""
        self.ids = [s for s, m in zip(self.ids, mask) if m]
        self.splits = self.splits[mask]
        self.labels = self.labels[mask]
        self.attr_lines = self.attr_lines[mask]
        for name in ("bbox", "bbox_lines", "landmarks", "landmark_lines"):
            v = getattr(self, name)
            if v is not None:
                setattr(self, name, v[mask])


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
    drops = Drops()
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
    for key, path in others:
        ann = parse_annotation(path, key, strict=False)
        if strict:
            ann.raise_first()
        warns += ann.warnings
        index = _cross_check(files, attr, attr_ids_all, ann, path, keep,
                             limit_line=limit_line, strict=strict, drops=drops)
        per_file[key] = (ann, index)
    return _assemble(files, attr, list(keep), np.fromiter(keep.values(), dtype=np.int64, count=len(keep)),
                     per_file, split_fraction, drops, warns)


def _cross_check(files: CelebAFiles, attr: Annotation, attr_ids_all: set[str], ann: Annotation, path: str,
                 keep: dict[str, int], *, limit_line: int | None, strict: bool, drops: Drops) -> dict[str, int]:
    """Drop from ``keep`` (id -> attribute row) the images that ``ann``, the file at
    ``path``, has a problem with or lacks; count its rows that name no image of the
    attribute file. Returns ``ann``'s id -> row."""
    attr_name, name = file_name(files.attr), file_name(path)
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
    return index


def _assemble(files: CelebAFiles, attr: Annotation, ids: list[str], rows: np.ndarray,
              per_file: dict[str, tuple[Annotation, dict[str, int]]],
              split_fraction: tuple[float, float, float] | None, drops: Drops, warns: list[str]) -> Plan:
    """The plan of the kept images ``ids`` (attribute rows ``rows``), with each one's
    values from every other file."""
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
