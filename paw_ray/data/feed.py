"""The model batches of one split, epoch after epoch, for one consumer (a Ray Train worker
or a part task).

The first epoch a consumer runs (the first of the stage, or the first after a restart or
resume) streams from Ray Data; when the rows fit the cache budget the feed keeps them as
they pass (``DecodedCache``), and every later epoch is served from there: no Ray Data
execution, no decode. Both paths end in ``model_batch`` on the consumer's device, so the
same row gets the same flip in the same epoch whichever path served it.
"""

from __future__ import annotations

from typing import Any, Iterator

from paw_ray.data.batches import StreamStats, model_batch, prefetch
from paw_ray.data.cache import DecodedCache

__all__ = ["EpochFeed"]


class EpochFeed:
    """``epoch(e, stats)`` yields the model batches of epoch ``e``.

    ``stream`` is anything with Ray Data's ``iter_batches`` (a ``DataIterator`` from
    ``get_dataset_shard`` or a ``Dataset``). ``placement`` is where the rows are kept after
    the first pass (``choose_placement``; None streams every epoch). ``flip_seed`` turns on
    the training flips; ``shuffle_seed`` the reordering of cached epochs.
    """

    def __init__(self, stream, *, batch_size: int, device, placement: str | None = None,
                 flip_seed: int | None = None, shuffle_seed: int | None = None, spill_dir: str | None = None,
                 prefetch_batches: int = 2):
        self.stream, self.batch_size, self.device = stream, batch_size, device
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
            raw = self.stream.iter_batches(batch_size=self.batch_size, batch_format="numpy",
                                           prefetch_batches=self.prefetch_batches)
            if self.placement is not None:
                raw = self._keeping(raw)

        def make(batch):
            return model_batch(batch, self.device, stats, flip_seed=self.flip_seed, epoch=epoch)

        yield from prefetch(raw, make, self.device)

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
