"""Run every benchmark, one after another, and end with a table of their RESULT lines.

    python benchmarks/run_all.py [--quick] [--only input,roofline] [--run-dir RUN]

Each script runs in its own process (its own Ray, its own threads) so one cannot warm
or load the machine for the next; its output streams through. ``--quick`` runs each at
smoke sizes (a check that they work, not a measurement). ``--run-dir`` adds the
per-stage breakdown of a finished ``paw-ray train`` run.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

from benchlib import parse_result

HERE = os.path.dirname(os.path.abspath(__file__))

# name -> (script, extra arguments in a full run); every script takes --quick
BENCHMARKS = {
    "stage": ("bench_stage.py", []),
    "input": ("bench_input.py", []),
    "decode": ("bench_decode.py", []),
    "fanout": ("bench_fanout.py", []),
    "parts_cache": ("bench_parts_cache.py", []),
    "scaling": ("bench_scaling.py", []),
    "roofline": ("bench_roofline.py", []),
    "models": ("bench_models.py", ["--threads", "1"]),
    "serve": ("bench_serve.py", []),
    "main_job": ("bench_main_job.py", []),  # last: the demo main job twice (about 40 min on 2 CPUs)
}


def run(script: str, args: list[str]) -> tuple[int, list[str]]:
    """Run one script, echoing its output; return its exit code and RESULT lines."""
    proc = subprocess.Popen([sys.executable, os.path.join(HERE, script), *args], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, cwd=HERE)
    results = []
    for line in proc.stdout:
        print(line, end="", flush=True)
        if line.startswith("RESULT "):
            results.append(line.strip())
    return proc.wait(), results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--only", default="", help=f"comma-separated subset of {', '.join(BENCHMARKS)}")
    ap.add_argument("--run-dir", default="", help="a finished run to break down per stage")
    args = ap.parse_args()
    names = [n for n in args.only.split(",") if n] or list(BENCHMARKS)
    unknown = sorted(set(names) - set(BENCHMARKS))
    if unknown:
        ap.error(f"unknown benchmark(s) {unknown}; choose from {', '.join(BENCHMARKS)}")
    rows, failed = [], []
    for name in names:
        script, extra = BENCHMARKS[name]
        print(f"\n=== {script} ===", flush=True)
        code, results = run(script, ["--quick"] if args.quick else extra)
        if code:
            failed.append(script)
        rows.extend(parse_result(r) for r in results)
    if args.run_dir:
        print("\n=== run_breakdown.py ===", flush=True)
        if run("run_breakdown.py", [os.path.abspath(args.run_dir)])[0]:
            failed.append("run_breakdown.py")
    print(f"\n{'benchmark':32s} {'ratio':>7s} {'target':>7s}  met")
    for name, ratio, target in rows:
        print(f"{name:32s} {ratio:7.2f} {target:7g}  {'yes' if ratio >= target else 'NO'}")
    if failed:
        print(f"failed: {', '.join(failed)}")
        sys.exit(1)


if __name__ == "__main__":
    main()
