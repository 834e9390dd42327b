"""Building blocks shared by every network: conv-BN-ReLU stacks from a layout spec, and
the grouped per-attribute head of the paper's FRL (§3.1, Fig. 2).

Design decision (all nets): each 3x3 convolution of Table 3 becomes a
Conv3x3(pad 1, no bias) - BatchNorm - ReLU unit. BatchNorm is not in the paper's 2018
Caffe layout; it adds 2 parameters per channel (0.06% of TNet, 1.1% of SNet3, mostly
on its 1280-map layer) and lets these nets train from scratch at a high learning rate on
CPU in the small presets. Convolutions get
Kaiming (He) normal initialisation (fan-out, ReLU), BatchNorm starts at (1, 0).

A layout spec is a list in the style of torchvision's VGG configs: an ``int`` is a 3x3
conv-BN-ReLU with that many output channels (before width scaling), ``"M"`` a 2x2 max-pool.
"""

from __future__ import annotations

import math
from typing import Sequence, Union

import torch
from torch import nn

__all__ = [
    "Layout",
    "scaled_channels",
    "ConvBNReLU",
    "GroupedBatchNorm2d",
    "make_layers",
    "layout_out_channels",
    "GroupedAttributeHead",
    "init_bias_from_prior",
    "init_weights",
]

Layout = Sequence[Union[int, str]]


def scaled_channels(channels: int, width: float) -> int:
    """``channels * width``, rounded, at least 8 (the width multiplier of the small presets)."""
    return max(8, int(round(channels * width)))


class GroupedBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm over ``groups`` stacked networks of ``num_features`` channels each.

    Per-channel statistics make one BatchNorm2d over ``groups * num_features`` channels
    exactly ``groups`` independent BatchNorms; only ``num_batches_tracked`` is kept per
    group (shape ``(groups,)``) so that each stacked network's state round-trips exactly.
    Needs a fixed ``momentum`` (not the cumulative ``None``).
    """

    def __init__(self, groups: int, num_features: int, **kwargs) -> None:
        super().__init__(groups * num_features, **kwargs)
        if self.momentum is None:
            raise ValueError("GroupedBatchNorm2d needs a fixed momentum")
        self.groups = groups
        self.register_buffer("num_batches_tracked", torch.zeros(groups, dtype=torch.long))


class ConvBNReLU(nn.Sequential):
    """Conv(k x k, pad k//2, no bias) - BatchNorm - ReLU; ``groups`` stacks that many nets."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, groups: int = 1) -> None:
        bn = nn.BatchNorm2d(out_channels) if groups == 1 else GroupedBatchNorm2d(groups, out_channels // groups)
        super().__init__(
            nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False, groups=groups),
            bn,
            nn.ReLU(inplace=True),
        )


def layout_out_channels(layout: Layout, in_channels: int, width: float = 1.0) -> int:
    """Channels coming out of ``make_layers(layout, in_channels, width)`` (per group)."""
    out = in_channels
    for item in layout:
        if item != "M":
            out = scaled_channels(int(item), width)
    return out


def make_layers(layout: Layout, in_channels: int, width: float = 1.0, groups: int = 1) -> nn.Sequential:
    """A conv-BN-ReLU / max-pool stack from ``layout``; ``groups`` > 1 builds that many
    independent copies side by side as grouped convolutions (channels stacked by group)."""
    layers: list[nn.Module] = []
    c = in_channels
    for item in layout:
        if item == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            out = scaled_channels(int(item), width)
            layers.append(ConvBNReLU(c * groups, out * groups, 3, groups=groups))
            c = out
    return nn.Sequential(*layers)


def init_bias_from_prior(bias: torch.Tensor, positive_rate) -> None:
    """Set ``bias`` (..., 40) to the log-odds of each attribute's training-set frequency, so
    training begins from the label prior rather than from 50/50 (CelebA's attributes are
    mostly rare)."""
    p = torch.as_tensor(positive_rate, dtype=bias.dtype).clamp(1e-3, 1 - 1e-3)
    with torch.no_grad():
        bias.copy_(torch.log(p / (1 - p)).expand_as(bias))


class GroupedAttributeHead(nn.Module):
    """Global average pooling, then attribute j scored from its own N pooled maps (§3.1).

    The last conv layer has ``num_attributes * N`` maps, branch j being maps
    ``j*N .. j*N+N-1``. Score: ``s_j = sum_i w_{j,i} GAP(F_{j,i}) + b_j`` with ``weight``
    of shape ``(A, N)``, ``bias`` ``(A,)``; the class activation map (CAM, Zhou et al. 2016,
    the paper's heatmap) is ``H_j = sum_i w_{j,i} F_{j,i}`` (no bias).

    ``num_stacks`` = G stacks G independent heads (weight ``(G, A, N)``, bias ``(G, A)``)
    over ``G * A * N`` maps: the heads of the vectorised part subnets.
    """

    def __init__(self, num_attributes: int = 40, maps_per_attribute: int = 32, num_stacks: int | None = None) -> None:
        super().__init__()
        self.num_attributes = num_attributes
        self.maps_per_attribute = maps_per_attribute
        self.num_stacks = num_stacks
        lead = () if num_stacks is None else (num_stacks,)
        self.weight = nn.Parameter(torch.empty(*lead, num_attributes, maps_per_attribute))
        self.bias = nn.Parameter(torch.zeros(*lead, num_attributes))
        # unit-variance scores from unit-scale pooled maps: with the VGG-style N(0, 0.01)
        # the 40 scores barely move for the first few hundred steps
        nn.init.normal_(self.weight, 0.0, maps_per_attribute ** -0.5)

    def init_bias_from_prior(self, positive_rate) -> None:
        """Start every score at its attribute's prior log-odds (``init_bias_from_prior``)."""
        init_bias_from_prior(self.bias, positive_rate)

    @property
    def in_channels(self) -> int:
        return (self.num_stacks or 1) * self.num_attributes * self.maps_per_attribute

    def _branches(self, x: torch.Tensor) -> torch.Tensor:
        """Split channel dim 1 of ``x`` into ``([G,] A, N)``."""
        lead = () if self.num_stacks is None else (self.num_stacks,)
        return x.unflatten(1, (*lead, self.num_attributes, self.maps_per_attribute))

    def forward(self, maps: torch.Tensor) -> torch.Tensor:
        """(B, [G*]A*N, h, w) -> scores (B, [G,] A)."""
        pooled = self._branches(maps.mean(dim=(2, 3)))  # (B, [G,] A, N)
        return (pooled * self.weight).sum(-1) + self.bias

    def cam(self, maps: torch.Tensor) -> torch.Tensor:
        """Class activation maps ``H_j = sum_i w_{j,i} F_{j,i}``: (B, [G*]A*N, h, w) -> (B, [G,] A, h, w)."""
        return torch.einsum("...anhw,...an->...ahw", self._branches(maps), self.weight)


def init_weights(module: nn.Module) -> None:
    """Kaiming normal (fan-out, ReLU) for convs, counting fan-out per group so that a
    grouped stack of G nets is initialised like G single nets; BN (1, 0); Linear
    N(0, 0.01) with zero bias (as torchvision's VGG)."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            fan_out = (m.out_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1]
            nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / fan_out))
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0.0, 0.01)
            nn.init.zeros_(m.bias)
