"""A run directory as ``paw-ray train`` leaves it, with untrained weights and no training:
what predict, export and the run loader open, made in a second (for tests of their inputs)."""

from __future__ import annotations

import os

from paw_ray import config as C
from paw_ray import storage
from paw_ray.models.frl import FRL
from paw_ray.models.paw import PaW
from paw_ray.train.run import CONFIG_FILE
from paw_ray.train.checkpoints import save_state
from paw_ray.train.manifest import Manifest


def make_run(run_dir: str, preset: str = "smoke") -> str:
    """Write ``run_dir`` with a manifest, config.json and the two artifacts the cascade loads
    (the FRL's and the fine-tuned PaW's), both at their random initialisation."""
    cfg = C.preset(preset)
    manifest = Manifest(run_dir=run_dir, preset=preset, data="(none: made by tests/fake_run.py)")
    for stage, model in (("frl", FRL.from_config(cfg).drop_mnl()), ("finetune", PaW.from_config(cfg))):
        location = artifact(run_dir, stage)
        save_state(location, model.state_dict())
        manifest.start(stage, f"fake-{stage}", {})
        manifest.complete(stage, location, {})
    storage.write_json_atomic(os.path.join(run_dir, CONFIG_FILE), C.to_dict(cfg))
    return run_dir


def artifact(run_dir: str, stage: str) -> str:
    return os.path.join(run_dir, "stages", stage, "model.pt")
