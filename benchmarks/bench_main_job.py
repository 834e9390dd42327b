"""The main job as a new user runs it (``paw-ray train``: SynthFaces rendered, every stage,
the report), on two commits of this repository, back to back on the same machine.

Each side runs in a fresh empty folder, in its own process, with this venv's packages and
that commit's source first on ``PYTHONPATH`` (each commit is checked out in a temporary
``git worktree``, so uncommitted edits in this checkout play no part). The result is the
earlier side's wall time over the later one's:

- ``main_job_speedup``: before / after, target 1.6 (the data-path issue's goal, with the
  commit before that work, ``1c8ca45``, as the default ``--before``).

Per stage it prints both sides' wall times from their manifests, how often each log holds
Ray Data's "Cluster resources are not enough" warning (a user reads it as a hang), and both
sides' mean test accuracy per row of ``results.json``.

    python benchmarks/bench_main_job.py [--quick] [--before REV] [--after REV] [--keep DIR] [--preset demo]
                                        [--set KEY=VALUE ...]

``--keep DIR`` leaves both run directories and logs under DIR (``benchmarks/run_breakdown.py
DIR/after/runs/demo`` then gives each stage's step and validation shares).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

from benchlib import machine_note, result_line

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STARVATION_WARNING = "Cluster resources are not enough"


def run_side(name: str, source: str, work: str, argv: list[str]) -> dict:
    """Run ``paw-ray train`` from ``source`` in ``work``; its wall time, stages and warnings."""
    os.makedirs(work)
    env = dict(os.environ, PYTHONPATH=source)
    env.pop("RAY_ADDRESS", None)
    log_path = os.path.join(work, "train.log")
    code = f"import sys, paw_ray; print('paw_ray:', paw_ray.__file__, flush=True); " \
           f"from paw_ray import cli; sys.exit(cli.main({argv!r}))"
    print(f"[{name}] {source}: paw-ray {' '.join(argv)} (log: {log_path})", flush=True)
    t = time.perf_counter()
    with open(log_path, "w") as log:
        rc = subprocess.call([sys.executable, "-c", code], cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT)
    wall = time.perf_counter() - t
    text = open(log_path, errors="replace").read()
    if rc != 0:
        sys.exit(f"[{name}] failed ({rc}):\n{text[-4000:]}")
    if not text.startswith(f"paw_ray: {os.path.join(source, 'paw_ray')}"):
        sys.exit(f"[{name}] imported paw_ray from elsewhere: {text.splitlines()[0]}")
    run_dir = os.path.join(work, "runs", argv[argv.index("--preset") + 1])
    with open(os.path.join(run_dir, "manifest.json")) as f:
        stages = {s: rec["wall_time_s"] for s, rec in json.load(f)["stages"].items()}
    with open(os.path.join(run_dir, "results.json")) as f:
        accuracy = json.load(f)["mean_accuracy"]
    return {"wall_s": wall, "stages": stages, "warnings": text.count(STARVATION_WARNING), "accuracy": accuracy}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="the smoke preset on 200 images: checks it runs")
    ap.add_argument("--before", default="1c8ca45", help="the earlier commit (default: before the data-path work)")
    ap.add_argument("--after", default="HEAD", help="the later commit (default: HEAD)")
    ap.add_argument("--preset", default="demo")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="passed to both sides")
    ap.add_argument("--keep", metavar="DIR", help="an empty folder to keep both sides' run directories in")
    args = ap.parse_args()
    preset, sets = args.preset, list(args.set)
    if args.quick:
        preset, sets = "smoke", sets + ["data.synth_n=200", "frl.epochs=1", "whole.epochs=1", "parts.epochs=1",
                                        "fusion.epochs=1"]
    argv = ["train", "--preset", preset] + [a for s in sets for a in ("--set", s)]
    before = subprocess.run(["git", "-C", REPO, "rev-parse", "--short", args.before], check=True,
                            capture_output=True, text=True).stdout.strip()
    after = subprocess.run(["git", "-C", REPO, "rev-parse", "--short", args.after], check=True,
                           capture_output=True, text=True).stdout.strip()
    print(f"bench_main_job: {machine_note()}; before {before}, after {after}", flush=True)
    with tempfile.TemporaryDirectory(prefix="paw-main-job-") as tmp:
        where = os.path.abspath(args.keep) if args.keep else tmp
        if args.keep and os.path.exists(where) and os.listdir(where):
            sys.exit(f"--keep {args.keep}: not empty")
        sides = {}
        for name, rev in (("before", before), ("after", after)):
            tree = os.path.join(tmp, f"{name}-src")
            subprocess.run(["git", "-C", REPO, "worktree", "add", "--detach", tree, rev], check=True,
                           capture_output=True)
            try:
                sides[name] = run_side(name, tree, os.path.join(where, name), argv)
            finally:
                subprocess.run(["git", "-C", REPO, "worktree", "remove", "--force", tree], capture_output=True)
    b, a = sides["before"], sides["after"]
    print(f"\n| stage | before {before} (s) | after {after} (s) | speedup |\n|---|---|---|---|")
    for stage in a["stages"]:
        tb, ta = b["stages"].get(stage, float("nan")), a["stages"][stage]
        print(f"| {stage} | {tb:.1f} | {ta:.1f} | {tb / ta if ta else float('nan'):.2f} |")
    print(f"| main job, wall | {b['wall_s']:.1f} | {a['wall_s']:.1f} | {b['wall_s'] / a['wall_s']:.2f} |")
    print(f"'{STARVATION_WARNING}' warnings: before {b['warnings']}, after {a['warnings']}")
    print("mean test accuracy (%), before / after: " + ", ".join(
        f"{row} {100 * b['accuracy'].get(row, float('nan')):.2f} / {100 * acc:.2f}" for row, acc in a["accuracy"].items()))
    print(result_line("main_job_speedup", b["wall_s"] / a["wall_s"], 1.6))


if __name__ == "__main__":
    main()
