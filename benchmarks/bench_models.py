"""Side-by-side timings of the models' two vectorised paths against their loops.

(a) parts: forward + backward (train mode) of the 40 part subnets as one ``PartSubnets``
    module against a Python loop over 40 ``SNet`` modules with the same layout, on the
    same crops. Demo preset sizes by default (SNet3, part 28, width 1.0, N=8, batch 64);
    ``--paper`` adds the paper's (part 64, N=32).
(b) crops: cutting 40 windows from each of 64 images with one batched ``crop_windows``
    against a loop of PIL ``Image.crop`` calls giving the same (B, 40, C, p, p) tensor.

Each variant: warm-up, then ``--repeats`` timed runs interleaved across variants (so that
load from other processes hits all alike); the median is reported. The last line of
each comparison is ``RESULT <name> ratio=<loop time / vectorised time> target=<t>``.
On a machine shared with other work use ``--threads 1``: with every core busy,
multi-threaded torch ops slow down by up to 50x, and not alike for both sides.

    python benchmarks/bench_models.py [--threads N] [--repeats R] [--paper] [--device cuda] [--quick]
"""

from __future__ import annotations

import argparse
import os

import numpy as np
import torch
from PIL import Image

from benchlib import time_interleaved
from paw_ray.models import PartSubnets, SNet, crop_windows, part_windows


def bench_parts(name: str, part: int, n: int, batch: int, repeats: int, device: str = "cpu") -> None:
    torch.manual_seed(0)
    parts = PartSubnets(40, "snet3", 1.0, n).train()
    nets = [SNet("snet3", 1.0, n).train() for _ in range(40)]
    for i, net in enumerate(nets):
        parts.load_part_state_dict(i, net.state_dict())
    parts, nets = parts.to(device), [net.to(device) for net in nets]
    nets_cl = [SNet("snet3", 1.0, n).train().to(device, memory_format=torch.channels_last) for _ in range(40)]
    crops = torch.randn(batch, 40, 3, part, part, device=device)

    def step(fn):
        def run():
            fn().sum().backward()
        return run

    def vec(block):
        def fn():
            parts.parts_per_block = block
            return parts(crops)
        return fn

    fns = {
        "loop of 40 SNet3 (baseline)": step(lambda: torch.stack([m(crops[:, i]).logits for i, m in enumerate(nets)], 1)),
        "loop of 40 SNet3, channels_last": step(lambda: torch.stack(
            [m(crops[:, i].contiguous(memory_format=torch.channels_last)).logits for i, m in enumerate(nets_cl)], 1)),
        "PartSubnets, one grouped pass": step(vec(40)),
        "PartSubnets, blocks of 8": step(vec(8)),
        f"PartSubnets, default ({'GPU: one pass' if device != 'cpu' else 'CPU: blocks of 4'})": step(vec(None)),
    }
    t = time_interleaved(fns, repeats)
    base = t["loop of 40 SNet3 (baseline)"]
    print(f"\n[{name}] 40 part subnets, forward+backward, snet3 width 1.0, N={n}, part {part}, batch {batch}, {device}")
    for k, v in t.items():
        print(f"  {k:42s} {v * 1e3:9.1f} ms   speedup vs loop {base / v:5.2f}x")
    best = next(t[k] for k in fns if k.startswith("PartSubnets, default"))
    print(f"RESULT {name} ratio={base / best:.2f} target=1.5")


def bench_crops(name: str, size: int, part: int, batch: int, repeats: int) -> None:
    rng = np.random.default_rng(0)
    arrays = rng.integers(0, 256, (batch, size, size, 3), dtype=np.uint8)
    pil = [Image.fromarray(a) for a in arrays]
    images = torch.from_numpy(arrays).permute(0, 3, 1, 2).contiguous()  # (B, 3, S, S) uint8
    corners = part_windows(torch.from_numpy(rng.random((batch, 40, 2))).float(), size, part)
    boxes = corners.tolist()

    def pil_loop():
        out = np.stack([np.stack([np.asarray(im.crop((x, y, x + part, y + part))) for x, y in bx])
                        for im, bx in zip(pil, boxes)])
        return torch.from_numpy(out).permute(0, 1, 4, 2, 3).contiguous()

    def batched():
        return crop_windows(images, corners, part)

    assert torch.equal(pil_loop(), batched())
    t = time_interleaved({"PIL crop loop (baseline)": pil_loop, "crop_windows (batched)": batched}, repeats)
    base = t["PIL crop loop (baseline)"]
    print(f"\n[{name}] 40 windows of {part}x{part} from each of {batch} images of {size}x{size}, uint8")
    for k, v in t.items():
        print(f"  {k:42s} {v * 1e3:9.2f} ms   speedup vs loop {base / v:6.1f}x")
    print(f"RESULT {name} ratio={base / t['crop_windows (batched)']:.1f} target=10")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=0, help="torch intra-op threads (default: torch's)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--paper", action="store_true", help="also the paper's sizes (part 64, N=32, image 224)")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--device", default="cpu", help="where the part subnets run (crops are a CPU comparison)")
    ap.add_argument("--quick", action="store_true", help="batch 8, one repeat: a check that it runs")
    args = ap.parse_args()
    if args.quick:
        args.batch, args.repeats, args.paper = 8, 1, False
    if args.threads:
        torch.set_num_threads(args.threads)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs, "
          f"load average {load:.1f} at start" + (f", {torch.cuda.get_device_name()}" if args.device != "cpu" else ""))
    if load > 0.5 * (os.cpu_count() or 1) and torch.get_num_threads() > 1:
        print("WARNING: other processes keep the CPUs busy; multi-threaded timings then collapse "
              "unevenly (OpenMP threads wait on each other): compare with --threads 1")
    sfx = "" if args.device == "cpu" else "_" + args.device.split(":")[0]
    bench_parts("parts_demo" + sfx, part=28, n=8, batch=args.batch, repeats=args.repeats, device=args.device)
    if args.paper:
        bench_parts("parts_paper" + sfx, part=64, n=32, batch=args.batch, repeats=max(3, args.repeats // 2),
                    device=args.device)
    bench_crops("crops_demo", size=96, part=28, batch=args.batch, repeats=args.repeats)
    if args.paper:
        bench_crops("crops_paper", size=224, part=64, batch=args.batch, repeats=args.repeats)


if __name__ == "__main__":
    main()
