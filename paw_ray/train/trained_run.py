"""A finished run directory, opened for use: its config, its artifacts and the cascade.

The run's config is rebuilt from what the run recorded, most specific last:
the preset named in the manifest, then ``<run>/config.json`` (the full config of the
last ``train()`` call, when present), then each stage record's ``config`` in pipeline
order — so every section comes from the stage that actually ran with it.

The decision rule (``decision_rule``) is the one the evaluate stage fitted on the validation
split for PaW and wrote to ``results.json``: a temperature and a threshold per attribute.

Weights are loaded as data only (``checkpoints.load_state``: ``weights_only``), never
as pickled code. Artifact paths recorded in the manifest are re-rooted onto the run
directory given here, so a run directory that was moved or copied still opens.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from paw_ray import config as C
from paw_ray import storage
from paw_ray.data import shards
from paw_ray.metrics import DecisionRule
from paw_ray.models.cascade import Cascade
from paw_ray.models.paw import PaW
from paw_ray.train.checkpoints import load_state
from paw_ray.train.manifest import MANIFEST_FILE, Manifest, RunDirError
from paw_ray.train.run import CONFIG_FILE, resolve_data
from paw_ray.train.stage_table import STAGES
from paw_ray.train.stages.frl import load_frl

__all__ = ["TrainedRun", "open_run", "fell_back"]


@dataclass
class TrainedRun:
    """What report, predict, batch inference and export read from a run directory."""

    run_dir: str
    manifest: Manifest
    cfg: C.Config
    recorded_run_dir: str  # the run_dir written in manifest.json (where it was trained)

    @property
    def preset(self) -> str:
        return self.manifest.preset

    @property
    def data_label(self) -> str:
        return self.manifest.data

    def label(self) -> str:
        """One line naming the run, for figure titles and model cards."""
        return f"run {self.run_dir} · preset {self.preset} · data {self.data_label}"

    def complete(self, stage: str) -> bool:
        rec = self.manifest.stages.get(stage)
        return bool(rec and rec.status == "complete")

    def artifact(self, stage: str) -> str:
        """Location of ``stage``'s artifact; a clear error when the stage has not completed."""
        rec = self.manifest.stages.get(stage)
        if rec is None or rec.status != "complete" or not rec.artifact:
            state = "has not run" if rec is None else f"is {rec.status}"
            raise RunDirError(f"{self.run_dir}: stage {stage!r} {state}; finish the run first "
                              f"(paw-ray train --run-dir {self.run_dir} --preset {self.preset or '...'})")
        location = rec.artifact
        old = self.recorded_run_dir.rstrip("/")
        if old and location.startswith(old + "/"):
            location = storage.join(self.run_dir, *location[len(old) + 1:].split("/"))
        if not storage.exists(location):
            raise RunDirError(f"{self.run_dir}: stage {stage!r} artifact {location} is missing")
        return location

    @cached_property
    def results(self) -> dict | None:
        """``results.json`` of the evaluate stage, or None before it ran."""
        where = storage.join(self.run_dir, "results.json")
        return storage.read_json(where) if storage.exists(where) else None

    def decision_rule(self, which: str = "fitted") -> DecisionRule:
        """PaW's decision rule: ``fitted`` (from ``results.json``) or ``fixed`` (T = 1,
        threshold 0.5). A run evaluated before the rule was fitted, or with no validation
        rows, has only the fixed one: the returned rule's ``rule`` says which was given."""
        if which not in C.DECISION_RULES:
            raise RunDirError(f"decision rule {which!r}: one of {', '.join(C.DECISION_RULES)}")
        results = self.results or {}
        if which == "fixed" or not results.get("n_val") or "paw" not in results.get("temperature", {}):
            return DecisionRule.fixed()
        temperature = [1.0 if t is None else t for t in results["temperature"]["paw"]]
        thresholds = [0.5 if t is None else t for t in results["thresholds"]["paw"]]
        return DecisionRule(np.asarray(temperature, float), np.asarray(thresholds, float),
                            results.get("threshold_rule", "balanced_accuracy"))

    def data_dir(self, log=None) -> str:
        """The run's data folder (SynthFaces is re-rendered, deterministically, if it was removed)."""
        return resolve_data(self.cfg, self.run_dir, log or (lambda m: print(m, file=sys.stderr)))[0]

    def face_cut(self) -> tuple[str, float]:
        """How the run's training faces were cut, as ``(source, margin)``: ``"detector"`` or
        ``"annotations"`` (``prepare-celeba --face-source``), ``"synthfaces"`` (the rendered
        frame is the face), or ``"unknown"`` (the prepared data's ``dataset.json`` is gone)."""
        if not self.cfg.data.path:
            return "synthfaces", 0.0
        try:
            source = shards.read_info(self.cfg.data.path).source or {}
        except (OSError, shards.ShardError):
            return "unknown", 0.0
        return source.get("face_source", "annotations"), float(source.get("margin", 0.0))

    def cascade(self, rule: DecisionRule | None = None):
        """The trained cascade (FRL + PaW, or grid centres + PaW) in eval mode, on CPU; its
        probabilities calibrated by ``rule``'s temperature when one is given."""
        paw = PaW.from_config(self.cfg)
        paw.load_state_dict(load_state(self.artifact("finetune")))
        frl = self.frl() if self.cfg.parts.source == "frl" else None
        cascade = Cascade(paw, frl, self.cfg.parts.source).eval()
        return cascade.calibrate(rule.temperature) if rule is not None else cascade

    def frl(self):
        """The trained FRL localization network (no MNL branch), eval mode."""
        return load_frl(self.cfg, self.artifact("frl")).eval()


def fell_back(which: str, rule: DecisionRule) -> bool:
    """Whether ``which`` asked ``TrainedRun.decision_rule`` for the fitted rule and the run
    had none to give (``rule`` is the fixed one)."""
    return which == "fitted" and rule.rule == "fixed"


def run_config(run_dir: str, manifest: Manifest) -> C.Config:
    """The config the run trained with (see the module docstring)."""
    if not manifest.preset:
        raise RunDirError(f"{run_dir}: the manifest names no preset; not a paw_ray run")
    cfg = C.preset(manifest.preset)
    full = storage.join(run_dir, CONFIG_FILE)
    try:
        if storage.exists(full):
            cfg = C.from_dict(storage.read_json(full), base=cfg)
        for stage in STAGES:
            rec = manifest.stages.get(stage)
            if rec is not None and rec.config:
                cfg = C.from_dict(rec.config, base=cfg)
    except (C.ConfigError, ValueError) as e:
        raise RunDirError(f"{run_dir}: cannot rebuild the run's config ({e})") from None
    return cfg


def open_run(run_dir: str) -> TrainedRun:
    """Open a run directory written by ``paw-ray train``."""
    where = storage.join(run_dir, MANIFEST_FILE)
    if not storage.exists(where):
        raise RunDirError(f"{run_dir}: no {MANIFEST_FILE} — not a run directory "
                          "(train one with `paw-ray train --run-dir DIR`)")
    manifest = Manifest.load_or_create(run_dir)
    recorded = storage.read_json(where).get("run_dir", "") or ""
    return TrainedRun(run_dir=run_dir, manifest=manifest, cfg=run_config(run_dir, manifest),
                      recorded_run_dir=recorded)
