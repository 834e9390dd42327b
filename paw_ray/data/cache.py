"""One consumer's decoded rows, kept after its first pass so that later epochs need no
Ray Data execution and no decode.

A Train worker (or a part task) streams its first epoch from Ray Data and keeps the rows it
was served: uint8 images unflipped at training size, labels, the ``ok`` flag (rows that did
not decode stay, so every epoch counts them and every DDP worker takes the same number of
steps) and, for the PaW stages, part centres. Where they are kept is ``choose_placement``'s
decision against a budget:

- ``gpu``: on the worker's GPU, when they fit its share of the free GPU memory;
- ``host``: in host memory (served through pinned buffers on a GPU worker);
- ``disk``: in a memory-mapped file on the node's local disk (part tasks only, whose crops
  of a large data set exceed any memory share: each image is still decoded once);
- ``None``: not kept; every epoch streams.

Later epochs visit the rows in a new order drawn from (seed, epoch). That is a shuffle
within the rows this consumer was given in its first epoch: a DDP worker keeps its own
shard for the rest of the stage (the stream reorders blocks across all workers every
epoch; the cache permutes single rows within one worker's share).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from typing import Any, Iterator

import numpy as np
import torch

__all__ = ["DecodedCache", "choose_placement", "row_bytes", "auto_budget_bytes", "PLACEMENTS"]

PLACEMENTS = ("gpu", "host", "disk")
AUTO = -1.0  # a budget of -1 MiB: derived from the memory the consumer has
HOST_SHARE = 0.5  # of the node's available memory, split among the consumers on it
GPU_SHARE = 0.3  # of the GPU's free memory when the worker starts (the model and its activations need the rest)


def row_bytes(image_size: int, *, centres: bool = False) -> int:
    """Memory of one cached row: uint8 RGB image, 40 int8 labels, ok flag, id, centres."""
    return 3 * image_size * image_size + 40 + 1 + 24 + (40 * 2 * 4 if centres else 0)


def _available_host_bytes() -> int:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def auto_budget_bytes(device, consumers_on_node: int = 1) -> tuple[int, int]:
    """(GPU bytes, host bytes) a consumer may keep when its budget is automatic."""
    device = torch.device(device)
    gpu = int(GPU_SHARE * torch.cuda.mem_get_info(device)[0]) if device.type == "cuda" else 0
    host = int(HOST_SHARE * _available_host_bytes() / max(1, consumers_on_node))
    return gpu, host


def choose_placement(nbytes: int, budget_mb: float, device, *, consumers_on_node: int = 1,
                     spill_dir: str | None = None) -> str | None:
    """Where ``nbytes`` of decoded rows go: the GPU, host memory, local disk (when
    ``spill_dir`` is given and has room) or nowhere (stream every epoch). ``budget_mb``:
    -1 automatic, 0 never cache, else the in-memory budget in MiB."""
    if budget_mb == 0:
        return None
    device = torch.device(device)
    if budget_mb == AUTO:
        gpu_budget, host_budget = auto_budget_bytes(device, consumers_on_node)
    else:
        gpu_budget = host_budget = int(budget_mb * 2**20)
    if device.type == "cuda" and nbytes <= gpu_budget:
        return "gpu"
    if nbytes <= host_budget:
        return "host"
    if spill_dir is not None and shutil.disk_usage(spill_dir).free > 2 * nbytes:
        return "disk"
    return None


class DecodedCache:
    """Rows appended batch by batch (``add``), then ``finish``; ``batches`` serves epochs."""

    def __init__(self, placement: str, device, spill_dir: str | None = None):
        if placement not in PLACEMENTS:
            raise ValueError(f"placement must be one of {PLACEMENTS}, got {placement!r}")
        if placement == "disk" and spill_dir is None:
            raise ValueError("a disk cache needs a spill_dir")
        self.placement, self.device = placement, torch.device(device)
        self._chunks: dict[str, list] = {}
        self._file = None
        self._image_shape: tuple[int, ...] = ()
        if placement == "disk":
            fd, self._path = tempfile.mkstemp(prefix="paw-cache-", suffix=".u8", dir=spill_dir)
            self._file = os.fdopen(fd, "wb")
        self.columns: dict[str, Any] = {}

    def add(self, batch: dict[str, Any]) -> None:
        """Keep one batch of the stream (numpy columns, or an image tensor decoded on the GPU;
        undecodable rows included)."""
        for key, value in batch.items():
            if key == "flipped":
                continue
            if self.placement == "gpu" and key not in ("image_id", "ok"):
                value = torch.as_tensor(value).to(self.device)
            else:
                value = value.cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
            if key == "image":
                self._image_shape = tuple(value.shape[1:])
                if self.placement == "disk":
                    self._file.write(np.ascontiguousarray(value).tobytes())
                    continue
            self._chunks.setdefault(key, []).append(value)

    def finish(self) -> "DecodedCache":
        """Join the appended batches; the cache serves epochs from now on."""
        for key, parts in self._chunks.items():
            self.columns[key] = torch.cat(parts) if isinstance(parts[0], torch.Tensor) else np.concatenate(parts)
        self._chunks = {}
        if self._file is not None:
            self._file.close()
            self._file = None
            n = len(self.columns["image_id"])
            self.columns["image"] = np.memmap(self._path, dtype=np.uint8, mode="r", shape=(n, *self._image_shape))
            os.unlink(self._path)  # the mapping keeps the data; nothing is left behind on disk
        return self

    def discard(self) -> None:
        """Drop what was appended (a pass that did not run to its end)."""
        self._chunks = {}
        if self._file is not None:
            self._file.close()
            self._file = None
            os.unlink(self._path)

    def __len__(self) -> int:
        return len(self.columns["image_id"])

    @property
    def nbytes(self) -> int:
        return int(sum(v.nbytes if isinstance(v, np.ndarray) else v.numel() * v.element_size()
                       for v in self.columns.values()))

    def batches(self, batch_size: int, *, shuffle_seed: int | None = None, epoch: int = 0
                ) -> Iterator[dict[str, Any]]:
        """One epoch of batches shaped like the stream's, unflipped; with ``shuffle_seed`` the
        rows come in an order drawn from (seed, epoch), else in the order they were added."""
        n = len(self)
        order = (np.random.default_rng([shuffle_seed, epoch]).permutation(n)
                 if shuffle_seed is not None else np.arange(n))
        for lo in range(0, n, batch_size):
            idx = np.sort(order[lo:lo + batch_size])  # sorted: a memory-mapped file is read forwards
            out = {}
            for key, col in self.columns.items():
                if isinstance(col, torch.Tensor):
                    out[key] = col[torch.as_tensor(idx, device=col.device)]
                else:
                    out[key] = col[idx]
            yield out
