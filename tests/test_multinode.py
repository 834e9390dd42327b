"""Cluster use, for real: a head and two worker nodes started with ``ray start`` as separate
processes on 127.0.0.1 (token auth on, as Ray 2.60 sets it up), the smoke pipeline submitted
with ``ray job submit --working-dir . -- python jobs/train.py``; its FRL stage is elastic
(one or two workers) and loses a worker node while it trains, which comes back later. Then,
on the run directory that job left, cluster-scale retraining from ``parts`` on new data and a
Ray Tune search.

One pipeline run serves every test here (module fixture); the cluster is stopped as soon as
the job is done, pass or fail, so the later tests run on the module's local Ray.
"""

from __future__ import annotations

import json
import os
import time
from types import SimpleNamespace

import pytest

from paw_ray import config as C
from paw_ray import storage
from paw_ray.train.manifest import Manifest
from paw_ray.train.progress import progress_dir
from paw_ray.train.stage_table import STAGES
from paw_ray.train.stages.parts import part_dir

import processes
from ray_cluster import LocalCluster
from ray_train_records import latest_checkpoint_metrics

pytestmark = pytest.mark.slow

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The smoke preset, trimmed where it only costs time here (placement is what is tested):
# fewer images and epochs; the FRL elastic over one or two DDP workers of 1.5 CPUs, which only
# the worker nodes (2 CPUs each, the head has 1) can hold, one per node; a resize looks for
# room every 5 s. The FRL's epochs leave time for a node to stop and start again (about a
# minute on a busy 2-core machine) while it trains: later epochs come from the decoded cache
# and take seconds.
FRL_EPOCHS = 12
JOB_SETS = ["data.synth_n=400", f"frl.epochs={FRL_EPOCHS}", "whole.epochs=3", "parts.epochs=1", "fusion.epochs=1",
            "frl.placement=SPREAD", "frl.min_workers=1", "frl.cpus_per_worker=1.5", "ray.elastic_resize_s=5"]
JOB_TIMEOUT = 3000


def job_config() -> C.Config:
    return C.apply_overrides(C.preset("smoke"), JOB_SETS)


def _frl_epochs_trained_by(run_dir: str, workers: int) -> list[dict]:
    """The FRL's finished-epoch records (``train.progress``) trained by ``workers`` workers."""
    folder = progress_dir(run_dir, "frl")
    records = [storage.read_json(os.path.join(folder, n)) for n in sorted(os.listdir(folder))] \
        if os.path.isdir(folder) else []
    return [r for r in records if r["workers"] == workers]


def _wait(what: str, predicate, timeout: float = JOB_TIMEOUT):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.5)
    raise TimeoutError(f"no {what} after {timeout}s")


@pytest.fixture(scope="module")
def cluster_job(tmp_path_factory):
    """Start the cluster, submit the pipeline; once the FRL has a checkpoint trained by two
    workers, stop a node that holds one of them, and start it again once the FRL trains on
    with one; wait for the job, record what ran where, stop the cluster."""
    run_dir = str(tmp_path_factory.mktemp("multinode") / "run")  # absolute, under /tmp: every node sees it
    cluster = LocalCluster(head_cpus=1, workers=(2, 2))
    info: dict = {"run_dir": run_dir}
    t0 = time.time()
    try:
        cluster.start()
        info["start_s"] = round(time.time() - t0, 1)
        sub_id = f"paw-multinode-{cluster.id}"
        t1 = time.time()
        cmd = ["job", "submit", "--no-wait", "--submission-id", sub_id, "--working-dir", ROOT, "--",
               "python", "jobs/train.py", "--preset", "smoke", "--run-dir", run_dir]
        for s in JOB_SETS:
            cmd += ["--set", s]
        cluster.ray(*cmd)
        # the elastic FRL loses a node after a checkpoint of two workers' training, and gets it back
        info["checkpoint_at_loss"] = _wait("an FRL checkpoint trained by two workers", lambda: (
            (m := latest_checkpoint_metrics(run_dir, "frl")) and m["workers"] == 2 and m))
        info["lost_node"] = _wait("a worker node holding an FRL worker", lambda: next(
            (i for i in range(1, len(cluster.procs)) if any(
                processes.runs(pid, "ray::RayTrainWorker") for pid in processes.descendants(cluster.procs[i].pid))),
            None))
        cluster.stop_node(info["lost_node"])
        info["lost_at"] = time.time()
        _wait("an FRL epoch trained by one worker", lambda: _frl_epochs_trained_by(run_dir, 1), timeout=900)
        cluster.restart_node(info["lost_node"])
        info["back_at"] = time.time()
        info["logs"] = cluster.ray("job", "logs", "--follow", sub_id, timeout=JOB_TIMEOUT, check=False).stdout
        info["job_s"] = round(time.time() - t1, 1)
        info["status"] = cluster.ray("job", "status", sub_id, check=False).stdout
        info["succeeded"] = f"Job '{sub_id}' succeeded" in info["status"]
        info["names"] = cluster.node_names_by_id()  # the restarted node is a new Ray node
        info["actors"] = json.loads(cluster.ray("list", "actors", "--format", "json", "--detail",
                                                "--limit", "10000").stdout)
        info["part_tasks"] = json.loads(cluster.ray("list", "tasks", "--format", "json", "--limit", "10000",
                                                    "--filter", "func_or_class_name=train_part").stdout)
    finally:
        info["killed_by_marker"] = cluster.stop()
        info["left_running"] = cluster.marked_pids()
        info["total_s"] = round(time.time() - t0, 1)
    print(f"\n[multinode] cluster start {info.get('start_s')}s, job {info.get('job_s')}s, "
          f"total with stop {info['total_s']}s")
    return info


def _names(info, node_ids):
    return sorted(info["names"].get(n, n[:8]) for n in node_ids)


def test_job_succeeds_with_complete_run_directory(cluster_job):
    info = cluster_job
    assert info["succeeded"], info["status"] + info["logs"][-3000:]
    assert "[run] finished" in info["logs"]
    manifest = Manifest.load_or_create(info["run_dir"])
    assert list(manifest.stages) == list(STAGES)
    for stage, rec in manifest.stages.items():
        assert rec.status == "complete" and storage.exists(rec.artifact), stage
    results = storage.read_json(os.path.join(info["run_dir"], "results.json"))
    assert results["preset"] == "smoke" and results["n_test"] == 40
    assert os.path.isabs(manifest.run_dir) and manifest.run_dir == info["run_dir"]


def test_part_tasks_ran_on_several_nodes(cluster_job):
    info = cluster_job
    records = [storage.read_json(os.path.join(part_dir(info["run_dir"], p), "done.json")) for p in range(40)]
    done_nodes = {r["node_id"] for r in records}
    metrics = Manifest.load_or_create(info["run_dir"]).stages["parts"].metrics
    assert set(metrics["nodes"]) == done_nodes
    assert done_nodes <= set(info["names"]), "every part ran on a node of this cluster"
    assert len(done_nodes) >= 2, f"all 40 part tasks ran on {_names(info, done_nodes)}"
    per_node = {}
    for r in records:
        per_node[info["names"][r["node_id"]]] = per_node.get(info["names"][r["node_id"]], 0) + 1
    finished = [t for t in info["part_tasks"] if t["state"] == "FINISHED"]
    assert {t["task_id"] for t in finished} >= {r["task_id"] for r in records}
    print(f"\n[multinode] part tasks per node: {per_node}")


def test_an_elastic_stage_shrinks_when_it_loses_a_node_and_grows_when_one_returns(cluster_job):
    info = cluster_job
    history = Manifest.load_or_create(info["run_dir"]).stages["frl"].metrics["history"]
    trained = [(h["epoch"], h["attempt"], h["workers"]) for h in history]
    print(f"\n[elastic] FRL (epoch, attempt, workers): {trained}; node lost after the checkpoint of epoch "
          f"{info['checkpoint_at_loss']['epoch']}")
    assert [e for e, _, _ in trained] == list(range(FRL_EPOCHS)), "every epoch once"
    kept = info["checkpoint_at_loss"]["epoch"]
    assert all((a, w) == (0, 2) for _, a, w in trained[:kept + 1]), "no checkpointed epoch trained again"
    shrunk = [(e, a) for e, a, w in trained if a >= 1 and w == 1]
    assert shrunk, "went on with one worker after the loss"
    grown = [(e, a) for e, a, w in trained if e > shrunk[0][0] and a > shrunk[0][1] and w == 2]
    assert grown, "a later resize took the returned node back"
    assert len(history[grown[0][0]]["nodes"]) == 2 and history[grown[0][0]]["started_at"] > info["back_at"]


def test_train_workers_ran_on_several_nodes(cluster_job):
    info = cluster_job
    manifest = Manifest.load_or_create(info["run_dir"])
    frl = manifest.stages["frl"].metrics
    assert {n for h in frl["history"] for n in h["nodes"]} <= set(info["names"])
    assert max(len(h["nodes"]) for h in frl["history"]) == 2, "DDP over two nodes (placement SPREAD)"
    where = {s: _names(info, manifest.stages[s].metrics["nodes"]) for s in ("frl", "hint", "whole", "fusion",
                                                                           "finetune")}
    workers = [a for a in info["actors"] if a["class_name"] == "RayTrainWorker"]
    actor_nodes = {a["node_id"] for a in workers}
    assert len(actor_nodes) >= 2
    print(f"\n[multinode] Ray Train stages' worker nodes: {where}")
    others = {}
    for a in info["actors"]:
        if a["class_name"] in ("TrainController", "JobSupervisor") or "Localizer" in a["class_name"] \
                or "Scorer" in a["class_name"]:
            others.setdefault(a["class_name"], set()).add(info["names"].get(a["node_id"], "?"))
    print(f"[multinode] other actors: { {k: sorted(v) for k, v in others.items()} }")


def test_cluster_is_stopped_and_only_its_processes(cluster_job):
    assert cluster_job["left_running"] == []


# --------------------------------------------------------------------------- retraining

def test_retrain_from_parts_on_new_data_reuses_frl_hint_whole(cluster_job, ray_local, tmp_path_factory):
    from paw_ray.data.synthfaces import synthesize
    from paw_ray.train.run import parse_stages, train

    run_dir = cluster_job["run_dir"]
    assert cluster_job["succeeded"]
    new_data = str(tmp_path_factory.mktemp("new-data") / "synth-seed7")
    synthesize(n=200, size=48, seed=7, out=new_data)
    before = Manifest.load_or_create(run_dir)
    cfg = C.apply_overrides(job_config(), [f"data.path={new_data}"])
    logs: list[str] = []
    out = train(cfg, run_dir, stages=parse_stages(None, "parts"), log=logs.append)
    after = Manifest.load_or_create(run_dir)
    for stage in ("frl", "hint", "whole"):
        assert after.stages[stage].finished_at == before.stages[stage].finished_at, f"{stage} reused"
        assert after.stages[stage].artifact == before.stages[stage].artifact
    for stage in ("localize", "parts", "fusion", "finetune", "evaluate"):
        assert after.stages[stage].finished_at > before.stages[stage].finished_at, f"{stage} rerun"
    assert any(line.startswith("[localize]") and "rerunning localize too" in line for line in logs), logs
    assert after.stages["localize"].metrics["images"] == 200, "centres of the new images"
    assert after.stages["parts"].metrics["parts_trained"] == 40
    assert out["results"]["n_test"] == 20 and new_data in out["results"]["data"]


def test_retrain_needs_the_earlier_stages_records(cluster_job, ray_local, tmp_path):
    """Forcing a later stage in a run directory without the stages it reads: a clear error."""
    from paw_ray.train.manifest import RunDirError
    from paw_ray.train.run import parse_stages, train

    data = Manifest.load_or_create(cluster_job["run_dir"]).stages["frl"].config["data"]
    shards_dir = [d for d in os.listdir(cluster_job["run_dir"]) if d.startswith("synthfaces-")][0]
    cfg = C.apply_overrides(job_config(), [f"data.path={os.path.join(cluster_job['run_dir'], shards_dir)}"])
    assert data["synth_n"] == 400
    with pytest.raises(RunDirError, match=r"stage 'localize' has not completed .*include it in --stages"):
        train(cfg, str(tmp_path / "empty-run"), stages=parse_stages("fusion", None), log=lambda s: None)


# --------------------------------------------------------------------------- tune

def _live_placement_groups() -> set[str]:
    from ray.util import placement_group_table

    return {k for k, v in placement_group_table().items() if v["state"] != "REMOVED"}


@pytest.fixture(scope="module")
def tuned(cluster_job, ray_local):
    """One ASHA search of ``whole``'s lr and batch size on the job's run directory; the
    placement groups its trials left reserved once Ray Train's cleaner had up to 3 minutes
    (it polls the state API; on a busy 2-core machine that took more than a minute once)."""
    from paw_ray.train.tune import run_tune

    assert cluster_job["succeeded"]
    logs: list[str] = []
    space = {"lr": {"loguniform": [3e-4, 1e-2]}, "batch_size": {"choice": [16, 32]}}
    before_pgs = _live_placement_groups()
    cfg = job_config()
    cfg.tracking.mlflow = f"sqlite:///{os.path.dirname(cluster_job['run_dir'])}/tune-mlflow.db"
    summary = run_tune(cfg, cluster_job["run_dir"], "whole", num_samples=3, scheduler="asha", space=space,
                       log=logs.append)
    deadline = time.time() + 180
    while _live_placement_groups() - before_pgs and time.time() < deadline:
        time.sleep(2)
    return SimpleNamespace(run_dir=cluster_job["run_dir"], summary=summary, logs=logs, mlflow=cfg.tracking.mlflow,
                           leaked=_live_placement_groups() - before_pgs,
                           stage_dir=os.path.join(cluster_job["run_dir"], "tune", "whole"))


def test_tune_leaves_no_placement_group_reserved(tuned):
    assert not tuned.leaked


def test_tune_reuses_the_stages_before_the_tuned_one(tuned):
    for stage in ("frl", "hint"):
        assert f"[{stage}] complete for this config: reused" in tuned.logs


def test_tune_prints_a_line_per_trial_epoch_and_per_finished_trial(tuned):
    epochs = [line for line in tuned.logs if line.startswith("[tune] trial ") and " epoch " in line]
    assert len(epochs) >= 3 and all(" · val mean acc " in line and "lr=" in line for line in epochs), epochs
    assert all(line.split(" epoch ")[1].split(" ")[0].split("/")[1] == str(tuned.summary["max_epochs"])
               for line in epochs)
    finished = [line for line in tuned.logs if " trials finished · " in line]
    assert [line.split(" ")[1] for line in finished] == ["1/3", "2/3", "3/3"], finished


def test_tune_logs_each_trial_to_mlflow_with_its_values_and_epochs(tuned):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tuned.mlflow)
    experiment = client.get_experiment_by_name(f"{os.path.basename(tuned.run_dir)}/tune/whole")
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == len(tuned.summary["trials"]) == 3
    epochs = sorted(t["epochs_run"] for t in tuned.summary["trials"])
    logged = sorted(len(client.get_metric_history(r.info.run_id, "val_mean_accuracy")) for r in runs)
    assert logged == epochs, "a point per epoch each trial ran"
    assert all({"lr", "batch_size"} <= set(r.data.params) for r in runs)


def test_tune_trials_complete_or_stop_early_within_the_space(tuned):
    trials = tuned.summary["trials"]
    assert len(trials) == 3 and tuned.summary["counts"]["error"] == 0, trials
    for t in trials:
        assert t["status"] in ("completed", "early_stopped")
        assert set(t["params"]) == {"lr", "batch_size"} and 1 <= t["epochs_run"] <= 3
        assert (t["status"] == "early_stopped") == (t["epochs_run"] < 3)
    assert tuned.summary["best"]["status"] == "completed"


def test_tune_writes_its_summary_and_best_config_twice(tuned):
    """In ``tune/whole/`` (the latest search) and in the search's own folder."""
    for name in ("summary.json", "summary.md", "best.yaml"):
        assert os.path.exists(os.path.join(tuned.stage_dir, name)), name
        assert os.path.exists(os.path.join(tuned.stage_dir, tuned.summary["search"], name)), name
    md = open(os.path.join(tuned.stage_dir, "summary.md")).read()
    assert all(t["trial_id"] in md for t in tuned.summary["trials"])


def _best_config(tuned):
    """``paw-ray train --set-from best.yaml``: the config that command line gives."""
    from paw_ray.cli import build_parser, train_config

    args = build_parser().parse_args(["train", "--preset", "smoke", "--set-from",
                                      os.path.join(tuned.stage_dir, "best.yaml"),
                                      *sum((["--set", s] for s in JOB_SETS), [])])
    return train_config(args)


def test_train_takes_the_best_config_from_best_yaml(tuned):
    best_cfg = _best_config(tuned)
    assert best_cfg.whole.lr == pytest.approx(tuned.summary["best"]["params"]["lr"])
    assert best_cfg.whole.batch_size == tuned.summary["best"]["params"]["batch_size"]


def test_training_with_the_best_config_reruns_whole_and_reuses_its_inputs(tuned):
    from paw_ray.train.run import train

    best_cfg = _best_config(tuned)
    before = Manifest.load_or_create(tuned.run_dir)
    train(best_cfg, tuned.run_dir, only={"frl", "hint", "whole"}, log=lambda _: None)
    after = Manifest.load_or_create(tuned.run_dir)
    assert after.stages["frl"].finished_at == before.stages["frl"].finished_at
    assert after.stages["whole"].finished_at > before.stages["whole"].finished_at
    assert after.stages["whole"].config["whole"]["lr"] == pytest.approx(best_cfg.whole.lr)
