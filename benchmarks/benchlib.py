"""Helpers shared by the benchmark scripts: the RESULT line, interleaved timing, a local
Ray, cached SynthFaces sets and a note on how busy the machine is.

Every comparison is measured side by side in one run and reported as a ratio, never as
an absolute time: the machines these run on are shared, and load from other processes
hits both sides of an interleaved comparison alike.
"""

from __future__ import annotations

import os
import statistics
import time
from typing import Callable

DATA_ROOT = os.environ.get("PAW_BENCH_DATA", "/tmp/paw-bench-data")


def result_line(name: str, ratio: float, target: float) -> str:
    """The one line a comparison ends with: ``RESULT <name> ratio=<x> target=<t>``."""
    return f"RESULT {name} ratio={ratio:.2f} target={target:g}"


def parse_result(line: str) -> tuple[str, float, float]:
    """``(name, ratio, target)`` of a RESULT line (what ``run_all`` collects)."""
    tag, name, ratio, target = line.split()
    if tag != "RESULT" or not ratio.startswith("ratio=") or not target.startswith("target="):
        raise ValueError(f"not a RESULT line: {line!r}")
    return name, float(ratio[6:]), float(target[7:])


def _sync() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def time_interleaved(fns: dict[str, Callable[[], object]], repeats: int, warmup: int = 1) -> dict[str, float]:
    """Median seconds per call of each function, runs interleaved across functions (so
    that load from other processes hits all alike)."""
    for f in fns.values():
        for _ in range(warmup):
            f()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for k, f in fns.items():
            _sync()
            t = time.perf_counter()
            f()
            _sync()
            times[k].append(time.perf_counter() - t)
    return {k: statistics.median(v) for k, v in times.items()}


def machine_note() -> str:
    """CPUs and load average: how to read the ratios that follow."""
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return f"{os.cpu_count()} CPUs, load average {load:.1f} at start"


class BusyCores:
    """``with BusyCores() as busy: ...`` then ``busy.cores``: how many of the machine's cores
    were busy on average inside the block (``/proc/stat``: every process, Ray's included)."""

    @staticmethod
    def _read() -> tuple[int, int]:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
        idle = fields[3] + fields[4]  # idle + iowait
        return sum(fields) - idle, sum(fields)

    def __enter__(self):
        self._start = self._read()
        return self

    def __exit__(self, *exc):
        (busy0, total0), (busy1, total1) = self._start, self._read()
        self.cores = (os.cpu_count() or 1) * (busy1 - busy0) / max(1, total1 - total0)


def start_ray(num_cpus: int) -> None:
    """A private local Ray on this machine (never another cluster started here).

    Its workers run at niceness 0 like the baselines' processes: Ray starts workers at
    nice 15, and on a machine busy with other work they then get a small share of the
    CPUs (measured here under load: the Ray Data stream 3.5x slower) where a DataLoader
    or a plain loop does not, which would compare the schedulers' priorities, not the code.
    """
    import ray

    from paw_ray.train.cluster import LOCAL_SYSTEM_CONFIG

    os.environ["RAY_worker_niceness"] = "0"
    if not ray.is_initialized():
        ray.init(address="local", num_cpus=num_cpus, include_dashboard=False,
                 configure_logging=False, log_to_driver=False, _system_config=LOCAL_SYSTEM_CONFIG)


def synth_set(size: int, n: int, shards_per_split: int = 8) -> str:
    """A SynthFaces set of ``n`` images at ``size`` px under ``DATA_ROOT``, rendered once.

    Rendered by Ray tasks (Ray must be up) into about ``shards_per_split`` shards per
    split, so that every DataLoader worker of the baseline gets shards of its own."""
    from paw_ray.data import shards
    from paw_ray.data.synthfaces import synthesize

    out = os.path.join(DATA_ROOT, f"synth-n{n}-s{size}")
    if not os.path.exists(os.path.join(out, shards.DATASET_INFO_FILE)):
        t0 = time.time()
        synthesize(n=n, size=size, seed=0, out=out, num_tasks=max(1, round(shards_per_split / 0.8)))
        print(f"[data] rendered {n} SynthFaces at {size}px into {out} in {time.time() - t0:.0f}s", flush=True)
    return out


def part_inputs(cfg, data_dir: str, tmp: str):
    """What a part task takes besides its config, made without an FRL: g_0's initial
    weights (an untrained SNet) and fixed-grid centres (``cfg.parts.source`` must be
    ``grid``). Returns (whole weights location, centres location, ObjectRef to the centres)."""
    import ray

    from paw_ray.models.students import SNet
    from paw_ray.train.checkpoints import save_state
    from paw_ray.train.stages.localize import load_centres, run_localize

    whole = os.path.join(tmp, "whole.pt")
    save_state(whole, SNet.from_config(cfg).state_dict())
    centres, _ = run_localize(cfg, data_dir, os.path.join(tmp, "localize"), None)
    return whole, centres, ray.put(load_centres(centres))
