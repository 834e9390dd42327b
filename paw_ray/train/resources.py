"""How many of something fit a Ray cluster's resources at once: part tasks in flight, Tune
trials, inference actors."""

from __future__ import annotations

import math

__all__ = ["how_many_fit"]


def how_many_fit(resources: dict[str, float], cpus: float, gpus: float = 0.0) -> int:
    """How many units of ``cpus`` CPUs and ``gpus`` GPUs each fit in ``resources`` (as
    ``ray.cluster_resources()`` gives them) at once; at least one."""
    counts = [math.floor(resources.get(kind, 0.0) / each + 1e-9)
              for kind, each in (("CPU", cpus), ("GPU", gpus)) if each > 0]
    return max(1, min(counts)) if counts else 1
