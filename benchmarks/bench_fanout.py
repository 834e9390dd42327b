"""Part fan-out: wall time of the 40 part trainings as the ``parts`` stage runs them (Ray
tasks, ``run_parts``) against the same 40 ``train_part`` calls one after another in this
process, on the same data, centres and initial weights.

Reduced size: the demo preset's part config (SNet3, 28 px crops, batch 64, 0.75 CPU per
task) with ``max_steps`` steps per part (and as many validation batches), on a small
SynthFaces set with fixed 4x4-grid centres (``parts.source=grid``: no FRL needed). Both
sides train each part with the same function, so the ratio is the fan-out's speedup;
the target is 0.8 x the CPUs given to Ray.

    python benchmarks/bench_fanout.py [--quick] [--cpus 2] [--steps 4]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

from benchlib import machine_note, result_line, start_ray, synth_set
from paw_ray import config as C
from paw_ray.attributes import NUM_ATTRIBUTES
from paw_ray.models.students import SNet
from paw_ray.train.checkpoints import save_state
from paw_ray.train.stages.localize import load_centres, run_localize
from paw_ray.train.stages.parts import max_in_flight, run_parts, train_part


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="smoke preset sizes, one step per part")
    ap.add_argument("--cpus", type=int, default=2, help="CPUs given to Ray")
    ap.add_argument("--steps", type=int, default=4, help="training (and validation) steps per part")
    args = ap.parse_args()
    print(f"bench_fanout: {machine_note()}")
    start_ray(args.cpus)
    import ray

    cfg = C.preset("smoke" if args.quick else "demo")
    cfg.parts.source = "grid"
    cfg.max_steps = 1 if args.quick else args.steps
    data_dir = synth_set(cfg.data.image_size, 200 if args.quick else 600)

    with tempfile.TemporaryDirectory() as tmp:
        whole = os.path.join(tmp, "whole.pt")
        save_state(whole, SNet.from_config(cfg).state_dict())
        centres, _ = run_localize(cfg, data_dir, os.path.join(tmp, "localize"), None)
        centres_ref = ray.put(load_centres(centres))
        cfg_dict = C.to_dict(cfg)

        t = time.perf_counter()
        for part in range(NUM_ATTRIBUTES):
            train_part(part, cfg_dict, data_dir, os.path.join(tmp, "seq"), whole, centres_ref, "bench")
        sequential = time.perf_counter() - t

        t = time.perf_counter()
        run_parts(cfg, data_dir, os.path.join(tmp, "par"), "bench", whole, centres, log=lambda *_: None)
        parallel = time.perf_counter() - t
        in_flight = max_in_flight(cfg)

    print(f"\n[parts_fanout] 40 parts x {cfg.max_steps} step(s), {cfg.preset} part config "
          f"({cfg.parts.num_cpus} CPU per task, {in_flight} in flight on {args.cpus} Ray CPUs)")
    print(f"  one after another in one process {sequential:8.1f} s")
    print(f"  Ray tasks (run_parts)            {parallel:8.1f} s   speedup {sequential / parallel:.2f}x")
    print(result_line("parts_fanout", sequential / parallel, 0.8 * args.cpus))


if __name__ == "__main__":
    main()
