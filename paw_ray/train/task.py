"""The contract between a Ray Train stage and the epoch loop that trains it.

A stage's module builds a ``TrainTask`` on each worker with ``build_task(stage, cfg,
inputs, device, label_prior)`` (``inputs``: input stage -> its artifact's location;
``label_prior``: the training split's positive rate per attribute, from which networks
trained from scratch start their scores). The loop (``train.loop``) does the rest the same
way for every stage.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import nn

__all__ = ["TrainTask"]


@dataclass
class TrainTask:
    """What a stage plugs into the loop: the model (its parameters that require grad are
    trained), the loss, and the artifact the stage leaves."""

    model: nn.Module
    # (model, batch) -> (loss, logits for accuracy (B, 40))
    loss: Callable[[nn.Module, dict[str, Any]], tuple[torch.Tensor, torch.Tensor]]
    # the stage's artifact from the trained (unwrapped) model (default: its state dict)
    artifact: Callable[[nn.Module], dict[str, Any]] | None = None
