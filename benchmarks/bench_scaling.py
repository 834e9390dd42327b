"""Multi-worker scaling of one Ray Train stage: the ``frl`` stage with 1 and with 2
workers (DDP), images/s and efficiency = rate(2) / (2 x rate(1)); and, the other way to
use a second core, one worker with two torch threads (``cpus_per_worker`` rounds to the
worker's thread count) against one thread.

Each run is the real stage (``paw_ray.train.run.train(stages=["frl"])``) on a small
SynthFaces set, demo preset sizes, 2 epochs; the rate is training rows / time of the
last epoch as the workers report it (``history``; validation included, Train's fixed
start-up cost excluded). Workers get ``--cpus-per-worker`` (0.75 by default: Ray Data's
fractional read/decode tasks need the rest) and one torch thread each; the global batch
is the same for both (the loop splits it across workers). Runs alternate 1, 2, 1, 2...;
the thread comparison gives its worker ``--threaded-cpus`` (1.5: two threads, half a CPU
left for the data tasks).

    python benchmarks/bench_scaling.py [--quick] [--cpus 2] [--repeats 1]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile

from benchlib import machine_note, result_line, start_ray, synth_set
from paw_ray import config as C
from paw_ray.train.manifest import Manifest
from paw_ray.train.run import train


def stage_rate(cfg, workers: int, cpus_per_worker: float) -> float:
    """Training images/s of the last epoch of the ``frl`` stage with ``workers`` workers."""
    cfg = C.apply_overrides(cfg, [f"frl.num_workers={workers}", f"frl.cpus_per_worker={cpus_per_worker}"])
    with tempfile.TemporaryDirectory() as run_dir:
        train(cfg, run_dir, stages=["frl"], log=lambda *_: None)
        last = Manifest.load_or_create(run_dir).stages["frl"].metrics["history"][-1]
    return last["train_rows"] / last["epoch_time_s"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="smoke preset sizes, one epoch")
    ap.add_argument("--cpus", type=int, default=2, help="CPUs given to Ray")
    ap.add_argument("--cpus-per-worker", type=float, default=0.75)
    ap.add_argument("--threaded-cpus", type=float, default=1.5, help="CPUs of the two-thread worker")
    ap.add_argument("--images", type=int, default=1000, help="SynthFaces images (80%% train)")
    ap.add_argument("--repeats", type=int, default=1)
    args = ap.parse_args()
    print(f"bench_scaling: {machine_note()}")
    start_ray(args.cpus)
    cfg = C.preset("smoke" if args.quick else "demo")
    cfg.data.path = synth_set(cfg.data.image_size, 200 if args.quick else args.images)
    cfg = C.apply_overrides(cfg, [f"frl.epochs={1 if args.quick else 2}"])
    runs = {"1 worker": (1, args.cpus_per_worker), "2 workers": (2, args.cpus_per_worker),
            "1 worker, 2 threads": (1, args.threaded_cpus)}
    rates: dict[str, list[float]] = {k: [] for k in runs}
    for _ in range(args.repeats):
        for name, (workers, cpus) in runs.items():
            rates[name].append(stage_rate(cfg, workers, cpus))
    med = {k: statistics.median(v) for k, v in rates.items()}
    r1, r2, rt = med["1 worker"], med["2 workers"], med["1 worker, 2 threads"]
    print(f"\n[scaling_frl] frl stage, {cfg.preset} preset, global batch {cfg.frl.batch_size}, {args.cpus} Ray CPUs; "
          f"{args.cpus_per_worker} CPU per worker (one thread), {args.threaded_cpus} for the two-thread worker")
    print(f"  1 worker            {r1:8.1f} images/s")
    print(f"  2 workers           {r2:8.1f} images/s   speedup {r2 / r1:.2f}x, efficiency {r2 / (2 * r1):.0%}")
    print(f"  1 worker, 2 threads {rt:8.1f} images/s   speedup {rt / r1:.2f}x")
    print(result_line("scaling_frl_2workers", r2 / (2 * r1), 0.8))
    print(result_line("scaling_frl_2threads", rt / r1, 1.0))


if __name__ == "__main__":
    main()
