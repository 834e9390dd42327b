"""The main job: the paper's schedule as stages over one run directory.

``train(cfg, run_dir)`` runs ``frl -> localize -> hint -> whole -> parts -> fusion ->
finetune -> evaluate`` (docs/architecture.md, "Stages"). Before each stage it compares the stage's
fingerprint (config + data + inputs) with the manifest: a stage complete for the same
fingerprint is reused, anything else runs — so a rerun after a crash resumes, and a
changed config reruns the stages it touches and those after them.

``stages=[...]`` (``--stages``, ``--from-stage``) runs exactly those stages, forcing
them, and takes every other stage's last result from the run directory as it is:
the way to retrain from some stage onward on new or more data. One exception: the
part centres (``localize``) are per image, so when a forced stage reads them and they
were computed for other data (or another FRL), ``localize`` reruns too, with a log line.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from typing import Callable

from paw_ray import storage
from paw_ray.config import Config, decode_place, to_dict
from paw_ray.data import shards
from paw_ray.data.identity import data_identity, verify_shards
from paw_ray.data.stream import RowDecoder, consumer_decoder, image_stream
from paw_ray.data.synthfaces import GENERATOR_VERSION, synthesize
from paw_ray.errors import PawRayError
from paw_ray.train.cluster import check_placement_fits, ensure_ray
from paw_ray.train.events import absolute_tracking_uri, experiment_name, mlflow_experiment
from paw_ray.train.manifest import Manifest, RunDirError, stage_fingerprint
from paw_ray.train.stage_table import STAGES, StageRun, stage_inputs
from paw_ray.train.stage_table import stage as stage_spec
from paw_ray.train.stages.localize import load_centres
from paw_ray.train.trainer import run_train_stage

__all__ = ["train", "resolve", "ResolvedData", "resolve_data", "parse_stages", "run_ray_train_stage", "CONFIG_FILE"]

CONFIG_FILE = "config.json"  # <run>/config.json: the full config of the last train() call


def parse_stages(stages: str | None, from_stage: str | None) -> list[str] | None:
    """``--stages a,b`` / ``--from-stage s`` -> the stages to force, in pipeline order."""
    if stages and from_stage:
        raise PawRayError("give --stages or --from-stage, not both")
    if from_stage:
        if from_stage not in STAGES:
            raise PawRayError(f"--from-stage {from_stage!r}: unknown stage; stages are {', '.join(STAGES)}")
        return list(STAGES[STAGES.index(from_stage):])
    if not stages:
        return None
    names = [s.strip() for s in stages.split(",") if s.strip()]
    unknown = [s for s in names if s not in STAGES]
    if unknown:
        raise PawRayError(f"--stages: unknown stage(s) {unknown}; stages are {', '.join(STAGES)}")
    return [s for s in STAGES if s in names]


def resolve_data(cfg: Config, run_dir: str, log: Callable[[str], None] = print) -> tuple[str, str]:
    """The data folder and a label for it; SynthFaces is rendered on first use."""
    if cfg.data.path:
        info = shards.check_data(cfg.data.path)  # columns and labels of every shard, before any stage
        return cfg.data.path, f"{info.name} ({cfg.data.path})"

    d = cfg.data
    name = (f"synthfaces-v{GENERATOR_VERSION}-n{d.synth_n}-s{d.image_size}-seed{d.synth_seed}"
            f"-noise{d.synth_label_noise:g}")
    location = storage.join(run_dir, name)
    label = f"SynthFaces n={d.synth_n} {d.image_size}px seed={d.synth_seed}"
    if storage.exists(storage.join(location, shards.DATASET_INFO_FILE)):
        return location, label
    t0 = time.time()
    log(f"[data] rendering {label} into {location}")
    synthesize(n=d.synth_n, size=d.image_size, seed=d.synth_seed, out=location, label_noise=d.synth_label_noise,
               progress=lambda line: log(f"[data] {line}"))
    log(f"[data] {d.synth_n} images in {time.time() - t0:.1f}s")
    return location, label


def _artifact_inputs(manifest: Manifest, cfg: Config, stage: str) -> dict[str, str]:
    inputs = {}
    for s in stage_inputs(cfg, stage):
        rec = manifest.stages.get(s)
        if rec is None or rec.status != "complete":
            raise RunDirError(f"stage {stage!r} needs stage {s!r}, which has not completed in "
                              f"{manifest.run_dir}; run it too (e.g. --from-stage {s})")
        inputs[s] = rec.artifact
    return inputs


@dataclass(frozen=True)
class ResolvedData:
    """A data set checked and ready for the stages: its folder, label and identity."""

    dir: str
    label: str
    identity: str


def resolve(cfg: Config, run_dir: str, log: Callable[[str], None] = print) -> ResolvedData:
    """``resolve_data``, then the shards checked against what ``dataset.json`` recorded of
    them (``verify_shards``) and the data's identity: what ``train`` needs of the data."""
    data_dir, label = resolve_data(cfg, run_dir, log)
    info = verify_shards(data_dir, shards.read_info(data_dir), cfg.data.verify, cfg.data.on_change,
                           log=lambda line: log(f"[data] {line}"))
    return ResolvedData(data_dir, label, data_identity(info))


def train(cfg: Config, run_dir: str, stages: list[str] | None = None,
          log: Callable[[str], None] = print, only: set[str] | None = None,
          data: ResolvedData | None = None) -> dict:
    """Run the pipeline over ``run_dir``; return the manifest's stage records, the results and
    the data it used (``data_dir``, ``data_label``, ``data_identity``).

    ``only``: consider just these stages (reusing each one complete for its config, running
    the rest) and leave the others alone — how ``paw-ray tune`` makes a stage's inputs.
    ``data``: the data set already resolved by the caller (``cfg.data.path`` must name it;
    ablate resolves one per seed for all its variants), else resolved and checked here.
    """

    run_dir = storage.absolute(run_dir)
    if cfg.data.path:
        cfg = copy.deepcopy(cfg)
        cfg.data.path = storage.absolute(cfg.data.path)
    if data is not None and data.dir != cfg.data.path:
        raise ValueError(f"data {data.dir!r} was resolved for another data.path ({cfg.data.path!r})")
    if cfg.data.path and data is None:
        shards.check_splits(cfg.data.path)  # an empty split: refused now, not after Ray and a stage started
        data = resolve(cfg, run_dir, log)  # and every shard checked, against dataset.json too, before Ray starts
    if cfg.tracking.mlflow:
        cfg = copy.deepcopy(cfg)
        cfg.tracking.mlflow = absolute_tracking_uri(cfg.tracking.mlflow)
        mlflow_experiment(cfg.tracking.mlflow, experiment_name(run_dir))  # a wrong URI stops the run here, before any stage
    manifest = Manifest.load_or_create(run_dir)
    if manifest.preset and manifest.preset != cfg.preset:
        raise RunDirError(f"{run_dir} holds a run of the {manifest.preset!r} preset, not {cfg.preset!r}; "
                          "use another --run-dir")
    if ensure_ray(cfg.ray):
        check_placement_fits(cfg)
    data = data or resolve(cfg, run_dir, log)
    data_dir, data_label, identity = data.dir, data.label, data.identity
    manifest.preset, manifest.data = cfg.preset, data_label
    manifest.save()
    # the full config of this call (stage records hold only their own sections): for report/predict/export
    storage.write_json_atomic(storage.join(run_dir, CONFIG_FILE), to_dict(cfg))
    forced = set(stages) if stages is not None else None

    t_start = time.time()
    for stage in STAGES:
        if only is not None and stage not in only:
            continue
        fps = {s: manifest.stages[s].fingerprint for s in stage_inputs(cfg, stage) if s in manifest.stages}
        # no fingerprint without the inputs' records (the checks below say what is missing)
        fp = stage_fingerprint(cfg, stage, identity, fps) if len(fps) == len(stage_inputs(cfg, stage)) else ""
        if forced is not None and stage not in forced and fp and _stale_centres(manifest, cfg, stage, fp, forced):
            users = [s for s in STAGES if s in forced and stage in stage_inputs(cfg, s)]
            log(f"[{stage}] the part centres in {run_dir} belong to other data or another FRL, and "
                f"{', '.join(users)} use them: rerunning {stage} too")
            forced.add(stage)
        if forced is not None and stage not in forced:
            if stage not in manifest.stages or manifest.stages[stage].status != "complete":
                if any(stage in stage_inputs(cfg, s) for s in forced):
                    raise RunDirError(f"stage {stage!r} has not completed in {run_dir}; include it in --stages")
            continue
        if forced is None and manifest.is_complete(stage, fp):
            log(f"[{stage}] complete for this config: reused")
            continue
        inputs = _artifact_inputs(manifest, cfg, stage)
        manifest.start(stage, fp, _stage_config(cfg, stage))
        log(f"[{stage}] running")
        try:
            artifact, metrics = _run_stage(stage, cfg, data_dir, data_label, run_dir, fp, inputs, log)
        except BaseException as e:
            manifest.fail(stage, f"{type(e).__name__}: {e}")
            raise
        manifest.complete(stage, artifact, metrics)
        log(f"[{stage}] done in {manifest.stages[stage].wall_time_s:.1f}s{_summary(metrics)}")
    log(f"[run] finished in {time.time() - t_start:.1f}s; run directory: {run_dir}")
    results_location = storage.join(run_dir, "results.json")
    return {"manifest": manifest,
            "results": storage.read_json(results_location) if storage.exists(results_location) else None,
            "data_dir": data_dir, "data_label": data_label, "data_identity": identity}


def _stale_centres(manifest: Manifest, cfg: Config, stage: str, fingerprint: str, forced: set[str]) -> bool:
    """True when ``stage`` is ``localize``, not forced, complete for another fingerprint (other
    data, another FRL, another part source), and a forced stage reads its centres.

    Part centres are per image: retraining from ``parts`` on new data needs them for the new
    images, so ``--from-stage parts --data NEW`` reruns ``localize`` (with the run's FRL) too.
    """
    if stage != "localize" or not any(stage in stage_inputs(cfg, s) for s in forced):
        return False
    rec = manifest.stages.get(stage)
    return rec is not None and rec.status == "complete" and rec.fingerprint != fingerprint


def _stage_config(cfg: Config, stage: str) -> dict:
    full = to_dict(cfg)
    return {"preset": cfg.preset, "seed": cfg.seed, "student": cfg.student, "max_steps": cfg.max_steps,
            "data": full["data"], stage: full[stage]}


def _summary(metrics: dict) -> str:
    if "val_mean_accuracy" in metrics and isinstance(metrics["val_mean_accuracy"], float):
        return f": val mean accuracy {metrics['val_mean_accuracy']:.4f}"
    if "mean_accuracy" in metrics:
        return ": test mean accuracy " + ", ".join(f"{k} {v:.4f}" for k, v in metrics["mean_accuracy"].items())
    return ""


def _run_stage(stage, cfg, data_dir, data_label, run_dir, fp, inputs, log):
    """Run one stage the way the stage table says it runs."""
    if stage_spec(stage).trains:
        return run_ray_train_stage(stage, cfg, data_dir, run_dir, fp, inputs, log=log)
    return stage_spec(stage).code().run_stage(StageRun(cfg, data_dir, data_label, run_dir, fp, inputs, log))


def run_ray_train_stage(stage, cfg, data_dir, run_dir, fp, inputs, callbacks=None, log=None):
    """A Ray Train stage on ``data_dir``'s train and val streams (with the part centres where
    the stage crops at them); ``callbacks`` go to the TorchTrainer (Tune's reporting), and
    ``log`` gets a line per epoch."""
    import ray

    centres = None
    if stage_spec(stage).crops_at_centres:
        # the fused network cuts its crops from the centres the parts were trained on
        centres = ray.put(load_centres(inputs["localize"]))
    decoder = RowDecoder(cfg.data.image_size, centres=centres)
    decode_in = decode_place(cfg.data.decode_in, part_task=False)
    common = dict(op_cpus=cfg.data.op_cpus, decode_in=decode_in)
    datasets = {"train": image_stream(data_dir, "train", decoder, shuffle=True, seed=cfg.seed, **common),
                "val": image_stream(data_dir, "val", decoder, **common)}
    prior = shards.label_positive_rate(data_dir, "train")
    rows = shards.read_info(data_dir).num_rows
    return run_train_stage(stage, cfg, run_dir, fp, inputs, datasets, prior, rows,
                           decoder=consumer_decoder(decoder, decode_in),
                           callbacks=callbacks, log=log)

