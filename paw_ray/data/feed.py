"""The model batches of one split, epoch after epoch, for one consumer (a Ray Train worker
or a part task).

The first epoch a consumer runs (the first of the stage, or the first after a restart or
resume) streams from Ray Data; when the rows fit the cache budget the feed keeps them as
they pass (``DecodedCache``), and every later epoch is served from there: no Ray Data
execution, no decode. Both paths end in ``model_batch`` on the consumer's device, so the
same row gets the same flip in the same epoch whichever path served it.

A stream whose rows are still encoded (``image_stream(decode_in="consumer")``) is decoded
here by its ``RowDecoder``: ``decode_threads`` batches at a time in side threads (the decoders
release the GIL), in the stream's order, one batch ahead of the step; on a CUDA device a
batch of JPEG rows is decoded there by nvJPEG.

A part task reads its train and val rows as one stream (one Ray Data execution instead of
two): the training feed's first pass routes the val rows into the validation feed's cache
(``Holdout``) and serves its own rows at the fixed batch size (``rebatched``).
"""

from __future__ import annotations

from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Iterable, Iterator

import numpy as np
import torch

from paw_ray.data.batches import StreamStats, model_batch, prefetch
from paw_ray.data.cache import DecodedCache
from paw_ray.data.stream import RowDecoder

__all__ = ["EpochFeed", "Holdout", "decoded_in_order", "rebatched"]


def decoded_in_order(tables: Iterable, decode, threads: int) -> Iterator[dict[str, Any]]:
    """``decode(table)`` for each table, ``threads`` at a time in side threads, yielded in the
    tables' order; at most ``threads + 1`` decoded batches wait."""
    with ThreadPoolExecutor(max(1, threads), thread_name_prefix="paw-decode") as pool:
        pending: deque = deque()
        for table in tables:
            pending.append(pool.submit(decode, table))
            if len(pending) > threads:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def _take(batch: dict[str, Any], keep: np.ndarray) -> dict[str, Any]:
    index = {}
    for key, value in batch.items():
        if isinstance(value, torch.Tensor):
            index[key] = value[torch.as_tensor(keep, device=value.device)]
        else:
            index[key] = value[keep]
    return index


def _joined(batches: list[dict[str, Any]]) -> dict[str, Any]:
    if len(batches) == 1:
        return batches[0]
    return {key: (torch.cat([b[key] for b in batches]) if isinstance(batches[0][key], torch.Tensor)
                  else np.concatenate([b[key] for b in batches])) for key in batches[0]}


def rebatched(batches: Iterable[dict[str, Any]], batch_size: int) -> Iterator[dict[str, Any]]:
    """The rows of ``batches`` (column dicts) in the same order, as batches of ``batch_size``
    rows; only the last may be smaller."""
    pending: list[dict[str, Any]] = []
    held = 0
    for batch in batches:
        n = len(batch["image_id"])
        if n == 0:
            continue
        pending.append(batch)
        held += n
        while held >= batch_size:
            whole = _joined(pending)
            yield _take(whole, np.arange(batch_size))
            rest = _take(whole, np.arange(batch_size, held))
            held -= batch_size
            pending = [rest] if held else []
    if held:
        yield _joined(pending)


@dataclass
class Holdout:
    """The rows of another split that share a feed's stream (``ids``), and the feed they
    belong to: the stream's first full pass fills that feed's cache with them."""

    ids: frozenset[str]
    feed: "EpochFeed"


class EpochFeed:
    """``epoch(e, stats)`` yields the model batches of epoch ``e``.

    ``stream`` is anything with Ray Data's ``iter_batches`` (a ``DataIterator`` from
    ``get_dataset_shard`` or a ``Dataset``). ``placement`` is where the rows are kept after
    the first pass (``choose_placement``; None streams every epoch). ``flip_seed`` turns on
    the training flips; ``shuffle_seed`` the reordering of cached epochs. ``decoder``: the
    ``RowDecoder`` of a stream that carries encoded rows (None: the stream decodes).
    ``holdout``: the stream also carries another split's rows (``Holdout``), which a
    streamed epoch routes to that split's feed instead of serving them.
    """

    def __init__(self, stream, *, batch_size: int, device, placement: str | None = None,
                 flip_seed: int | None = None, shuffle_seed: int | None = None, spill_dir: str | None = None,
                 prefetch_batches: int = 2, decoder: RowDecoder | None = None, decode_threads: int = 1,
                 holdout: Holdout | None = None):
        self.stream, self.batch_size, self.device = stream, batch_size, device
        self.holdout = holdout
        self.decoder, self.decode_threads = decoder, decode_threads
        self.placement, self.spill_dir = placement, spill_dir
        self.flip_seed, self.shuffle_seed, self.prefetch_batches = flip_seed, shuffle_seed, prefetch_batches
        self.cache: DecodedCache | None = None
        self.last_source = ""  # "stream" or "cache:<placement>": what served the last epoch

    def epoch(self, epoch: int, stats: StreamStats | None = None) -> Iterator[dict[str, Any]]:
        if self.cache is not None:
            self.last_source = f"cache:{self.cache.placement}"
            raw = self.cache.batches(self.batch_size, shuffle_seed=self.shuffle_seed, epoch=epoch)
        else:
            self.last_source = "stream"
            raw = self._streamed()
            if self.holdout is not None:
                raw = rebatched(self._routing(raw), self.batch_size)
            if self.placement is not None:
                raw = self._keeping(raw)

        def make(batch):
            return model_batch(batch, self.device, stats, flip_seed=self.flip_seed, epoch=epoch)

        yield from prefetch(raw, make, self.device)

    def _streamed(self) -> Iterator[dict[str, Any]]:
        """One epoch of the stream as decoded host (or, after nvJPEG, device) batches."""
        if self.decoder is None:
            return self.stream.iter_batches(batch_size=self.batch_size, batch_format="numpy",
                                            prefetch_batches=self.prefetch_batches)
        jpeg_device = self.device if torch.device(self.device).type == "cuda" else None
        tables = self.stream.iter_batches(batch_size=self.batch_size, batch_format="pyarrow",
                                          prefetch_batches=self.prefetch_batches)
        return decoded_in_order(tables, lambda t: self.decoder(t, jpeg_device), self.decode_threads)

    def _routing(self, raw) -> Iterator[dict[str, Any]]:
        """This feed's rows of the stream's batches; the held-out rows go into a new cache of
        the holdout's feed, which serves that feed's epochs from then on if the pass ran to its
        end and the feed had none (else they are dropped: that feed streams its own split)."""
        target = self.holdout.feed
        building = (DecodedCache(target.placement, target.device, target.spill_dir)
                    if target.cache is None and target.placement is not None else None)
        complete = False
        try:
            for batch in raw:
                held = np.fromiter((str(i) in self.holdout.ids for i in batch["image_id"]), dtype=bool,
                                   count=len(batch["image_id"]))
                if building is not None and held.any():
                    building.add(_take(batch, held))
                yield _take(batch, ~held) if held.any() else batch
            complete = True
        finally:
            if building is not None:
                if complete:
                    target.cache = building.finish()
                else:
                    building.discard()

    def _keeping(self, raw) -> Iterator[dict[str, Any]]:
        """The stream's batches, each also added to a new cache; the cache serves the next
        epochs only if the pass ran to its end (a pass cut short by ``max_steps`` is not kept)."""
        building, complete = DecodedCache(self.placement, self.device, self.spill_dir), False
        try:
            for batch in raw:
                building.add(batch)
                yield batch
            complete = True
        finally:
            if complete:
                self.cache = building.finish()
            else:
                building.discard()
