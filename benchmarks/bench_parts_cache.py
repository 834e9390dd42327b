"""One part task three ways: its crops streamed every epoch (``parts.cache_mb=0``), kept in
memory after its first pass (the automatic budget), and over a scaled-down budget, kept in
a memory-mapped file on local disk (``parts.cache_mb`` = a tenth of the crops: the paper
preset's 2 GB of crops per task against a 512 MB budget). The same ``train_part`` call,
demo part config (SNet3, 28 px crops, 3 epochs), on the same data and centres, the runs
interleaved.

Two results:

- ``parts_cache``: the streamed task's time over the memory-cached one's;
- ``part_decodes_per_image``: 1 / (full-image decodes per training image over all the
  over-budget task's epochs). A row that comes through the Ray Data stream was decoded for
  it (the stream decodes every row it carries, once), so the decodes are the training
  rows of the epochs that streamed; 1.0 means each image was decoded once.

    python benchmarks/bench_parts_cache.py [--quick] [--images 2000] [--repeats 2]
"""

from __future__ import annotations

import argparse
import itertools
import os
import tempfile

from benchlib import machine_note, part_inputs, result_line, start_ray, synth_set, time_interleaved
from paw_ray import config as C
from paw_ray.data import shards
from paw_ray.data.cache import row_bytes
from paw_ray.train.stages.parts import train_part


def decodes_per_image(record: dict, train_rows: int) -> float:
    """Full-image decodes per training image over a part task's epochs (its done record)."""
    return sum(h["train_rows"] for h in record["history"] if h["input"] == "stream") / train_rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="smoke preset sizes, two epochs")
    ap.add_argument("--images", type=int, default=2000, help="SynthFaces images (80%% train)")
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    print(f"bench_parts_cache: {machine_note()}")
    start_ray(2)
    cfg = C.preset("smoke" if args.quick else "demo")
    cfg.parts.source = "grid"
    if args.quick:
        cfg.parts.epochs = 2
    data_dir = synth_set(cfg.data.image_size, 200 if args.quick else args.images)
    rows = shards.read_info(data_dir).num_rows
    crops_mb = row_bytes(cfg.data.part_size) * (rows["train"] + rows["val"]) / 2**20
    runs = {"streamed": 0.0, "in memory": -1.0, "on disk": crops_mb / 10}
    placements = {"streamed": None, "in memory": "host", "on disk": "disk"}
    decodes: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        whole, _, centres_ref = part_inputs(cfg, data_dir, tmp)
        count = itertools.count()

        def part_task(name: str):
            def fn():
                run_cfg = C.apply_overrides(cfg, [f"parts.cache_mb={runs[name]}"])
                record = train_part(0, C.to_dict(run_cfg), data_dir, os.path.join(tmp, f"run{next(count)}"),
                                    whole, centres_ref, "bench")
                if record["placement"] != placements[name]:
                    raise RuntimeError(f"{name}: the task kept its crops {record['placement']}")
                decodes[name] = decodes_per_image(record, rows["train"])
            return fn

        med = time_interleaved({k: part_task(k) for k in runs},
                               repeats=1 if args.quick else args.repeats, warmup=0 if args.quick else 1)
    print(f"\n[parts_cache] one part task, {cfg.preset} part config, {cfg.parts.epochs} epochs, "
          f"{rows['train']} training images at {cfg.data.image_size}px, crops {crops_mb:.1f} MB")
    for name in runs:
        print(f"  {name:10s} {med[name]:7.1f} s   speedup {med['streamed'] / med[name]:.2f}x   "
              f"full-image decodes per training image {decodes[name]:.2f}")
    print(result_line("parts_cache", med["streamed"] / med["in memory"], 1.0))
    print(result_line("part_decodes_per_image", 1.0 / decodes["on disk"], 1.0))


if __name__ == "__main__":
    main()
