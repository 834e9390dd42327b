"""Part fan-out: wall time of the 40 part trainings as the ``parts`` stage runs them (Ray
tasks, ``run_parts``) against the same 40 ``train_part`` calls one after another in this
process, on the same data, centres and initial weights. Beside each side it prints how many of the
machine's cores were busy on average: one after another, each part's own Ray Data tasks
already run beside it, so the sequential side is not confined to one core.

Reduced size: the demo preset's part config (SNet3, 28 px crops, batch 64, 0.75 CPU per
task) for ``--epochs`` full epochs (as the stage trains: crops cached after one pass) or,
with ``--steps N``, N steps per part and no cache, on a small SynthFaces set with fixed
4x4-grid centres (``parts.source=grid``: no FRL needed). Both sides train each part with
the same function, so the ratio is the fan-out's speedup; the target is 0.8 x the CPUs
given to Ray.

    python benchmarks/bench_fanout.py [--quick] [--cpus 2] [--images 600] [--epochs 3 | --steps 4] [--part-cpus 0.5]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

from benchlib import BusyCores, machine_note, part_inputs, result_line, start_ray, synth_set
from paw_ray import config as C
from paw_ray.attributes import NUM_ATTRIBUTES
from paw_ray.train.stages.parts import max_in_flight, run_parts, train_part


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="smoke preset sizes, one step per part")
    ap.add_argument("--cpus", type=int, default=2, help="CPUs given to Ray")
    ap.add_argument("--images", type=int, default=600, help="SynthFaces images (80%% train)")
    ap.add_argument("--epochs", type=int, default=3, help="full epochs per part (the demo's 3)")
    ap.add_argument("--steps", type=int, default=0, help="instead of epochs: N steps per part, no crop cache")
    ap.add_argument("--part-cpus", type=float, default=0.0, help="parts.num_cpus (default: the preset's)")
    args = ap.parse_args()
    print(f"bench_fanout: {machine_note()}")
    start_ray(args.cpus)
    cfg = C.preset("smoke" if args.quick else "demo")
    cfg.parts.source = "grid"
    cfg.max_steps = 1 if args.quick else args.steps
    cfg.parts.epochs = args.epochs
    if args.part_cpus:
        cfg.parts.num_cpus = args.part_cpus
    data_dir = synth_set(cfg.data.image_size, 200 if args.quick else args.images)

    with tempfile.TemporaryDirectory() as tmp:
        whole, centres, centres_ref = part_inputs(cfg, data_dir, tmp)
        cfg_dict = C.to_dict(cfg)

        t = time.perf_counter()
        with BusyCores() as seq_busy:
            for part in range(NUM_ATTRIBUTES):
                train_part(part, cfg_dict, data_dir, os.path.join(tmp, "seq"), whole, centres_ref, "bench")
        sequential = time.perf_counter() - t

        t = time.perf_counter()
        with BusyCores() as par_busy:
            run_parts(cfg, data_dir, os.path.join(tmp, "par"), "bench", whole, centres, log=lambda *_: None)
        parallel = time.perf_counter() - t
        in_flight = max_in_flight(cfg)

    work = f"{cfg.max_steps} step(s)" if cfg.max_steps else f"{cfg.parts.epochs} epoch(s) of {args.images * 4 // 5} images"
    print(f"\n[parts_fanout] 40 parts x {work}, {cfg.preset} part config "
          f"({cfg.parts.num_cpus} CPU per task, {in_flight} in flight on {args.cpus} Ray CPUs)")
    print(f"  one after another in one process {sequential:8.1f} s   {seq_busy.cores:.2f} cores busy on average")
    print(f"  Ray tasks (run_parts)            {parallel:8.1f} s   {par_busy.cores:.2f} cores busy on average, "
          f"speedup {sequential / parallel:.2f}x")
    print(result_line("part_fanout", sequential / parallel, 0.8 * args.cpus))


if __name__ == "__main__":
    main()
