"""KubeRay without a Kubernetes cluster: the RayJob manifests in kuberay/ against the jobs they
run. Each entrypoint parses with its job script's own parser (for the ``paw-ray`` jobs, the
subcommand's) and names job scripts and config files that exist; the worker groups hold what
the job's placement asks for; the runtime env is jobs/runtime_env.yaml's; the cluster is
cluster.yaml's (its Ray image, token authentication, autoscaling) and goes away with the job;
jobs/README.md creates the secret the pods read the bucket with and applies every manifest."""

from __future__ import annotations

import argparse
import glob
import os
import re
import runpy
import shlex
import sys
import tomllib

import pytest
import yaml

from paw_ray import cli
from paw_ray import config as C
from paw_ray.serve.batch import ACTOR_CPUS
from paw_ray.train.resources import how_many_fit
from paw_ray.train.stage_table import TRAIN_STAGES
from repo_files import ROOT, load_yaml

MANIFESTS = sorted(os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, "kuberay", "*.yaml")))
TRAIN_MANIFEST = "kuberay/rayjob-train.yaml"
PREDICT_MANIFEST = "kuberay/rayjob-predict.yaml"
# Options that name where a job reads or writes: on Kubernetes, only the bucket is shared.
STORAGE_OPTIONS = ("data", "run_dir", "out", "root", "photos")


# --------------------------------------------------------------------------- helpers

class _Parsed(Exception):
    """Raised in place of running a job, once its parser has taken the arguments."""

    def __init__(self, namespace: argparse.Namespace):
        super().__init__()
        self.namespace = namespace


def parse_entrypoint(entrypoint: str, monkeypatch) -> tuple[str, argparse.Namespace]:
    """``python jobs/<script>.py ARGS``: the script (relative to the repository) and what its
    own parser makes of ARGS, run as the job's driver runs it (from the working directory,
    ``sys.argv`` set) and stopped right after parsing. An argument it refuses fails the test
    with argparse's message."""
    argv = shlex.split(entrypoint)
    assert argv[0] == "python" and len(argv) > 1, f"not `python jobs/<script>.py ...`: {entrypoint!r}"
    script = os.path.normpath(argv[1])
    assert script.startswith("jobs" + os.sep) and script.endswith(".py"), f"not a job script: {argv[1]}"
    assert os.path.isfile(os.path.join(ROOT, script)), f"{script} does not exist"
    parse_args = argparse.ArgumentParser.parse_args

    def parse_then_stop(self, args=None, namespace=None):
        raise _Parsed(parse_args(self, args, namespace))

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", parse_then_stop)
    monkeypatch.setattr(sys, "argv", argv[1:])
    monkeypatch.chdir(ROOT)  # the working directory is the repository, as the job's zip unpacks it
    monkeypatch.syspath_prepend(os.path.join(ROOT, "jobs"))  # as `python jobs/x.py` puts it first
    try:
        runpy.run_path(os.path.join(ROOT, script), run_name="__main__")
    except _Parsed as parsed:
        return script, parsed.namespace
    except SystemExit as e:
        pytest.fail(f"{entrypoint!r}: the job's parser refused it (exit {e.code}; its message is above)")
    pytest.fail(f"{script} ran without parsing its arguments")


def _quantity(q) -> float:
    """A Kubernetes quantity of CPUs or GPUs ("7", "500m", 4) as a number."""
    q = str(q)
    return float(q[:-1]) / 1000 if q.endswith("m") else float(q)


def advertised(group: dict) -> dict[str, float]:
    """What Ray advertises on a pod of ``group`` as KubeRay starts it: rayStartParams'
    num-cpus / num-gpus, else the Ray container's (the first one's) CPU and nvidia.com/gpu
    limits."""
    params = group.get("rayStartParams") or {}
    limits = group["template"]["spec"]["containers"][0].get("resources", {}).get("limits", {})
    return {"CPU": _quantity(params.get("num-cpus", limits.get("cpu", 0))),
            "GPU": _quantity(params.get("num-gpus", limits.get("nvidia.com/gpu", 0)))}


def pods_at_full_scale(cluster: dict) -> list[tuple[str, int, dict[str, float]]]:
    """(group, pods, resources of one pod): the head, then each worker group at maxReplicas."""
    return [("head", 1, advertised(cluster["headGroupSpec"]))] + [
        (g["groupName"], g["maxReplicas"], advertised(g)) for g in cluster.get("workerGroupSpecs", [])]


def per_pod(resources: dict[str, float], cpus: float, gpus: float) -> int:
    """How many bundles of ``cpus`` CPUs and ``gpus`` GPUs one pod holds at once (0 if none)."""
    if resources["CPU"] + 1e-9 < cpus or resources["GPU"] + 1e-9 < gpus:
        return 0
    return how_many_fit(resources, cpus, gpus)


def at_once(cluster: dict, cpus: float, gpus: float) -> int:
    """How many such bundles the cluster at full scale holds at once, each within one pod."""
    return sum(n * per_pod(res, cpus, gpus) for _, n, res in pods_at_full_scale(cluster))


def ray_containers(cluster: dict) -> list[dict]:
    groups = [cluster["headGroupSpec"]] + cluster.get("workerGroupSpecs", [])
    return [g["template"]["spec"]["containers"][0] for g in groups]


def _ray_pin() -> str:
    """The Ray version pyproject.toml pins, without its wildcard (``2.60.`` for ``==2.60.*``)."""
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        deps = tomllib.load(f)["project"]["dependencies"]
    pin = next(d for d in deps if re.match(r"ray(\[|=)", d))
    return pin.split("==", 1)[1].strip().rstrip("*")


# --------------------------------------------------------------------------- every manifest

def test_the_manifests_are_there():
    assert {TRAIN_MANIFEST, PREDICT_MANIFEST} <= set(MANIFESTS)


@pytest.mark.parametrize("name", MANIFESTS)
def test_manifest_is_a_rayjob_on_the_ray_of_cluster_yaml(name):
    job = load_yaml(name)
    assert job["apiVersion"] == "ray.io/v1" and job["kind"] == "RayJob"
    assert job["spec"].get("submissionMode", "K8sJobMode") == "K8sJobMode"
    cluster = job["spec"]["rayClusterSpec"]
    assert str(cluster["rayVersion"]).startswith(_ray_pin()), "the Ray that pyproject.toml pins"
    image = load_yaml("cluster.yaml")["docker"]["image"]
    assert str(cluster["rayVersion"]) in image
    for container in ray_containers(cluster):
        assert container["image"] == image, "the image cluster.yaml's nodes run"


@pytest.mark.parametrize("name", MANIFESTS)
def test_cluster_is_private_token_authenticated_and_autoscaled(name):
    cluster = load_yaml(name)["spec"]["rayClusterSpec"]
    assert cluster["authOptions"]["mode"] == "token", "token authentication, as on cluster.yaml's cluster"
    assert cluster["headGroupSpec"].get("serviceType", "ClusterIP") == "ClusterIP", \
        "the dashboard and job API stay inside the Kubernetes cluster"
    head = advertised(cluster["headGroupSpec"])
    cluster_yaml = load_yaml("cluster.yaml")
    assert head["GPU"] == 0 and head["CPU"] == \
        cluster_yaml["available_node_types"][cluster_yaml["head_node_type"]]["resources"]["CPU"], \
        "a CPU head that keeps training off itself, as cluster.yaml's"
    assert cluster["enableInTreeAutoscaling"] is True
    groups = cluster["workerGroupSpecs"]
    assert any(advertised(g)["GPU"] > 0 for g in groups), "GPU worker groups"
    for g in groups:
        assert 0 == g["minReplicas"] < g["maxReplicas"], f"{g['groupName']}: comes with demand, from none"


@pytest.mark.parametrize("name", MANIFESTS)
def test_cluster_goes_away_with_the_job(name):
    assert load_yaml(name)["spec"]["shutdownAfterJobFinishes"] is True


@pytest.mark.parametrize("name", MANIFESTS)
def test_entrypoint_parses_with_the_jobs_own_parser(name, monkeypatch):
    script, args = parse_entrypoint(load_yaml(name)["spec"]["entrypoint"], monkeypatch)
    values = [v for value in vars(args).values() for v in (value if isinstance(value, list) else [value])
              if isinstance(v, str)]
    for v in values:
        if v.endswith((".yaml", ".yml", ".json")) and "://" not in v:
            assert os.path.isfile(os.path.join(ROOT, v)), f"{script}: {v} is not a file in the repository"
    for option in STORAGE_OPTIONS:
        given = getattr(args, option, None)
        for v in given if isinstance(given, list) else [given] if given else []:
            assert v.startswith("s3://"), f"{script} --{option.replace('_', '-')} {v}: not on the bucket"
    if hasattr(args, "preset"):  # a paw-ray job: its config (preset, --config, --set) is valid
        C.validate(cli.config_from_args(args))


@pytest.mark.parametrize("name", MANIFESTS)
def test_runtime_env_is_the_jobs_runtime_env_with_the_code_from_the_bucket(name):
    from ray.runtime_env import RuntimeEnv

    env = yaml.safe_load(load_yaml(name)["spec"]["runtimeEnvYAML"])
    RuntimeEnv(**env)  # Ray's own validation of the fields
    working_dir = env.pop("working_dir")
    assert working_dir.startswith("s3://") and working_dir.endswith(".zip"), \
        "the submitter has no checkout: the code is a zip on the bucket"
    assert env == load_yaml("jobs/runtime_env.yaml"), "pip pins and env vars as jobs/runtime_env.yaml"


@pytest.mark.parametrize("name", MANIFESTS)
def test_pods_read_the_bucket_with_the_secret_the_readme_creates(name):
    with open(os.path.join(ROOT, "jobs", "README.md"), encoding="utf-8") as f:
        created = set(re.findall(r"kubectl create secret generic ([\w.-]+)", f.read()))
    assert created, "jobs/README.md creates the bucket credentials secret"
    for container in ray_containers(load_yaml(name)["spec"]["rayClusterSpec"]):
        secrets = {e["secretRef"]["name"] for e in container.get("envFrom", []) if "secretRef" in e}
        assert secrets & created, f"{container['name']}: reads the bucket with the secret jobs/README.md creates"


@pytest.mark.parametrize("name", MANIFESTS)
def test_readme_applies_the_manifest(name):
    with open(os.path.join(ROOT, "jobs", "README.md"), encoding="utf-8") as f:
        assert f"kubectl apply -f {name}" in f.read()


# --------------------------------------------------------------------------- each job

def test_training_placement_fits_the_worker_groups(monkeypatch):
    job = load_yaml(TRAIN_MANIFEST)
    script, args = parse_entrypoint(job["spec"]["entrypoint"], monkeypatch)
    assert script == os.path.join("jobs", "train.py")
    cfg = cli.train_config(args)  # the config the job trains with
    cluster = job["spec"]["rayClusterSpec"]
    for stage in TRAIN_STAGES:
        s = getattr(cfg, stage)
        assert s.use_gpu, f"{stage}: on the GPU workers"
        most = max(per_pod(res, s.cpus_per_worker, 1) for _, _, res in pods_at_full_scale(cluster))
        assert most >= s.num_workers, \
            f"{stage}: {s.num_workers} Train workers x {s.cpus_per_worker:g} CPU + 1 GPU do not fit one pod"
    assert at_once(cluster, cfg.parts.num_cpus, cfg.parts.num_gpus) >= 1, "a part task fits a pod"
    lc = cfg.localize
    assert lc.gpus_per_actor > 0 and at_once(cluster, 0, lc.gpus_per_actor) >= lc.num_actors, \
        f"localize: {lc.num_actors} actors x {lc.gpus_per_actor:g} GPU"


def test_prediction_actors_fit_the_worker_groups(monkeypatch):
    job = load_yaml(PREDICT_MANIFEST)
    script, args = parse_entrypoint(job["spec"]["entrypoint"], monkeypatch)
    assert script == os.path.join("jobs", "predict.py")
    # named outright: by default the pool counts the GPUs up at start, and there are none yet
    assert args.actors > 0 and args.gpus_per_actor and args.gpus_per_actor > 0
    assert at_once(job["spec"]["rayClusterSpec"], ACTOR_CPUS, args.gpus_per_actor) >= args.actors, \
        f"{args.actors} model actors x ({ACTOR_CPUS:g} CPU + {args.gpus_per_actor:g} GPU)"
