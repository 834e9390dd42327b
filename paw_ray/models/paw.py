"""PaW: the parts-and-whole network (§3.4, Fig. 2): the whole-image subnet g_0, 40 part
subnets g_1..g_40, the region switch layer (RSL) and the attribute relation layer (ARL).

Each subnet predicts all 40 attribute scores, s_{i,j} (subnet i, attribute j). Then
``r_j = sum_{i=0..40} W_ij s_ij + b_j`` (RSL, Eq. 5: output j sees only attribute j's 41
scores) and ``y = A r + c`` (ARL, a 40x40 fully connected layer). Loss: sigmoid
cross-entropy on y (``paw_loss``).

Parameters at the paper preset (SNet3 subnets, N=32): 41 x 265,400 + RSL 1,680 + ARL 1,640
= 10,884,720 (paper: about 11M, -1.0%).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn
from torch.nn import functional as F

from paw_ray.attributes import NUM_ATTRIBUTES
from paw_ray.models.blocks import (
    ConvBNReLU,
    GroupedAttributeHead,
    GroupedBatchNorm2d,
    init_weights,
    layout_out_channels,
    make_layers,
)
from paw_ray.models.students import SNet, _check_kind
from paw_ray.models.windows import crop_windows, part_windows

__all__ = ["CPU_PARTS_PER_BLOCK", "PartSubnets", "RegionSwitch", "AttributeRelation", "PaWOutput", "PaW", "paw_loss", "rsl_whole_part"]

# On CPU the grouped layers run over blocks of this many parts (see PartSubnets).
CPU_PARTS_PER_BLOCK = 4


class PartSubnets(nn.Module):
    """The 40 part subnets g_1..g_40 as one vectorised module.

    Same layers as ``SNet(kind, width, N)``, each built ``num_parts`` times side by side:
    convolutions with ``groups=num_parts`` over the parts' crops stacked on the channel
    axis, BatchNorm per channel (exactly per-part statistics), a stacked grouped head.
    State-dict keys equal a standalone ``SNet``'s, with every tensor stacked part-major
    on dim 0; ``part_state_dict(i)`` / ``load_part_state_dict(i, sd)`` convert exactly.

    Execution: on a GPU the parts run as one grouped pass. On CPU, grouped convolutions are
    slower per FLOP than plain ones and a 40-part activation falls out of cache, so the CPU
    path runs channels-last over blocks of ``CPU_PARTS_PER_BLOCK`` parts (10 grouped passes;
    each stacked tensor ``split`` once). ``parts_per_block`` overrides the choice (None = by
    device). ``benchmarks/bench_models.py`` compares both with a loop over 40 ``SNet``s.
    """

    def __init__(self, num_parts: int = 40, kind: str = "snet3", width: float = 1.0,
                 maps_per_attribute: int = 32, num_attributes: int = 40, parts_per_block: int | None = None) -> None:
        super().__init__()
        self.parts_per_block = parts_per_block
        layout = _check_kind(kind)
        g = num_parts
        self.num_parts = num_parts
        self.kind = kind
        self.width = width
        self.num_attributes = num_attributes
        self.maps_per_attribute = maps_per_attribute
        self.features = make_layers(layout, 3, width, groups=g)
        c = layout_out_channels(layout, 3, width)
        self.maps = ConvBNReLU(c * g, g * num_attributes * maps_per_attribute, 1, groups=g)
        self.head = GroupedAttributeHead(num_attributes, maps_per_attribute, num_stacks=g)
        init_weights(self)
        with torch.device("meta"):
            ref = SNet(kind, width, maps_per_attribute, num_attributes)
        self._part_shapes = {k: v.shape for k, v in ref.state_dict().items()}

    @classmethod
    def from_config(cls, cfg) -> "PartSubnets":
        return cls(40, cfg.student, cfg.student_width, cfg.frl.maps_per_attribute)

    def forward(self, crops: torch.Tensor) -> torch.Tensor:
        """(B, P, C, p, p) crops, part i from window i -> (B, P, 40) scores s_{i,j}."""
        x = crops.flatten(1, 2)
        block = self.parts_per_block
        if block is None:
            block = self.num_parts if x.is_cuda else CPU_PARTS_PER_BLOCK
        if x.device.type == "cpu":
            x = x.contiguous(memory_format=torch.channels_last)
        if block >= self.num_parts:
            return self.head(self.maps(self.features(x)))
        return self._forward_blocks(x, block)

    def _forward_blocks(self, x: torch.Tensor, block: int) -> torch.Tensor:
        """The same layers run over blocks of ``block`` parts, with the stacked weights
        ``split`` per block (one split per tensor: its backward is a single concatenation)."""
        sizes = [min(block, self.num_parts - lo) for lo in range(0, self.num_parts, block)]
        layers = []  # per layer: None (max-pool) or (conv, bn, per block (weight, bn weight, bn bias, mean, var))
        for m in (*self.features, self.maps):
            if isinstance(m, nn.MaxPool2d):
                layers.append(None)
                continue
            conv, bn = m[0], m[1]
            split = [g * (conv.out_channels // self.num_parts) for g in sizes]
            layers.append((conv, bn, list(zip(conv.weight.split(split), bn.weight.split(split), bn.bias.split(split),
                                              bn.running_mean.split(split), bn.running_var.split(split)))))
        head_w, head_b = self.head.weight.split(sizes), self.head.bias.split(sizes)
        scores = []
        for i, h in enumerate(x.split([g * (x.shape[1] // self.num_parts) for g in sizes], dim=1)):
            for layer in layers:
                if layer is None:
                    h = F.max_pool2d(h, 2, 2)
                    continue
                conv, bn, params = layer
                w, bw, bb, mean, var = params[i]
                h = F.conv2d(h, w, None, conv.stride, conv.padding, conv.dilation, sizes[i])
                h = F.relu(F.batch_norm(h, mean, var, bw, bb, bn.training, bn.momentum, bn.eps), inplace=True)
            pooled = h.mean(dim=(2, 3)).unflatten(1, (sizes[i], self.num_attributes, self.maps_per_attribute))
            scores.append((pooled * head_w[i]).sum(-1) + head_b[i])
        for m in self.modules():  # F.batch_norm does not count batches: count once for all parts
            if isinstance(m, GroupedBatchNorm2d) and m.training:
                m.num_batches_tracked.add_(1)
        return torch.cat(scores, dim=1)

    def _part_view(self, tensor: torch.Tensor, key: str, i: int) -> torch.Tensor:
        return tensor.unflatten(0, (self.num_parts, -1))[i].reshape(self._part_shapes[key])

    def part_state_dict(self, i: int) -> dict[str, torch.Tensor]:
        """Part subnet i's weights and buffers with the keys and shapes of ``SNet.state_dict()``
        (fresh copies, so saving one does not save the whole stack)."""
        self._check_part(i)
        return {k: self._part_view(v, k, i).detach().clone() for k, v in self.state_dict().items()}

    @torch.no_grad()
    def load_part_state_dict(self, i: int, state_dict: dict[str, torch.Tensor]) -> None:
        """Load a standalone ``SNet`` state_dict (same kind, width, N) into part subnet i."""
        self._check_part(i)
        own = self.state_dict()
        missing, unexpected = sorted(set(own) - set(state_dict)), sorted(set(state_dict) - set(own))
        if missing or unexpected:
            raise KeyError(f"part {i}: state_dict does not match {self.kind}: missing {missing}, unexpected {unexpected}")
        for k, v in own.items():
            src = state_dict[k]
            if src.shape != self._part_shapes[k]:
                raise ValueError(f"part {i}: {k} has shape {tuple(src.shape)}, expected {tuple(self._part_shapes[k])}")
            dst = v.unflatten(0, (self.num_parts, -1))[i]  # a view into the stacked tensor
            dst.copy_(src.reshape(dst.shape))

    def _check_part(self, i: int) -> None:
        if not 0 <= i < self.num_parts:
            raise IndexError(f"part index {i} out of range 0..{self.num_parts - 1}")


class RegionSwitch(nn.Module):
    """RSL (Eq. 5): ``r_j = sum_i W_ij s_ij + b_j``, W of shape (subnets, attributes).

    Grouped: output j depends only on attribute j's scores. Init: the whole subnet (row 0)
    and part subnet j (row j+1) at 0.5 each, every other weight 0, zero bias — at start
    r_j is the mean of the whole-image score and the score of attribute j's own part.
    """

    def __init__(self, num_subnets: int = 41, num_attributes: int = 40) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(num_subnets, num_attributes))
        self.bias = nn.Parameter(torch.zeros(num_attributes))
        with torch.no_grad():
            self.weight[0] = 0.5
            n = min(num_subnets - 1, num_attributes)
            self.weight[1 + torch.arange(n), torch.arange(n)] = 0.5

    def forward(self, scores: torch.Tensor) -> torch.Tensor:
        """(B, 41, 40) scores -> (B, 40)."""
        return (scores * self.weight).sum(1) + self.bias


class AttributeRelation(nn.Linear):
    """ARL: a 40x40 fully connected layer on r, initialised to the identity with zero bias,
    so that training starts from the RSL's output and learns the attribute relations."""

    def __init__(self, num_attributes: int = 40) -> None:
        super().__init__(num_attributes, num_attributes)
        with torch.no_grad():
            self.weight.copy_(torch.eye(num_attributes))
            self.bias.zero_()


class PaWOutput(NamedTuple):
    logits: torch.Tensor  # (B, 40) after the ARL
    rsl: torch.Tensor  # (B, 40) RSL output r
    scores: torch.Tensor  # (B, 41, 40) s_{i,j}; row 0 the whole-image subnet g_0


class PaW(nn.Module):
    """Whole subnet g_0 + part subnets + RSL + ARL. Part crops are cut inside the model
    from the images and the 40 part centres (``part_windows`` + ``crop_windows``)."""

    def __init__(self, whole: SNet, parts: PartSubnets, image_size: int, part_size: int) -> None:
        super().__init__()
        self.whole = whole
        self.parts = parts
        self.image_size = int(image_size)
        self.part_size = int(part_size)
        self.rsl = RegionSwitch(parts.num_parts + 1, parts.num_attributes)
        self.arl = AttributeRelation(parts.num_attributes)
        self.subnets_frozen = False

    @classmethod
    def from_config(cls, cfg) -> "PaW":
        return cls(SNet.from_config(cfg), PartSubnets.from_config(cfg), cfg.data.image_size, cfg.data.part_size)

    def forward(self, images: torch.Tensor, centres: torch.Tensor) -> PaWOutput:
        """(B, C, S, S) images with S = image_size, (B, 40, 2) part centres in [0, 1]."""
        if images.shape[-2:] != (self.image_size, self.image_size):
            raise ValueError(f"PaW expects {self.image_size}x{self.image_size} images, got {tuple(images.shape)}")
        corners = part_windows(centres, self.image_size, self.part_size)
        crops = crop_windows(images, corners, self.part_size)
        scores = torch.cat((self.whole(images).logits.unsqueeze(1), self.parts(crops)), dim=1)
        r = self.rsl(scores)
        return PaWOutput(self.arl(r), r, scores)

    def freeze_subnets(self) -> "PaW":
        """Fusion stage: the 41 subnets are fixed (no gradients, BatchNorm in eval mode
        even under ``train()``); only RSL and ARL train."""
        self.subnets_frozen = True
        for m in (self.whole, self.parts):
            m.requires_grad_(False)
        return self.train(self.training)

    def unfreeze_subnets(self) -> "PaW":
        """End-to-end fine-tuning: every parameter trains again."""
        self.subnets_frozen = False
        for m in (self.whole, self.parts):
            m.requires_grad_(True)
        return self.train(self.training)

    def train(self, mode: bool = True) -> "PaW":
        super().train(mode)
        if self.subnets_frozen:
            self.whole.eval()
            self.parts.eval()
        return self


def paw_loss(out: PaWOutput, labels: torch.Tensor) -> torch.Tensor:
    """Sigmoid cross-entropy on the PaW output."""
    return F.binary_cross_entropy_with_logits(out.logits, labels.to(out.logits.dtype))


def rsl_whole_part(rsl_weight) -> tuple:
    """Fig. 5's two series from the (41, 40) RSL weight: per attribute j, W[0, j] (the whole
    subnet g_0) and W[j+1, j] (its own part subnet g_j)."""
    w = torch.as_tensor(rsl_weight)
    j = torch.arange(NUM_ATTRIBUTES)
    return w[0, :NUM_ATTRIBUTES].numpy(), w[1 + j, j].numpy()
