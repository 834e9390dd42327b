"""A whole FRL stage on paw_ray's data path against the plain PyTorch script it replaces,
and how close the streamed first epoch comes to this machine's decode rate.

- **paw_ray**: the real ``frl`` stage (``train(stages=["frl"])``: TorchTrainer, the demo
  preset's FRL and its two DDP workers, the Ray Data stream in the first epoch and the
  workers' decoded caches after it, validation and a checkpoint every epoch).
- **plain**: one process with as many torch threads as Ray has CPUs, a ``DataLoader`` with as
  many worker processes reading the same Parquet shards (``bench_input.ShardBatches``: the
  same ``decode_batch``), the same model, loss, optimizer, global batch, flips and epochs,
  and a validation pass every epoch. What a user would write without Ray.

Both count images/s from the first training batch to the end of the last epoch (the stream,
validation and checkpoints included); Ray Train's start-up before the first batch is printed
beside it, not counted.

- ``stage_vs_dataloader_<size>``: paw_ray's images/s over the plain script's;
- ``trainer_busy_share``: over the 96 px stage, the share of rank 0's training-loop time
  spent in the training step rather than waiting for the next batch;
- ``first_epoch_vs_decode_limit``: the training stream alone (``image_stream`` +
  ``streaming_split`` + ``EpochFeed``, as a worker's first epoch reads it, decoded where
  ``data.decode_in`` says) in images/s, against the decode rate of the same bytes on one core
  (``decode_batch`` in this process, one thread) times the CPUs the stream had. The stream
  decoded in Ray Data's tasks is printed beside it.

    python benchmarks/bench_stage.py [--quick] [--cpus 2] [--images 1000] [--images-224 400] [--epochs 6]
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time

import pyarrow.parquet as pq
import torch
from torch.utils.data import DataLoader

from bench_input import ShardBatches, _as_numpy
from benchlib import machine_note, result_line, start_ray, synth_set
from paw_ray import config as C
from paw_ray.data import shards
from paw_ray.data.batches import model_batch
from paw_ray.data.feed import EpochFeed
from paw_ray.data.stream import RowDecoder, consumer_decoder, decode_batch, image_stream
from paw_ray.train.loop import epoch_lr, make_optimizer
from paw_ray.train.manifest import Manifest
from paw_ray.train.run import train
from paw_ray.train.stages.frl import build_task


def paw_stage(cfg) -> dict:
    """Run the frl stage; images/s from its first training batch to its end, and its start-up."""
    with tempfile.TemporaryDirectory() as run_dir:
        train(cfg, run_dir, stages=["frl"], log=lambda *_: None)
        rec = Manifest.load_or_create(run_dir).stages["frl"]
    history = rec.metrics["history"]
    first = history[0]["started_at"] + history[0]["first_batch_s"]
    images = sum(h["train_rows"] for h in history)
    wait = sum(h["input_wait_s"] for h in history)
    step = sum(h["step_s"] for h in history)
    return {"rate": images / (rec.finished_at - first), "startup_s": first - rec.started_at,
            "busy": step / (step + wait), "first_epoch_wait_share": history[0]["input_wait_s"] / (
                history[0]["input_wait_s"] + history[0]["step_s"]),
            "inputs": [h["input"] for h in history]}


def plain_stage(cfg, data_dir: str, threads: int, workers: int) -> dict:
    """The same FRL training as a plain PyTorch script over a DataLoader."""
    info = shards.read_info(data_dir)
    scfg = cfg.frl
    torch.set_num_threads(threads)
    torch.manual_seed(cfg.seed)
    task = build_task("frl", cfg, {}, torch.device("cpu"), shards.label_positive_rate(data_dir, "train"))
    model = task.model.to(memory_format=torch.channels_last)
    optimizer = make_optimizer(model.parameters(), scfg)

    def loader(split: str):
        return DataLoader(ShardBatches(shards.shard_files(data_dir, info, split), cfg.data.image_size,
                                       scfg.batch_size), batch_size=None, num_workers=workers,
                          persistent_workers=True, prefetch_factor=2)

    train_loader, val_loader = loader("train"), loader("val")
    images, first = 0, None
    for epoch in range(scfg.epochs):
        for group in optimizer.param_groups:
            group["lr"] = epoch_lr(scfg.lr, scfg.lr_schedule, epoch, scfg.epochs)
        model.train()
        for batch in train_loader:
            first = first or time.perf_counter()
            b = model_batch(_as_numpy(batch), "cpu", flip_seed=cfg.seed, epoch=epoch)
            loss, _ = task.loss(model, b)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            images += len(b["image_id"])
        model.eval()
        with torch.no_grad():
            for batch in val_loader:
                task.loss(model, model_batch(_as_numpy(batch), "cpu"))
    return {"rate": images / (time.perf_counter() - first)}


def decode_rate_per_core(data_dir: str, image_size: int, batch: int = 256) -> float:
    """Images/s of ``decode_batch`` on the training shards' bytes, one thread in this process."""
    info = shards.read_info(data_dir)
    tables = [pq.read_table(f, columns=["image_id", "image", "labels"])
              for f in shards.shard_files(data_dir, info, "train")]
    torch.set_num_threads(1)
    n, t = 0, time.perf_counter()
    for table in tables:
        for lo in range(0, table.num_rows, batch):
            n += len(decode_batch(table.slice(lo, batch), image_size=image_size)["image_id"])
    return n / (time.perf_counter() - t)


def stream_first_epoch_rate(data_dir: str, image_size: int, batch: int, decode_in: str, threads: int) -> float:
    """Images/s of one streamed training epoch as a worker reads it (``EpochFeed`` over one
    ``streaming_split``, decoded where ``decode_in`` says, in ``threads`` threads on the
    consumer), first batch included."""
    decoder = RowDecoder(image_size)
    ds = image_stream(data_dir, "train", decoder, shuffle=True, seed=0, decode_in=decode_in)
    feed = EpochFeed(ds.streaming_split(1, equal=True)[0], batch_size=batch, device="cpu", flip_seed=0,
                     decoder=consumer_decoder(decoder, decode_in), decode_threads=threads)
    n, t = 0, time.perf_counter()
    for b in feed.epoch(0):
        n += len(b["image_id"])
    return n / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="smoke preset sizes, two epochs, 96 px only")
    ap.add_argument("--cpus", type=int, default=2, help="CPUs given to Ray = DataLoader workers = plain threads")
    ap.add_argument("--images", type=int, default=1000, help="SynthFaces images at 96 px (80%% train)")
    ap.add_argument("--images-224", type=int, default=400, help="SynthFaces images at 224 px")
    ap.add_argument("--epochs", type=int, default=6)
    args = ap.parse_args()
    print(f"bench_stage: {machine_note()}")
    start_ray(args.cpus)
    base = C.preset("smoke" if args.quick else "demo")
    sizes = [(96, 200 if args.quick else args.images)] + ([] if args.quick else [(224, args.images_224)])
    for size, n in sizes:
        data_dir = synth_set(size, n)
        cfg = C.apply_overrides(base, [f"data.path={data_dir}", f"data.image_size={size}",
                                       f"data.part_size={min(base.data.part_size, size)}",
                                       f"frl.epochs={2 if args.quick else args.epochs}"])
        if size == 96:
            per_core = decode_rate_per_core(data_dir, size)
            limit = per_core * args.cpus
            print(f"\n[first_epoch] {n} images at {size}px: decode {per_core:.0f} images/s on one core, "
                  f"x {args.cpus} CPUs = {limit:.0f}")
            streamed = {}
            for decode_in in ("tasks", "consumer"):
                streamed[decode_in] = stream_first_epoch_rate(data_dir, size, cfg.frl.batch_size // cfg.frl.num_workers,
                                                              decode_in, threads=args.cpus)
                print(f"  decoded in {decode_in}: the stream delivered {streamed[decode_in]:.0f} images/s "
                      f"({streamed[decode_in] / limit:.2f} of the limit)")
            print(result_line("first_epoch_vs_decode_limit", streamed[cfg.data.decode_in] / limit, 0.8))
        plain = plain_stage(cfg, data_dir, threads=args.cpus, workers=args.cpus)
        paw = paw_stage(cfg)
        print(f"\n[stage_{size}] frl stage, {cfg.preset} FRL, {cfg.frl.epochs} epochs of "
              f"{shards.read_info(data_dir).num_rows['train']} images at {size}px, global batch {cfg.frl.batch_size}")
        print(f"  plain PyTorch + DataLoader ({args.cpus} threads, {args.cpus} workers) {plain['rate']:7.1f} images/s")
        print(f"  paw_ray ({cfg.frl.num_workers} Train workers x {cfg.frl.cpus_per_worker} CPU)        "
              f"{paw['rate']:7.1f} images/s  (start-up before the first batch {paw['startup_s']:.1f} s, "
              f"not counted; inputs {', '.join(paw['inputs'])})")
        print(f"  paw_ray rank 0: training step {paw['busy']:.0%} of its loop time "
              f"(first, streamed epoch {1 - paw['first_epoch_wait_share']:.0%})")
        print(result_line(f"stage_vs_dataloader_{size}", paw["rate"] / plain["rate"], 1.0))
        if size == 96:
            print(result_line("trainer_busy_share", paw["busy"], 0.9))
        if not math.isfinite(paw["rate"]):
            raise RuntimeError("no training batch was timed")


if __name__ == "__main__":
    main()
