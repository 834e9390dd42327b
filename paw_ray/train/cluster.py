"""Joining or starting the Ray cluster a command runs on."""

from __future__ import annotations

import logging
import os
import socket

from paw_ray.config import Config, RayConfig
from paw_ray.errors import PawRayError
from paw_ray.train.stage_table import TRAIN_STAGES

__all__ = ["ensure_ray", "check_placement_fits", "cluster_address_env", "free_local_port", "LOCAL_SYSTEM_CONFIG"]

# Ray keeps as many idle worker processes as the node has CPUs and kills the rest after 1 s
# idle. Ray Data's short tasks and the part tasks (less than a CPU each) run in more
# processes than that at once, so on a small machine each wave of tasks started new workers
# that imported torch again. A minute's grace lets the next wave reuse them.
LOCAL_SYSTEM_CONFIG = {"idle_worker_killing_time_threshold_ms": 60_000}


def ensure_ray(rcfg: RayConfig) -> bool:
    """Connect to Ray; return True when this call started a local instance.

    ``ray.address`` "" means: the cluster named by ``RAY_ADDRESS`` (set for drivers of
    ``ray job submit``), else a fresh local Ray on this machine — never an unrelated
    cluster that happens to have been started here with ``ray start``.

    Unless ``ray.verbose``, Ray's own output stays out of the terminal: the workers' and
    actors' log lines are not forwarded (the stages report their progress in
    ``train.progress`` records and their failures as errors), Ray logs only warnings, and
    Ray Data neither logs its execution plans nor draws progress bars. The lines stay in
    the session's log files.
    """
    import ray
    import ray.data

    if ray.is_initialized():
        return False
    address = rcfg.address or os.environ.get("RAY_ADDRESS") or "local"
    kwargs = {}
    dashboard_port = None
    if address == "local":
        # The dashboard serves Ray's state API, which Ray Train V2's PlacementGroupCleaner
        # polls to free the worker group of a controller that died (e.g. a Tune trial
        # stopped early): without it those CPUs stay reserved and later trials wait forever.
        # Bound to 127.0.0.1, on a port chosen here so that its address is known at start.
        dashboard_port = free_local_port()
        kwargs = {"num_cpus": rcfg.num_cpus or None, "include_dashboard": True,
                  "dashboard_host": "127.0.0.1", "dashboard_port": dashboard_port,
                  "_system_config": LOCAL_SYSTEM_CONFIG}
    env_vars = cluster_address_env(address, dashboard_port)
    if env_vars:
        kwargs["runtime_env"] = {"env_vars": env_vars}
    quiet = not rcfg.verbose
    # Ray 2.60 says at every local start that token authentication is on (or off, when no
    # token exists); the token itself is the user's setting, the line is noise to a trainer
    logging.getLogger("ray._private.authentication").setLevel(logging.ERROR if quiet else logging.NOTSET)
    ray.init(address=address, log_to_driver=not quiet, logging_level=logging.WARNING if quiet else logging.INFO,
             **kwargs)
    ray.data.DataContext.get_current().enable_progress_bars = not quiet
    logging.getLogger("ray.data").setLevel(logging.ERROR if quiet else logging.INFO)
    return address == "local"


def cluster_address_env(address: str, dashboard_port: int | None = None) -> dict[str, str]:
    """The environment that names this command's cluster to every task and actor it starts.

    Ray Train's controller and its placement-group cleaner query Ray's state API without an
    address. With none in their environment, Ray looks for running clusters on the host and,
    when it finds several (a ``ray start`` cluster beside a local Ray), warns "Found multiple
    active Ray instances" and picks the latest one: perhaps the other cluster, where the
    controller does not exist, so the cleaner would take a live run for dead. Naming the
    cluster in the job's environment removes the guess: the dashboard of a local Ray this
    command starts (``RAY_API_SERVER_ADDRESS``), or the ``host:port`` it joins
    (``RAY_ADDRESS``). ``auto`` and Ray Client (``ray://``) addresses are left to Ray.
    """
    if address == "local":
        return {"RAY_API_SERVER_ADDRESS": f"http://127.0.0.1:{dashboard_port}"} if dashboard_port else {}
    if address == "auto" or "://" in address:
        return {}
    return {"RAY_ADDRESS": address}


def free_local_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def check_placement_fits(cfg: Config) -> None:
    """Fail at once when a stage asks for more CPUs or GPUs at a time than the cluster has.

    Ray would wait for them forever (a Ray Train worker group, a part task, the localizer's
    actor pool). Call it only for a Ray this command started: on a cluster of its own an
    autoscaler may still add the nodes.
    """
    import ray

    have = ray.cluster_resources()
    cpus, gpus = have.get("CPU", 0.0), have.get("GPU", 0.0)
    asks = []  # (what, CPUs, GPUs)
    for stage in TRAIN_STAGES:
        s = getattr(cfg, stage)
        fewest = s.worker_counts()[0]  # an elastic stage starts with what there is, down to its minimum
        asks.append((f"{stage}: {fewest} Train worker(s) x {s.cpus_per_worker:g} CPU"
                     + (" + 1 GPU" if s.use_gpu else ""),
                     fewest * s.cpus_per_worker, fewest if s.use_gpu else 0))
    asks.append((f"parts: {cfg.parts.num_cpus:g} CPU + {cfg.parts.num_gpus:g} GPU per task",
                 cfg.parts.num_cpus, cfg.parts.num_gpus))
    lc = cfg.localize
    asks.append((f"localize: {lc.num_actors} actor(s) x {lc.gpus_per_actor:g} GPU", 0.0,
                 lc.num_actors * lc.gpus_per_actor))
    too_big = [what for what, c, g in asks if c > cpus + 1e-9 or g > gpus + 1e-9]
    if too_big:
        raise PawRayError(f"this Ray has {cpus:g} CPU(s) and {gpus:g} GPU(s), less than "
                          f"{'; '.join(too_big)} (Ray would wait forever). Change the placement "
                          "(--config, --set), e.g. drop a GPU overlay on a machine without a GPU")
