"""The face region localization (FRL) network: the teacher "TNet" of Table 3, with the
multi-net-learning (MNL) classification branch of §3.2.

Layout (channels x ``width``, rounded, at least 8; every conv is 3x3 conv-BN-ReLU, see
``blocks``)::

    32 32 M | 64 64 M | 128 128 128 M | 256 256 256 M | 512 512 512     (5 conv modules)
    3x3 conv of 40*N maps + BN + ReLU        ("domain adapted" 1280 maps at N=32; not width-scaled)
    GAP + grouped head: attribute j scored from its own N maps          (localization branch)

Feature maps are ``input_size / 16`` on a side (14x14 at 224). The heatmap of attribute j
is its class activation map ``H_j = sum_i w_{j,i} F_{j,i}`` (``heatmaps``). ``pools`` < 4
drops the last 2x2 pools, for small inputs: at 96 px four pools leave a 6x6 grid of 16 px
cells, too coarse to find a mouth or a nose; three pools keep 12x12, the paper's grid
density (14x14). The paper's network is ``pools=4``.

MNL branch (§3.2: "two fully connected layers" on the 5th conv module's output; the paper
gives no sizes): ``AdaptiveAvgPool2d(3) - FC(mnl_hidden) - ReLU - FC(40)``. A 3x3 pool keeps
coarse layout (top/middle/bottom of the face) that a global pool would lose, at a sane
size: 512*9*1024 + 1024*41 + 40 = 4.76M parameters at ``width=1, mnl_hidden=1024``.

Parameter count vs the paper's 19M (Table 3), at width 1, N=32:
  conv modules 1-5: 7.81M, the 1280-map 3x3 conv: 5.90M, BatchNorm: 8.3K, head: 1.3K
  -> localization network (what is kept after training) 13,714,696, 28% below 19M;
  with the MNL branch above, 18,475,312, 2.8% below 19M.
Table 3's conv layers come to 13.7M however they are counted, so the other ~5M of the
paper's 19M are most likely its fully connected classification (MNL) branch, whose sizes
the paper does not give; our 3x3-pool branch (4.76M) lands close to that total.
"""

from __future__ import annotations

from typing import NamedTuple, Optional

import torch
from torch import nn

from paw_ray.models.blocks import ConvBNReLU, GroupedAttributeHead, init_weights, layout_out_channels, make_layers

__all__ = ["TNET_LAYOUT", "FRLOutput", "MNLBranch", "FRL", "frl_loss", "tnet_layout"]

TNET_LAYOUT = (32, 32, "M", 64, 64, "M", 128, 128, 128, "M", 256, 256, 256, "M", 512, 512, 512)


def tnet_layout(pools: int = 4) -> tuple:
    """TNet's layout keeping only its first ``pools`` 2x2 max-pools (1..4)."""
    if not 1 <= pools <= 4:
        raise ValueError(f"TNet has 1 to 4 pools, not {pools}")
    kept, out = 0, []
    for item in TNET_LAYOUT:
        if item == "M":
            kept += 1
            if kept > pools:
                continue
        out.append(item)
    return tuple(out)


class FRLOutput(NamedTuple):
    logits: torch.Tensor  # (B, 40) localization branch
    mnl_logits: Optional[torch.Tensor]  # (B, 40) classification branch, None without MNL
    maps: torch.Tensor  # (B, 40N, h, w) last conv maps: the hint teacher T_k


class MNLBranch(nn.Sequential):
    """The classification branch of multi-net learning: 3x3 average pool, FC-ReLU-FC."""

    def __init__(self, in_channels: int, hidden: int = 1024, num_attributes: int = 40, pool: int = 3) -> None:
        super().__init__(
            nn.AdaptiveAvgPool2d(pool),
            nn.Flatten(1),
            nn.Linear(in_channels * pool * pool, hidden),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, num_attributes),
        )


class FRL(nn.Module):
    """TNet (Table 3) with the grouped CAM head and, if ``mnl``, the MNL branch."""

    def __init__(
        self,
        width: float = 1.0,
        maps_per_attribute: int = 32,
        mnl: bool = True,
        mnl_hidden: int = 1024,
        num_attributes: int = 40,
        input_size: int = 224,
        pools: int = 4,
    ) -> None:
        super().__init__()
        self.input_size = input_size
        self.pools = pools
        self.num_attributes = num_attributes
        self.maps_per_attribute = maps_per_attribute
        layout = tnet_layout(pools)
        self.features = make_layers(layout, 3, width)
        c5 = layout_out_channels(layout, 3, width)
        self.maps = ConvBNReLU(c5, num_attributes * maps_per_attribute, 3)
        self.head = GroupedAttributeHead(num_attributes, maps_per_attribute)
        self.mnl = MNLBranch(c5, mnl_hidden, num_attributes) if mnl else None
        init_weights(self)

    @classmethod
    def from_config(cls, cfg) -> "FRL":
        f = cfg.frl
        return cls(width=f.width, maps_per_attribute=f.maps_per_attribute, mnl=f.mnl,
                   mnl_hidden=f.mnl_hidden, input_size=cfg.data.image_size, pools=f.pools)

    @property
    def has_mnl(self) -> bool:
        return self.mnl is not None

    @property
    def feature_size(self) -> int:
        """Side of the last conv maps at ``input_size``."""
        return self.input_size // 2**self.pools

    def forward(self, x: torch.Tensor) -> FRLOutput:
        c5 = self.features(x)
        maps = self.maps(c5)
        mnl_logits = self.mnl(c5) if self.mnl is not None else None
        return FRLOutput(self.head(maps), mnl_logits, maps)

    def heatmaps(self, x: torch.Tensor) -> torch.Tensor:
        """Class activation maps of all attributes, (B, 40, h, w); skips the MNL branch."""
        return self.head.cam(self.maps(self.features(x)))

    def drop_mnl(self) -> "FRL":
        """Remove the classification branch (after training only the localization branch
        is kept); the state_dict then has no ``mnl.*`` keys."""
        self.mnl = None
        return self


def frl_loss(out: FRLOutput, labels: torch.Tensor) -> torch.Tensor:
    """FRL training loss: sigmoid cross-entropy on the localization branch plus, with MNL,
    the same loss on the classification branch (the two nets learn jointly, §3.2)."""
    labels = labels.to(out.logits.dtype)
    loss = nn.functional.binary_cross_entropy_with_logits(out.logits, labels)
    if out.mnl_logits is not None:
        loss = loss + nn.functional.binary_cross_entropy_with_logits(out.mnl_logits, labels)
    return loss
