"""A real GPU check of the pipeline on one machine with one CUDA GPU (a few minutes).

1. the CUDA tests (``-k cuda`` in ``tests/test_models.py``: the vectorised part subnets
   and PaW on the GPU against the CPU; in ``tests/test_loop.py``: the loop's sums over
   NCCL), which must run, not skip;
2. ``bench_roofline.py --device cuda`` at the demo and paper presets;
3. ``bench_gpu_stage.py``: the FRL stage's images/s against its training step alone, at the
   demo and paper sizes (``RESULT gpu_stage_vs_step_demo`` / ``_paper``), and bf16 against
   fp32 (``RESULT bf16_vs_fp32_step``);
4. the smoke main job with every stage placed on the GPU (``jobs/single_gpu.yaml``), its
   per-stage breakdown (``run_breakdown.py``), and a check that each training stage (the
   five Ray Train stages and every part task) recorded GPU memory, i.e. ran on the GPU.

Logs of each step go to ``--out`` (default ``runs/gpu-check``); the exit status is the
number of failed steps.

    python benchmarks/gpu_check.py [--out runs/gpu-check] [--skip-roofline]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
GPU_STAGES = ("frl", "hint", "whole", "parts", "fusion", "finetune")


def step(name: str, cmd: list[str], out: str, timeout: int) -> tuple[bool, str]:
    """Run ``cmd`` from the repository root, echo and log its output; (succeeded, output)."""
    print(f"\n=== {name}: {' '.join(cmd)}", flush=True)
    t0 = time.time()
    try:
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
        text, ok = proc.stdout + proc.stderr, proc.returncode == 0
    except subprocess.TimeoutExpired as e:
        text, ok = f"{e.stdout or ''}{e.stderr or ''}\ntimed out after {timeout}s", False
    with open(os.path.join(out, f"{name}.log"), "w") as f:
        f.write(text)
    print(text[-4000:], flush=True)
    print(f"=== {name}: {'ok' if ok else 'FAILED'} in {time.time() - t0:.0f}s", flush=True)
    return ok, text


def stages_without_gpu(manifest: dict) -> list[str]:
    """The training stages whose metrics history records no ``peak_gpu_mb``."""
    sys.path.insert(0, HERE)
    from run_breakdown import peak

    return [s for s in GPU_STAGES if peak(manifest["stages"].get(s, {}).get("metrics", {}), "peak_gpu_mb") is None]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=os.path.join("runs", "gpu-check"))
    ap.add_argument("--skip-roofline", action="store_true")
    args = ap.parse_args()
    import torch

    if not torch.cuda.is_available():
        print("gpu_check: no CUDA device visible to torch", file=sys.stderr)
        return 1
    print(f"gpu_check: torch {torch.__version__} on {torch.cuda.get_device_name()}, {os.cpu_count()} CPUs")
    out = os.path.abspath(args.out)
    os.makedirs(out, exist_ok=True)
    py, failed = sys.executable, 0

    ok, text = step("cuda_tests", [py, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs",
                                   "tests/test_models.py", "tests/test_loop.py", "-k", "cuda"], out, 600)
    failed += not (ok and " passed" in text and "skipped" not in text)

    if not args.skip_roofline:
        for preset in ("demo", "paper"):
            ok, _ = step(f"roofline_{preset}", [py, os.path.join("benchmarks", "bench_roofline.py"),
                                                "--device", "cuda", "--preset", preset], out, 600)
            failed += not ok

    ok, _ = step("gpu_stage", [py, os.path.join("benchmarks", "bench_gpu_stage.py")], out, 900)
    failed += not ok

    run_dir = os.path.join(out, "smoke")
    t0 = time.time()
    ok, _ = step("smoke_train", [py, "-m", "paw_ray.cli", "train", "--preset", "smoke",
                                 "--config", os.path.join("jobs", "single_gpu.yaml"), "--run-dir", run_dir], out, 1800)
    print(f"smoke main job on the GPU: {time.time() - t0:.0f}s wall")
    failed += not ok
    manifest_path = os.path.join(run_dir, "manifest.json")
    if os.path.exists(manifest_path):
        step("smoke_breakdown", [py, os.path.join("benchmarks", "run_breakdown.py"), run_dir], out, 120)
        with open(manifest_path) as f:
            missing = stages_without_gpu(json.load(f))
        print("every training stage ran on the GPU" if not missing else f"no GPU memory recorded by: {missing}")
        failed += bool(missing)
    results = os.path.join(run_dir, "results.json")
    if os.path.exists(results):
        with open(results) as f:
            print("mean test accuracy:", json.dumps(json.load(f).get("mean_accuracy")))
    print(f"\ngpu_check: {failed} step(s) failed")
    return failed


if __name__ == "__main__":
    sys.exit(main())
