"""A driver crash and a node loss, for real, in one run on a local multi-node Ray cluster
(a head and two worker nodes on 127.0.0.1, ``tests/ray_cluster.py``):

1. ``paw-ray train`` (a subprocess joined to the cluster) is SIGKILLed at a random point of
   the ``parts`` stage, after 1-8 parts finished;
2. the same command, started again on the same run directory, reuses every completed stage
   and every finished part, and resumes the interrupted parts from their own checkpoints;
3. while that second run trains parts, one worker node is stopped (its ``ray start``, raylet
   and workers killed by pid); the part tasks it ran are retried on the other nodes and the
   run completes.

One pipeline run serves every test here (module fixture); the cluster is stopped as soon as
the run is done, pass or fail: only this cluster's processes (see ``LocalCluster.stop``).
"""

from __future__ import annotations

import glob
import json
import os
import random
import signal
import subprocess
import sys
import time

import pyarrow.parquet as pq
import pytest

from paw_ray.train.checkpoints import load_state
from paw_ray.train.stage_table import STAGES
from paw_ray.train.stages.parts import part_dir

import processes
from ray_cluster import LocalCluster

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]  # the module fixture runs the whole pipeline

# The smoke preset on 200 images with the fewest epochs that still have a resume point
# inside a part (2 part epochs): the faults are what is tested, not the accuracy.
SETS = ["data.synth_n=200", "frl.epochs=2", "frl.num_workers=1", "whole.epochs=1", "parts.epochs=2",
        "fusion.epochs=1", "finetune.epochs=1"]
BEFORE_PARTS = ("frl", "localize", "hint", "whole")
TIMEOUT = 1200  # seconds for each driver; a busy 2-core machine runs the pipeline in a few minutes


def _manifest(run_dir: str) -> dict:
    with open(os.path.join(run_dir, "manifest.json")) as f:
        return json.load(f)


def _done_parts(run_dir: str) -> dict[int, float]:
    """Finished parts and the time their done.json was written."""
    out = {}
    for p in range(40):
        where = os.path.join(part_dir(run_dir, p), "done.json")
        if os.path.exists(where):
            out[p] = os.path.getmtime(where)
    return out


def _node_running_a_part(cluster: LocalCluster) -> int | None:
    """Index in ``cluster.procs`` of a worker node whose processes include a running part task."""
    for i in range(1, len(cluster.procs)):
        if any(processes.runs(pid, "ray::part-") for pid in processes.descendants(cluster.procs[i].pid)):
            return i
    return None


def _wait(what: str, predicate, driver: subprocess.Popen, log: str, timeout: float = TIMEOUT):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        if driver.poll() is not None:
            raise AssertionError(f"driver exited ({driver.returncode}) before {what}:\n{open(log).read()[-4000:]}")
        time.sleep(0.2)
    raise TimeoutError(f"no {what} after {timeout}s")


@pytest.fixture(scope="module")
def crash_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("crash")
    run_dir = str(root / "run")
    cluster = LocalCluster(head_cpus=1, workers=(2, 2))
    kill_after = random.randint(1, 8)
    info: dict = {"run_dir": run_dir, "kill_after": kill_after}
    drivers: list[subprocess.Popen] = []

    def driver(n: int) -> tuple[subprocess.Popen, str]:
        log = str(root / f"driver{n}.log")
        cmd = [sys.executable, "-m", "paw_ray.cli", "train", "--preset", "smoke", "--run-dir", run_dir,
               "--address", cluster.address] + [a for s in SETS for a in ("--set", s)]
        with open(log, "wb") as out:
            drivers.append(subprocess.Popen(cmd, env=cluster.env, stdout=out, stderr=subprocess.STDOUT))
        return drivers[-1], log

    t0 = time.time()
    try:
        cluster.start()
        info["names"] = cluster.node_names_by_id()
        first, log1 = driver(1)
        _wait(f"{kill_after} finished parts", lambda: len(_done_parts(run_dir)) >= kill_after, first, log1)
        first.send_signal(signal.SIGKILL)
        info["first_rc"] = first.wait(60)
        time.sleep(3)  # the dead driver's part tasks are being killed by Ray
        info["manifest_at_kill"] = _manifest(run_dir)
        info["done_at_kill"] = _done_parts(run_dir)
        info["interrupted"] = [p for p in range(40) if p not in info["done_at_kill"]
                               and os.path.exists(os.path.join(part_dir(run_dir, p), "checkpoint.pt"))]
        info["kill_s"] = round(time.time() - t0, 1)

        second, log2 = driver(2)
        # a part task trains in the restarted run: stop the worker node it runs on
        node = _wait("a part task on a worker node", lambda: (len(_done_parts(run_dir)) > len(info["done_at_kill"])
                                                               and _node_running_a_part(cluster)), second, log2)
        info["stopped"] = cluster.node_names[node]
        info["stopped_at"] = time.time()
        for pid in processes.descendants(cluster.procs[node].pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        info["second_rc"] = second.wait(TIMEOUT)
        info["log1"], info["log2"] = open(log1).read(), open(log2).read()
        info["nodes"] = {info["names"].get(n["node_id"], n["node_id"]): n["state"] for n in cluster.nodes()}
    finally:
        for d in drivers:
            if d.poll() is None:
                d.kill()
                d.wait(30)
        info["left_running"] = cluster.stop()
        info["total_s"] = round(time.time() - t0, 1)
    print(f"\n[crash] driver killed after {len(info['done_at_kill'])} finished parts at {info['kill_s']}s; "
          f"{info['stopped']} stopped; total with cluster start/stop {info['total_s']}s")
    return info


def test_restarted_driver_reuses_completed_stages_and_finished_parts(crash_run):
    info = crash_run
    run_dir = info["run_dir"]
    assert info["first_rc"] == -signal.SIGKILL
    at_kill = info["manifest_at_kill"]["stages"]
    assert at_kill["parts"]["status"] == "running", "the kill landed inside the parts stage"
    assert info["second_rc"] == 0, info["log2"][-4000:]
    final = _manifest(run_dir)["stages"]
    for stage in BEFORE_PARTS:
        assert f"[{stage}] complete for this config: reused" in info["log2"]
        assert final[stage]["finished_at"] == at_kill[stage]["finished_at"], f"{stage} was not rerun"
    done = info["done_at_kill"]
    parts = final["parts"]["metrics"]
    assert parts["parts_reused"] >= len(done) and parts["parts_reused"] + parts["parts_trained"] == 40
    assert f"[parts] {parts['parts_reused']}/40 parts already trained for this config: reused" in info["log2"]
    now = _done_parts(run_dir)
    assert all(now[p] == t for p, t in done.items()), "a part finished before the crash was retrained"
    # parts the crash interrupted after their first epoch resume from their own checkpoint
    for p in info["interrupted"]:
        with open(os.path.join(part_dir(run_dir, p), "done.json")) as f:
            rec = json.load(f)
        history = [(h["epoch"], h["attempt"]) for h in rec["history"]]
        assert rec["attempt"] >= 1 and history[0] == (0, 0) and [e for e, _ in history] == [0, 1], (p, history)
    print(f"[crash] parts resumed from their own checkpoint after the crash: {info['interrupted']}")


def test_every_file_the_run_left_is_whole(crash_run):
    """Written as temp file + rename, nothing the crashes left behind is torn: every
    checkpoint, centres table, shard and JSON file under the run directory reads."""
    run_dir = crash_run["run_dir"]
    files = [f for f in glob.glob(os.path.join(run_dir, "**", "*"), recursive=True) if os.path.isfile(f)
             and "/ray_train/" not in f and "/report/" not in f]
    checked = {".pt": 0, ".json": 0, ".parquet": 0}
    for f in files:
        ext = os.path.splitext(f)[1]
        if ext == ".pt":
            load_state(f)
        elif ext == ".json":
            with open(f) as fh:
                json.load(fh)
        elif ext == ".parquet":
            pq.read_table(f)
        else:
            continue
        checked[ext] += 1
    print(f"[crash] read back whole: {checked}")
    assert checked[".pt"] >= 2 * 40 + 5 and checked[".parquet"] >= 4


def test_run_completes_after_losing_a_worker_node(crash_run):
    info = crash_run
    assert info["nodes"][info["stopped"]] == "DEAD" and list(info["nodes"].values()).count("ALIVE") == 2
    final = _manifest(info["run_dir"])["stages"]
    assert [s for s in STAGES if final[s]["status"] == "complete"] == list(STAGES)
    assert os.path.exists(os.path.join(info["run_dir"], "results.json"))
    stopped_id = next(i for i, n in info["names"].items() if n == info["stopped"])
    records = {}
    for p, t in _done_parts(info["run_dir"]).items():
        with open(os.path.join(part_dir(info["run_dir"], p), "done.json")) as f:
            records[p] = (t, json.load(f))
    after = [p for p, (t, rec) in records.items() if t > info["stopped_at"] + 5]
    assert after, "parts were still training when the node was stopped"
    assert all(records[p][1]["node_id"] != stopped_id for p in after), "nothing runs on the stopped node"
    lost = info["log2"].count("Task train_part failed")
    print(f"[node loss] {info['stopped']} stopped; {lost} part task(s) lost with it and retried by Ray; "
          f"{len(after)} parts finished after it on the other nodes")
