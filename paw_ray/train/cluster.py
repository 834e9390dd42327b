"""Joining or starting the Ray cluster a command runs on."""

from __future__ import annotations

import os

from paw_ray.config import RayConfig

__all__ = ["ensure_ray"]


def ensure_ray(rcfg: RayConfig) -> bool:
    """Connect to Ray; return True when this call started a local instance.

    ``ray.address`` "" means: the cluster named by ``RAY_ADDRESS`` (set for drivers of
    ``ray job submit``), else a fresh local Ray on this machine — never an unrelated
    cluster that happens to have been started here with ``ray start``.
    """
    import ray

    if ray.is_initialized():
        return False
    address = rcfg.address or os.environ.get("RAY_ADDRESS") or "local"
    kwargs = {}
    if address == "local":
        kwargs = {"num_cpus": rcfg.num_cpus or None, "include_dashboard": False}
    ray.init(address=address, **kwargs)
    return address == "local"
