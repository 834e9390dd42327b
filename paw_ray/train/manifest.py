"""The run directory's manifest: for each stage its status, fingerprint, artifact,
metrics, wall time and the config it ran with.

A stage's *fingerprint* hashes exactly what its result depends on: its own config
section (placement fields excluded, see ``config.RESOURCE``), the shared fields it
reads, the data set's identity and the fingerprints of the stages it consumes. So a
rerun skips a stage whose fingerprint is unchanged and reruns one whose inputs or
config changed — and, through the chain, every stage after it.

The manifest is rewritten atomically after every change of state, so a crash at any
point leaves either the old or the new manifest, never half of one.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from dataclasses import dataclass, field
from typing import Any

from paw_ray import storage
from paw_ray.config import Config
from paw_ray.errors import PawRayError
from paw_ray.train.stage_table import STAGES, stage_inputs
from paw_ray.train.stage_table import stage as stage_spec

__all__ = [
    "Manifest",
    "StageRecord",
    "RunDirError",
    "stage_fingerprint",
    "stage_fingerprints",
]

MANIFEST_FILE = "manifest.json"
MANIFEST_VERSION = 1


class RunDirError(PawRayError):
    """A run directory that cannot be used as it is (corrupted, foreign, incomplete)."""


def _hash(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def stage_fingerprint(cfg: Config, stage: str, data_identity: str, input_fingerprints: dict[str, str]) -> str:
    """Hash of what ``stage``'s result depends on: the shared fields, its own config (the stage
    table's ``own_config``), the data and its inputs' fingerprints."""
    shared = {"seed": cfg.seed, "max_steps": cfg.max_steps, "data": data_identity,
              "image_size": cfg.data.image_size}
    inputs = {s: input_fingerprints[s] for s in stage_inputs(cfg, stage)}
    return _hash({"stage": stage, "shared": shared, "own": stage_spec(stage).own_config(cfg), "inputs": inputs})


def stage_fingerprints(cfg: Config, data_identity: str) -> dict[str, str]:
    """Every stage's fingerprint when the whole chain runs under ``cfg``."""
    fps: dict[str, str] = {}
    for stage in STAGES:
        fps[stage] = stage_fingerprint(cfg, stage, data_identity, fps)
    return fps


@dataclass
class StageRecord:
    status: str = "pending"  # pending | running | complete | failed
    fingerprint: str = ""
    artifact: str = ""  # location of what the stage made (weights, a table, results.json)
    metrics: dict[str, Any] = field(default_factory=dict)
    wall_time_s: float = 0.0
    started_at: float = 0.0
    finished_at: float = 0.0
    config: dict[str, Any] = field(default_factory=dict)
    error: str = ""
    reused_from: str = ""  # run directory that trained it, when adopted from a sibling run (paw-ray ablate)


def _renamed(record: Any) -> Any:
    """A stage record as written before ``checkpoint`` was renamed ``artifact``, read as now."""
    if isinstance(record, dict) and "checkpoint" in record and "artifact" not in record:
        record = {("artifact" if k == "checkpoint" else k): v for k, v in record.items()}
    return record


@dataclass
class Manifest:
    """``<run-dir>/manifest.json``: the run's preset, data and one record per stage."""

    run_dir: str
    preset: str = ""
    data: str = ""
    stages: dict[str, StageRecord] = field(default_factory=dict)
    created_at: float = field(default_factory=time.time)
    version: int = MANIFEST_VERSION

    @property
    def location(self) -> str:
        return storage.join(self.run_dir, MANIFEST_FILE)

    @classmethod
    def load_or_create(cls, run_dir: str) -> "Manifest":
        where = storage.join(run_dir, MANIFEST_FILE)
        if storage.exists(run_dir) and not storage.is_dir(run_dir):
            raise RunDirError(f"{run_dir}: exists and is not a folder; a run directory is a folder")
        if not storage.exists(where):
            return cls(run_dir=run_dir)
        try:
            obj = storage.read_json(where)
        except ValueError as e:
            raise RunDirError(
                f"{e}. Move the run directory aside or delete {where} to start the run afresh"
            ) from None
        if not isinstance(obj, dict) or obj.get("version") != MANIFEST_VERSION or not isinstance(
            obj.get("stages"), dict
        ):
            raise RunDirError(f"{where}: not a paw_ray manifest (version {MANIFEST_VERSION})")
        try:
            stages = {k: StageRecord(**_renamed(v)) for k, v in obj["stages"].items()}
        except TypeError as e:
            raise RunDirError(f"{where}: malformed stage record ({e})") from None
        unknown = set(stages) - set(STAGES)
        if unknown:
            raise RunDirError(f"{where}: unknown stage(s) {sorted(unknown)}")
        return cls(run_dir=run_dir, preset=obj.get("preset", ""), data=obj.get("data", ""),
                   stages=stages, created_at=obj.get("created_at", 0.0))

    def save(self) -> None:
        obj = {"version": self.version, "run_dir": self.run_dir, "preset": self.preset,
               "data": self.data, "created_at": self.created_at,
               "stages": {k: dataclasses.asdict(v) for k, v in self.stages.items()}}
        storage.write_json_atomic(self.location, obj)

    def record(self, stage: str) -> StageRecord:
        return self.stages.setdefault(stage, StageRecord())

    def is_complete(self, stage: str, fingerprint: str) -> bool:
        rec = self.stages.get(stage)
        return bool(rec and rec.status == "complete" and rec.fingerprint == fingerprint
                    and (not rec.artifact or storage.exists(rec.artifact)))

    def start(self, stage: str, fingerprint: str, config: dict[str, Any]) -> None:
        self.stages[stage] = StageRecord(status="running", fingerprint=fingerprint,
                                         started_at=time.time(), config=config)
        self.save()

    def complete(self, stage: str, artifact: str, metrics: dict[str, Any]) -> None:
        rec = self.record(stage)
        rec.status, rec.artifact, rec.metrics = "complete", artifact, metrics
        rec.finished_at = time.time()
        rec.wall_time_s = round(rec.finished_at - rec.started_at, 2)
        rec.error = ""
        self.save()

    def fail(self, stage: str, error: str) -> None:
        rec = self.record(stage)
        rec.status, rec.error = "failed", error[-2000:]
        rec.finished_at = time.time()
        rec.wall_time_s = round(rec.finished_at - rec.started_at, 2)
        self.save()
