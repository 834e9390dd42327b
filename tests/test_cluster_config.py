"""Cluster use without a cluster: cluster.yaml against Ray's own cluster-config schema,
the jobs' runtime env and placement overlay, the job entrypoints' --help, and the
pieces of `paw-ray tune` that need no Ray (search-space checks, concurrency bound)."""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
import sys

import pytest
import yaml

from paw_ray import config as C
from paw_ray.train.manifest import stage_fingerprints
from paw_ray.train.tune import TuneError, check_space, default_space, max_concurrent_trials, upstream_stages
from repo_files import ROOT, load_yaml


@pytest.fixture(scope="module")
def cluster_cfg():
    return load_yaml("cluster.yaml")


def test_cluster_yaml_validates_against_rays_schema(cluster_cfg):
    import jsonschema
    import ray.autoscaler
    from ray.autoscaler._private.util import prepare_config, validate_config

    with open(os.path.join(os.path.dirname(ray.autoscaler.__file__), "ray-schema.json")) as f:
        schema = json.load(f)
    jsonschema.validate(cluster_cfg, schema)  # the file as written
    validate_config(prepare_config(copy.deepcopy(cluster_cfg)))  # as `ray up` fills and checks it


def test_cluster_yaml_is_a_gpu_cluster_with_autoscaling(cluster_cfg):
    assert cluster_cfg["provider"]["type"] == "aws"
    types = cluster_cfg["available_node_types"]
    head = types[cluster_cfg["head_node_type"]]
    assert not head["node_config"]["InstanceType"].startswith(("g", "p")), "a CPU head"
    gpu = {k: v for k, v in types.items() if v["node_config"]["InstanceType"].startswith(("g5", "p"))}
    assert gpu, "GPU worker node types"
    for name, t in gpu.items():
        assert 0 <= t["min_workers"] < t["max_workers"], name
    assert sum(t.get("max_workers", 0) for k, t in types.items() if k != cluster_cfg["head_node_type"]) \
        <= cluster_cfg["max_workers"]
    setup = " ".join(cluster_cfg["setup_commands"])
    assert "torch==2.14.1" in setup and "torchvision==0.29.1" in setup
    assert "pip install" in setup and "~/paw_ray" in setup, "setup installs paw_ray from the synced repo"
    assert cluster_cfg["file_mounts"]["~/paw_ray"] == "."


def test_cluster_yaml_dashboard_private_and_token_auth_on(cluster_cfg):
    head_start = cluster_cfg["head_start_ray_commands"]
    worker_start = cluster_cfg["worker_start_ray_commands"]
    starts = [c for c in head_start + worker_start if "ray start" in c]
    assert len(starts) == 2
    for cmd in starts:
        assert re.search(r"(^|;\s*|\s)RAY_AUTH_MODE=token\s+ray start", cmd), cmd
    head_cmd = next(c for c in head_start if "ray start" in c)
    assert re.search(r"--dashboard-host[= ]127\.0\.0\.1\b", head_cmd), head_cmd
    assert "0.0.0.0" not in yaml.safe_dump(cluster_cfg)
    # the token travels to every node with the file mounts
    assert cluster_cfg["file_mounts"]["~/.ray/auth_token"] == "~/.ray/auth_token"


def test_runtime_env_installs_the_pinned_dependencies():
    import tomllib

    from ray.runtime_env import RuntimeEnv

    env = load_yaml("jobs/runtime_env.yaml")
    RuntimeEnv(**env)  # Ray's own validation of the fields
    packages = env["pip"]["packages"]
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        deps = tomllib.load(f)["project"]["dependencies"]
    want = {re.split(r"[<>=\[ ]", d)[0]: d for d in deps if not d.startswith("ray")}
    have = {re.split(r"[<>=\[ ]", p)[0]: p for p in packages}
    assert have == want, "runtime env pip list = pyproject's dependencies, pins included (Ray is the cluster's)"
    assert "torch==2.14.1" in packages and "torchvision==0.29.1" in packages


@pytest.mark.parametrize("overlay,preset", [("gpu_cluster.yaml", "paper"), ("single_gpu.yaml", "demo"),
                                            ("single_gpu.yaml", "smoke")])
def test_gpu_overlay_moves_work_without_changing_what_is_computed(overlay, preset):
    base = C.preset(preset)
    gpu = C.load_yaml(os.path.join(ROOT, "jobs", overlay), base=base)
    C.validate(gpu)
    train_stages = [gpu.frl, gpu.hint, gpu.whole, gpu.fusion, gpu.finetune]
    assert all(s.use_gpu for s in train_stages) and gpu.parts.num_gpus > 0 and gpu.localize.gpus_per_actor > 0
    assert stage_fingerprints(gpu, "data") == stage_fingerprints(base, "data"), \
        "placement only: a run started on CPUs is reused on GPUs"


def test_single_gpu_overlay_fits_one_gpu():
    gpu = C.load_yaml(os.path.join(ROOT, "jobs", "single_gpu.yaml"), base=C.preset("demo"))
    assert all(s.num_workers == 1 for s in [gpu.frl, gpu.hint, gpu.whole, gpu.fusion, gpu.finetune]), \
        "a Train worker with use_gpu holds a whole GPU: more than one would never be placed"
    assert gpu.localize.num_actors * gpu.localize.gpus_per_actor <= 1.0


@pytest.mark.parametrize("job,words", [("train", ["--stages", "--from-stage", "--set-from", "--run-dir"]),
                                       ("tune", ["--stage", "--num-samples", "--scheduler", "--space"]),
                                       ("prepare_celeba", ["--root", "--out"])])
def test_job_entrypoints_help(job, words):
    out = subprocess.run([sys.executable, os.path.join("jobs", f"{job}.py"), "--help"], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith(f"usage: python jobs/{job}.py")
    for w in words:
        assert w in out.stdout, w


def test_job_entrypoint_reports_config_errors_briefly():
    out = subprocess.run([sys.executable, "jobs/train.py", "--preset", "smoke", "--set", "frl.nope=1"],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "frl.nope" in out.stderr and "Traceback" not in out.stderr


# --------------------------------------------------------------------------- tune, no Ray

def test_tune_space_checks():
    cfg = C.preset("smoke")
    check_space(default_space(cfg, "hint"), cfg, "hint")
    check_space({"lr": {"loguniform": [1e-4, 1e-2]}, "epochs": {"randint": [1, 3]},
                 "lambda1": {"uniform": [0, 1]}, "batch_size": {"grid": [16, 32]}, "momentum": 0.8},
                cfg, "whole")
    bad = [({"num_workers": {"choice": [1, 2]}}, "not searchable"),
           ({"lrr": 0.1}, "unknown key"),
           ({"lr": {"loguniform": [0, 1]}}, "low > 0"),
           ({"lr": {"normal": [0, 1]}}, "expected one of"),
           ({"batch_size": {"uniform": [8, 64]}}, "integer field"),
           ({"lr": {"choice": [-1.0]}}, "lr"),
           ({"lambda1": 0.5}, "unknown key")]  # frl has no hint weights
    for space, msg in bad:
        with pytest.raises(TuneError, match=msg):
            check_space(space, cfg, "frl")


def test_tune_concurrency_is_bounded_by_the_cluster():
    cfg = C.preset("smoke")  # whole: 1 worker x 0.5 CPU; + 0.25 driver + 0.25 data = 1 CPU a trial
    assert max_concurrent_trials(cfg, "whole", 8, resources={"CPU": 2}) == 2
    assert max_concurrent_trials(cfg, "whole", 8, resources={"CPU": 16}) == 8
    assert max_concurrent_trials(cfg, "whole", 3, resources={"CPU": 16}) == 3
    assert max_concurrent_trials(cfg, "whole", 8, requested=1, resources={"CPU": 16}) == 1
    assert max_concurrent_trials(cfg, "whole", 8, resources={"CPU": 0.5}) == 1
    gpu = C.apply_overrides(cfg, ["frl.use_gpu=true", "frl.num_workers=2"])
    assert max_concurrent_trials(gpu, "frl", 8, resources={"CPU": 64, "GPU": 5}) == 2


def test_tune_upstream_stages():
    cfg = C.preset("smoke")
    assert upstream_stages(cfg, "frl") == []
    assert upstream_stages(cfg, "whole") == ["frl", "hint"]
    assert upstream_stages(cfg, "fusion") == ["frl", "localize", "hint", "whole", "parts"]
    hinted = C.apply_overrides(cfg, ["whole.lambda1=0.5"])
    assert upstream_stages(hinted, "whole") == ["frl", "hint"]


def test_a_placement_this_ray_cannot_hold_is_refused_not_waited_for(ray_local):
    """The test Ray has 2 CPUs and no GPU: Ray would wait forever for what it cannot place."""
    from paw_ray.errors import PawRayError
    from paw_ray.train.cluster import check_placement_fits

    for name in ("smoke", "demo"):
        check_placement_fits(C.preset(name))
    gpu = C.load_yaml(os.path.join(ROOT, "jobs", "single_gpu.yaml"), base=C.preset("demo"))
    with pytest.raises(PawRayError, match=r"2 CPU\(s\) and 0 GPU\(s\).*frl: 1 Train worker\(s\) x 2 CPU \+ 1 GPU"):
        check_placement_fits(gpu)
    wide = C.apply_overrides(C.preset("smoke"), ["whole.num_workers=3", "whole.cpus_per_worker=1",
                                                    "whole.batch_size=30"])
    with pytest.raises(PawRayError, match=r"whole: 3 Train worker\(s\) x 1 CPU") as e:
        check_placement_fits(wide)
    assert "frl" not in str(e.value), "only what does not fit is named"
