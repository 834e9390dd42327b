"""``paw-ray tune``: a Ray Tune search over one Ray Train stage's hyperparameters.

Each trial is a Ray Train run driven the Ray 2.60 way (docs/architecture.md, "How Ray is
used"): Tune runs a driver function per trial, which builds the stage's config with the
trial's values and calls the pipeline's own ``run_train_stage`` with a
``TuneReportCallback``, so every epoch's ``ray.train.report`` (``val_mean_accuracy``, ...)
reaches Tune and its scheduler (ASHA stops weak trials at its rungs; ``fifo`` runs every
trial to its end).

The stage's inputs come from the run directory: the upstream stages are run or reused
first (``train(..., only=...)``: a stage complete for the config is not retrained), and
every trial reads the same upstream checkpoints. Trials never touch the run's own stage
artifacts: each writes under ``<run>/tune/<stage>/<search>/trials/<trial_id>/``.

Results::

    <run>/tune/<stage>/<search>/            # Tune's experiment folder (one per search)
    <run>/tune/<stage>/<search>/summary.json, summary.md, best.yaml
    <run>/tune/<stage>/summary.json, summary.md, best.yaml   # the latest search's

``best.yaml`` holds the best trial's values in the nested section format of
``config.load_yaml`` (``<stage>: {lr: ..., ...}``): ``paw-ray train --set-from best.yaml``.

The search space (``--space FILE``, YAML or JSON) maps fields of the stage's config
section to a sampler or a constant::

    lr: {loguniform: [1.0e-4, 1.0e-2]}
    weight_decay: {choice: [0.0, 5.0e-4]}
    batch_size: {choice: [16, 32]}
    epochs: {randint: [2, 6]}        # inclusive bounds
    lambda2: {uniform: [0.0, 1.0]}   # hint / whole: the weights of L_hint and L_attr
    momentum: 0.9                    # a constant
    # also: {grid: [a, b, ...]} (every value, times --num-samples)

(optionally nested under the stage's name). Placement fields (workers, GPUs, CPUs) are
not hyperparameters and are refused.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import time
from typing import Any, Callable

import yaml

from paw_ray import config as C
from paw_ray import storage
from paw_ray.errors import PawRayError, root_message
from paw_ray.train.events import absolute_tracking_uri, experiment_name, mlflow_experiment
from paw_ray.train.manifest import stage_fingerprint
from paw_ray.train.progress import clock
from paw_ray.train.resources import how_many_fit
from paw_ray.train.run import run_ray_train_stage, train
from paw_ray.train.stage_table import STAGES, TRAIN_STAGES, stage_inputs

__all__ = ["run_tune", "default_space", "load_space", "TuneError", "upstream_stages",
           "max_concurrent_trials", "METRIC", "DRIVER_CPUS"]

METRIC, MODE = "val_mean_accuracy", "max"
# The trial's driver function mostly waits on its TorchTrainer; Tune refuses 0 CPUs for it
# (docs/architecture.md, "How Ray is used"), so it takes a small share and leaves the rest
# to the Train workers.
DRIVER_CPUS = 0.25
SAMPLERS = ("loguniform", "uniform", "choice", "randint", "grid")


class TuneError(PawRayError):
    """A search that cannot start: an unknown stage, a bad search space."""


# --------------------------------------------------------------------------- space

def _tunable_fields(cfg: C.Config, stage: str) -> dict[str, Any]:
    section = getattr(cfg, stage)
    return {f.name: f for f in dataclasses.fields(section) if not f.metadata.get("resource")}


def default_space(cfg: C.Config, stage: str) -> dict[str, Any]:
    """Around the preset's values: learning rate x/÷3, weight decay off/on, batch size
    halved or kept; the hint stage also trades L_hint against the attribute loss."""
    s = getattr(cfg, stage)
    space: dict[str, Any] = {
        "lr": {"loguniform": [s.lr / 3, s.lr * 3]},
        "weight_decay": {"choice": sorted({0.0, s.weight_decay or 5e-4})},
        "batch_size": {"choice": sorted({max(1, s.batch_size // 2), s.batch_size})},
    }
    if stage == "hint":
        space["lambda2"] = {"choice": [0.0, 0.1, 1.0]}
    return space


def load_space(path: str, cfg: C.Config, stage: str) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as f:
            obj = yaml.safe_load(f)  # JSON is YAML too
    except FileNotFoundError:
        raise TuneError(f"--space {path}: file not found") from None
    except yaml.YAMLError as e:
        raise TuneError(f"--space {path}: not valid YAML/JSON ({e})") from None
    if isinstance(obj, dict) and list(obj) == [stage] and isinstance(obj[stage], dict):
        obj = obj[stage]
    if not isinstance(obj, dict) or not obj:
        raise TuneError(f"--space {path}: expected a mapping of {stage} config keys to samplers")
    try:
        check_space(obj, cfg, stage)
    except TuneError as e:
        raise TuneError(f"--space {path}: {e}") from None
    return obj


def check_space(space: dict[str, Any], cfg: C.Config, stage: str) -> None:
    """Every key a hyperparameter of ``stage``, every sampler known, every value valid for the field."""
    fields = _tunable_fields(cfg, stage)
    resource = sorted(f.name for f in dataclasses.fields(getattr(cfg, stage)) if f.metadata.get("resource"))
    for key, spec in space.items():
        if key in resource:
            raise TuneError(f"{key!r} says where {stage} runs, not what it learns: not searchable")
        if key not in fields:
            raise TuneError(f"unknown key {key!r} for stage {stage}; searchable keys: {', '.join(sorted(fields))}")
        values = [spec]
        if isinstance(spec, dict):
            if len(spec) != 1 or next(iter(spec)) not in SAMPLERS:
                raise TuneError(f"{key}: expected one of {{{', '.join(f'{s}: ...' for s in SAMPLERS)}}} "
                                f"or a constant, got {spec!r}")
            kind, values = next(iter(spec.items()))
            if not isinstance(values, list) or not values:
                raise TuneError(f"{key}: {kind} needs a list, got {values!r}")
            if kind in ("loguniform", "uniform", "randint"):
                if len(values) != 2 or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                               for v in values) or values[0] > values[1]:
                    raise TuneError(f"{key}: {kind} needs [low, high] with low <= high, got {values!r}")
                if kind == "loguniform" and values[0] <= 0:
                    raise TuneError(f"{key}: loguniform needs low > 0, got {values!r}")
                if kind in ("uniform", "loguniform") and fields[key].type not in (float, "float"):
                    raise TuneError(f"{key}: an integer field; use randint or choice")
        for v in values:
            try:
                C.from_dict({stage: {key: v}}, base=cfg)
            except C.ConfigError as e:
                raise TuneError(f"{key}={v!r}: {e}") from None


def _to_tune(space: dict[str, Any]) -> dict[str, Any]:
    from ray import tune

    samplers = {"loguniform": lambda v: tune.loguniform(v[0], v[1]),
                "uniform": lambda v: tune.uniform(v[0], v[1]),
                "choice": tune.choice,
                "randint": lambda v: tune.randint(int(v[0]), int(v[1]) + 1),  # inclusive bounds
                "grid": tune.grid_search}
    out = {}
    for key, spec in space.items():
        if not isinstance(spec, dict):
            out[key] = spec
            continue
        kind, v = next(iter(spec.items()))
        out[key] = samplers[kind](v)
    return out


def _max_epochs(cfg: C.Config, stage: str, space: dict[str, Any]) -> int:
    spec = space.get("epochs", getattr(cfg, stage).epochs)
    most = max(next(iter(spec.values()))) if isinstance(spec, dict) else spec
    return C.epochs_to_run(cfg, max(1, int(most)))


# --------------------------------------------------------------------------- placement

def upstream_stages(cfg: C.Config, stage: str) -> list[str]:
    """Every stage whose result ``stage`` reads, directly or through others, in pipeline order."""
    seen: set[str] = set()
    todo = list(stage_inputs(cfg, stage))
    while todo:
        s = todo.pop()
        if s not in seen:
            seen.add(s)
            todo.extend(stage_inputs(cfg, s))
    return [s for s in STAGES if s in seen]


def max_concurrent_trials(cfg: C.Config, stage: str, num_samples: int, requested: int = 0,
                          resources: dict[str, float] | None = None) -> int:
    """Trials that fit the cluster at once: each takes its driver's CPUs, its Train workers'
    CPUs (and GPUs) and room for one data task; never more than asked for or sampled."""
    import ray

    res = resources if resources is not None else ray.cluster_resources()
    s = getattr(cfg, stage)
    limit = how_many_fit(res, DRIVER_CPUS + s.num_workers * s.cpus_per_worker + cfg.data.op_cpus,
                         s.num_workers if s.use_gpu else 0.0)
    if requested > 0:
        limit = min(limit, requested)
    return max(1, min(limit, num_samples))


# --------------------------------------------------------------------------- the search

def _make_driver(stage: str, cfg_dict: dict, data_dir: str, identity: str, inputs: dict[str, str],
                 input_fps: dict[str, str], trials_dir: str) -> Callable[[dict], None]:
    """The per-trial function Tune runs: the stage's config with the trial's values, then
    ``run_train_stage`` with a ``TuneReportCallback``."""

    def driver(trial_values: dict) -> None:
        import ray.tune
        from ray.tune.integration.ray_train import TuneReportCallback

        class ScalarReport(TuneReportCallback):
            """Tune's loggers take numbers: the epoch's list of worker nodes stays in the history."""

            def after_report(self, run_context, metrics, checkpoint):
                scalars = [{k: v for k, v in m.items() if not isinstance(v, (list, dict))} for m in metrics]
                super().after_report(run_context, scalars, checkpoint)

        cfg = C.from_dict({stage: dict(trial_values)}, base=C.from_dict(cfg_dict))
        getattr(cfg, stage).val_every = 1  # the scheduler compares trials on every epoch's metric
        fp = stage_fingerprint(cfg, stage, identity, input_fps)
        trial_dir = storage.join(trials_dir, ray.tune.get_context().get_trial_id())
        artifact, metrics = run_ray_train_stage(stage, cfg, data_dir, trial_dir, fp, inputs,
                                                 callbacks=[ScalarReport()])
        storage.write_json_atomic(storage.join(trial_dir, "result.json"),
                                  {"params": dict(trial_values), "artifact": artifact,
                                   "metrics": {k: v for k, v in metrics.items() if k != "history"},
                                   "history": metrics.get("history", [])})

    return driver


def _trial_record(result, space: dict[str, Any], cfg: C.Config, stage: str) -> dict[str, Any]:
    """One row of the summary from a trial's Tune result: its values, last and best metric,
    epochs run of those planned, and whether it completed, was stopped early or failed."""
    params = {k: result.config[k] for k in space} if result.config else {}
    m = result.metrics or {}
    planned = C.epochs_to_run(cfg, int(params.get("epochs", getattr(cfg, stage).epochs)))
    history = []
    try:
        df = result.metrics_dataframe
        if df is not None and METRIC in df:
            history = [round(float(v), 5) for v in df[METRIC].tolist()]
    except Exception:  # noqa: BLE001 - the table is a nicety
        pass
    ran = int(m.get("training_iteration", len(history)) or 0)
    if result.error is not None:
        status = "error"
    elif ran < max(planned, 1):
        status = "early_stopped"  # the scheduler (ASHA) stopped it at a rung
    else:
        status = "completed"
    return {
        "trial_id": m.get("trial_id") or (result.path.rstrip("/").split("_")[-2] if result.path else ""),
        "params": params,
        METRIC: round(float(m[METRIC]), 5) if METRIC in m else None,
        "best_" + METRIC: max(history) if history else None,
        "epochs_run": ran,
        "epochs_planned": planned,
        "status": status,
        "error": root_message(result.error)[:300] if result.error is not None else "",
        "path": result.path,
    }


def _trial_lines(log: Callable[[str], None], space: dict[str, Any], max_epochs: int, num_samples: int):
    """A Tune callback that prints a line per trial epoch and per finished trial on the
    driver, the way a stage prints its epochs."""
    from ray import tune

    class TrialLines(tune.Callback):
        def __init__(self):
            self.t0, self.done = time.time(), 0

        def on_trial_result(self, iteration, trials, trial, result, **info):
            values = ", ".join(f"{k}={trial.config.get(k):.4g}" if isinstance(trial.config.get(k), float)
                               else f"{k}={trial.config.get(k)}" for k in space)
            words = [f"[tune] trial {trial.trial_id} ({values}) epoch {result.get('training_iteration')}/{max_epochs}"]
            if result.get(METRIC) is not None:
                words.append(f"val mean acc {100 * result[METRIC]:.2f}%")
            words.append(f"{clock(time.time() - self.t0)} elapsed")
            log(" · ".join(words))

        def on_trial_complete(self, iteration, trials, trial, **info):
            self._finished(trial, "done")

        def on_trial_error(self, iteration, trials, trial, **info):
            self._finished(trial, "failed")

        def _finished(self, trial, how: str) -> None:
            self.done += 1
            log(f"[tune] {self.done}/{num_samples} trials finished · trial {trial.trial_id} {how} · "
                f"{clock(time.time() - self.t0)} elapsed")

    return TrialLines()


def _mlflow_callbacks(cfg: C.Config, run_dir: str, stage: str, search: str) -> list:
    """With ``tracking.mlflow``: Ray's MLflow logger, one MLflow run per trial (its values as
    params, its epochs as steps) in the experiment ``<run name>/tune/<stage>``."""
    if not cfg.tracking.mlflow:
        return []
    from ray.air.integrations.mlflow import MLflowLoggerCallback

    uri = absolute_tracking_uri(cfg.tracking.mlflow)
    name = f"{experiment_name(run_dir)}/tune/{stage}"
    mlflow_experiment(uri, name)  # made here, where a bad URI is an error naming it
    return [MLflowLoggerCallback(tracking_uri=uri, experiment_name=name, tags={"paw_ray.search": search})]


def run_tune(cfg: C.Config, run_dir: str, stage: str, num_samples: int = 4, scheduler: str = "asha",
             space: dict[str, Any] | None = None, max_concurrent: int = 0,
             log: Callable[[str], None] = print) -> dict[str, Any]:
    """Search ``stage``'s hyperparameters; write the summary and ``best.yaml``; return the summary."""
    from ray import tune
    from ray.tune.search.basic_variant import BasicVariantGenerator

    space = _checked_request(cfg, stage, num_samples, scheduler, space)
    run_dir = storage.absolute(run_dir)

    # the stage's inputs: run, or reuse when complete for this config
    upstream = upstream_stages(cfg, stage)
    log(f"[tune] stage {stage}: inputs {', '.join(upstream) or 'none'} from {run_dir}")
    made = train(cfg, run_dir, only=set(upstream), log=log)
    manifest, data_dir, data_label, identity = made["manifest"], made["data_dir"], made["data_label"], \
        made["data_identity"]
    inputs = {s: manifest.stages[s].artifact for s in upstream}
    input_fps = {s: manifest.stages[s].fingerprint for s in upstream}

    search = f"search-{time.strftime('%Y%m%d-%H%M%S')}"
    stage_dir = storage.join(run_dir, "tune", stage)
    search_dir = storage.join(stage_dir, search)
    concurrent = max_concurrent_trials(cfg, stage, num_samples, max_concurrent)
    max_t = _max_epochs(cfg, stage, space)
    sched = None
    if scheduler == "asha":
        from ray.tune.schedulers import ASHAScheduler

        sched = ASHAScheduler(time_attr="training_iteration", max_t=max_t, grace_period=1, reduction_factor=2)
    log(f"[tune] {num_samples} trial(s) of {stage}, at most {concurrent} at once, scheduler {scheduler}, "
        f"space {json.dumps(space)}; results in {search_dir}")

    trial_cfg = copy.deepcopy(cfg)
    trial_cfg.tracking.mlflow = ""  # the trials reach MLflow through Tune's own callback (below), one run each
    driver = _make_driver(stage, C.to_dict(trial_cfg), data_dir, identity, inputs, input_fps,
                          storage.join(search_dir, "trials"))
    tuner = tune.Tuner(
        tune.with_resources(driver, {"CPU": DRIVER_CPUS}),
        param_space=_to_tune(space),
        # random/grid search seeded by the config's seed; `max_concurrent` here is what
        # TuneConfig(max_concurrent_trials=...) sets up when no search algorithm is given
        tune_config=tune.TuneConfig(metric=METRIC, mode=MODE, scheduler=sched, num_samples=num_samples,
                                    search_alg=BasicVariantGenerator(max_concurrent=concurrent,
                                                                     random_state=cfg.seed)),
        run_config=tune.RunConfig(storage_path=stage_dir, name=search, verbose=0,
                                  failure_config=tune.FailureConfig(max_failures=0),
                                  callbacks=[_trial_lines(log, space, max_t, num_samples),
                                             *_mlflow_callbacks(cfg, run_dir, stage, search)]),
    )
    t0 = time.time()
    grid = tuner.fit()
    wall = round(time.time() - t0, 1)

    trials = [_trial_record(result, space, cfg, stage) for result in grid]
    ok = [t for t in trials if t["status"] == "completed" and t[METRIC] is not None] or \
         [t for t in trials if t["status"] != "error" and t[METRIC] is not None]
    if not ok:
        raise TuneError(f"no trial of {stage} finished; see {search_dir} "
                        f"({'; '.join(t['error'] for t in trials if t['error'])[:500]})")
    best = max(ok, key=lambda t: t[METRIC])
    summary = {
        "stage": stage, "preset": cfg.preset, "data": data_label, "run_dir": run_dir, "search": search,
        "metric": METRIC, "mode": MODE, "scheduler": scheduler, "num_samples": num_samples,
        "max_concurrent_trials": concurrent, "max_epochs": max_t, "space": space,
        "base": {k: getattr(getattr(cfg, stage), k) for k in space},
        "trials": sorted(trials, key=lambda t: (t[METRIC] is None, -(t[METRIC] or 0.0))),
        "best": best, "wall_time_s": wall,
        "counts": {s: sum(t["status"] == s for t in trials) for s in ("completed", "early_stopped", "error")},
    }
    _write_summary(summary, search_dir, stage_dir)
    summary["best_yaml"] = storage.join(stage_dir, "best.yaml")
    log(f"[tune] {len(trials)} trial(s) in {wall:.0f}s: " + ", ".join(
        f"{n} {s.replace('_', ' ')}" for s, n in summary["counts"].items() if n)
        + f"; best {METRIC} {best[METRIC]:.4f} with {json.dumps(best['params'])}")
    return summary


def _checked_request(cfg: C.Config, stage: str, num_samples: int, scheduler: str,
                     space: dict[str, Any] | None) -> dict[str, Any]:
    """The search space to use (the stage's default when None), once the request is valid."""
    if stage not in TRAIN_STAGES:
        raise TuneError(f"--stage {stage!r}: tunable stages are the Ray Train stages "
                        f"{', '.join(TRAIN_STAGES)}")
    if num_samples < 1:
        raise TuneError("--num-samples must be >= 1")
    if scheduler not in ("asha", "fifo"):
        raise TuneError(f"--scheduler {scheduler!r}: choose asha or fifo")
    space = dict(space) if space is not None else default_space(cfg, stage)
    check_space(space, cfg, stage)
    return space


def _write_summary(summary: dict, search_dir: str, stage_dir: str) -> None:
    """``summary.json``, ``summary.md`` and ``best.yaml`` in the search's folder and, as the
    latest search, in the stage's."""
    best_yaml = _best_yaml(summary)
    for where in (search_dir, stage_dir):
        storage.write_json_atomic(storage.join(where, "summary.json"), summary)
        storage.write_bytes_atomic(storage.join(where, "summary.md"), format_tune_summary(summary).encode())
        storage.write_bytes_atomic(storage.join(where, "best.yaml"), best_yaml.encode())


def _best_yaml(summary: dict) -> str:
    best, stage = summary["best"], summary["stage"]
    head = (f"# paw-ray tune: best of {len(summary['trials'])} trial(s) of stage {stage} "
            f"(preset {summary['preset']}, {summary['search']}): {METRIC} {best[METRIC]:.4f}\n"
            f"# use: paw-ray train --preset {summary['preset']} --set-from <this file> ...\n")
    return head + yaml.safe_dump({stage: best["params"]}, sort_keys=True)


def format_tune_summary(summary: dict) -> str:
    """A markdown table of the trials, best first."""
    keys = list(summary["space"])
    lines = [f"Tune search `{summary['search']}` of stage `{summary['stage']}` (preset `{summary['preset']}`, "
             f"scheduler {summary['scheduler']}, {summary['num_samples']} trial(s), at most "
             f"{summary['max_concurrent_trials']} at once, {summary['wall_time_s']:.0f}s).", "",
             "| trial | " + " | ".join(keys) + f" | final {METRIC} | best {METRIC} | epochs | status |",
             "|---" * (len(keys) + 5) + "|"]
    for t in summary["trials"]:
        vals = [_fmt(t["params"].get(k)) for k in keys]
        final = "—" if t[METRIC] is None else f"{t[METRIC]:.4f}"
        peak = "—" if t["best_" + METRIC] is None else f"{t['best_' + METRIC]:.4f}"
        status = t["status"].replace("_", " ") + (" (best)" if t is summary["best"] or
                                                   t["trial_id"] == summary["best"]["trial_id"] else "")
        if t["error"]:
            status += f": {t['error'][:80]}"
        lines.append(f"| {t['trial_id']} | " + " | ".join(vals)
                     + f" | {final} | {peak} | {t['epochs_run']}/{t['epochs_planned']} | {status} |")
    if summary["scheduler"] == "asha":
        lines += ["", "Early stopped: ASHA ended the trial at a rung (epochs 1, 2, 4, ...) because its "
                  f"{METRIC} there was in the lower half of the trials that reached it."]
    lines += ["", "Best configuration: `best.yaml` (`paw-ray train --set-from best.yaml`)."]
    return "\n".join(lines) + "\n"


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.3g}"
    return str(v)
