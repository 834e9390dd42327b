"""Roofline view: the FLOP rate of the FRL and PaW training steps as a share of this
machine's dense matmul FLOP rate, both measured in the same run with the same threads.

A training step is what the trainers run (``paw_ray.train.loop.train_epoch``): the
stage's own loss (the ``build_task`` of ``stages.frl`` for ``frl``, of ``stages.paw`` for ``finetune``,
PaW trained end to end), backward, and the stage's optimiser step. Its FLOPs are counted
once with ``torch.utils.flop_counter.FlopCounterMode`` (convolutions and matmuls, forward
and backward; elementwise ops are not counted, so the share is a lower bound on how busy
the cores are). The matmul reference is ``torch.mm`` of two n x n float32 matrices.

Variants, timed interleaved with the matmul (before/after of the fixes worth trying on CPU):
``NCHW`` (the preset's batch), ``channels_last`` (the layout the trainers use:
``paw_ray.train.loop.channels_last``), ``batch x2``. Each prints its share; the RESULT
lines are the share as trained (target 0.2) and the speedup of channels_last over NCHW
(target 1.0: not slower). ``--profile`` prints torch.profiler's
top operators of one step as trained. ``--device cuda`` runs the same on a
GPU against a 4096 x 4096 matmul in TF32: cuDNN runs float32 convolutions in TF32 by
default (``torch.backends.cudnn.allow_tf32``), so a float32 matmul is not their ceiling
(measured on an H200: the paper-size FRL step at 125% of it).

    python benchmarks/bench_roofline.py [--quick] [--threads 1] [--preset demo] [--profile] [--device cuda]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import tempfile

import torch
from torch.utils.flop_counter import FlopCounterMode, conv_flop_count

from benchlib import machine_note, result_line, time_interleaved
from paw_ray import config as C
from paw_ray.attributes import NUM_ATTRIBUTES
from paw_ray.models.paw import PaW
from paw_ray.train.checkpoints import save_state
from paw_ray.train.loop import channels_last as to_channels_last, make_optimizer
from paw_ray.train.stages import frl as frl_stage
from paw_ray.train.stages import paw as paw_stage


def matmul(n: int, device: torch.device):
    """A dense float32 n x n matmul as a closure (in TF32 on a GPU, the precision cuDNN's
    convolutions use by default), and its FLOPs."""
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    if device.type != "cuda":
        return (lambda: torch.mm(a, b)), 2 * n**3

    def tf32_mm() -> torch.Tensor:
        before = torch.backends.cuda.matmul.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = True
        try:
            return torch.mm(a, b)
        finally:
            torch.backends.cuda.matmul.allow_tf32 = before

    return tf32_mm, 2 * n**3


def grouped_conv_backward_flop(grad_out_shape, x_shape, w_shape, _bias, _stride, _padding, _dilation, transposed,
                               _output_padding, _groups, output_mask, out_shape=None, **kwargs) -> int:
    """FLOPs of ``aten.convolution_backward``: grad_input and grad_weight each cost what the
    forward convolution costs (one multiply-add per forward multiply-add), groups included.

    torch's own formula counts grad_weight as if the convolution were ungrouped, ``groups``
    times too many: with it the 40 part subnets (one conv group each) counted 1,129 MFLOP
    of backward per image against a 231 MFLOP forward on CPU and 9,454 on a GPU, where they
    run as one group of 40 instead of blocks of 4."""
    forward = conv_flop_count(x_shape, w_shape, grad_out_shape, transposed)
    return forward * (int(bool(output_mask[0])) + int(bool(output_mask[1])))


def count_flops(fn) -> int:
    """FLOPs of one call of ``fn`` as counted by ``FlopCounterMode`` (forward and backward),
    with grouped convolutions' backward counted by ``grouped_conv_backward_flop``."""
    mapping = {torch.ops.aten.convolution_backward: grouped_conv_backward_flop}
    with FlopCounterMode(display=False, custom_mapping=mapping) as counter:
        fn()
    return counter.get_total_flops()


def make_batch(cfg, batch_size: int, device: torch.device) -> dict:
    """A normalised image batch with labels and part centres, as ``to_torch_batch`` gives."""
    s = cfg.data.image_size
    g = torch.Generator().manual_seed(0)
    return {"image_id": [str(i) for i in range(batch_size)],
            "image": torch.randn(batch_size, 3, s, s, generator=g).to(device),
            "labels": (torch.rand(batch_size, NUM_ATTRIBUTES, generator=g) > 0.5).float().to(device),
            "centres": torch.rand(batch_size, NUM_ATTRIBUTES, 2, generator=g).to(device)}


def build_step(stage: str, cfg, batch_size: int, device: torch.device, channels_last: bool = False,
               cast=contextlib.nullcontext):
    """One training step of ``stage`` (``frl`` or ``finetune``) on a fixed batch, as a closure;
    its forward pass and loss inside ``cast()`` (``paw_ray.train.loop.autocast``), as the loop runs it."""
    prior = [0.3] * NUM_ATTRIBUTES
    if stage == "frl":
        task = frl_stage.build_task("frl", cfg, {}, device, prior)
    else:
        with tempfile.TemporaryDirectory() as d:
            location = os.path.join(d, "fusion.pt")
            save_state(location, PaW.from_config(cfg).state_dict())
            task = paw_stage.build_task(stage, cfg, {"fusion": location}, device)
    model = task.model.train()
    batch = make_batch(cfg, batch_size, device)
    if channels_last:  # as the trainers do
        to_channels_last(model)
        batch["image"] = to_channels_last(batch["image"])
    optimizer = make_optimizer([p for p in model.parameters() if p.requires_grad], getattr(cfg, stage))

    def step() -> None:
        with cast():
            loss, _ = task.loss(model, batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def bench_stage(name: str, stage: str, cfg, repeats: int, matmul_n: int, profile: bool,
                device: torch.device) -> None:
    """Time the step variants interleaved with the matmul reference; print shares and RESULTs."""
    batch = getattr(cfg, stage).batch_size
    variants = {"NCHW": (batch, False), "channels_last": (batch, True), "batch x2": (2 * batch, True)}
    steps = {k: build_step(stage, cfg, b, device, cl) for k, (b, cl) in variants.items()}
    flops = {k: count_flops(steps[k]) for k in steps}
    mm, mm_flops = matmul(matmul_n, device)
    times = time_interleaved({**steps, "matmul": mm}, repeats)
    peak = mm_flops / times["matmul"]
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{torch.get_num_threads()} thread(s)"
    print(f"\n[{name}] {stage} training step, {cfg.preset} preset, {cfg.data.image_size}px, "
          f"{where}; {'TF32 ' if device.type == 'cuda' else ''}matmul reference {peak / 1e9:.1f} GFLOP/s")
    share = {}
    for k, (b, _) in variants.items():
        rate = flops[k] / times[k]
        share[k] = rate / peak
        print(f"  {k:14s} batch {b:4d}: {flops[k] / b / 1e6:8.1f} MFLOP/image, {times[k] * 1e3:8.1f} ms/step, "
              f"{b / times[k]:7.1f} images/s, {rate / 1e9:6.2f} GFLOP/s = {100 * share[k]:5.1f}% of matmul")
    if profile:
        from torch.profiler import ProfilerActivity, profile as torch_profile

        cuda = device.type == "cuda"
        with torch_profile(activities=[ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])) as prof:
            steps["channels_last"]()
        print(prof.key_averages().table(sort_by="self_cuda_time_total" if cuda else "self_cpu_time_total",
                                        row_limit=12))
    print(result_line(f"{name}_channels_last", times["NCHW"] / times["channels_last"], 1.0))
    print(result_line(name, share["channels_last"], 0.2))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="smoke sizes, one timed repeat")
    ap.add_argument("--preset", default="demo", choices=sorted(C.PRESETS))
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads (default 1: what a 1-CPU Train worker uses; see bench_models)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    cfg = C.preset("smoke" if args.quick else args.preset)
    repeats = 1 if args.quick else args.repeats
    matmul_n = 4096 if device.type == "cuda" else 512 if args.quick else 1024
    suffix = "_gpu" if device.type == "cuda" else ""
    print(f"bench_roofline: torch {torch.__version__}, {machine_note()}")
    for stage, label in (("frl", "frl"), ("finetune", "paw")):
        bench_stage(f"roofline_{label}_{cfg.preset}{suffix}", stage, cfg, repeats, matmul_n, args.profile, device)


if __name__ == "__main__":
    main()
