"""The whole pipeline end to end on the session's smoke run (``conftest.smoke_run``, made
by ``paw-ray train --preset smoke`` on a real local Ray): every stage's artifacts, the
manifest, results.json, the 40-task part fan-out, then resume and config-change reruns
(last in this file: they retrain stages of the shared run, and put it back as it was)."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest

from paw_ray import config as C
from paw_ray import storage
from paw_ray.attributes import ATTRIBUTES, LOCAL_ATTRIBUTES
from paw_ray.train.manifest import Manifest
from paw_ray.train.stage_table import STAGES, TRAIN_STAGES
from paw_ray.train.run import train
from paw_ray.train.stages.parts import part_dir

pytestmark = pytest.mark.slow


CFG = C.preset("smoke")


def _results(run_dir: str) -> dict:
    return storage.read_json(os.path.join(run_dir, "results.json"))


def _mtimes(run_dir: str) -> dict[str, float]:
    out = {}
    for root, _, files in os.walk(os.path.join(run_dir, "stages")):
        for f in files:
            out[os.path.join(root, f)] = os.path.getmtime(os.path.join(root, f))
    return out


def test_every_stage_completes_with_its_artifact(smoke_run):
    cfg, run_dir = CFG, smoke_run.run_dir
    manifest = Manifest.load_or_create(run_dir)
    assert list(manifest.stages) == list(STAGES)
    for stage, rec in manifest.stages.items():
        assert rec.status == "complete", stage
        assert rec.fingerprint and rec.wall_time_s > 0 and rec.config
        assert storage.exists(rec.artifact), f"{stage}: {rec.artifact}"
    frl = manifest.stages["frl"].metrics
    assert cfg.frl.num_workers == 2 and frl["workers"] == 2, "FRL trained with DDP over 2 Ray Train workers"
    assert [h["epoch"] for h in frl["history"]] == list(range(cfg.frl.epochs))
    assert manifest.stages["localize"].metrics["images"] == cfg.data.synth_n
    assert manifest.stages["parts"].metrics["parts_trained"] == 40
    assert os.path.exists(os.path.join(run_dir, "results.md"))


def test_train_prints_a_line_per_epoch_of_every_ray_train_stage_and_the_parts_count(smoke_run):
    lines = smoke_run.stdout.splitlines()
    for stage in TRAIN_STAGES:
        epochs = max(getattr(CFG, stage).epochs, 1)
        mine = [line for line in lines if line.startswith(f"[{stage}] epoch ")]
        assert [line.split(" · ")[0] for line in mine] == [f"[{stage}] epoch {k}/{epochs}" for k in range(1, epochs + 1)]
        assert all(" · train loss " in line and " · train acc " in line and " img/s · " in line and " elapsed, ETA " in line for line in mine), mine
        assert "val mean acc " in mine[-1], "the last epoch validates"
    assert mine[-1].endswith("ETA 0 s"), mine[-1]
    done = [line for line in lines if line.startswith("[parts] ") and " done · " in line]
    assert [line.split(" ")[1] for line in done] == [f"{k}/40" for k in range(1, 41)]
    assert "ETA 0 s" in done[-1]


def test_every_trained_stage_and_part_writes_tensorboard_events_and_mlflow_metrics_per_epoch(smoke_run):
    from events_reader import mlflow_history, scalars

    from paw_ray.train.events import events_dir

    tracked = mlflow_history(smoke_run.mlflow_uri, os.path.basename(smoke_run.run_dir))
    for stage in TRAIN_STAGES:
        epochs = max(getattr(CFG, stage).epochs, 1)
        names = [f"parts/part_{p:02d}" for p in range(len(ATTRIBUTES))] if stage == "parts" else [stage]
        for name in names:
            for got in (scalars(events_dir(smoke_run.run_dir, name)), tracked[name]):
                assert [step for step, _ in got["loss/train"]] == list(range(1, epochs + 1)), name
                assert got["accuracy/val_mean"][-1][0] == epochs, "the last epoch validates"
                assert [step for step, _ in got["accuracy/train_mean"]] == list(range(1, epochs + 1)), name
                assert all(0 <= v <= 1 for _, v in got["accuracy/train_mean"]), name
                assert all(v > 0 for _, v in got["throughput/images_per_s"]) and "optim/learning_rate" in got


def test_results_json_shape_and_ranges(smoke_run):
    r = _results(smoke_run.run_dir)
    rows = ["frl", "whole", "part", "paw", "majority"]
    assert r["attributes"] == list(ATTRIBUTES) and r["preset"] == "smoke" and "SynthFaces" in r["data"]
    for key in ("accuracy", "balanced_accuracy"):
        assert sorted(r[key]) == sorted(rows)
        for row in rows:
            values = np.array([np.nan if v is None else v for v in r[key][row]], dtype=float)
            defined = values[~np.isnan(values)]
            assert values.shape == (40,) and ((defined >= 0) & (defined <= 1)).all(), (key, row)
            assert len(defined) >= 30, "balanced accuracy is undefined only where a test label is constant"
    assert r["mean_balanced_accuracy"]["majority"] == pytest.approx(0.5)
    for row in rows:
        assert r["mean_accuracy"][row] == pytest.approx(np.mean(r["accuracy"][row]), abs=1e-4)
    loc = r["localization"]
    assert set(loc["pointing_accuracy"]) <= set(LOCAL_ATTRIBUTES) and len(loc["pointing_accuracy"]) >= 30
    assert 0 <= loc["mean"] <= 1 and 0 < loc["chance_mean"] < 1
    assert "pointing game" in loc["protocol"]  # scored on the images that show the attribute ...
    assert set(loc["all_images"]["pointing_accuracy"]) >= set(loc["pointing_accuracy"])  # ... and on all of them


def test_results_json_holds_the_fitted_decision_rule_and_its_measures(smoke_run):
    r = _results(smoke_run.run_dir)
    networks = ["frl", "whole", "part", "paw"]
    assert r["n_val"] > 0 and r["threshold_rule"] == "balanced_accuracy"
    for key in ("temperature", "thresholds", "f1", "average_precision", "ece", "ece_calibrated"):
        assert sorted(r[key]) == sorted(networks), key
        for row in networks:
            assert len(r[key][row]) == 40, (key, row)
    for row in networks:
        assert all(t > 0 for t in r["temperature"][row]) and all(0 <= t <= 1 for t in r["thresholds"][row])
        assert 0 <= r["tuned"]["mean_accuracy"][row] <= 1 and 0 <= r["mean_average_precision"][row] <= 1
        assert set(r["worst_group"][row]) == set(r["tuned"]["worst_group"][row]) == {"Blond_Hair x Male"}
    assert "fitted on" in open(os.path.join(smoke_run.run_dir, "results.md")).read()


def test_every_network_beats_the_majority_baseline(smoke_run):
    """SynthFaces' cues are learnable even at the smoke size: every row must have learned something."""
    r = _results(smoke_run.run_dir)
    for row in ("frl", "whole", "part", "paw"):
        assert r["mean_balanced_accuracy"][row] > r["mean_balanced_accuracy"]["majority"] + 0.02, row
        assert r["mean_accuracy"][row] > r["mean_accuracy"]["majority"], row


def test_part_fan_out_is_40_ray_tasks(smoke_run):
    records = [storage.read_json(storage.join(part_dir(smoke_run.run_dir, p), "done.json")) for p in range(40)]
    assert sorted(r["part"] for r in records) == list(range(40))
    assert len({r["task_id"] for r in records}) == 40
    assert len(smoke_run.finished_part_tasks) >= 40, "Ray's state API saw the 40 part tasks finish"
    assert smoke_run.finished_part_tasks >= {r["task_id"] for r in records}


@pytest.fixture
def run_put_back(smoke_run, tmp_path):
    """The shared run's directory, put back exactly as it was once the test ends: every entry
    but the data set is saved before and restored after (a test here retrains stages)."""
    run_dir = smoke_run.run_dir
    keep = [n for n in os.listdir(run_dir) if not n.startswith("synthfaces")]
    saved = tmp_path / "saved"
    saved.mkdir()
    for name in keep:
        (shutil.copytree if os.path.isdir(os.path.join(run_dir, name)) else shutil.copy2)(
            os.path.join(run_dir, name), saved / name)
    yield run_dir
    for name in os.listdir(run_dir):
        if not name.startswith("synthfaces"):
            where = os.path.join(run_dir, name)
            shutil.rmtree(where) if os.path.isdir(where) else os.remove(where)
    for name in keep:
        (shutil.copytree if (saved / name).is_dir() else shutil.copy2)(saved / name, os.path.join(run_dir, name))


def test_rerun_does_no_training(run_put_back, ray_local):
    run_dir = run_put_back
    before = Manifest.load_or_create(run_dir)
    mtimes = _mtimes(run_dir)
    logs: list[str] = []
    train(CFG, run_dir, log=logs.append)
    after = Manifest.load_or_create(run_dir)
    for stage in STAGES:
        assert after.stages[stage].finished_at == before.stages[stage].finished_at, stage
        assert f"[{stage}] complete for this config: reused" in logs
    assert _mtimes(run_dir) == mtimes, "no artifact was rewritten"


def test_fusion_change_reruns_only_fusion_finetune_evaluate(run_put_back, ray_local):
    run_dir = run_put_back
    before = Manifest.load_or_create(run_dir)
    changed = C.apply_overrides(CFG, [f"fusion.lr={CFG.fusion.lr / 2}"])
    train(changed, run_dir, log=lambda s: None)
    after = Manifest.load_or_create(run_dir)
    rerun = [s for s in STAGES if after.stages[s].finished_at != before.stages[s].finished_at]
    assert rerun == ["fusion", "finetune", "evaluate"]


def test_finished_part_is_not_retrained(run_put_back, ray_local):
    run_dir = run_put_back
    os.remove(os.path.join(part_dir(run_dir, 5), "done.json"))
    others = {p: os.path.getmtime(os.path.join(part_dir(run_dir, p), "model.pt")) for p in range(40) if p != 5}
    train(CFG, run_dir, stages=["parts"], log=lambda s: None)
    metrics = Manifest.load_or_create(run_dir).stages["parts"].metrics
    assert metrics["parts_trained"] == 1 and metrics["parts_reused"] == 39
    assert all(os.path.getmtime(os.path.join(part_dir(run_dir, p), "model.pt")) == t for p, t in others.items())
