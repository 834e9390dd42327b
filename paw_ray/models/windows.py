"""Part windows from FRL heatmaps, and batched crops (the paper's §3.1-3.2 and Fig. 3).

For attribute j: upsample its heatmap H_j to the input size (224x224), take the argmax
pixel as the part centre, and cut a square part window (64x64 at 224) centred there,
clamped to stay inside the image. Everything is batched over images and attributes.

Coordinates: a centre is (x, y) in [0, 1], the centre of a pixel ``(col + 0.5) / S``;
a window corner is the (x0, y0) pixel of its top-left corner, so the window covers
columns ``x0 .. x0 + p - 1`` and rows ``y0 .. y0 + p - 1``. A window of even side p
centred on pixel k covers ``k - p/2 .. k + p/2 - 1``.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from paw_ray.attributes import GRID_BLOCK

__all__ = ["part_centres", "part_windows", "crop_windows", "grid_centres"]


@torch.no_grad()
def part_centres(heatmaps: torch.Tensor, image_size: int, max_chunk_elements: int = 1 << 25) -> torch.Tensor:
    """(B, A, h, w) heatmaps -> (B, A, 2) part centres (x, y) in [0, 1].

    The centre of the argmax pixel of each heatmap after bilinear upsampling
    (``align_corners=False``) to ``image_size x image_size``. Images are processed in
    batched chunks of at most ``max_chunk_elements`` upsampled values (2^25 floats =
    128 MiB, 16 images of 40 maps at 224) so that a large batch does not need GBs.
    """
    b, a = heatmaps.shape[:2]
    s = int(image_size)
    step = max(1, max_chunk_elements // (a * s * s))
    flat_idx = torch.cat([
        F.interpolate(heatmaps[i:i + step].float(), size=(s, s), mode="bilinear", align_corners=False)
        .flatten(2).argmax(-1)
        for i in range(0, b, step)
    ]) if b else heatmaps.new_zeros((0, a), dtype=torch.long)
    ys, xs = flat_idx // s, flat_idx % s
    return torch.stack(((xs + 0.5) / s, (ys + 0.5) / s), dim=-1).float()


def part_windows(centres: torch.Tensor, image_size: int, part_size: int) -> torch.Tensor:
    """(B, A, 2) centres in [0, 1] -> (B, A, 2) long top-left corners (x0, y0) of the
    ``part_size`` square window centred on the centre's pixel, clamped inside the image."""
    s, p = int(image_size), int(part_size)
    if not 0 < p <= s:
        raise ValueError(f"part_size {p} must be in 1..image_size ({s})")
    pixel = (centres * s).floor().long().clamp_(0, s - 1)
    return (pixel - p // 2).clamp_(0, s - p)


def crop_windows(images: torch.Tensor, corners: torch.Tensor, part_size: int) -> torch.Tensor:
    """Cut K windows from each image: (B, C, H, W) images, (B, K, 2) corners (x0, y0) ->
    (B, K, C, p, p) crops, differentiable w.r.t. ``images`` (corners must keep the
    windows inside, as ``part_windows`` gives).

    One gather: every window start of the batch is a row of a strided (overlapping) view
    of the images, and ``index_select`` copies the chosen rows (far faster than a crop loop
    or 4-index advanced indexing, ``benchmarks/bench_models.py``). Backward scatter-adds the
    crops' gradients into the images.
    """
    return _CropWindows.apply(images, corners.to(images.device), int(part_size))


def _crop_gather(images: torch.Tensor, corners: torch.Tensor, p: int) -> torch.Tensor:
    b, c, h, w = images.shape
    k = corners.shape[1]
    if b == 0 or k == 0:
        return images.new_empty((b, k, c, p, p))
    x = images.contiguous()
    sb, sc, sh, _ = x.stride()
    # window starting at pixel (b, y0, x0) = row b*sb + y0*w + x0 of this view; the last
    # start, (B-1, H-p, W-p), reaches exactly the last element of the images
    starts = x.as_strided(((b - 1) * sb + (h - p) * sh + (w - p) + 1, c, p, p), (1, sc, sh, 1))
    rows = torch.arange(b, device=x.device).view(b, 1) * sb + corners[..., 1] * sh + corners[..., 0]
    return starts.index_select(0, rows.flatten()).view(b, k, c, p, p)


def _window_index(corners: torch.Tensor, channels: int, p: int) -> tuple[torch.Tensor, ...]:
    """Broadcast (b, c, y, x) index tensors of shape (B, K, C, p, p) for every crop pixel."""
    b, dev = corners.shape[0], corners.device
    ar = torch.arange(p, device=dev)
    return (torch.arange(b, device=dev).view(b, 1, 1, 1, 1),
            torch.arange(channels, device=dev).view(1, 1, channels, 1, 1),
            (corners[..., 1, None] + ar)[:, :, None, :, None],
            (corners[..., 0, None] + ar)[:, :, None, None, :])


class _CropWindows(torch.autograd.Function):
    @staticmethod
    def forward(ctx, images, corners, p):
        ctx.save_for_backward(corners)
        ctx.image_shape, ctx.p = images.shape, p
        return _crop_gather(images, corners, p)

    @staticmethod
    def backward(ctx, grad):
        (corners,) = ctx.saved_tensors
        grad_images = grad.new_zeros(ctx.image_shape)
        grad_images.index_put_(_window_index(corners, ctx.image_shape[1], ctx.p), grad, accumulate=True)
        return grad_images, None, None


def grid_centres(batch_size: int, device: torch.device | str | None = None, grid: int = 4) -> torch.Tensor:
    """(B, 40, 2) part centres of the fixed-grid baseline (Table 5, "4x4 grid"): for
    attribute j the centre of its ``GRID_BLOCK[j]`` (row, col) block, the same for every image."""
    rc = torch.tensor(GRID_BLOCK, dtype=torch.float32, device=device)
    xy = torch.stack(((rc[:, 1] + 0.5) / grid, (rc[:, 0] + 0.5) / grid), dim=-1)
    return xy.expand(batch_size, -1, -1).clone()
