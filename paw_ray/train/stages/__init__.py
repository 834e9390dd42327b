"""The pipeline's stages (docs/architecture.md, "Stages"): each a function of (config, run directory).

Ray Train stages (``frl``, ``hint``, ``whole``, ``fusion``, ``finetune``) provide a
``TrainTask`` for the shared epoch loop through ``build_task``; ``localize`` is a Ray
Data actor-pool pass, ``parts`` a fan-out of 40 Ray tasks, ``evaluate`` a Ray Data
pass that writes the results tables.
"""

from __future__ import annotations

from typing import Any

__all__ = ["build_task", "TRAIN_STAGES"]

TRAIN_STAGES = ("frl", "hint", "whole", "fusion", "finetune")


def build_task(stage: str, cfg, inputs: dict[str, str], device, label_prior: list[float]) -> Any:
    """The ``TrainTask`` of a Ray Train stage, built on a worker. ``label_prior`` is the
    training split's positive rate per attribute: networks trained from scratch start
    their scores at its log-odds."""
    if stage == "frl":
        from paw_ray.train.stages.frl import build_frl_task

        return build_frl_task(cfg, device, label_prior)
    if stage in ("hint", "whole"):
        from paw_ray.train.stages.student import build_student_task

        return build_student_task(stage, cfg, inputs, device, label_prior)
    if stage in ("fusion", "finetune"):
        from paw_ray.train.stages.paw import build_paw_task

        return build_paw_task(stage, cfg, inputs, device)
    raise ValueError(f"{stage!r} is not a Ray Train stage; those are {TRAIN_STAGES}")
