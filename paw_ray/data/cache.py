"""A split's decoded part crops held in memory, for the part tasks.

A part task trains on one small crop per image (28 px at the demo size: 11 MB for 4,800
images) but its stream re-reads and re-decodes every full image each epoch, and pays a
Ray Data execution's start-up each time. ``InMemorySplit`` keeps the crops of one pass
(cut without flips) and serves each later epoch in a new order, mirroring each crop as
the stream would have mirrored its image: ``flip_decisions`` (seed, image id, epoch) is
the same coin, and mirroring a window cut at a centre equals cutting the mirrored image at
the mirrored centre (``window_corners`` clamps symmetrically; where a centre's window edge
falls exactly half-way between pixels, rounding half up moves the stream's window one
pixel, the mirrored crop does not). Large data (CelebA at 224 px) does not fit the budget
(``parts.cache_mb``) and keeps streaming.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np

from paw_ray.data.pipeline import flip_decisions

__all__ = ["InMemorySplit", "crop_bytes"]


def crop_bytes(rows: int, part_size: int) -> int:
    """Memory of ``rows`` uint8 RGB crops of ``part_size`` squared, with their labels."""
    return rows * (3 * part_size * part_size + 40)


@dataclass
class InMemorySplit:
    """Unflipped decoded rows of one split: ``image_id``, ``image`` (uint8 N x 3 x H x W),
    ``labels`` and ``ok`` (rows that did not decode are kept, so every epoch counts them)."""

    image_id: np.ndarray
    image: np.ndarray
    labels: np.ndarray
    ok: np.ndarray

    @classmethod
    def collect(cls, batches) -> "InMemorySplit":
        """Concatenate the numpy batches of one pass over an unflipped, unshuffled stream."""
        cols: dict[str, list[np.ndarray]] = {k: [] for k in ("image_id", "image", "labels", "ok")}
        for batch in batches:
            for k, v in cols.items():
                v.append(np.asarray(batch[k]))
        if not cols["image_id"]:
            raise ValueError("the stream had no rows")
        return cls(**{k: np.concatenate(v) for k, v in cols.items()})

    def __len__(self) -> int:
        return len(self.image_id)

    def batches(self, batch_size: int, *, shuffle_seed: int | None = None, flip_seed: int | None = None,
                epoch: int = 0) -> Iterator[dict[str, np.ndarray]]:
        """One epoch of batches shaped like the stream's. With ``shuffle_seed`` the rows come in
        an order drawn from (seed, epoch); with ``flip_seed`` each crop is mirrored where
        ``decode_batch(train=True, seed=flip_seed, epoch=epoch)`` would mirror its image."""
        order = (np.random.default_rng([shuffle_seed, epoch]).permutation(len(self))
                 if shuffle_seed is not None else np.arange(len(self)))
        for lo in range(0, len(order), batch_size):
            idx = order[lo:lo + batch_size]
            ids, images = self.image_id[idx], self.image[idx]
            flipped = (flip_decisions(ids, flip_seed, epoch) if flip_seed is not None
                       else np.zeros(len(idx), dtype=bool))
            if flipped.any():
                images = images.copy()
                images[flipped] = images[flipped][..., ::-1]
            yield {"image_id": ids, "image": images, "labels": self.labels[idx], "ok": self.ok[idx],
                   "flipped": flipped}
