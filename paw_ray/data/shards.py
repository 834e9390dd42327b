"""The one shard format every data source is written in (docs/data-format.md).

A data set is a folder (or URI) holding Parquet shards and a ``dataset.json``::

    <data>/dataset.json            # DatasetInfo: name, sizes, shard files per split
    <data>/train/shard-00000.parquet
    <data>/val/shard-00000.parquet
    <data>/test/shard-00000.parquet

One row per image, columns (``SHARD_SCHEMA``):

- ``image_id`` (string): ``000001.jpg`` for CelebA, ``synth-000000`` for SynthFaces.
- ``split`` (string): ``train`` | ``val`` | ``test``.
- ``image`` (binary): encoded JPEG/PNG bytes of the **face box already cut out, squared
  and resized** to ``DatasetInfo.image_size`` — the network input before the preset's
  resize. (We store the crop, not the whole photo: it is what every stage reads, and it
  is 10-50x fewer bytes than an in-the-wild CelebA photo.)
- ``labels`` (list<int8>, length 40): attributes in CelebA order, 0/1.
- ``face_box`` (list<float32>, length 4): ``x, y, w, h`` of the square face box in the
  source image's pixels (provenance; for SynthFaces the whole canvas).
- ``part_boxes_gt`` (list<float32>, length 160, nullable): for SynthFaces the 40
  ground-truth cue boxes, ``x0, y0, x1, y1`` each, normalised to [0, 1] over the stored
  image; a box with ``x1 <= x0`` is empty (global attributes). Null for real data.

``dataset.json`` is written last, after every shard is in place, and lists the shard
files: a reader that finds it knows the shards are complete. It records each shard's size
and SHA-256 as written (``content``), so a shard changed in place later is caught
(``data/identity.py``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from paw_ray import storage
from paw_ray.attributes import ATTRIBUTES, NUM_ATTRIBUTES
from paw_ray.errors import PawRayError

__all__ = [
    "SPLITS",
    "SHARD_SCHEMA",
    "DATASET_INFO_FILE",
    "DatasetInfo",
    "WrittenShard",
    "ShardError",
    "write_shard",
    "read_info",
    "write_info",
    "validate_table",
    "shard_files",
    "rows_to_table",
    "split_ids",
    "label_positive_rate",
    "check_splits",
    "check_data",
]

SPLITS = ("train", "val", "test")
DATASET_INFO_FILE = "dataset.json"
FORMAT_VERSION = 1

SHARD_SCHEMA = pa.schema(
    [
        pa.field("image_id", pa.string(), nullable=False),
        pa.field("split", pa.string(), nullable=False),
        pa.field("image", pa.binary(), nullable=False),
        pa.field("labels", pa.list_(pa.int8()), nullable=False),
        pa.field("face_box", pa.list_(pa.float32()), nullable=False),
        pa.field("part_boxes_gt", pa.list_(pa.float32()), nullable=True),
    ]
)
REQUIRED_COLUMNS = ("image_id", "split", "image", "labels")


class ShardError(PawRayError, ValueError):
    """A shard or data set that does not follow the shard format."""


@dataclass
class DatasetInfo:
    """What ``dataset.json`` records about a prepared data set."""

    name: str  # "synthfaces" | "celeba" | "celeba-aligned" | ...
    image_size: int  # side of the stored square images
    num_rows: dict[str, int]  # per split
    files: dict[str, list[str]]  # per split, paths relative to the data folder
    has_part_boxes_gt: bool = False
    attributes: list[str] = field(default_factory=lambda: list(ATTRIBUTES))
    source: dict[str, Any] = field(default_factory=dict)  # how it was made (seed, root, ...)
    # per shard file (as in ``files``): {"bytes": size, "sha256": hex digest} as written;
    # empty for a data set written before paw_ray recorded them
    content: dict[str, dict[str, Any]] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, obj: dict[str, Any], where: str) -> "DatasetInfo":
        names = {f.name for f in dataclasses.fields(cls)}
        missing = {"name", "image_size", "num_rows", "files"} - set(obj)
        if missing:
            raise ShardError(f"{where}: missing keys {sorted(missing)}")
        info = cls(**{k: v for k, v in obj.items() if k in names})
        if info.format_version != FORMAT_VERSION:
            raise ShardError(
                f"{where}: shard format version {info.format_version}, this paw_ray reads {FORMAT_VERSION}"
            )
        if list(info.attributes) != list(ATTRIBUTES):
            raise ShardError(f"{where}: attribute list differs from CelebA's 40 attributes")
        return info


def rows_to_table(rows: dict[str, list]) -> pa.Table:
    """Build a table in ``SHARD_SCHEMA`` from column lists (``part_boxes_gt`` optional)."""
    n = len(rows["image_id"])
    cols = dict(rows)
    cols.setdefault("part_boxes_gt", [None] * n)
    arrays = []
    for f in SHARD_SCHEMA:
        values = cols[f.name]
        if f.name in ("labels", "face_box", "part_boxes_gt"):
            values = [None if v is None else np.asarray(v).ravel().tolist() for v in values]
        arrays.append(pa.array(values, type=f.type))
    return pa.Table.from_arrays(arrays, schema=SHARD_SCHEMA)


def validate_table(table: pa.Table, where: str) -> None:
    """Raise ``ShardError`` naming ``where`` when ``table`` is not in the shard format."""
    _check_columns(table.column_names, where)
    _check_rows(table, where)


def _check_columns(names: list[str], where: str) -> None:
    missing = [c for c in REQUIRED_COLUMNS if c not in names]
    if missing:
        raise ShardError(f"{where}: missing column(s) {missing}; a shard needs {list(REQUIRED_COLUMNS)}")


def _check_rows(table: pa.Table, where: str) -> None:
    """Labels (40 values in {0, 1}) and splits of every row (the ``image`` column is not read)."""
    labels = table.column("labels")
    lengths = pa.compute.list_value_length(labels).to_numpy(zero_copy_only=False)
    bad = np.flatnonzero(lengths != NUM_ATTRIBUTES)
    if bad.size:
        i = int(bad[0])
        raise ShardError(
            f"{where}: row {i} (image_id {table.column('image_id')[i].as_py()!r}) has "
            f"{int(lengths[i])} labels, expected {NUM_ATTRIBUTES}"
        )
    if table.num_rows:
        flat = pa.compute.list_flatten(labels).to_numpy(zero_copy_only=False)
        if not np.isin(flat, (0, 1)).all():
            raise ShardError(f"{where}: labels must be 0 or 1")
    splits = set(table.column("split").to_pylist())
    if not splits <= set(SPLITS):
        raise ShardError(f"{where}: unknown split value(s) {sorted(splits - set(SPLITS))}")


@dataclass(frozen=True)
class WrittenShard:
    """A shard as ``write_shard`` stored it: its path relative to the data folder and its
    content (``DatasetInfo.content``)."""

    path: str
    bytes: int
    sha256: str

    def content(self) -> dict[str, Any]:
        return {"bytes": self.bytes, "sha256": self.sha256}


def write_shard(table: pa.Table, data_dir: str, split: str, index: int) -> WrittenShard:
    """Write one shard atomically; return where and what it wrote."""
    validate_table(table, f"shard {split}/{index}")
    rel = f"{split}/shard-{index:05d}.parquet"
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="none", row_group_size=1024)
    data = buf.getvalue()
    storage.write_bytes_atomic(storage.join(data_dir, rel), data)
    return WrittenShard(rel, len(data), hashlib.sha256(data).hexdigest())


def write_info(info: DatasetInfo, data_dir: str) -> None:
    storage.write_json_atomic(storage.join(data_dir, DATASET_INFO_FILE), info.to_json())


def read_info(data_dir: str) -> DatasetInfo:
    """The ``DatasetInfo`` of a prepared data set, or a clear error saying what is missing."""
    where = storage.join(data_dir, DATASET_INFO_FILE)
    if not storage.exists(data_dir):
        raise ShardError(f"{data_dir}: data folder does not exist")
    if not storage.exists(where):
        raise ShardError(
            f"{where}: not found — {data_dir} is not a prepared data set "
            "(make one with `paw-ray synth` or `paw-ray prepare-celeba`)"
        )
    try:
        obj = storage.read_json(where)
    except ValueError as e:
        raise ShardError(str(e)) from None
    if not isinstance(obj, dict):
        raise ShardError(f"{where}: expected a JSON object")
    return DatasetInfo.from_json(obj, where)


def shard_files(data_dir: str, info: DatasetInfo, split: str) -> list[str]:
    """Full locations of the shards of ``split``; a clear error if one is missing."""
    if split not in SPLITS:
        raise ShardError(f"unknown split {split!r}; one of {SPLITS}")
    files = [storage.join(data_dir, rel) for rel in info.files.get(split, [])]
    for f in files:
        if not storage.exists(f):
            raise ShardError(f"{f}: shard listed in dataset.json is missing")
    return files


def split_ids(data_dir: str, split: str) -> frozenset[str]:
    """The image ids of ``split``, read from the id column alone."""
    ids: set[str] = set()
    for f in shard_files(data_dir, read_info(data_dir), split):
        fs, path = storage.resolve(f)
        ids.update(pq.read_table(path, columns=["image_id"], filesystem=fs).column("image_id").to_pylist())
    return frozenset(ids)


def label_positive_rate(data_dir: str, split: str = "train") -> np.ndarray:
    """(40,) share of positive labels in ``split``, read from the label column alone."""
    info = read_info(data_dir)
    total, count = np.zeros(NUM_ATTRIBUTES), 0
    for f in shard_files(data_dir, info, split):
        fs, path = storage.resolve(f)
        labels = pq.read_table(path, columns=["labels"], filesystem=fs).column("labels")
        flat = pa.compute.list_flatten(labels).to_numpy(zero_copy_only=False).reshape(-1, NUM_ATTRIBUTES)
        total += flat.sum(axis=0)
        count += len(flat)
    if count == 0:
        raise ShardError(f"{data_dir}: split {split!r} has no rows")
    return total / count


def check_splits(data_dir: str, info: DatasetInfo | None = None) -> DatasetInfo:
    """Refuse a data set with an empty split: a run trains on train, validates each stage
    on val and reports on test. Reads ``dataset.json`` alone (unless given ``info``), so
    ``train`` calls it before it starts Ray or any stage."""
    info = info or read_info(data_dir)
    empty = [s for s in SPLITS if not info.num_rows.get(s)]
    if empty:
        counts = ", ".join(f"{s} {info.num_rows.get(s, 0)}" for s in SPLITS)
        which = f"split {empty[0]!r} has" if len(empty) == 1 else f"splits {' and '.join(map(repr, empty))} have"
        raise ShardError(
            f"{storage.join(data_dir, DATASET_INFO_FILE)}: {which} no rows ({counts}); a run needs train, val and "
            "test rows. Prepare the data again with `paw-ray prepare-celeba`, either with CelebA's partition file "
            "(Eval/list_eval_partition.txt; its first 162,770 images are all train, so a --limit must go past "
            "them) or, for a data set that comes without one, with --split-fraction 0.8,0.1,0.1 (a split by "
            "image id)"
        )
    return info


def check_data(data_dir: str) -> DatasetInfo:
    """Check every shard of a data set before a run reads it: readable Parquet, the required
    columns, 40 labels in {0, 1} per row, known splits. Reads no image bytes: an image that
    does not decode is skipped as it streams and counted (``decode_failures``)."""
    info = read_info(data_dir)
    columns = [c for c in REQUIRED_COLUMNS if c != "image"]
    for split in SPLITS:
        for f in shard_files(data_dir, info, split):
            fs, path = storage.resolve(f)
            try:
                _check_columns(pq.read_schema(path, filesystem=fs).names, f)
                table = pq.read_table(path, columns=columns, filesystem=fs)
            except (OSError, pa.ArrowException) as e:
                raise ShardError(f"{f}: not a readable Parquet shard ({e})") from None
            _check_rows(table, f)
    return info
