"""The Ray Data input pipeline: shards -> a streaming ``ray.data.Dataset`` of decoded,
resized, flipped images -> torch batches on the trainer.

One function, ``image_stream``, serves every stage:

- whole images (FRL, hint, whole, evaluation) at the preset's ``image_size``;
- whole images plus each image's 40 part centres (fusion, fine-tuning: the PaW model
  cuts its 40 crops itself);
- a single part's crop (the part stage: the stream carries only the ``part_size``
  window of attribute j, cut where the bytes are, so part task j moves 1/10th of the
  pixels of a whole image).

Where the work happens, and why:

- ``read_parquet`` + ``map_batches`` run as Ray tasks with a *fractional* CPU
  (``op_cpus``): the trainers hold the whole CPUs, and a data task that asks for a
  whole one would wait for ever beside them. For the same reason the V1 Parquet
  reader is used (Ray 2.60's V2 reader adds a listing task that takes a whole CPU).
- Images leave ``map_batches`` as uint8 CHW: 4x fewer bytes through the object store
  than float32. ``to_torch_batch`` normalises them on the trainer, vectorised.
- Random horizontal flips are decided per row from (seed, image_id, epoch), where the
  epoch is Ray Data's execution index (the same counter Ray's own
  ``RandomSeedConfig(reseed_after_execution=True)`` uses): new flips every epoch,
  identical for the same seed whatever the block order or the number of workers.
  Flipping mirrors the ground-truth boxes and part centres too (x -> 1 - x).
- A row whose image does not decode is kept with ``ok = False`` and a blank image;
  ``to_torch_batch`` drops it and counts it in ``StreamStats``, which the trainers
  report: never a crash in the middle of an epoch, never a silent drop.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from paw_ray.attributes import NUM_ATTRIBUTES
from paw_ray.data import shards
from paw_ray.errors import PawRayError

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "CentresTable",
    "StreamStats",
    "image_stream",
    "decode_batch",
    "to_torch_batch",
    "flip_decisions",
    "window_corners",
]

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


@dataclass
class CentresTable:
    """Each image's 40 part centres (x, y normalised to [0, 1]), keyed by image id.

    Sorted by id so a batch is matched with one ``searchsorted``; small enough to ship
    to every data task through the object store (202,599 CelebA images: ~80 MB).
    """

    ids: np.ndarray  # (N,) str, sorted
    centres: np.ndarray  # (N, 40, 2) float32

    @classmethod
    def from_arrays(cls, ids, centres) -> "CentresTable":
        ids = np.asarray(ids).astype(str)
        centres = np.asarray(centres, dtype=np.float32).reshape(len(ids), NUM_ATTRIBUTES, 2)
        order = np.argsort(ids, kind="stable")
        return cls(ids=ids[order], centres=centres[order])

    def lookup(self, image_ids: np.ndarray) -> np.ndarray:
        image_ids = np.asarray(image_ids).astype(str)
        pos = np.searchsorted(self.ids, image_ids)
        pos = np.clip(pos, 0, max(len(self.ids) - 1, 0))
        if len(self.ids) == 0 or not np.array_equal(self.ids[pos], image_ids):
            missing = image_ids[(len(self.ids) == 0) | (self.ids[pos] != image_ids)]
            raise PawRayError(
                f"no part centres for image(s) {list(missing[:3])}: the localize stage ran on other data"
            )
        return self.centres[pos]


@dataclass
class StreamStats:
    """What a consumer saw: rows used and rows dropped because their image did not decode."""

    rows: int = 0
    decode_failures: int = 0
    failed_ids: list[str] = field(default_factory=list)  # the first few, for the message

    def as_metrics(self) -> dict[str, int]:
        return {"rows": self.rows, "decode_failures": self.decode_failures}


def flip_decisions(image_ids: np.ndarray, seed: int, epoch: int) -> np.ndarray:
    """Deterministic coin flips per (seed, image_id, epoch): True = mirror this row."""
    out = np.empty(len(image_ids), dtype=bool)
    salt = f"{seed}:{epoch}:".encode()
    for i, image_id in enumerate(image_ids):
        out[i] = hashlib.blake2b(salt + str(image_id).encode(), digest_size=1).digest()[0] & 1
    return out


def window_corners(centres: np.ndarray, image_size: int, part_size: int) -> np.ndarray:
    """Top-left pixel corners (x0, y0) of part windows centred on ``centres`` (normalised),
    clamped so the window stays inside the image — the same rule as
    ``paw_ray.models.parts.part_windows``."""
    corners = np.floor(centres * image_size - part_size / 2.0 + 0.5).astype(np.int64)
    return np.clip(corners, 0, image_size - part_size)


def _decode_one(data: bytes, image_size: int):
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        if im.format == "JPEG":
            im.draft("RGB", (image_size, image_size))
        im = im.convert("RGB")
        if im.size != (image_size, image_size):
            im = im.resize((image_size, image_size), Image.BILINEAR, reducing_gap=2.0)
        return np.asarray(im, dtype=np.uint8)


def _execution_epoch() -> int:
    import ray.data

    return int(getattr(ray.data.DataContext.get_current(), "_execution_idx", 0))


def decode_batch(
    batch: pa.Table,
    *,
    image_size: int,
    train: bool,
    seed: int = 0,
    epoch: int | None = None,
    centres: CentresTable | None = None,
    part: int | None = None,
    part_size: int | None = None,
) -> dict[str, np.ndarray]:
    """Decode, resize, flip (training only) and, for a part stream, cut one window.

    Returns numpy columns: ``image_id``, ``image`` (uint8 N x 3 x H x W), ``labels``
    (int8 N x 40), ``ok``, ``flipped`` and, where present, ``part_boxes_gt``
    (float32 N x 40 x 4) and ``centres`` (float32 N x 40 x 2, whole-image streams).
    """
    n = batch.num_rows
    ids = np.asarray(batch.column("image_id").to_pylist(), dtype=object)
    labels = pc.list_flatten(batch.column("labels")).to_numpy(zero_copy_only=False)
    labels = labels.astype(np.int8).reshape(n, NUM_ATTRIBUTES)
    images = np.zeros((n, image_size, image_size, 3), dtype=np.uint8)
    ok = np.ones(n, dtype=bool)
    for i, data in enumerate(batch.column("image").to_pylist()):
        try:
            images[i] = _decode_one(data, image_size)
        except Exception:  # noqa: BLE001 - any undecodable bytes: counted downstream
            ok[i] = False

    if train:
        flipped = flip_decisions(ids, seed, _execution_epoch() if epoch is None else epoch)
    else:
        flipped = np.zeros(n, dtype=bool)
    images[flipped] = images[flipped, :, ::-1]

    out: dict[str, np.ndarray] = {"image_id": ids, "labels": labels, "ok": ok, "flipped": flipped}

    if "part_boxes_gt" in batch.column_names and batch.column("part_boxes_gt").null_count == 0:
        boxes = pc.list_flatten(batch.column("part_boxes_gt")).to_numpy(zero_copy_only=False)
        boxes = boxes.astype(np.float32).reshape(n, NUM_ATTRIBUTES, 4)
        mirrored = boxes[flipped].copy()
        nonempty = mirrored[..., 2] > mirrored[..., 0]
        x0, x1 = mirrored[..., 0].copy(), mirrored[..., 2].copy()
        mirrored[..., 0] = np.where(nonempty, 1.0 - x1, x0)
        mirrored[..., 2] = np.where(nonempty, 1.0 - x0, x1)
        boxes[flipped] = mirrored
        out["part_boxes_gt"] = boxes

    if centres is not None:
        c = centres.lookup(ids.astype(str)).copy()
        c[flipped, :, 0] = 1.0 - c[flipped, :, 0]
        if part is None:
            out["centres"] = c
        else:
            corners = window_corners(c[:, part], image_size, part_size)
            rows = corners[:, 1][:, None] + np.arange(part_size)[None, :]
            cols = corners[:, 0][:, None] + np.arange(part_size)[None, :]
            images = images[np.arange(n)[:, None, None], rows[:, :, None], cols[:, None, :]]

    out["image"] = np.ascontiguousarray(images.transpose(0, 3, 1, 2))
    return out


def image_stream(
    data_dir: str,
    split: str,
    image_size: int,
    *,
    train: bool,
    seed: int = 0,
    op_cpus: float = 0.25,
    centres=None,
    part: int | None = None,
    part_size: int | None = None,
    shuffle: bool | None = None,
):
    """A streaming ``ray.data.Dataset`` of one split, ready for ``iter_torch_batches``.

    ``centres`` (a ``CentresTable`` or an ObjectRef to one) adds part centres; with
    ``part`` = j the stream carries only attribute j's ``part_size`` window instead of
    the whole image. Training streams visit blocks in a new order each epoch.
    """
    import ray
    import ray.data

    info = shards.read_info(data_dir)
    files = shards.shard_files(data_dir, info, split)
    if not files:
        raise shards.ShardError(f"{data_dir}: no shards for split {split!r}")
    if part is not None:
        if centres is None or part_size is None:
            raise ValueError("a part stream needs centres and part_size")
        if not 0 <= part < NUM_ATTRIBUTES:
            raise ValueError(f"part must be in [0, {NUM_ATTRIBUTES}), got {part}")
    if centres is not None and not isinstance(centres, (CentresTable, ray.ObjectRef)):
        raise TypeError("centres must be a CentresTable or an ObjectRef to one")

    ray.data.DataContext.get_current().use_datasource_v2 = False
    columns = ["image_id", "image", "labels"]
    if info.has_part_boxes_gt:
        columns.append("part_boxes_gt")
    ds = ray.data.read_parquet(files, columns=columns, num_cpus=op_cpus)
    if shuffle if shuffle is not None else train:
        ds = ds.randomize_block_order(seed=ray.data.RandomSeedConfig(seed=seed, reseed_after_execution=True))
    return ds.map_batches(
        _decode_fn,
        fn_kwargs=dict(image_size=image_size, train=train, seed=seed, centres=centres,
                       part=part, part_size=part_size),
        batch_format="pyarrow",
        batch_size=256,
        num_cpus=op_cpus,
    )


def _decode_fn(batch: pa.Table, *, centres=None, **kwargs) -> dict[str, np.ndarray]:
    """``decode_batch`` in a Ray Data task; an ObjectRef centres table is read zero-copy."""
    import ray

    if isinstance(centres, ray.ObjectRef):
        centres = ray.get(centres)
    return decode_batch(batch, centres=centres, **kwargs)


def to_torch_batch(batch: dict[str, np.ndarray], stats: StreamStats | None = None, device=None):
    """Numpy batch -> torch tensors on ``device``: images normalised float32, labels float32;
    rows whose image did not decode are dropped and counted in ``stats``."""
    import torch

    ok = np.asarray(batch["ok"], dtype=bool)
    if not ok.all():
        if stats is not None:
            stats.decode_failures += int((~ok).sum())
            stats.failed_ids.extend(str(i) for i in np.asarray(batch["image_id"])[~ok][:5])
        batch = {k: v[ok] for k, v in batch.items()}
    if stats is not None:
        stats.rows += int(ok.sum())
    mean = torch.as_tensor(IMAGENET_MEAN * 255.0).view(1, 3, 1, 1)
    std = torch.as_tensor(IMAGENET_STD * 255.0).view(1, 3, 1, 1)
    image = (torch.tensor(batch["image"], dtype=torch.float32) - mean) / std
    out = {
        "image_id": np.asarray(batch["image_id"]),
        "image": image,
        "labels": torch.tensor(batch["labels"], dtype=torch.float32),
    }
    for key in ("centres", "part_boxes_gt"):
        if key in batch:
            out[key] = torch.tensor(batch[key])
    if device is not None:
        out = {k: (v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v) for k, v in out.items()}
    return out
