"""``how_many_fit``: the one rule for how many part tasks, Tune trials or inference actors a
cluster holds at once."""

from __future__ import annotations

import pytest

from paw_ray.train.resources import how_many_fit, threads_for


@pytest.mark.parametrize("resources, cpus, gpus, expected", [
    ({"CPU": 2.0}, 0.75, 0.0, 2),  # 2.67 -> 2
    ({"CPU": 2.0}, 0.5 + 0.25, 0.0, 2),
    ({"CPU": 3.0}, 0.75, 0.0, 4),  # exactly 4: float error must not drop one
    ({"CPU": 16.0, "GPU": 1.0}, 1.0, 0.25, 4),  # the GPU share binds
    ({"CPU": 16.0, "GPU": 8.0}, 4.0, 1.0, 4),  # the CPUs bind
    ({"CPU": 0.5}, 2.0, 0.0, 1),  # too small for one: still one (the placement check refuses it earlier)
    ({"CPU": 4.0}, 0.0, 1.0, 1),  # GPUs asked of a cluster with none: one
    ({"CPU": 4.0}, 0.0, 0.0, 1),
])
def test_how_many_fit(resources, cpus, gpus, expected):
    assert how_many_fit(resources, cpus, gpus) == expected


def test_given_device_is_the_cpu_without_a_gpu_asked_for_or_visible():
    import torch

    from paw_ray.train.resources import given_device

    assert given_device(0.0) == torch.device("cpu")
    assert given_device(0.5).type == ("cuda" if torch.cuda.is_available() else "cpu")


@pytest.mark.parametrize("cpus, threads", [(0.25, 1), (0.75, 1), (1.0, 1), (2.0, 2), (3.6, 4)])
def test_a_process_runs_one_thread_per_cpu_it_holds_and_at_least_one(cpus, threads):
    assert threads_for(cpus) == threads
