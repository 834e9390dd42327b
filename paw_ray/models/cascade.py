"""The whole cascade as one module (the paper's Fig. 2): FRL heatmaps -> 40 part centres
-> 40 part windows -> PaW (whole subnet g_0, 40 part subnets, RSL, ARL).

This is the deployable model (``paw-ray predict``, ``jobs/predict.py``, ``paw-ray export``).

Input contract of ``forward``: a batch of RGB face images as **uint8** ``(B, 3, S, S)``,
``S`` = the run's ``data.image_size``, the face box already cut, squared and resized
(``paw_ray.data.facebox``). The ImageNet normalisation the networks were trained with
(``paw_ray.data.batches.model_batch``) happens inside, so callers hand over pixels.

Output of ``forward``: ``(probabilities, boxes)`` — probabilities ``(B, 40)`` float32
(sigmoid of the PaW scores over the per-attribute ``temperature``, 1 unless ``calibrate``
set the fitted one; the decision thresholds are the caller's), boxes ``(B, 40, 4)`` int64
``x, y, w, h`` of attribute j's part window in input pixels (``w = h = data.part_size``).

With ``parts.source = grid`` (the paper's 4x4-grid baseline) the centres are the fixed
grid centres and the FRL is not part of the model.

Everything is traceable (``torch.jit.trace``, ONNX): crops are one ``gather`` from each
image (the training code's ``crop_windows`` uses an ``as_strided`` view that ONNX lacks;
the two cut identical pixels), and the part centres come from one upsampling pass over
the batch (``part_centres`` with a single chunk) when ``one_pass`` is set, as the
exporter does.
"""

from __future__ import annotations

from typing import NamedTuple, Optional

import torch
from torch import nn

from paw_ray.attributes import NUM_ATTRIBUTES
from paw_ray.data.batches import IMAGENET_MEAN, IMAGENET_STD
from paw_ray.models.frl import FRL
from paw_ray.models.windows import grid_centres, part_centres, part_windows
from paw_ray.models.paw import PaW

__all__ = ["Cascade", "CascadeOutput", "gather_windows"]

_ONE_PASS = 1 << 62  # max_chunk_elements that makes part_centres upsample the batch in one pass


class CascadeOutput(NamedTuple):
    probabilities: torch.Tensor  # (B, 40)
    boxes: torch.Tensor  # (B, 40, 4) x, y, w, h in input pixels
    logits: torch.Tensor  # (B, 40) PaW scores after the ARL
    centres: torch.Tensor  # (B, 40, 2) part centres, x, y in [0, 1]
    heatmaps: Optional[torch.Tensor]  # (B, 40, h, w) FRL class activation maps (None for grid parts)


def gather_windows(images: torch.Tensor, corners: torch.Tensor, part_size: int) -> torch.Tensor:
    """(B, C, H, W) images, (B, K, 2) corners (x0, y0) -> (B, K, C, p, p) crops, as
    ``paw_ray.models.windows.crop_windows`` but as one ``gather`` (exportable to ONNX)."""
    b, c, h, w = images.shape
    k = corners.shape[1]
    offsets = torch.arange(part_size, device=images.device)
    rows = corners[..., 1:2] + offsets  # (B, K, p)
    cols = corners[..., 0:1] + offsets
    index = (rows.unsqueeze(-1) * w + cols.unsqueeze(-2)).flatten(1)  # (B, K*p*p)
    crops = images.flatten(2).gather(2, index.unsqueeze(1).expand(b, c, index.shape[1]))
    return crops.view(b, c, k, part_size, part_size).transpose(1, 2)


class Cascade(nn.Module):
    """FRL localisation + PaW as one network on uint8 face images (see the module docstring)."""

    def __init__(self, paw: PaW, frl: FRL | None = None, source: str = "frl") -> None:
        super().__init__()
        if source not in ("frl", "grid"):
            raise ValueError(f"source must be 'frl' or 'grid', got {source!r}")
        if source == "frl" and frl is None:
            raise ValueError("source 'frl' needs the FRL network")
        self.paw = paw
        self.frl = frl if source == "frl" else None
        self.source = source
        self.image_size = paw.image_size
        self.part_size = paw.part_size
        self.one_pass = False  # True: centres from one upsampling pass (set for export)
        self.register_buffer("mean", torch.as_tensor(IMAGENET_MEAN * 255.0).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.as_tensor(IMAGENET_STD * 255.0).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("grid", grid_centres(1)[0], persistent=False)
        self.register_buffer("temperature", torch.ones(NUM_ATTRIBUTES), persistent=False)

    def calibrate(self, temperature) -> "Cascade":
        """Divide the scores by this per-attribute temperature before the sigmoid (the
        evaluation's fitted calibration, ``metrics.DecisionRule``)."""
        self.temperature.copy_(torch.as_tensor(temperature, dtype=self.temperature.dtype))
        return self

    def normalise(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (or 0..255 float) RGB -> the networks' input, as in training."""
        return (images.float() - self.mean) / self.std

    def heatmaps(self, x: torch.Tensor) -> torch.Tensor:
        """FRL class activation maps (B, 40, h, w) of normalised images (Fig. 4)."""
        if self.frl is None:
            raise ValueError("a grid-parts cascade has no FRL heatmaps")
        # = self.frl.heatmaps(x), with the batch axis named: ONNX Runtime's Einsum does not
        # broadcast an ellipsis over operands of different ranks
        head = self.frl.head
        maps = self.frl.maps(self.frl.features(x)).unflatten(1, (head.num_attributes, head.maps_per_attribute))
        return torch.einsum("banhw,an->bahw", maps, head.weight)

    def centres_from(self, x: torch.Tensor, heat: torch.Tensor | None) -> torch.Tensor:
        if heat is None:
            return self.grid.unsqueeze(0).expand(x.shape[0], -1, -1)
        chunk = _ONE_PASS if self.one_pass else 1 << 25
        return part_centres(heat, self.image_size, max_chunk_elements=chunk)

    def logits_at(self, x: torch.Tensor, corners: torch.Tensor) -> torch.Tensor:
        """PaW's scores (B, 40) after the ARL for normalised images and given part-window
        corners (B, 40, 2): the whole subnet, the 40 part subnets, the RSL (Eq. 5) and the ARL."""
        crops = gather_windows(x, corners, self.part_size)
        paw = self.paw
        scores = torch.cat((paw.whole(x).logits.unsqueeze(1), paw.parts(crops)), dim=1)
        return paw.arl(paw.rsl(scores))

    def run(self, images: torch.Tensor) -> CascadeOutput:
        """Every intermediate result: probabilities, boxes, logits, centres and heatmaps."""
        if not torch.jit.is_tracing() and tuple(images.shape[1:]) != (3, self.image_size, self.image_size):
            raise ValueError(f"expected (B, 3, {self.image_size}, {self.image_size}) RGB images, "
                             f"got {tuple(images.shape)}")
        x = self.normalise(images)
        heat = self.heatmaps(x) if self.frl is not None else None
        centres = self.centres_from(x, heat)
        corners = part_windows(centres, self.image_size, self.part_size)
        logits = self.logits_at(x, corners)
        size = corners * 0 + self.part_size  # not full_like: the exporter would fix its batch size
        boxes = torch.cat((corners, size), dim=-1)
        return CascadeOutput(torch.sigmoid(logits / self.temperature), boxes, logits, centres, heat)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """uint8 (B, 3, S, S) -> (probabilities (B, 40), boxes (B, 40, 4) x, y, w, h)."""
        out = self.run(images)
        return out.probabilities, out.boxes
