"""One part task, its crops streamed every epoch against held in memory after one pass
(``parts.cache_mb``): the same ``train_part`` call, demo part config (SNet3, 28 px crops,
3 epochs), on the same data and centres, the two runs interleaved.

Streaming re-reads and re-decodes every full image each epoch, and each epoch starts a
new Ray Data execution; the cache decodes once and reshuffles and re-flips the crops.

    python benchmarks/bench_parts_cache.py [--quick] [--images 2000] [--repeats 2]
"""

from __future__ import annotations

import argparse
import itertools
import os
import tempfile

from benchlib import machine_note, part_inputs, result_line, start_ray, synth_set, time_interleaved
from paw_ray import config as C
from paw_ray.train.stages.parts import train_part


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="smoke preset sizes, one epoch")
    ap.add_argument("--images", type=int, default=2000, help="SynthFaces images (80%% train)")
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    print(f"bench_parts_cache: {machine_note()}")
    start_ray(2)
    cfg = C.preset("smoke" if args.quick else "demo")
    cfg.parts.source = "grid"
    if args.quick:
        cfg.parts.epochs = 1
    data_dir = synth_set(cfg.data.image_size, 200 if args.quick else args.images)
    with tempfile.TemporaryDirectory() as tmp:
        whole, _, centres_ref = part_inputs(cfg, data_dir, tmp)
        runs = {"streamed": 0.0, "cached": cfg.parts.cache_mb}
        count = itertools.count()

        def part_task(cache_mb: float):
            def fn():
                run_cfg = C.apply_overrides(cfg, [f"parts.cache_mb={cache_mb}"])
                record = train_part(0, C.to_dict(run_cfg), data_dir, os.path.join(tmp, f"run{next(count)}"),
                                    whole, centres_ref, "bench")
                assert record["cached"] is (cache_mb > 0)
            return fn

        med = time_interleaved({k: part_task(v) for k, v in runs.items()},
                               repeats=1 if args.quick else args.repeats, warmup=0 if args.quick else 1)
    print(f"\n[parts_cache] one part task, {cfg.preset} part config, {cfg.parts.epochs} epochs, "
          f"{args.images if not args.quick else 200} images at {cfg.data.image_size}px")
    print(f"  streamed every epoch  {med['streamed']:7.1f} s")
    print(f"  cached after one pass {med['cached']:7.1f} s   speedup {med['streamed'] / med['cached']:.2f}x")
    print(result_line("parts_cache", med["streamed"] / med["cached"], 1.0))


if __name__ == "__main__":
    main()
