"""Shared fixtures: one real local Ray instance per test module, and one smoke pipeline run
for the whole session."""

from __future__ import annotations

import contextlib
import io
import os
from dataclasses import dataclass

import pytest

os.environ.setdefault("RAY_DEDUP_LOGS", "0")
os.environ.setdefault("RAY_TRAIN_V2_ENABLED", "1")


def start_local_ray():
    """A fresh single-node Ray on this machine, started as ``paw-ray train`` starts its own
    (``ensure_ray``: never joins a cluster that another test or user started with ``ray
    start``; the dashboard serves Ray's state API)."""
    import ray

    from paw_ray.config import RayConfig
    from paw_ray.train.cluster import ensure_ray

    ensure_ray(RayConfig(address="local", num_cpus=2))
    return ray


@pytest.fixture(scope="module")
def ray_local():
    """A real single-node Ray shared by one test module.

    Per module, not per session: with one Ray for the whole suite, in CI and again in a
    local run of ``.ci/run`` the driver stopped receiving the GCS's actor state changes
    after ~20 minutes (over a hundred actors, worker processes killed on purpose by the
    fault tests, a three-node cluster started beside it): a new actor was ALIVE in the GCS
    while Ray Data still waited for it, and every later test that made an actor hung until
    its timeout. A fresh Ray per module costs a few seconds and keeps one module's faults
    out of the next."""
    import ray

    if not ray.is_initialized():
        start_local_ray()
    yield ray
    ray.shutdown()


@dataclass(frozen=True)
class SmokeRun:
    """The session's smoke run: its run directory, the ``train_part`` task ids that Ray's
    state API listed as FINISHED before the run's Ray was shut down, and what the command
    printed on stdout."""

    run_dir: str
    finished_part_tasks: frozenset[str]
    stdout: str
    mlflow_uri: str  # the tracking store it also logged to (--mlflow)


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory) -> SmokeRun:
    """ONE run of ``paw-ray train --preset smoke`` (every stage, then the report) shared by
    the modules that check its outputs: a full pipeline run is the suite's most expensive
    fixture, so it is made once.

    Users must leave the run as they found it: a test that retrains a stage in it (the
    reuse tests of ``test_train_e2e``) puts the preset's config back before it ends.

    It trains on a Ray of its own, shut down before the first test that uses it runs (a
    session fixture is set up before the requesting module's ``ray_local``); where a Ray is
    already up in this process, it uses that one and leaves it running."""
    import ray
    from ray.util.state import list_tasks

    from paw_ray import cli

    run_dir = str(tmp_path_factory.mktemp("smoke") / "run")
    mlflow_uri = f"sqlite:///{os.path.dirname(run_dir)}/mlflow.db"
    started = not ray.is_initialized()
    if started:
        start_local_ray()
    try:
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            assert cli.main(["train", "--preset", "smoke", "--run-dir", run_dir, "--mlflow", mlflow_uri]) == 0
        tasks = list_tasks(address=ray.get_runtime_context().gcs_address,  # not another Ray on this host
                           filters=[("func_or_class_name", "=", "train_part"), ("state", "=", "FINISHED")],
                           limit=10_000, raise_on_missing_output=False)
    finally:
        if started:
            ray.shutdown()
    return SmokeRun(run_dir, frozenset(t.task_id for t in tasks), printed.getvalue(), mlflow_uri)
