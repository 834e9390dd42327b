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
        # The dashboard serves Ray's state API, which Ray Train V2's PlacementGroupCleaner
        # polls to free the worker group of a controller that died (e.g. a Tune trial
        # stopped early): without it those CPUs stay reserved and later trials wait forever.
        # Bound to 127.0.0.1; another free port is taken if the default one is in use.
        kwargs = {"num_cpus": rcfg.num_cpus or None, "include_dashboard": True, "dashboard_host": "127.0.0.1"}
    ray.init(address=address, **kwargs)
    return address == "local"
