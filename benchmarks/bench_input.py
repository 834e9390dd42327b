"""Input pipeline: images/s of the Ray Data training stream against a plain PyTorch
``DataLoader`` with the same number of worker processes, on the same Parquet shards.

Ray side: the project's own ``image_stream(shuffle=True)`` (read, decode, resize, uint8
CHW batches), split with ``streaming_split`` and iterated with
``iter_batches(batch_format="numpy", prefetch_batches=2)`` + ``model_batch`` (flip and
normalisation), as a Train worker's streamed epoch does; Ray is given ``--workers`` CPUs.

Baseline: ``torch.utils.data.DataLoader(num_workers=--workers)`` over an
``IterableDataset`` whose workers read their own shard files with pyarrow and run the
same ``decode_batch`` on each slice of ``--batch`` rows; the uint8 tensors come back
through shared memory and the main process runs the same ``model_batch``. Per-image
work is identical on both sides, so the ratio measures the pipeline machinery: block
scheduling, object store, batching and prefetching against DataLoader's workers.

Each epoch is timed end to end (first batch included: a trainer pays it every epoch);
epochs alternate between the two sides after one warm-up epoch each; medians compared.
The time to the first batch is printed beside the rate: a cost paid once per epoch, which
``--scale K`` (K times the images) shows shrinking against the epoch.

    python benchmarks/bench_input.py [--quick] [--workers 2] [--repeats 3] [--scale 4]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from benchlib import machine_note, result_line, start_ray, synth_set
from paw_ray.data import shards
from paw_ray.data.batches import model_batch
from paw_ray.data.stream import RowDecoder, decode_batch, image_stream


class ShardBatches(IterableDataset):
    """``IterableDataset`` of decoded numpy batches: worker w reads every w-th shard file
    of a shuffled order. (Workers are persistent, so order and flips repeat each epoch:
    the work per epoch is the same.)"""

    def __init__(self, files: list[str], image_size: int, batch_size: int, seed: int = 0):
        self.files, self.image_size, self.batch_size, self.seed = files, image_size, batch_size, seed

    def __iter__(self):
        import pyarrow.parquet as pq

        info = get_worker_info()
        wid, nw = (info.id, info.num_workers) if info else (0, 1)
        order = np.random.default_rng(self.seed).permutation(len(self.files))
        for i in order[wid::nw]:
            table = pq.read_table(self.files[i], columns=["image_id", "image", "labels"])
            for lo in range(0, table.num_rows, self.batch_size):
                yield decode_batch(table.slice(lo, self.batch_size), image_size=self.image_size)


def _as_numpy(batch: dict) -> dict:
    """DataLoader hands tensors back (shared memory); the stream hands numpy: the same to ``model_batch``."""
    return {k: (v.numpy() if hasattr(v, "numpy") else v) for k, v in batch.items()}


def consume(batches, convert=None) -> tuple[int, float]:
    """Normalise every batch as a trainer does; return the number of images and the
    seconds until the first batch was ready."""
    n, t0, first = 0, time.perf_counter(), None
    for batch in batches:
        n += len(model_batch(convert(batch) if convert else batch, "cpu", flip_seed=0)["image_id"])
        if first is None:
            first = time.perf_counter() - t0
    return n, first or 0.0


def bench_size(name: str, data_dir: str, image_size: int, workers: int, batch: int, repeats: int) -> float:
    """Images/s of both sides at one image size; prints the RESULT line, returns the ratio."""
    info = shards.read_info(data_dir)
    files = shards.shard_files(data_dir, info, "train")
    ds = image_stream(data_dir, "train", RowDecoder(image_size), shuffle=True, seed=0)
    split = ds.streaming_split(1, equal=True)[0]
    dataset = ShardBatches(files, image_size, batch)
    loader = DataLoader(dataset, batch_size=None, num_workers=workers, persistent_workers=True,
                        prefetch_factor=2)

    def ray_epoch() -> tuple[int, float]:
        return consume(split.iter_batches(batch_size=batch, batch_format="numpy", prefetch_batches=2))

    def torch_epoch() -> tuple[int, float]:
        return consume(loader, _as_numpy)

    sides = {"ray_data": ray_epoch, "dataloader": torch_epoch}
    rates: dict[str, list[float]] = {k: [] for k in sides}
    firsts: dict[str, list[float]] = {k: [] for k in sides}
    for r in range(repeats + 1):
        for k, fn in sides.items():
            t = time.perf_counter()
            n, first = fn()
            if n != info.num_rows["train"]:
                raise RuntimeError(f"{k}: {n} images in an epoch, expected {info.num_rows['train']}")
            if r:  # the first round warms up worker processes and caches
                rates[k].append(n / (time.perf_counter() - t))
                firsts[k].append(first)
    med = {k: statistics.median(v) for k, v in rates.items()}
    print(f"\n[{name}] {info.num_rows['train']} train images {image_size}px, batch {batch}, "
          f"{workers} worker processes / Ray CPUs, {repeats} epochs each")
    for k, v in med.items():
        print(f"  {k:12s} {v:8.1f} images/s, first batch after {statistics.median(firsts[k]):5.2f} s   "
              f"(epochs: {', '.join(f'{x:.0f}' for x in rates[k])})")
    ratio = med["ray_data"] / med["dataloader"]
    print(result_line(name, ratio, 0.9))
    return ratio


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="small sets, demo size only, one epoch each")
    ap.add_argument("--workers", type=int, default=2, help="DataLoader workers = CPUs given to Ray")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--scale", type=int, default=1, help="multiply the sets' sizes (a fixed cost per epoch shrinks)")
    args = ap.parse_args()
    torch.set_num_threads(1)  # the consumer normalises like a 1-CPU Train worker (loop.py)
    print(f"bench_input: {machine_note()}")
    start_ray(args.workers)
    sizes = [("input_demo96", 96, 2000 * args.scale)] if not args.quick else [("input_demo96", 96, 300)]
    if not args.quick:
        sizes.append(("input_paper224", 224, 800 * args.scale))
    for name, size, n in sizes:
        bench_size(name, synth_set(size, n), size, args.workers, args.batch, 1 if args.quick else args.repeats)


if __name__ == "__main__":
    main()
