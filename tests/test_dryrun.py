"""A dry run at full size: the ``paper`` preset (224x224 inputs, TNet FRL with MNL, SNet3
subnets, 64x64 parts, the paper's batch sizes) for at most 2 optimiser steps per stage on a
40-image SynthFaces set, on CPU — every stage, the 40-task part fan-out, checkpoints that
load back into the paper's networks, and each stage's time and peak worker memory."""

from __future__ import annotations

import time

import pytest
import torch

from paw_ray import config as C
from paw_ray import storage
from paw_ray.train.manifest import Manifest
from paw_ray.train.stage_table import STAGES
from paw_ray.train.run import train

pytestmark = pytest.mark.slow

STEPS = 2


def test_paper_preset_dry_run(ray_local, tmp_path):
    from paw_ray.models.paw import PaW
    from paw_ray.train.checkpoints import load_state
    from paw_ray.train.stages.frl import load_frl

    cfg = C.apply_overrides(C.preset("paper"), [f"max_steps={STEPS}", "data.synth_n=40"])
    assert cfg.data.image_size == 224 and cfg.data.part_size == 64 and cfg.parts.num_cpus == 1.0
    run_dir = str(tmp_path / "paper-dry-run")
    t0 = time.time()
    out = train(cfg, run_dir, log=lambda s: None)
    wall = time.time() - t0

    manifest = Manifest.load_or_create(run_dir)
    assert list(manifest.stages) == list(STAGES)
    rows = []
    for stage, rec in manifest.stages.items():
        assert rec.status == "complete" and storage.exists(rec.artifact), stage
        m = rec.metrics
        if "train_steps" in m:  # Ray Train stages: one epoch of at most STEPS steps
            assert 1 <= m["train_steps"] <= STEPS and len(m["history"]) == 1, stage
        rows.append(f"{stage:<9} {rec.wall_time_s:7.1f}s  peak RSS {m.get('peak_rss_mb', '-')} MiB")
    parts = manifest.stages["parts"].metrics
    assert parts["parts_trained"] == 40
    for p in range(40):
        history = parts["history"][str(p)]  # JSON keys
        assert len(history) == 1 and 1 <= history[0]["train_steps"] <= STEPS, p
    assert manifest.stages["localize"].metrics["images"] == 40
    assert out["results"]["n_test"] == 4

    # the artifacts are the paper's networks: they load back at full size
    frl = load_frl(cfg, manifest.stages["frl"].artifact)
    maps = frl(torch.zeros(1, 3, 224, 224)).maps
    assert tuple(maps.shape) == (1, 40 * 32, 14, 14)
    paw = PaW.from_config(cfg)
    paw.load_state_dict(load_state(manifest.stages["finetune"].artifact))
    assert sum(p.numel() for p in paw.parameters()) > 10_000_000  # about 11M in the paper
    print(f"\n[dry run] paper preset, {STEPS} steps/stage, 40 images: {wall:.0f}s\n  " + "\n  ".join(rows))
