"""Stage 1, ``frl``: the face region localization network with multi-net learning.

Both branches — the localization branch (grouped per-attribute scores over the class
activation maps) and the MNL classification branch (FC layers on the 5th conv module)
— are trained jointly with the same sigmoid cross-entropy (``frl_loss``); the artifact
keeps only the localization branch (paper §3.2: the classification branch is removed).
"""

from __future__ import annotations

from paw_ray.models.blocks import init_bias_from_prior
from paw_ray.models.frl import FRL, frl_loss
from paw_ray.train.checkpoints import load_state
from paw_ray.train.task import TrainTask


def load_frl(cfg, location: str) -> FRL:
    """The trained localization network (no MNL branch) of a run."""
    model = FRL.from_config(cfg).drop_mnl()
    model.load_state_dict(load_state(location))
    return model


def _loss(model, batch):
    out = model(batch["image"])
    return frl_loss(out, batch["labels"]), out.logits


def build_task(stage: str, cfg, inputs: dict[str, str], device, label_prior) -> TrainTask:
    """The FRL from scratch, its scores (both branches) starting at the label prior's log-odds."""
    model = FRL.from_config(cfg)
    model.head.init_bias_from_prior(label_prior)
    if model.mnl is not None:
        init_bias_from_prior(model.mnl[-1].bias, label_prior)
    return TrainTask(model=model.to(device), loss=_loss, artifact=lambda m: m.drop_mnl().state_dict())
