"""On one GPU: how much of the device a whole FRL stage keeps busy, and what bfloat16 buys.

- ``gpu_stage_vs_step_<preset>`` (demo, paper): the real ``frl`` stage (``train(stages=
  ["frl"])``, one Train worker on the GPU, the streamed first epoch, the decoded cache after
  it, validation and checkpoints) in images/s from its first training batch to the end of its
  last epoch, against the same FRL training step alone on a fixed batch on the same GPU
  (``bench_roofline.build_step``, channels_last as the trainers run it). The worker group's
  start-up before the first batch is printed beside it, not counted.
- ``bf16_vs_fp32_step``: the FRL training step at the paper size under bfloat16 autocast
  (``precision: bf16``) against float32, interleaved.

Run by ``gpu_check.py`` where a CUDA device is lent; ``--device cpu`` (with ``--quick``)
checks the script on a CPU machine and measures nothing of interest.

    python benchmarks/bench_gpu_stage.py [--quick] [--device cuda] [--demo-images 6000]
        [--paper-images 4000] [--paper-epochs 2]
"""

from __future__ import annotations

import argparse
import os

import torch

from bench_roofline import build_step
from bench_stage import paw_stage
from benchlib import machine_note, result_line, start_ray, synth_set, time_interleaved
from paw_ray import config as C
from paw_ray.train.loop import autocast

TARGETS = {"demo": 0.5, "paper": 0.7}


def step_rates(cfg, device: torch.device, precisions=("fp32",), repeats: int = 10) -> dict[str, float]:
    """Images/s of the FRL training step alone at the stage's batch, for each precision
    (timed interleaved)."""
    batch = cfg.frl.batch_size
    steps = {p: build_step("frl", cfg, batch, device, channels_last=True, cast=autocast(device, p)) for p in precisions}
    return {p: batch / t for p, t in time_interleaved(steps, repeats, warmup=3).items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="smoke sizes: a check that it runs")
    ap.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    ap.add_argument("--demo-images", type=int, default=6000)
    ap.add_argument("--paper-images", type=int, default=4000)
    ap.add_argument("--paper-epochs", type=int, default=2)
    args = ap.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("bench_gpu_stage: no CUDA device (use --device cpu to check the script)")
    cpus = os.cpu_count() or 1
    print(f"bench_gpu_stage: {machine_note()}; "
          f"{torch.cuda.get_device_name(device) if device.type == 'cuda' else 'CPU'}")
    start_ray(cpus)
    runs = [("smoke", 200, 1)] if args.quick else [("demo", args.demo_images, 0),
                                                   ("paper", args.paper_images, args.paper_epochs)]
    for preset, n, epochs in runs:
        base = C.preset(preset)
        data_dir = synth_set(base.data.image_size, n)
        sets = [f"data.path={data_dir}", "frl.num_workers=1", f"frl.use_gpu={device.type == 'cuda'}",
                f"frl.cpus_per_worker={max(1, cpus // 2)}"]
        if epochs:
            sets.append(f"frl.epochs={epochs}")
        cfg = C.apply_overrides(base, sets)
        stage = paw_stage(cfg)
        alone = step_rates(cfg, device)["fp32"]
        print(f"\n[gpu_stage_{preset}] frl stage, {cfg.frl.epochs} epochs of {n * 4 // 5} images at "
              f"{cfg.data.image_size}px, batch {cfg.frl.batch_size}, one worker on {device.type}: "
              f"{stage['rate']:.0f} images/s from the first batch (start-up {stage['startup_s']:.1f} s, not "
              f"counted; inputs {', '.join(stage['inputs'])}); the training step alone {alone:.0f} images/s")
        print(result_line(f"gpu_stage_vs_step_{'demo' if preset == 'smoke' else preset}", stage["rate"] / alone,
                          TARGETS.get(preset, TARGETS["demo"])))
    cfg = C.preset("smoke" if args.quick else "paper")
    rates = step_rates(cfg, device, ("fp32", "bf16"))
    fp32, bf16 = rates["fp32"], rates["bf16"]
    print(f"\n[bf16] FRL training step, {cfg.preset} size on {device.type}: float32 {fp32:.0f} images/s, "
          f"bfloat16 autocast {bf16:.0f} images/s")
    print(result_line("bf16_vs_fp32_step", bf16 / fp32, 1.0))


if __name__ == "__main__":
    main()
