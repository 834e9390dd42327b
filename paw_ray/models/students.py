"""The student networks SNet1, SNet2, SNet3 of Table 3 (hint-based compression, §3.3).

Every student ends like the FRL teacher: a conv layer of ``40 * N`` maps (1x1), global
average pooling and the grouped per-attribute head, so that with four 2x2 pools its maps
have exactly the teacher's shape at the same input size (14x14x1280 at 224, N=32) and the
hint loss compares them directly. Convs are conv-BN-ReLU (see ``blocks``); ``width``
scales the conv channels (rounded, at least 8), never the ``40 * N`` map layer.

Layouts (3x3 convs, ``M`` = 2x2 max-pool) and parameters at width 1, N=32:

* ``snet3`` (Table 3): ``16 M 32 M 64 M 128 M``, 1x1x1280 — 265,400 (paper: 0.27M, -1.7%).
* ``snet2`` (ours; Table 3's rows are not reproduced in the paper's text): two convs per
  module at twice SNet3's width and one more conv at the 1/16 scale,
  ``32 32 M 64 64 M 128 128 M 256 256 M 256``, 1x1x1280 — 2,095,112 (paper: 2M, +4.8%).
* ``snet1`` (ours): TNet's first four modules, then two 512 convs at the 1/16 scale
  (TNet's fifth module less one conv), ``32 32 M 64 64 M 128 128 128 M 256 256 256 M 512 512``,
  1x1x1280 — 6,111,496 (paper: 6M, +1.9%).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from paw_ray.models.blocks import ConvBNReLU, GroupedAttributeHead, init_weights, layout_out_channels, make_layers

__all__ = ["STUDENT_LAYOUTS", "StudentOutput", "SNet"]

STUDENT_LAYOUTS = {
    "snet1": (32, 32, "M", 64, 64, "M", 128, 128, 128, "M", 256, 256, 256, "M", 512, 512),
    "snet2": (32, 32, "M", 64, 64, "M", 128, 128, "M", 256, 256, "M", 256),
    "snet3": (16, "M", 32, "M", 64, "M", 128, "M"),
}


class StudentOutput(NamedTuple):
    logits: torch.Tensor  # (B, 40)
    maps: torch.Tensor  # (B, 40N, h, w): the hinted layer S_l


def _check_kind(kind: str) -> tuple:
    try:
        return STUDENT_LAYOUTS[kind]
    except KeyError:
        raise ValueError(f"unknown student {kind!r}; choose one of {sorted(STUDENT_LAYOUTS)}") from None


class SNet(nn.Module):
    """A student of Table 3: conv stack, 1x1 conv of ``40 * N`` maps, GAP, grouped head."""

    def __init__(self, kind: str = "snet3", width: float = 1.0, maps_per_attribute: int = 32,
                 num_attributes: int = 40) -> None:
        super().__init__()
        layout = _check_kind(kind)
        self.kind = kind
        self.num_attributes = num_attributes
        self.maps_per_attribute = maps_per_attribute
        self.features = make_layers(layout, 3, width)
        self.maps = ConvBNReLU(layout_out_channels(layout, 3, width), num_attributes * maps_per_attribute, 1)
        self.head = GroupedAttributeHead(num_attributes, maps_per_attribute)
        init_weights(self)

    @classmethod
    def from_config(cls, cfg) -> "SNet":
        """The configured student (g_0 and each part subnet): ``cfg.student`` at
        ``cfg.student_width`` with the teacher's N (``cfg.frl.maps_per_attribute``)."""
        return cls(cfg.student, cfg.student_width, cfg.frl.maps_per_attribute)

    def forward(self, x: torch.Tensor) -> StudentOutput:
        maps = self.maps(self.features(x))
        return StudentOutput(self.head(maps), maps)

    def heatmaps(self, x: torch.Tensor) -> torch.Tensor:
        """Class activation maps (B, 40, h, w), as for the FRL."""
        return self.head.cam(self.maps(self.features(x)))
