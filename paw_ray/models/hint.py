"""Hint-based knowledge distillation (FitNets; the paper's §3.3, Eq. 3-4).

``L_hint = ||T_k(I) - S_l(I, w)||_2`` between the frozen teacher's last conv maps T_k and
the student's maps S_l, in Caffe's ``EuclideanLoss`` scale: ``1/(2B) * sum ||t - s||^2``,
i.e. half the squared difference summed over (C, H, W), averaged over the batch. Summed,
not averaged, over 1280x14x14 values, this loss is large, which is why the paper's hint
learning rate is 1e-7.

Training objective: ``lambda1 * L_hint + lambda2 * L_attr`` with ``L_attr`` the sigmoid
cross-entropy of the student's attribute scores; the paper first trains with
(lambda1, lambda2) = (1, 0), then (0, 1).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["hint_loss", "HintTerms", "HintObjective"]


def hint_loss(student_maps: torch.Tensor, teacher_maps: torch.Tensor) -> torch.Tensor:
    """``0.5 * sum_{C,H,W} (s - t)^2``, mean over the batch (Caffe EuclideanLoss)."""
    if student_maps.shape != teacher_maps.shape:
        raise ValueError(f"hint: student maps {tuple(student_maps.shape)} and teacher maps "
                         f"{tuple(teacher_maps.shape)} differ in shape")
    diff = (student_maps - teacher_maps).flatten(1)
    return 0.5 * diff.pow(2).sum(1).mean()


class HintTerms(NamedTuple):
    loss: torch.Tensor  # lambda1 * hint + lambda2 * attr
    hint: torch.Tensor
    attr: torch.Tensor


class HintObjective(nn.Module):
    """``loss = lambda1 * hint_loss(S, T) + lambda2 * BCE(logits, labels)`` (§3.3).

    ``objective(student_maps, teacher_maps, logits, labels) -> loss``;
    ``objective.terms(...)`` gives the two terms too, for logging. The teacher's maps are
    detached: the teacher is frozen; they may be ``None`` when ``lambda1 == 0`` (stage b).
    """

    def __init__(self, lambda1: float = 1.0, lambda2: float = 0.0) -> None:
        super().__init__()
        self.lambda1 = float(lambda1)
        self.lambda2 = float(lambda2)

    def terms(self, student_maps: torch.Tensor, teacher_maps: torch.Tensor | None, logits: torch.Tensor,
              labels: torch.Tensor) -> HintTerms:
        if teacher_maps is None:
            if self.lambda1 != 0:
                raise ValueError("HintObjective: teacher_maps is None but lambda1 != 0")
            hint = student_maps.new_zeros(())
        else:
            teacher_maps = teacher_maps.detach()
            if teacher_maps.shape[-2:] != student_maps.shape[-2:]:
                # an FRL with fewer pools (``frl.pools``) has a finer grid than the student:
                # the hint is its maps averaged over the student's cells
                teacher_maps = F.adaptive_avg_pool2d(teacher_maps, student_maps.shape[-2:])
            hint = hint_loss(student_maps, teacher_maps)
        attr = F.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype))
        return HintTerms(self.lambda1 * hint + self.lambda2 * attr, hint, attr)

    def forward(self, student_maps: torch.Tensor, teacher_maps: torch.Tensor | None, logits: torch.Tensor,
                labels: torch.Tensor) -> torch.Tensor:
        return self.terms(student_maps, teacher_maps, logits, labels).loss

    def extra_repr(self) -> str:
        return f"lambda1={self.lambda1}, lambda2={self.lambda2}"
