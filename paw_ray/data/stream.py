"""The Ray Data input stream: shards -> a streaming ``ray.data.Dataset`` of decoded,
resized uint8 images (batches for the model are made on its device, ``batches.py``).

One function, ``image_stream``, serves every stage; the ``RowDecoder`` it is given says
what its rows are:

- whole images (FRL, hint, whole, evaluation) at the preset's ``image_size``;
- whole images plus each image's 40 part centres (fusion, fine-tuning: the PaW model
  cuts its 40 crops itself);
- a single part's crop (the part stage: the stream carries only the ``part_size``
  window of attribute j, cut where the bytes are, so part task j moves 1/10th of the
  pixels of a whole image).

Where the work happens, and why:

- ``read_parquet`` (and ``map_batches``) run as Ray tasks with a *fractional* CPU
  (``op_cpus``): the trainers hold the whole CPUs, and a data task that asks for a
  whole one would wait for ever beside them. For the same reason the V1 Parquet
  reader is used (Ray 2.60's V2 reader adds a listing task that takes a whole CPU).
- Who decodes is ``decode_in`` (``config.decode_place``). ``"tasks"``: ``map_batches`` decodes in Ray Data tasks, and
  images leave them as uint8 CHW. ``"consumer"``: the stream carries the rows still encoded
  (a PNG or JPEG is several times smaller than its pixels) and the consumer applies the same
  ``RowDecoder`` in its own threads, or on its GPU with nvJPEG for JPEG rows: no decoded
  block goes through the object store. Either way the rows are the same uint8 CHW images,
  unflipped, the rows a consumer's decoded cache keeps; flips and normalisation happen on
  the consumer's device (``batches.model_batch``).
- A training stream visits its blocks in a new order each execution (epoch).
- A row whose image does not decode is kept with ``ok = False`` and a blank image;
  the consumer drops it and counts it in ``StreamStats``, which the trainers
  report: never a crash in the middle of an epoch, never a silent drop.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from PIL import Image

from paw_ray.attributes import NUM_ATTRIBUTES
from paw_ray.config import DECODE_PLACES
from paw_ray.data import shards
from paw_ray.errors import PawRayError

__all__ = ["CentresTable", "RowDecoder", "image_stream", "decode_batch", "decode_image", "decode_pil",
           "decode_torchvision", "decode_jpeg_batch", "window_corners", "consumer_decoder"]


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


def window_corners(centres: np.ndarray, image_size: int, part_size: int) -> np.ndarray:
    """Top-left pixel corners (x0, y0) of part windows centred on ``centres`` (normalised),
    clamped so the window stays inside the image — the same rule as
    ``paw_ray.models.windows.part_windows``."""
    corners = np.floor(centres * image_size - part_size / 2.0 + 0.5).astype(np.int64)
    return np.clip(corners, 0, image_size - part_size)


def decode_image(data: bytes, image_size: int) -> np.ndarray:
    """The stream's decoder: encoded image -> uint8 (3, S, S) RGB.

    A JPEG stored at the training size (CelebA shards) goes to libjpeg-turbo through
    torchvision, which decodes the same pixels as PIL faster; PNG (SynthFaces), anything
    else, and a JPEG to be resized go through PIL, which scales a large JPEG in the DCT
    (``benchmarks/bench_decode.py`` measures the two)."""
    with Image.open(io.BytesIO(data)) as im:  # reads the header only
        if im.format == "JPEG" and im.size == (image_size, image_size):
            return decode_torchvision(data)
        return _pil_pixels(im, image_size)


def decode_pil(data: bytes, image_size: int) -> np.ndarray:
    """Encoded image -> uint8 (3, S, S) RGB with PIL alone."""
    with Image.open(io.BytesIO(data)) as im:
        return _pil_pixels(im, image_size)


def _pil_pixels(im, image_size: int) -> np.ndarray:
    if im.format == "JPEG":
        im.draft("RGB", (image_size, image_size))  # DCT scaling when at least twice the size
    im = im.convert("RGB")
    if im.size != (image_size, image_size):
        im = im.resize((image_size, image_size), Image.BILINEAR, reducing_gap=2.0)
    return np.asarray(im, dtype=np.uint8).transpose(2, 0, 1)


def decode_torchvision(data: bytes) -> np.ndarray:
    """Encoded image -> uint8 (3, H, W) RGB at its stored size with
    ``torchvision.io.decode_image`` (libjpeg-turbo, libpng)."""
    import torch  # deferred: a Ray Data task that decodes PNG rows with PIL never imports torch
    from torchvision.io import ImageReadMode
    from torchvision.io import decode_image as decode

    return decode(torch.frombuffer(bytearray(data), dtype=torch.uint8), mode=ImageReadMode.RGB).numpy()


def decode_batch(
    batch: pa.Table,
    *,
    image_size: int,
    centres: CentresTable | None = None,
    part: int | None = None,
    part_size: int | None = None,
    jpeg_device=None,
) -> dict[str, np.ndarray]:
    """Decode and resize, and for a part stream cut one window.

    Returns numpy columns: ``image_id``, ``image`` (uint8 N x 3 x H x W), ``labels``
    (int8 N x 40), ``ok`` and, where present, ``part_boxes_gt`` (float32 N x 40 x 4) and
    ``centres`` (float32 N x 40 x 2, whole-image streams). With ``jpeg_device`` (a CUDA
    device: nvJPEG) a whole-image batch of JPEG rows is decoded there in one call, and
    ``image`` is a uint8 tensor on that device.
    """
    n = batch.num_rows
    ids = np.asarray(batch.column("image_id").to_pylist(), dtype=object)
    labels = pc.list_flatten(batch.column("labels")).to_numpy(zero_copy_only=False)
    labels = labels.astype(np.int8).reshape(n, NUM_ATTRIBUTES)
    encoded = batch.column("image").to_pylist()
    images = None
    if jpeg_device is not None and part is None:
        images = decode_jpeg_batch(encoded, image_size, jpeg_device)
    ok = np.ones(n, dtype=bool)
    if images is None:
        images = np.zeros((n, 3, image_size, image_size), dtype=np.uint8)
        for i, data in enumerate(encoded):
            try:
                images[i] = decode_image(data, image_size)
            except Exception:  # noqa: BLE001 - any undecodable bytes: counted downstream
                ok[i] = False

    out: dict[str, np.ndarray] = {"image_id": ids, "labels": labels, "ok": ok}
    if "part_boxes_gt" in batch.column_names and batch.column("part_boxes_gt").null_count == 0:
        boxes = pc.list_flatten(batch.column("part_boxes_gt")).to_numpy(zero_copy_only=False)
        out["part_boxes_gt"] = boxes.astype(np.float32).reshape(n, NUM_ATTRIBUTES, 4)

    if centres is not None:
        c = centres.lookup(ids.astype(str))
        if part is None:
            out["centres"] = c
        else:
            corners = window_corners(c[:, part], image_size, part_size)
            rows = corners[:, 1][:, None] + np.arange(part_size)[None, :]
            cols = corners[:, 0][:, None] + np.arange(part_size)[None, :]
            images = images[np.arange(n)[:, None, None], :, rows[:, :, None], cols[:, None, :]].transpose(0, 3, 1, 2)

    out["image"] = np.ascontiguousarray(images) if isinstance(images, np.ndarray) else images
    return out


def decode_jpeg_batch(encoded: list[bytes], image_size: int, device):
    """A batch of JPEG rows decoded in one ``torchvision.io.decode_jpeg`` call on ``device``
    (nvJPEG on a CUDA device) -> uint8 (N, 3, S, S) there, resized on the device where a row is
    not stored at ``image_size``. None when a row is not a JPEG or does not decode: the
    caller then decodes the batch row by row on the CPU, which marks the bad rows."""
    import torch  # deferred, as in decode_torchvision
    import torch.nn.functional as F
    from torchvision.io import ImageReadMode, decode_jpeg

    if not encoded or not all(data[:2] == b"\xff\xd8" for data in encoded):
        return None
    tensors = [torch.frombuffer(bytearray(data), dtype=torch.uint8) for data in encoded]
    try:
        images = decode_jpeg(tensors, mode=ImageReadMode.RGB, device=device)
    except RuntimeError:  # a corrupt row fails the whole call
        return None
    out = torch.empty((len(images), 3, image_size, image_size), dtype=torch.uint8, device=images[0].device)
    for i, im in enumerate(images):
        if im.shape[-2:] != (image_size, image_size):
            im = F.interpolate(im[None].float(), size=(image_size, image_size), mode="bilinear",
                               antialias=True, align_corners=False)[0].round().clamp(0, 255).to(torch.uint8)
        out[i] = im
    return out


@dataclass
class RowDecoder:
    """Encoded shard rows (a pyarrow batch) -> a stream's decoded columns (``decode_batch``),
    the same wherever it runs: in Ray Data's map tasks or on the consumer (``decode_in``).

    ``centres`` is a ``CentresTable`` or an ObjectRef to one (read once per process)."""

    image_size: int
    centres: Any = None
    part: int | None = None
    part_size: int | None = None

    def __post_init__(self):
        if self.part is not None:
            if self.centres is None or self.part_size is None:
                raise ValueError("a part stream needs centres and part_size")
            if not 0 <= self.part < NUM_ATTRIBUTES:
                raise ValueError(f"part must be in [0, {NUM_ATTRIBUTES}), got {self.part}")
        if self.centres is not None and not isinstance(self.centres, CentresTable):
            import ray

            if not isinstance(self.centres, ray.ObjectRef):
                raise TypeError("centres must be a CentresTable or an ObjectRef to one")
        self._table: CentresTable | None = self.centres if isinstance(self.centres, CentresTable) else None

    def __call__(self, batch: pa.Table, jpeg_device=None) -> dict[str, Any]:
        if self.centres is not None and self._table is None:
            import ray

            self._table = ray.get(self.centres)
        return decode_batch(batch, image_size=self.image_size, centres=self._table, part=self.part,
                            part_size=self.part_size, jpeg_device=jpeg_device)

    def __getstate__(self):  # the table read from an ObjectRef is not shipped with the decoder
        state = dict(self.__dict__)
        if not isinstance(self.centres, CentresTable):
            state["_table"] = None
        return state


def image_stream(
    data_dir: str,
    split: str | tuple[str, ...],
    decoder: RowDecoder,
    *,
    shuffle: bool = False,
    seed: int = 0,
    op_cpus: float = 0.25,
    cue_boxes: bool = False,
    decode_in: str = "tasks",
):
    """A streaming ``ray.data.Dataset`` of one split, for ``iter_batches``; a tuple of
    splits reads them as one stream (one Ray Data execution: a part task's train and val).

    ``decoder`` says what the rows become: whole images at its ``image_size``, with part
    centres where it has ``centres``, or only attribute j's window where it has ``part`` = j.
    ``shuffle``: visit the blocks in a new order each execution, drawn from ``seed``
    (training). ``cue_boxes`` adds the ground-truth cue boxes where the data has them
    (evaluation of localization). ``decode_in="consumer"`` leaves the rows encoded: the
    consumer applies the same ``decoder`` itself (``EpochFeed(decoder=...)``).
    """
    import ray.data

    if decode_in not in DECODE_PLACES:
        raise ValueError(f"decode_in must be one of {DECODE_PLACES}, got {decode_in!r}")
    info = shards.read_info(data_dir)
    splits = (split,) if isinstance(split, str) else tuple(split)
    files = [f for s in splits for f in shards.shard_files(data_dir, info, s)]
    if not files:
        raise shards.ShardError(f"{data_dir}: no shards for split {split!r}")

    ray.data.DataContext.get_current().use_datasource_v2 = False
    columns = ["image_id", "image", "labels"]
    if cue_boxes and info.has_part_boxes_gt:
        columns.append("part_boxes_gt")
    ds = ray.data.read_parquet(files, columns=columns, num_cpus=op_cpus)
    if shuffle:
        ds = ds.randomize_block_order(seed=ray.data.RandomSeedConfig(seed=seed, reseed_after_execution=True))
    if decode_in == "consumer":
        return ds
    return ds.map_batches(decoder, batch_format="pyarrow", batch_size=256, num_cpus=op_cpus)


def consumer_decoder(decoder: RowDecoder, decode_in: str) -> RowDecoder | None:
    """What the consumer of ``image_stream(..., decoder, decode_in=decode_in)`` decodes its
    rows with (``EpochFeed(decoder=...)``): that decoder where the rows stay encoded, None
    where they arrive decoded."""
    if decode_in not in DECODE_PLACES:
        raise ValueError(f"decode_in must be one of {DECODE_PLACES}, got {decode_in!r}")
    return decoder if decode_in == "consumer" else None
