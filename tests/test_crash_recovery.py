"""Crashes and a node loss, for real, in one run on a local multi-node Ray cluster (a head
and two worker nodes on 127.0.0.1, ``tests/ray_cluster.py``), with the data set and the run
directory in a bucket of a real S3-compatible server (moto on 127.0.0.1, ``tests/s3_store.py``),
as on a cluster whose nodes share no disk:

1. ``paw-ray train`` (a subprocess joined to the cluster) is SIGKILLed inside the FRL stage,
   as soon as Ray Train has recorded the stage's first checkpoint;
2. the same command, started again, resumes the FRL from that checkpoint (no finished epoch
   is trained again) and is SIGKILLed in turn at a random point of the ``parts`` stage, after
   1-8 parts finished;
3. the third start reuses every completed stage and every finished part from the bucket and
   resumes the interrupted parts from their own checkpoints; while it trains parts, one
   worker node is stopped (its ``ray start``, raylet and workers killed by pid); the part
   tasks it ran are retried on the other nodes and the run completes;
4. ``predict`` and ``export`` read the finished run from the bucket.

One pipeline run serves every test here (module fixture); the cluster is stopped as soon as
the run is done, pass or fail: only this cluster's processes (see ``LocalCluster.stop``).
"""

from __future__ import annotations

import contextlib
import io
import json
import random
import signal
import subprocess
import sys
import time

import pyarrow.parquet as pq
import pytest

from paw_ray import cli, storage
from paw_ray.data import shards
from paw_ray.data.synthfaces import synthesize
from paw_ray.train.checkpoints import load_state
from paw_ray.train.stage_table import STAGES
from paw_ray.train.stages.parts import part_dir

import processes
from ray_cluster import LocalCluster
from ray_train_records import latest_checkpoint_metrics
from s3_store import BUCKET, running_store

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]  # the module fixture runs the whole pipeline

# The smoke preset on 200 images with the fewest epochs that still leave a resume point inside
# the FRL (3 epochs: killed after the first) and inside a part (2 part epochs): the faults are
# what is tested, not the accuracy.
N_IMAGES = 200
SETS = ["frl.epochs=3", "frl.num_workers=1", "whole.epochs=1", "parts.epochs=2", "fusion.epochs=1",
        "finetune.epochs=1"]
BEFORE_PARTS = ("frl", "localize", "hint", "whole")
TIMEOUT = 1200  # seconds for each driver; a busy 2-core machine runs the pipeline in a few minutes


def _manifest(run_dir: str) -> dict:
    return storage.read_json(storage.join(run_dir, "manifest.json"))


def _done_parts(run_dir: str) -> dict[int, dict]:
    """Finished parts and their done records."""
    out = {}
    for p in range(40):
        where = storage.join(part_dir(run_dir, p), "done.json")
        if storage.exists(where):
            out[p] = storage.read_json(where)
    return out


def _finished_at(record: dict) -> float:
    """When a part's last epoch ended (its done record is written right after)."""
    last = record["history"][-1]
    return last["started_at"] + last["epoch_time_s"]


def _node_running_a_part(cluster: LocalCluster) -> int | None:
    """Index in ``cluster.procs`` of a worker node whose processes include a running part task."""
    for i in range(1, len(cluster.procs)):
        if any(processes.runs(pid, "ray::part-") for pid in processes.descendants(cluster.procs[i].pid)):
            return i
    return None


def _wait(what: str, predicate, driver: subprocess.Popen, log: str, timeout: float = TIMEOUT, every: float = 0.2):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        if driver.poll() is not None:
            raise AssertionError(f"driver exited ({driver.returncode}) before {what}:\n{open(log).read()[-4000:]}")
        time.sleep(every)
    raise TimeoutError(f"no {what} after {timeout}s")


def _paw_ray(*argv: str) -> str:
    """``paw-ray ARGV`` in this process (the store's address is in its environment); its stdout."""
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert cli.main(list(argv)) == 0, argv
    return printed.getvalue()


@pytest.fixture(scope="module")
def crash_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("crash")
    with running_store() as store:
        data, run_dir = f"s3://{BUCKET}/crash/shards", f"s3://{BUCKET}/crash/run"
        synthesize(n=N_IMAGES, size=48, seed=0, out=data, num_tasks=1)
        cluster = LocalCluster(head_cpus=1, workers=(2, 2), env=store.env)
        kill_after = random.randint(1, 8)
        info: dict = {"run_dir": run_dir, "data": data, "kill_after": kill_after}
        drivers: list[subprocess.Popen] = []

        def driver(n: int) -> tuple[subprocess.Popen, str]:
            log = str(root / f"driver{n}.log")
            cmd = [sys.executable, "-m", "paw_ray.cli", "train", "--preset", "smoke", "--data", data,
                   "--run-dir", run_dir, "--address", cluster.address] + [a for s in SETS for a in ("--set", s)]
            with open(log, "wb") as out:
                drivers.append(subprocess.Popen(cmd, env=cluster.env, stdout=out, stderr=subprocess.STDOUT))
            return drivers[-1], log

        def kill(d: subprocess.Popen) -> int:
            d.send_signal(signal.SIGKILL)
            rc = d.wait(60)
            time.sleep(3)  # the dead driver's tasks and actors are being killed by Ray
            return rc

        t0 = time.time()
        try:
            cluster.start()
            info["names"] = cluster.node_names_by_id()
            first, log1 = driver(1)
            _wait("a checkpoint of the FRL stage", lambda: latest_checkpoint_metrics(run_dir, "frl"), first, log1, every=0.5)
            info["first_rc"] = kill(first)
            info["manifest_at_frl_kill"] = _manifest(run_dir)

            second, log2 = driver(2)
            _wait(f"{kill_after} finished parts", lambda: len(_done_parts(run_dir)) >= kill_after, second, log2)
            info["second_rc"] = kill(second)
            info["manifest_at_kill"] = _manifest(run_dir)
            info["done_at_kill"] = _done_parts(run_dir)
            info["interrupted"] = [p for p in range(40) if p not in info["done_at_kill"]
                                   and storage.exists(storage.join(part_dir(run_dir, p), "checkpoint.pt"))]
            info["kill_s"] = round(time.time() - t0, 1)

            third, log3 = driver(3)
            # a part task trains in the restarted run: stop the worker node it runs on
            node = _wait("a part task on a worker node",
                         lambda: (len(_done_parts(run_dir)) > len(info["done_at_kill"])
                                  and _node_running_a_part(cluster)), third, log3)
            info["stopped"] = cluster.node_names[node]
            info["stopped_at"] = time.time()
            cluster.stop_node(node)
            info["third_rc"] = third.wait(TIMEOUT)
            info["log1"], info["log2"], info["log3"] = (open(log).read() for log in (log1, log2, log3))
            info["nodes"] = {info["names"].get(n["node_id"], n["node_id"]): n["state"] for n in cluster.nodes()}
        finally:
            for d in drivers:
                if d.poll() is None:
                    d.kill()
                    d.wait(30)
            info["left_running"] = cluster.stop()
            info["total_s"] = round(time.time() - t0, 1)
        print(f"\n[crash] driver killed in the FRL, then after {len(info['done_at_kill'])} finished parts at "
              f"{info['kill_s']}s; {info['stopped']} stopped; total with cluster start/stop {info['total_s']}s")
        yield info  # the store stays up while the tests read the run


def test_a_driver_killed_inside_the_frl_stage_resumes_it_without_redoing_an_epoch(crash_run):
    info = crash_run
    assert info["first_rc"] == -signal.SIGKILL
    at_kill = info["manifest_at_frl_kill"]["stages"]
    assert at_kill["frl"]["status"] == "running", "the kill landed inside the FRL stage"
    assert "[frl] complete for this config: reused" not in info["log2"]
    history = _manifest(info["run_dir"])["stages"]["frl"]["metrics"]["history"]
    trained = [(h["epoch"], h["attempt"]) for h in history]
    # every epoch once; the first one by the killed driver, the last by the restarted one
    assert [e for e, _ in trained] == [0, 1, 2] and trained[0] == (0, 0) and trained[-1][1] >= 1, trained
    print(f"[crash] FRL epochs (epoch, attempt) after the kill inside it: {trained}")


def test_restarted_driver_reuses_completed_stages_and_finished_parts(crash_run):
    info = crash_run
    run_dir = info["run_dir"]
    assert info["second_rc"] == -signal.SIGKILL
    at_kill = info["manifest_at_kill"]["stages"]
    assert at_kill["parts"]["status"] == "running", "the kill landed inside the parts stage"
    assert info["third_rc"] == 0, info["log3"][-4000:]
    final = _manifest(run_dir)["stages"]
    for stage in BEFORE_PARTS:
        assert f"[{stage}] complete for this config: reused" in info["log3"]
        assert final[stage]["finished_at"] == at_kill[stage]["finished_at"], f"{stage} was not rerun"
    done = info["done_at_kill"]
    parts = final["parts"]["metrics"]
    assert parts["parts_reused"] >= len(done) and parts["parts_reused"] + parts["parts_trained"] == 40
    assert f"[parts] {parts['parts_reused']}/40 parts already trained for this config: reused" in info["log3"]
    now = _done_parts(run_dir)
    assert all(now[p] == record for p, record in done.items()), "a part finished before the crash was retrained"
    # parts the crash interrupted after their first epoch resume from their own checkpoint
    for p in info["interrupted"]:
        history = [(h["epoch"], h["attempt"]) for h in now[p]["history"]]
        assert now[p]["attempt"] >= 1 and history[0] == (0, 0) and [e for e, _ in history] == [0, 1], (p, history)
    print(f"[crash] parts resumed from their own checkpoint after the crash: {info['interrupted']}")


def test_every_file_the_run_left_in_the_bucket_is_whole(crash_run):
    """Every file is written whole or not at all, so nothing the crashes left behind is torn:
    every checkpoint, centres table, shard and JSON file under the run directory reads."""
    run_dir = crash_run["run_dir"]
    files = [f for f in storage.find_files(run_dir, (".pt", ".json", ".parquet"))
             if "/ray_train/" not in f and "/report/" not in f]
    checked = {".pt": 0, ".json": 0, ".parquet": 0}
    for f in files:
        ext = f[f.rindex("."):]
        if ext == ".pt":
            load_state(f)
        elif ext == ".json":
            storage.read_json(f)
        else:
            fs, path = storage.resolve(f)
            pq.read_table(path, filesystem=fs)
        checked[ext] += 1
    print(f"[crash] read back whole from the bucket: {checked}")
    assert checked[".pt"] >= 2 * 40 + 5 and checked[".parquet"] >= 1


def test_run_completes_after_losing_a_worker_node(crash_run):
    info = crash_run
    assert info["nodes"][info["stopped"]] == "DEAD" and list(info["nodes"].values()).count("ALIVE") == 2
    final = _manifest(info["run_dir"])["stages"]
    assert [s for s in STAGES if final[s]["status"] == "complete"] == list(STAGES)
    assert storage.is_file(storage.join(info["run_dir"], "results.json"))
    stopped_id = next(i for i, n in info["names"].items() if n == info["stopped"])
    records = _done_parts(info["run_dir"])
    after = [p for p, rec in records.items() if _finished_at(rec) > info["stopped_at"] + 5]
    assert after, "parts were still training when the node was stopped"
    assert all(records[p]["node_id"] != stopped_id for p in after), "nothing runs on the stopped node"
    lost = info["log3"].count("Task train_part failed")
    print(f"[node loss] {info['stopped']} stopped; {lost} part task(s) lost with it and retried by Ray; "
          f"{len(after)} parts finished after it on the other nodes")


def test_predict_and_export_read_the_run_from_the_bucket(crash_run, tmp_path):
    info = shards.read_info(crash_run["data"])
    fs, path = storage.resolve(storage.join(crash_run["data"], info.files["test"][0]))
    photo = tmp_path / "face.png"
    photo.write_bytes(pq.read_table(path, filesystem=fs).column("image")[0].as_py())
    [row] = [json.loads(line) for line in _paw_ray("predict", "--run-dir", crash_run["run_dir"], str(photo),
                                                    "--detect", "none").splitlines()]
    assert len(row["probabilities"]) == 40 and row["input"] == str(photo)
    _paw_ray("export", "--run-dir", crash_run["run_dir"], "--format", "torchscript", "--out", str(tmp_path / "x"))
    assert (tmp_path / "x" / "model.json").exists()
