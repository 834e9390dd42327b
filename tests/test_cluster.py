"""The local Ray that ``ensure_ray`` starts: it keeps idle worker processes for the next
wave of small tasks instead of starting (and importing torch in) new ones."""

from __future__ import annotations

import os
import time

import pytest

from paw_ray.config import RayConfig
from paw_ray.train.cluster import ensure_ray

WAVE = 6  # tasks of 1/3 CPU on 2 CPUs: three times the pool Ray keeps by default


@pytest.fixture()
def own_ray():
    import ray

    if ray.is_initialized():
        ray.shutdown()
    assert ensure_ray(RayConfig(num_cpus=2)) is True
    yield ray
    ray.shutdown()


def _wave_pids(ray, barrier) -> set[int]:
    """The worker processes of WAVE tasks that all run at the same time (each waits at the
    barrier until all have arrived), so each holds a process of its own."""

    @ray.remote(num_cpus=2 / WAVE)
    def arrive(barrier) -> int:
        ray.get(barrier.arrive.remote())
        deadline = time.monotonic() + 120
        while ray.get(barrier.count.remote()) % WAVE and time.monotonic() < deadline:
            time.sleep(0.05)
        return os.getpid()

    pids = ray.get([arrive.remote(barrier) for _ in range(WAVE)], timeout=180)
    return set(pids)


def test_second_wave_of_small_tasks_reuses_the_first_waves_processes(own_ray):
    ray = own_ray

    @ray.remote(num_cpus=0)
    class Barrier:
        def __init__(self):
            self.n = 0

        def arrive(self):
            self.n += 1

        def count(self):
            return self.n

    barrier = Barrier.remote()
    first = _wave_pids(ray, barrier)
    assert len(first) == WAVE
    time.sleep(4)  # Ray's default kills workers above num_cpus after 1 s idle
    second = _wave_pids(ray, barrier)
    assert second <= first, f"new worker processes started for the second wave: {second - first}"


# ---------------------------------------------------------------- two Rays on one host

MULTIPLE_RAYS = "Found multiple active Ray instances"


def _train_a_few_seconds(storage_path: str) -> None:
    """One Ray Train run of one worker that lives long enough for Ray Train's
    placement-group cleaner to ask the state API about its controller a few times."""
    import ray.train
    from ray.train.torch import TorchTrainer

    def loop():
        time.sleep(4)
        ray.train.report({"done": 1})

    TorchTrainer(loop, scaling_config=ray.train.ScalingConfig(num_workers=1),
                 run_config=ray.train.RunConfig(name="probe", storage_path=storage_path)).fit()


def _lines_naming_several_rays(logs_dir: str) -> list[str]:
    found = []
    for root, _, files in os.walk(logs_dir):
        for name in files:
            path = os.path.join(root, name)
            if not os.path.isfile(path):
                continue
            with open(path, errors="replace") as f:
                found += [f"{name}: {line.strip()}" for line in f if MULTIPLE_RAYS in line]
    return found


JOINING_DRIVER = """
import sys
from paw_ray.config import RayConfig
from paw_ray.train.cluster import ensure_ray
import test_cluster
ensure_ray(RayConfig(address=sys.argv[1]))
test_cluster._train_a_few_seconds(sys.argv[2])
"""


@pytest.mark.slow
def test_ray_train_names_its_own_cluster_when_another_ray_runs_on_the_host(own_ray, tmp_path):
    """A local Ray started by ``ensure_ray`` beside a ``ray start`` cluster, and a driver that
    joins that cluster beside the local Ray: in neither does Ray Train's cleaner have to guess
    which cluster to ask about its controller (the guess warns, and may pick the other one)."""
    import subprocess
    import sys

    from ray_cluster import LocalCluster

    other = LocalCluster(head_cpus=2, workers=())
    try:
        other.start()
        _train_a_few_seconds(str(tmp_path / "local"))
        local_logs = own_ray._private.worker._global_node.get_logs_dir_path()
        tests_dir = os.path.dirname(os.path.abspath(__file__))
        env = {**other.env, "PYTHONPATH": tests_dir + os.pathsep + other.env.get("PYTHONPATH", "")}
        joined = subprocess.run([sys.executable, "-c", JOINING_DRIVER, other.address, str(tmp_path / "joined")],
                                env=env, capture_output=True, text=True, timeout=300)
        assert joined.returncode == 0, joined.stderr[-3000:]
        cluster_logs = _lines_naming_several_rays(os.path.join(other.temp_dir, "session_latest", "logs"))
    finally:
        other.stop()
    assert os.path.isdir(local_logs)
    assert (_lines_naming_several_rays(local_logs), cluster_logs) == ([], [])
