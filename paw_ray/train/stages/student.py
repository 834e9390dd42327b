"""Stages 2a/2b, ``hint`` and ``whole``: the whole-image subnet g_0 compressed from the FRL.

Hint-based training (paper §3.3): L = lambda1 * L_hint + lambda2 * L_attr, with
L_hint = ||T_k(I) - S_l(I, w)||_2 between the frozen FRL's last conv maps and the
student's 40N maps. Stage ``hint`` (lambda1=1, lambda2=0) starts from scratch; stage
``whole`` (lambda1=0, lambda2=1) continues from the hint stage's weights. The teacher
is only loaded (and run) when lambda1 > 0.
"""

from __future__ import annotations

import torch

from paw_ray.models.hint import HintObjective
from paw_ray.models.students import SNet
from paw_ray.train.checkpoints import load_state
from paw_ray.train.task import TrainTask
from paw_ray.train.stages.frl import load_frl


def build_task(stage: str, cfg, inputs: dict[str, str], device, label_prior) -> TrainTask:
    """``hint``: g_0 from scratch against the frozen FRL; ``whole``: g_0 from the hint stage's weights."""
    scfg = getattr(cfg, stage)
    student = SNet.from_config(cfg)
    if stage == "whole":
        student.load_state_dict(load_state(inputs["hint"]))
    else:
        student.head.init_bias_from_prior(label_prior)
    objective = HintObjective(scfg.lambda1, scfg.lambda2)
    teacher = None
    if scfg.lambda1 > 0:
        teacher = load_frl(cfg, inputs["frl"]).to(device).eval().requires_grad_(False)

    def loss(model, batch):
        out = model(batch["image"])
        teacher_maps = None
        if teacher is not None:
            with torch.no_grad():
                teacher_maps = teacher(batch["image"]).maps
        return objective(out.maps, teacher_maps, out.logits, batch["labels"]), out.logits

    return TrainTask(model=student.to(device), loss=loss)
