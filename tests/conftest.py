"""Shared fixtures: one real local Ray instance per test module."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("RAY_DEDUP_LOGS", "0")
os.environ.setdefault("RAY_TRAIN_V2_ENABLED", "1")


@pytest.fixture(scope="module")
def ray_local():
    """A real single-node Ray shared by one test module (address="local": never joins a
    cluster that another test or user started with ``ray start``).

    Per module, not per session: with one Ray for the whole suite, in CI and again in a
    local run of ``.ci/run`` the driver stopped receiving the GCS's actor state changes
    after ~20 minutes (over a hundred actors, worker processes killed on purpose by the
    fault tests, a three-node cluster started beside it): a new actor was ALIVE in the GCS
    while Ray Data still waited for it, and every later test that made an actor hung until
    its timeout. A fresh Ray per module costs a few seconds and keeps one module's faults
    out of the next."""
    import ray

    if not ray.is_initialized():
        # the dashboard serves Ray's state API (task counts in the pipeline tests)
        ray.init(address="local", num_cpus=2, include_dashboard=True, dashboard_host="127.0.0.1",
                 configure_logging=False, log_to_driver=False)
    yield ray
    ray.shutdown()
