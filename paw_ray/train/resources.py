"""Resources: how many of something fit a Ray cluster at once (part tasks in flight, Tune
trials, inference actors), and which device a Ray task or actor was given."""

from __future__ import annotations

import math

import torch

__all__ = ["how_many_fit", "given_device", "threads_for"]


def threads_for(cpus: float) -> int:
    """The threads a process that holds ``cpus`` Ray CPUs runs (torch's, or its decoders):
    one per CPU, at least one."""
    return max(1, int(round(cpus)))


def given_device(gpus: float = 1.0) -> torch.device:
    """The device of a Ray task or actor that asked for ``gpus`` GPUs: its GPU when it asked
    for one and one is visible (Ray shows a process only the GPUs it was given), else the CPU."""
    return torch.device("cuda" if gpus > 0 and torch.cuda.is_available() else "cpu")


def how_many_fit(resources: dict[str, float], cpus: float, gpus: float = 0.0) -> int:
    """How many units of ``cpus`` CPUs and ``gpus`` GPUs each fit in ``resources`` (as
    ``ray.cluster_resources()`` gives them) at once; at least one."""
    counts = [math.floor(resources.get(kind, 0.0) / each + 1e-9)
              for kind, each in (("CPU", cpus), ("GPU", gpus)) if each > 0]
    return max(1, min(counts)) if counts else 1
