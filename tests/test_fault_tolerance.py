"""Faults inside a stage, for real, on the module's local Ray (``ray_local``):

- a Ray Train worker process killed by its pid mid-stage: ``FailureConfig`` restarts the
  worker group, which resumes from the last reported checkpoint (every second epoch,
  ``val_every=2``) — the stage's recorded
  history shows epochs 0..k run by attempt 0 and the rest by attempt 1, and each attempt
  streams its first epoch and rebuilds its decoded cache from it;
- a part task's process killed by its pid once it holds a checkpoint before its last epoch:
  Ray retries the task, which resumes from its own checkpoint; the other 39 parts run once,
  untouched.

The processes are found by their Ray process title (``ray::<task or actor name>``) among
the children of the raylet this test process started: never another Ray on this machine.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time

import pytest

import processes
from paw_ray import config as C
from paw_ray import storage
from paw_ray.attributes import NUM_ATTRIBUTES
from paw_ray.train.checkpoints import load_state, save_state
from paw_ray.train.manifest import Manifest
from paw_ray.train.run import resolve_data, train
from paw_ray.train.stages.parts import part_dir, run_parts
from paw_ray.train.trainer import ray_train_storage

pytestmark = pytest.mark.slow

SETS = ["data.synth_n=200"]


@pytest.fixture(scope="module")
def data_dir(ray_local, tmp_path_factory):
    """200 SynthFaces at the smoke preset's size, shared by both tests."""
    cfg = C.apply_overrides(C.preset("smoke"), SETS)
    return resolve_data(cfg, str(tmp_path_factory.mktemp("faults-data")), log=lambda m: None)[0]


def own_ray_workers(title: str) -> list[int]:
    """Pids of this process's Ray workers titled ``ray::<title>...``: children of the raylet
    that ``ray_local`` started as a child of this process."""
    return [pid for pid in processes.pids()
            if processes.runs(pid, f"ray::{title}") and processes.parent_of(processes.parent_of(pid) or 0) == os.getpid()]


class Background(threading.Thread):
    """Runs ``fn`` and keeps its result or error for the test to check."""

    def __init__(self, fn):
        super().__init__(daemon=True)
        self.fn, self.result, self.error = fn, None, None
        self.start()

    def run(self):
        try:
            self.result = self.fn()
        except BaseException as e:  # noqa: BLE001 - re-raised by the test
            self.error = e

    def wait(self, timeout: float):
        self.join(timeout)
        assert not self.is_alive(), f"still running after {timeout}s"
        if self.error is not None:
            raise self.error
        return self.result


def wait_for(what: str, predicate, timeout: float, every: float = 0.05):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise TimeoutError(f"no {what} after {timeout}s")


def test_killed_train_worker_resumes_from_the_last_checkpoint(data_dir, tmp_path):
    epochs = 6
    cfg = C.apply_overrides(C.preset("smoke"), SETS + [f"data.path={data_dir}", f"frl.epochs={epochs}",
                                                       "frl.max_failures=1", "frl.val_every=2"])
    run_dir = str(tmp_path / "run")
    job = Background(lambda: train(cfg, run_dir, stages=["frl"], log=lambda m: None))

    def first_checkpoint():
        # the controller's snapshot lists a checkpoint only once it is fully stored; Ray
        # rewrites the file in place, so a poll can find it empty or half written: not yet
        for name in storage.listdir(ray_train_storage(run_dir)):
            snap = os.path.join(ray_train_storage(run_dir), name, "checkpoint_manager_snapshot.json")
            try:
                with open(snap) as f:
                    if json.load(f)["checkpoint_results"]:
                        return True
            except (FileNotFoundError, json.JSONDecodeError):
                continue
        return job.error or not job.is_alive()

    wait_for("checkpoint", first_checkpoint, timeout=600)
    workers = own_ray_workers("RayTrainWorker")
    assert workers, "no Ray Train worker process found"
    os.kill(workers[0], signal.SIGKILL)
    job.wait(600)

    history = Manifest.load_or_create(run_dir).stages["frl"].metrics["history"]
    epochs_run = [h["epoch"] for h in history]
    attempts = [h["attempt"] for h in history]
    print(f"\n[train worker kill] attempts by epoch: {attempts}")
    assert epochs_run == list(range(epochs)), "every epoch once: none lost, none redone"
    resumed_at = attempts.index(1)
    assert 1 <= resumed_at < epochs and attempts == [0] * resumed_at + [1] * (epochs - resumed_at)
    # val_every=2: validated and checkpointed after epochs 1, 3 and 5, so the new attempt
    # resumed after one of those (the epochs past it that the killed attempt ran are redone)
    assert [h["epoch"] for h in history if "val_mean_accuracy" in h] == [1, 3, 5]
    assert resumed_at % 2 == 0
    # each attempt streams its first epoch and serves the rest from the cache it rebuilt
    sources = [h["input"] for h in history]
    print(f"[train worker kill] inputs by epoch: {sources}")
    for first, n in ((0, resumed_at), (resumed_at, epochs - resumed_at)):
        expected = ["stream"] + (["cache:host"] * (n - 1) if n > 1 else [])
        assert sources[first:first + n] == expected, (first, n, sources)


def test_killed_part_task_is_retried_from_its_own_checkpoint(data_dir, tmp_path):
    from paw_ray.models.students import SNet
    from paw_ray.train.stages.localize import run_localize

    epochs = 3
    cfg = C.apply_overrides(C.preset("smoke"), SETS + [f"parts.epochs={epochs}", "parts.source=grid"])
    run_dir = str(tmp_path / "run")
    whole = os.path.join(run_dir, "whole.pt")  # g_0 at its initialisation: the parts start from it
    save_state(whole, SNet.from_config(cfg).state_dict())
    centres, _ = run_localize(cfg, data_dir, run_dir, None)
    logs: list[str] = []
    job = Background(lambda: run_parts(cfg, data_dir, run_dir, "fp", whole, centres, log=logs.append))

    def part_with_an_epoch_still_to_run():
        # a checkpoint of the last epoch would leave the retry nothing to train (the CI run
        # at 5261487 killed a part between its last checkpoint and its done.json): only a
        # checkpoint of an earlier epoch will do, and the epoch it holds bounds the resume
        for p in range(NUM_ATTRIBUTES):
            here = part_dir(run_dir, p)
            ckpt = os.path.join(here, "checkpoint.pt")
            if not os.path.exists(ckpt) or os.path.exists(os.path.join(here, "done.json")):
                continue
            checkpointed = load_state(ckpt)["epoch"]  # written atomically: whole or absent
            pids = own_ray_workers(f"part-{p:02d}")
            if checkpointed < epochs - 1 and pids:
                return p, checkpointed, pids
        return None

    part, checkpointed, pids = wait_for("part with a checkpoint", part_with_an_epoch_still_to_run, timeout=600)
    os.kill(pids[0], signal.SIGKILL)
    _, metrics = job.wait(900)

    assert metrics["parts_trained"] == NUM_ATTRIBUTES
    records = {p: json.load(open(os.path.join(part_dir(run_dir, p), "done.json"))) for p in range(NUM_ATTRIBUTES)}
    killed = records[part]
    attempts = [h["attempt"] for h in killed["history"]]
    print(f"\n[part task kill] part {part:02d}, killed holding epoch {checkpointed}: attempts by epoch {attempts}")
    assert killed["attempt"] == 1, "the task ran again after its process died"
    assert [h["epoch"] for h in killed["history"]] == list(range(epochs)), "every epoch once: none lost, none redone"
    resumed_at = attempts.index(1) if 1 in attempts else epochs
    assert checkpointed < resumed_at < epochs and attempts == [0] * resumed_at + [1] * (epochs - resumed_at), \
        "the retry resumed after an epoch of the part's own checkpoint and trained the rest"
    for p, rec in records.items():
        if p != part:
            assert rec["attempt"] == 0 and [h["attempt"] for h in rec["history"]] == [0] * epochs, p
