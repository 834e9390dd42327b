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
