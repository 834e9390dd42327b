"""Stages 4 and 5, ``fusion`` and ``finetune``: the parts-and-whole (PaW) network.

``fusion``: g_0 (from ``whole``) and the 40 part subnets (from ``parts``) are loaded
and frozen — their BatchNorm statistics too (``PaW.freeze_subnets``) — and only the
region switch layer and the attribute relation layer train (paper: lr 0.1).
``finetune``: the whole PaW network trains end to end from the fused weights (paper:
lr 1e-3). The 40 crops are cut inside the model from each image and its 40 part
centres.
"""

from __future__ import annotations

from paw_ray.models.paw import PaW, paw_loss
from paw_ray.train.checkpoints import load_state
from paw_ray.train.task import TrainTask


def _loss(model, batch):
    out = model(batch["image"], batch["centres"])
    return paw_loss(out, batch["labels"]), out.logits


def build_task(stage: str, cfg, inputs: dict[str, str], device, label_prior=None) -> TrainTask:
    """PaW from trained weights (so ``label_prior`` is not used): ``fusion`` loads and freezes
    the subnets, ``finetune`` continues from the fused network."""
    model = PaW.from_config(cfg)
    if stage == "fusion":
        model.whole.load_state_dict(load_state(inputs["whole"]))
        model.parts.load_state_dict(load_state(inputs["parts"]))
        model.freeze_subnets()
    else:
        model.load_state_dict(load_state(inputs["fusion"]))
    return TrainTask(model=model.to(device), loss=_loss)
