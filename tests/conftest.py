"""Shared fixtures: one real local Ray instance for the whole test session."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("RAY_DEDUP_LOGS", "0")
os.environ.setdefault("RAY_TRAIN_V2_ENABLED", "1")


@pytest.fixture(scope="session")
def ray_local():
    """A real single-node Ray started for this test session (address="local": never
    joins a cluster that another test or user started with ``ray start``)."""
    import ray

    if not ray.is_initialized():
        # the dashboard serves Ray's state API (task counts in the pipeline tests)
        ray.init(address="local", num_cpus=2, include_dashboard=True, dashboard_host="127.0.0.1",
                 configure_logging=False, log_to_driver=False)
    yield ray
    ray.shutdown()
