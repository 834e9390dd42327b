"""Batches as the networks take them, made on the device that runs them.

Every consumer (the Ray Train stages, the part tasks, ``localize``, ``evaluate``) gets its
rows as uint8 images, from a Ray Data stream or from a worker's decoded cache, and turns
them into a model batch here, the same way:

- rows whose image did not decode (``ok`` False) are dropped and counted in ``StreamStats``;
- the uint8 pixels go to the device as they are (a quarter of float32's bytes; from pinned
  host memory on a GPU), and only there become normalised float32 in channels_last;
- a training batch is mirrored there too: row ``image_id`` is flipped in epoch ``e`` when
  ``flip_decisions(seed, image_id, e)`` says so, whichever path served it, and a flipped
  row's part centres are mirrored with it (x -> 1 - x).

``prefetch`` overlaps the copy of the next batch with the step on the current one (CUDA
only: on the CPU the "copy" is a view).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator

import numpy as np
import torch

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "StreamStats", "flip_decisions", "to_device", "model_batch",
           "prefetch"]

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)

# the columns that travel to the device; the others (image_id, ok) stay on the host
DEVICE_COLUMNS = ("image", "labels", "centres")


@dataclass
class StreamStats:
    """What a consumer saw: rows used and rows dropped because their image did not decode."""

    rows: int = 0
    decode_failures: int = 0
    failed_ids: list[str] = field(default_factory=list)  # the first few, for the message


def flip_decisions(image_ids: np.ndarray, seed: int, epoch: int) -> np.ndarray:
    """Deterministic coin flips per (seed, image_id, epoch): True = mirror this row."""
    out = np.empty(len(image_ids), dtype=bool)
    salt = f"{seed}:{epoch}:".encode()
    for i, image_id in enumerate(image_ids):
        out[i] = hashlib.blake2b(salt + str(image_id).encode(), digest_size=1).digest()[0] & 1
    return out


def to_device(batch: dict[str, Any], device, stats: StreamStats | None = None) -> dict[str, Any]:
    """A host batch (numpy or torch columns) with its undecodable rows dropped and counted,
    the pixel, label and centre columns moved to ``device`` unconverted (uint8 images stay
    uint8), ``image_id`` and ``ok`` kept as numpy."""
    device = torch.device(device)
    ok = np.asarray(batch["ok"], dtype=bool)
    ids = np.asarray(batch["image_id"])
    keep = None
    if not ok.all():
        if stats is not None:
            stats.decode_failures += int((~ok).sum())
            stats.failed_ids.extend(str(i) for i in ids[~ok][:5])
        keep = np.flatnonzero(ok)
    if stats is not None:
        stats.rows += int(ok.sum())
    out: dict[str, Any] = {"image_id": ids if keep is None else ids[keep], "ok": ok if keep is None else ok[keep]}
    pin = device.type == "cuda"
    for key in DEVICE_COLUMNS:
        if key not in batch:
            continue
        t = torch.as_tensor(batch[key])
        if keep is not None:
            t = t[torch.as_tensor(keep, device=t.device)]
        if t.device != device:
            t = (t.pin_memory() if pin and t.device.type == "cpu" else t).to(device, non_blocking=True)
        out[key] = t
    for key in batch.keys() - out.keys() - {"flipped"}:  # host-only extras (evaluation's cue boxes)
        out[key] = torch.as_tensor(np.asarray(batch[key]) if keep is None else np.asarray(batch[key])[keep])
    return out


def model_batch(batch: dict[str, Any], device, stats: StreamStats | None = None, *,
                flip_seed: int | None = None, epoch: int = 0) -> dict[str, Any]:
    """A host or device batch of uint8 rows -> the model's batch on ``device``: images
    normalised float32 in channels_last, labels float32, mirrored by the flip rule when
    ``flip_seed`` is given (training)."""
    b = to_device(batch, device, stats)
    image = b["image"]
    n = image.shape[0]
    if flip_seed is not None and n:
        flipped = flip_decisions(b["image_id"], flip_seed, epoch)
        if flipped.any():
            f = torch.as_tensor(flipped, device=image.device)
            image = torch.where(f.view(n, 1, 1, 1), image.flip(-1), image)
            if "centres" in b:
                c = b["centres"].clone()
                c[..., 0] = torch.where(f.view(n, 1), 1.0 - c[..., 0], c[..., 0])
                b["centres"] = c
        b["flipped"] = flipped
    mean = torch.as_tensor(IMAGENET_MEAN * 255.0, device=image.device).view(1, 3, 1, 1)
    std = torch.as_tensor(IMAGENET_STD * 255.0, device=image.device).view(1, 3, 1, 1)
    x = (image.float() - mean) / std
    b["image"] = x.contiguous(memory_format=torch.channels_last)
    b["labels"] = b["labels"].float()
    if "centres" in b:
        b["centres"] = b["centres"].float()
    return b


def prefetch(batches: Iterable[dict[str, Any]], make, device) -> Iterator[dict[str, Any]]:
    """``make(batch)`` for each batch, one batch ahead on a side CUDA stream so that the copy
    and normalisation of batch k+1 overlap the step on batch k. On a CPU device, in order."""
    device = torch.device(device)
    if device.type != "cuda":
        yield from (make(b) for b in batches)
        return
    side = torch.cuda.Stream(device)

    def ahead(raw):
        with torch.cuda.stream(side):
            return make(raw)

    it = iter(batches)
    nxt = next(it, None)
    pending = ahead(nxt) if nxt is not None else None
    while pending is not None:
        torch.cuda.current_stream(device).wait_stream(side)
        for v in pending.values():
            if isinstance(v, torch.Tensor) and v.device.type == "cuda":
                v.record_stream(torch.cuda.current_stream(device))
        current = pending
        nxt = next(it, None)
        pending = ahead(nxt) if nxt is not None else None
        yield current
