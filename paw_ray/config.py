"""Configuration: typed dataclasses, the ``smoke`` / ``demo`` / ``paper`` presets,
YAML files and ``--set section.key=value`` overrides.

Every stage of the pipeline reads only its own section plus the shared top level, and
the run manifest hashes exactly the fields a stage's result depends on
(``stage_fingerprint`` in ``paw_ray.train.manifest``). Fields marked ``RESOURCE`` say
*where* work runs (workers, GPUs, CPUs) and not *what* it computes: changing them
never invalidates a finished stage.

The ``paper`` preset is the paper's method (docs/architecture.md, "The method in
numbers"): 224x224 inputs, TNet FRL, SNet3 subnets, 64x64 parts; SGD with momentum 0.9
and weight decay 5e-4; FRL lr 1e-4 for 10 epochs at batch 128, part subnets 15 epochs,
fusion lr 0.1, fine-tuning lr 1e-3.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import typing
from dataclasses import dataclass, field
from typing import Any

import yaml

from paw_ray.errors import PawRayError

__all__ = [
    "Config",
    "DataConfig",
    "StageConfig",
    "FRLConfig",
    "LocalizeConfig",
    "HintConfig",
    "WholeConfig",
    "PartsConfig",
    "FusionConfig",
    "FinetuneConfig",
    "EvaluateConfig",
    "RayConfig",
    "TrackingConfig",
    "ConfigError",
    "PRESETS",
    "preset",
    "apply_overrides",
    "load_yaml",
    "from_dict",
    "to_dict",
    "semantic_dict",
    "epochs_to_run",
    "RESOURCE",
    "DECODE_IN",
    "THRESHOLD_RULES",
    "DECISION_RULES",
    "DECODE_PLACES",
    "decode_place",
]

RESOURCE = {"resource": True}  # field metadata: placement only, never part of a stage's hash


class ConfigError(PawRayError, ValueError):
    """A configuration that names an unknown key or holds a value of the wrong type."""


THRESHOLD_RULES = ("balanced_accuracy", "accuracy")  # ``evaluate.threshold_rule``
DECISION_RULES = ("fitted", "fixed")  # what predict, batch inference and the export apply
DECODE_IN = ("auto", "consumer", "tasks")  # ``data.decode_in``; ``decode_place`` resolves "auto"
DATA_VERIFY = ("auto", "full", "size")  # ``data.verify`` (data/identity.py)
DATA_ON_CHANGE = ("stop", "accept")  # ``data.on_change``
DECODE_PLACES = ("consumer", "tasks")  # where a stream's images are decoded (``image_stream``)


def _resource(default: Any) -> Any:
    return field(default=default, metadata=RESOURCE)


def decode_place(decode_in: str, *, part_task: bool) -> str:
    """Where a consumer's training stream is decoded (one of ``DECODE_PLACES``).

    ``"auto"``: on the consumer for a Ray Train worker, whose streamed epoch runs faster when
    no decoded block crosses the object store; in Ray Data's tasks for a part task, which holds
    less than a CPU and would decode whole images to cut one small window from each.
    """
    if decode_in == "auto":
        return "tasks" if part_task else "consumer"
    return decode_in


@dataclass
class DataConfig:
    path: str = ""  # prepared shards (local path or URI); "" = SynthFaces made for this preset
    image_size: int = 224  # network input side; shards are resized to it
    part_size: int = 64  # part window side at image_size (64 at 224 in the paper)
    synth_n: int = 6000  # SynthFaces images when path is "" (80/10/10 train/val/test)
    synth_seed: int = 0
    synth_label_noise: float = 0.0
    op_cpus: float = _resource(0.25)  # CPUs per Ray Data read/map task (fractional leaves room for trainers)
    # per Ray Train worker: keep its decoded shard after the first epoch when it fits (MiB;
    # -1: automatic, from the worker's free GPU or host memory; 0: stream every epoch)
    cache_mb: float = _resource(-1.0)
    # who decodes a training stream's images: "tasks" (Ray Data map tasks), "consumer" (each
    # Train worker or part task, in its own threads, or nvJPEG on its GPU for JPEG rows), or
    # "auto": Train workers decode, part tasks leave it to Ray Data (``decode_place``)
    decode_in: str = _resource("auto")
    # before a run reads the data, each shard against dataset.json's size and SHA-256
    # (data/identity.py): "auto" (sizes; hashes too up to 2 GiB), "full" (--verify-data), "size"
    verify: str = _resource("auto")
    # a shard changed in place: "stop" the run naming it, or "accept" (--accept-data-change):
    # record it as it is now, which reruns the stages that read the data
    on_change: str = _resource("stop")


@dataclass
class StageConfig:
    """What every trained stage shares: SGD and where it runs."""

    epochs: int = 1
    lr: float = 1e-3
    batch_size: int = 64
    momentum: float = 0.9
    weight_decay: float = 5e-4
    lr_schedule: str = "cosine"  # "cosine" (anneal to 0 over the epochs) | "constant"
    optimizer: str = "sgd"  # "sgd" (paper: momentum, weight decay) | "adamw" (small CPU presets)
    precision: str = "fp32"  # "fp32" | "bf16": autocast to bfloat16 on CUDA workers (CPU workers stay fp32)
    # validate and checkpoint every k epochs, and always after the last (the weights do not
    # depend on it; a crash loses at most k - 1 epochs)
    val_every: int = _resource(1)
    num_workers: int = _resource(1)  # Ray Train workers (DDP); with min_workers, the most
    # elastic (Ray Train's num_workers=(min, max)): start with what the cluster has down to
    # min_workers, go on with fewer when a node is lost, grow back when one returns; 0 = fixed
    min_workers: int = _resource(0)
    use_gpu: bool = _resource(False)
    cpus_per_worker: float = _resource(1.0)
    max_failures: int = _resource(2)  # Ray Train FailureConfig
    placement: str = _resource("PACK")  # Ray Train placement of the workers: PACK | SPREAD (one per node)

    def worker_counts(self) -> range:
        """Every worker count the stage may train with: ``num_workers`` alone, or the elastic
        range ``min_workers..num_workers``."""
        return range(self.min_workers or self.num_workers, self.num_workers + 1)


@dataclass
class FRLConfig(StageConfig):
    width: float = 1.0  # channel multiplier of TNet's conv modules (1.0 = Table 3)
    maps_per_attribute: int = 32  # N: maps per attribute branch (40 x N = 1280 at 1.0)
    mnl: bool = True  # multi-net learning: joint classification branch (paper §3.2)
    mnl_hidden: int = 1024  # width of the classification branch's first FC layer
    pools: int = 4  # TNet's 2x2 max-pools (4 = Table 3); fewer keep a finer heatmap grid at small inputs


@dataclass
class LocalizeConfig:
    batch_size: int = _resource(128)
    num_actors: int = _resource(1)  # FRL replicas in the Ray Data actor pool
    gpus_per_actor: float = _resource(0.0)


@dataclass
class HintConfig(StageConfig):
    lambda1: float = 1.0  # weight of L_hint (paper stage a)
    lambda2: float = 0.0  # weight of the attribute loss


@dataclass
class WholeConfig(StageConfig):
    lambda1: float = 0.0  # paper stage b: attribute loss only
    lambda2: float = 1.0


@dataclass
class PartsConfig(StageConfig):
    source: str = "frl"  # "frl": centres from the FRL heatmaps; "grid": fixed 4x4 blocks
    num_cpus: float = _resource(1.0)  # per part task
    num_gpus: float = _resource(0.0)  # per part task; fractional shares a GPU
    max_retries: int = _resource(3)
    # per part task: keep its crops in memory within this budget, beyond it on local disk
    # (MiB; -1: automatic, from the node's memory; 0: stream every epoch)
    cache_mb: float = _resource(-1.0)


@dataclass
class FusionConfig(StageConfig):
    pass


@dataclass
class FinetuneConfig(StageConfig):
    pass


@dataclass
class EvaluateConfig:
    batch_size: int = _resource(128)
    # the per-attribute threshold fitted on the validation split maximises this (THRESHOLD_RULES)
    threshold_rule: str = "balanced_accuracy"


@dataclass
class RayConfig:
    address: str = _resource("")  # "" = start a local Ray; "auto" or host:port = join
    num_cpus: int = _resource(0)  # local Ray only; 0 = all cores
    verbose: bool = _resource(False)  # True (--verbose): Ray's own log lines reach this terminal too
    elastic_resize_s: float = _resource(60.0)  # how often an elastic stage looks for room to grow


@dataclass
class TrackingConfig:
    # an MLflow tracking URI that also gets every epoch's metrics (--mlflow; the mlflow extra);
    # "" = the TensorBoard event files in the run directory only
    mlflow: str = _resource("")


@dataclass
class Config:
    preset: str = "paper"
    seed: int = 0
    student: str = "snet3"  # snet1 | snet2 | snet3: builds g_0 and the part subnets
    student_width: float = 1.0
    max_steps: int = 0  # >0: at most this many optimiser steps per stage (dry run)
    data: DataConfig = field(default_factory=DataConfig)
    # Defaults = the paper preset: the paper's schedule (docs/architecture.md, "The method in numbers"),
    # with constant learning rates.
    frl: FRLConfig = field(default_factory=lambda: FRLConfig(
        epochs=10, lr=1e-4, batch_size=128, lr_schedule="constant"))
    localize: LocalizeConfig = field(default_factory=LocalizeConfig)
    hint: HintConfig = field(default_factory=lambda: HintConfig(
        epochs=5, lr=1e-7, batch_size=128, lr_schedule="constant"))  # Caffe-scale L_hint
    whole: WholeConfig = field(default_factory=lambda: WholeConfig(
        epochs=10, lr=1e-4, batch_size=128, lr_schedule="constant"))
    parts: PartsConfig = field(default_factory=lambda: PartsConfig(
        epochs=15, lr=1e-4, batch_size=128, lr_schedule="constant"))
    fusion: FusionConfig = field(default_factory=lambda: FusionConfig(
        epochs=3, lr=0.1, batch_size=128, lr_schedule="constant"))
    finetune: FinetuneConfig = field(default_factory=lambda: FinetuneConfig(
        epochs=3, lr=1e-3, batch_size=128, lr_schedule="constant"))
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)
    ray: RayConfig = field(default_factory=RayConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)


# --------------------------------------------------------------------------- presets

def _paper() -> Config:
    return Config(preset="paper")


def _demo() -> Config:
    """SynthFaces at 96 px on a laptop CPU: TNet at quarter width with three pools (12x12
    heatmaps, the paper's grid density; a fourth pool leaves cells too coarse to point with),
    16 maps per attribute, SNet3 subnets, 28 px parts (64/224 of the side, as in the paper).
    AdamW instead of the paper's SGD, which barely leaves the label prior in this few steps.
    Every Ray Train stage runs two DDP workers of 0.75 CPU, so that a 2-core machine keeps
    both cores training (benchmarks/README.md, "Why the presets and layouts are as they are",
    has the measurements behind these choices)."""
    cfg = Config(preset="demo")
    cfg.data = DataConfig(image_size=96, part_size=28, synth_n=6000)
    adamw = dict(optimizer="adamw", lr_schedule="cosine", batch_size=64)
    ddp = dict(num_workers=2, cpus_per_worker=0.75)  # the Ray Train stages
    cfg.frl = FRLConfig(epochs=6, lr=2e-3, width=0.25, maps_per_attribute=16, mnl_hidden=256, pools=3,
                        **adamw, **ddp)
    cfg.hint = HintConfig(epochs=1, lr=2e-3, **adamw, **ddp)
    cfg.whole = WholeConfig(epochs=6, lr=2e-3, **adamw, **ddp)
    cfg.parts = PartsConfig(epochs=3, lr=1e-3, num_cpus=0.75, **adamw)
    cfg.fusion = FusionConfig(epochs=2, lr=1e-2, **adamw, **ddp)
    cfg.finetune = FinetuneConfig(epochs=1, lr=2e-4, **adamw, **ddp)
    return cfg


def _smoke() -> Config:
    """1,600 SynthFaces at 48 px, seconds per stage: for tests. The FRL trains with DDP over
    two Ray Train workers; two pools keep its heatmaps 12x12. Part crops are half the side,
    large enough to hold an attribute's cue at this size."""
    cfg = Config(preset="smoke")
    cfg.data = DataConfig(image_size=48, part_size=24, synth_n=1600)
    adamw = dict(optimizer="adamw", lr_schedule="cosine", batch_size=32, cpus_per_worker=0.5)
    cfg.frl = FRLConfig(epochs=6, lr=3e-3, width=0.125, maps_per_attribute=8, mnl_hidden=64, pools=2,
                        num_workers=2, **adamw)
    cfg.hint = HintConfig(epochs=1, lr=3e-3, **adamw)
    cfg.whole = WholeConfig(epochs=6, lr=3e-3, **adamw)
    cfg.parts = PartsConfig(epochs=3, lr=2e-3, num_cpus=0.5, **adamw)
    cfg.fusion = FusionConfig(epochs=2, lr=1e-2, **adamw)
    cfg.finetune = FinetuneConfig(epochs=1, lr=5e-4, **adamw)
    cfg.student_width = 0.5
    cfg.evaluate = EvaluateConfig(batch_size=64)
    cfg.localize = LocalizeConfig(batch_size=64)
    return cfg


PRESETS = {"smoke": _smoke, "demo": _demo, "paper": _paper}


def preset(name: str) -> Config:
    """A fresh ``Config`` of preset ``name``."""
    try:
        return PRESETS[name]()
    except KeyError:
        raise ConfigError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}") from None


# --------------------------------------------------------------------------- dict / YAML

def epochs_to_run(cfg: Config, epochs: int) -> int:
    """How many of a stage's ``epochs`` run: all, or one when ``max_steps`` caps every stage
    (a dry run)."""
    return 1 if cfg.max_steps > 0 else epochs


def semantic_dict(section: Any) -> dict[str, Any]:
    """A config section as a dict without its placement-only (``RESOURCE``) fields: what a
    stage's result depends on."""
    out = {}
    for f in dataclasses.fields(section):
        if f.metadata.get("resource"):
            continue
        value = getattr(section, f.name)
        out[f.name] = semantic_dict(value) if dataclasses.is_dataclass(value) else value
    return out


def to_dict(cfg: Any) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def _field_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _number(value: Any, typ: type, where: str) -> int | float:
    """``value`` as an int (integral floats too) or a float; never a bool, strings parsed."""
    ok = not isinstance(value, bool) and (
        isinstance(value, (int, str)) or (isinstance(value, float) and (typ is float or value.is_integer())))
    if ok:
        try:
            return typ(value)
        except ValueError:
            pass
    raise ConfigError(f"{where}: expected {'an integer' if typ is int else 'a number'}, got {value!r}")


def _coerce(value: Any, typ: Any, where: str) -> Any:
    """Check ``value`` against ``typ`` (str/int/float/bool); strings from the command line are parsed."""
    if typ is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "1", "yes", "on", "false", "0", "no", "off"):
            return value.lower() in ("true", "1", "yes", "on")
        raise ConfigError(f"{where}: expected true/false, got {value!r}")
    if typ in (int, float):
        return _number(value, typ, where)
    if typ is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{where}: expected a string, got {value!r}")
    raise ConfigError(f"{where}: unsupported type {typ}")


def _merge(obj: Any, updates: dict[str, Any], prefix: str) -> None:
    if not isinstance(updates, dict):
        raise ConfigError(f"{prefix or 'config'}: expected a mapping, got {updates!r}")
    types_ = _field_types(type(obj))
    unknown = sorted(set(updates) - set(types_))
    if unknown:
        known = ", ".join(sorted(types_))
        raise ConfigError(f"unknown config key(s) {[prefix + k for k in unknown]}; known keys here: {known}")
    for key, value in updates.items():
        typ = types_[key]
        if dataclasses.is_dataclass(typ):
            _merge(getattr(obj, key), value, f"{prefix}{key}.")
        else:
            setattr(obj, key, _coerce(value, typ, prefix + key))


def from_dict(obj: dict[str, Any], base: Config | None = None) -> Config:
    """A ``Config`` from a (possibly partial) nested dict; ``preset`` picks the base."""
    obj = dict(obj or {})
    if base is None:
        base = preset(str(obj.get("preset", "demo")))
    cfg = copy.deepcopy(base)
    _merge(cfg, obj, "")
    validate(cfg)
    return cfg


def load_yaml(path: str, base: Config | None = None) -> Config:
    """A YAML file of (possibly partial) nested sections over ``base``; ``path`` may be a URI
    (``s3://.../tune/whole/best.yaml`` written by a tune job on a cluster)."""
    try:
        if "://" in path and not path.startswith("file://"):
            # deferred: pyarrow's filesystems, only for a URI (every `paw-ray` command imports config)
            from paw_ray import storage

            obj = yaml.safe_load(storage.read_bytes(path).decode("utf-8"))
        else:
            with open(path.removeprefix("file://"), encoding="utf-8") as f:
                obj = yaml.safe_load(f)
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot read the config file ({e})") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({e})") from None
    try:
        return from_dict(obj or {}, base)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None


def apply_overrides(cfg: Config, assignments: list[str]) -> Config:
    """Apply ``section.key=value`` strings (``--set``); unknown keys are an error naming them."""
    nested: dict[str, Any] = {}
    for item in assignments:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected section.key=value")
        key, value = item.split("=", 1)
        parts = key.strip().split(".")
        node = nested
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {item!r}: {p} is not a section")
        node[parts[-1]] = value.strip()
    cfg = copy.deepcopy(cfg)
    _merge(cfg, nested, "")
    validate(cfg)
    return cfg


def _batch_over_workers(name: str, s: StageConfig) -> list[str]:
    """``batch_size`` is the global batch: each of W workers takes ``batch_size / W`` a step.
    It must divide over every count the stage may train with, or a resized stage would train
    a smaller batch than configured."""
    counts = s.worker_counts()
    bad = [w for w in counts if s.batch_size % w]
    if not bad:
        return []
    if len(counts) == 1:
        each = s.batch_size // s.num_workers
        return [f"{name}.batch_size: {s.batch_size} does not divide over {name}.num_workers={s.num_workers} "
                f"(each worker would take {each}, {each * s.num_workers} a step in all); choose a multiple "
                f"of {s.num_workers}"]
    every = math.lcm(*counts)
    return [f"{name}.batch_size: {s.batch_size} does not divide over {', '.join(map(str, bad))} worker(s), "
            f"which the elastic range {name}.min_workers..num_workers = {counts[0]}..{counts[-1]} allows (the "
            f"global batch stays the same at every size); choose a multiple of {every} or a narrower range"]


def validate(cfg: Config) -> None:
    """Values that type-check but make no sense: a clear error naming the key."""
    problems = []
    if cfg.preset not in PRESETS:
        problems.append(f"preset: {cfg.preset!r} is not one of {sorted(PRESETS)}")
    if cfg.student not in ("snet1", "snet2", "snet3"):
        problems.append(f"student: {cfg.student!r} is not one of snet1, snet2, snet3")
    if cfg.parts.source not in ("frl", "grid"):
        problems.append(f"parts.source: {cfg.parts.source!r} is not one of frl, grid")
    if cfg.max_steps < 0:
        problems.append("max_steps: must be >= 0")
    if cfg.data.image_size < 16:
        problems.append("data.image_size: must be >= 16 (four 2x2 pools)")
    if not 16 <= cfg.data.part_size <= cfg.data.image_size:
        problems.append("data.part_size: must be between 16 and data.image_size")
    if cfg.data.synth_n < 30:
        problems.append("data.synth_n: must be >= 30 (10% of it is the test split)")
    if not 0.0 <= cfg.data.synth_label_noise < 0.5:
        problems.append("data.synth_label_noise: must be in [0, 0.5)")
    if cfg.data.op_cpus <= 0:
        problems.append("data.op_cpus: must be > 0")
    if cfg.evaluate.threshold_rule not in THRESHOLD_RULES:
        problems.append(f"evaluate.threshold_rule: {cfg.evaluate.threshold_rule!r} is not one of "
                        f"{', '.join(THRESHOLD_RULES)}")
    if cfg.data.decode_in not in DECODE_IN:
        problems.append(f"data.decode_in: {cfg.data.decode_in!r} is not one of {', '.join(DECODE_IN)}")
    if cfg.data.verify not in DATA_VERIFY:
        problems.append(f"data.verify: {cfg.data.verify!r} is not one of {', '.join(DATA_VERIFY)}")
    if cfg.data.on_change not in DATA_ON_CHANGE:
        problems.append(f"data.on_change: {cfg.data.on_change!r} is not one of {', '.join(DATA_ON_CHANGE)}")
    for name in ("width", "mnl_hidden", "maps_per_attribute"):
        if getattr(cfg.frl, name) <= 0:
            problems.append(f"frl.{name}: must be > 0")
    if not 1 <= cfg.frl.pools <= 4:
        problems.append(f"frl.pools: must be 1 to 4 (TNet's 2x2 pools), got {cfg.frl.pools}")
    if cfg.student_width <= 0:
        problems.append("student_width: must be > 0")
    for name in (f.name for f in dataclasses.fields(cfg)):
        s = getattr(cfg, name)
        if not isinstance(s, StageConfig):  # the sections of the stages that train
            continue
        if s.epochs < 0:
            problems.append(f"{name}.epochs: must be >= 0, got {s.epochs}")
        if s.lr <= 0:
            problems.append(f"{name}.lr: must be > 0, got {s.lr}")
        if s.batch_size < 1:
            problems.append(f"{name}.batch_size: must be >= 1, got {s.batch_size}")
        if s.num_workers < 1:
            problems.append(f"{name}.num_workers: must be >= 1")
        elif not 0 <= s.min_workers <= s.num_workers:
            problems.append(f"{name}.min_workers: must be between 0 (a fixed worker count) and "
                            f"{name}.num_workers={s.num_workers}, got {s.min_workers}")
        elif s.batch_size >= 1:
            problems += _batch_over_workers(name, s)
        if s.cpus_per_worker <= 0:
            problems.append(f"{name}.cpus_per_worker: must be > 0")
        if s.max_failures < 0:
            problems.append(f"{name}.max_failures: must be >= 0")
        if s.placement not in ("PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD"):
            problems.append(f"{name}.placement: {s.placement!r} is not one of PACK, SPREAD, STRICT_PACK, "
                            "STRICT_SPREAD")
        if not 0 <= s.momentum < 1:
            problems.append(f"{name}.momentum: must be in [0, 1)")
        if s.weight_decay < 0:
            problems.append(f"{name}.weight_decay: must be >= 0")
        if s.optimizer not in ("sgd", "adamw"):
            problems.append(f"{name}.optimizer: {s.optimizer!r} is not one of sgd, adamw")
        if s.precision not in ("fp32", "bf16"):
            problems.append(f"{name}.precision: {s.precision!r} is not one of fp32, bf16")
        if s.val_every < 1:
            problems.append(f"{name}.val_every: must be >= 1 (validate every k epochs), got {s.val_every}")
        if s.lr_schedule not in ("cosine", "constant"):
            problems.append(f"{name}.lr_schedule: {s.lr_schedule!r} is not one of cosine, constant")
    if cfg.parts.num_cpus <= 0 and cfg.parts.num_gpus <= 0:
        problems.append("parts.num_cpus: a part task needs CPUs or GPUs")
    for name in ("data", "parts"):
        if getattr(cfg, name).cache_mb < 0 and getattr(cfg, name).cache_mb != -1:
            problems.append(f"{name}.cache_mb: must be -1 (automatic), 0 (always stream) or a budget in MiB")
    if problems:
        raise ConfigError("invalid config:\n  " + "\n  ".join(problems))
