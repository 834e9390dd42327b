"""Drawing on faces: an attribute's FRL heatmap with its part box (the paper's Fig. 4),
and all 40 part boxes of an image (Fig. 3). Shared by the report and ``predict --explain``.

Faces are uint8 ``(S, S, 3)`` arrays (the network input); boxes ``x, y, w, h`` in its
pixels; heatmaps ``(h, w)`` at the FRL's feature resolution, stretched over the face
with bilinear interpolation (as the part centres are found, ``models.windows``).
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
from matplotlib import pyplot as plt  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402

from paw_ray.attributes import ATTRIBUTES  # noqa: E402

__all__ = ["draw_heatmap", "draw_part_boxes", "explain_figure"]


def _face(ax, face: np.ndarray) -> None:
    s = face.shape[0]
    ax.imshow(face, extent=(0, s, s, 0), interpolation="nearest")
    ax.set_xlim(0, s)
    ax.set_ylim(s, 0)
    ax.set_xticks([])
    ax.set_yticks([])


def draw_heatmap(ax, face: np.ndarray, heat: np.ndarray | None, box, title: str = "",
                 gt_box=None) -> None:
    """Face, the heatmap over it (normalised to its own range), the part box (white) and,
    when known, the ground-truth cue box (green, dashed; ``x0, y0, x1, y1`` in [0, 1])."""
    _face(ax, face)
    s = face.shape[0]
    if heat is not None:
        h = np.asarray(heat, dtype=np.float32)
        span = float(h.max() - h.min())
        h = (h - h.min()) / span if span > 0 else np.zeros_like(h)
        ax.imshow(h, extent=(0, s, s, 0), cmap="jet", alpha=0.45, interpolation="bilinear",
                  vmin=0.0, vmax=1.0)
    x, y, w, hgt = (float(v) for v in box)
    ax.add_patch(Rectangle((x, y), w, hgt, fill=False, edgecolor="white", linewidth=1.6))
    if gt_box is not None and gt_box[2] > gt_box[0]:
        x0, y0, x1, y1 = (float(v) * s for v in gt_box)
        ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, edgecolor="lime",
                               linewidth=1.0, linestyle="--"))
    if title:
        ax.set_title(title, fontsize=8)


def draw_part_boxes(ax, face: np.ndarray, boxes: np.ndarray, title: str = "") -> None:
    """All part boxes over the face, each labelled with its attribute's index (0..39)."""
    _face(ax, face)
    colours = plt.get_cmap("tab20")
    for j, (x, y, w, h) in enumerate(np.asarray(boxes, dtype=np.float64)):
        c = colours(j % 20)
        ax.add_patch(Rectangle((x, y), w, h, fill=False, edgecolor=c, linewidth=0.8))
        ax.text(x + w / 2, y + h / 2, str(j), color=c, fontsize=5, ha="center", va="center")
    if title:
        ax.set_title(title, fontsize=8)


def explain_figure(face: np.ndarray, heatmaps: np.ndarray | None, boxes: np.ndarray,
                   probabilities: np.ndarray, attributes: list[int], title: str):
    """One image explained: a panel per chosen attribute (heatmap, part box, probability)
    and a panel with all 40 part boxes. Returns the matplotlib figure."""
    n = len(attributes) + 1
    cols = min(n, 4)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(3.0 * cols, 3.2 * rows + 0.6), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for k, j in enumerate(attributes):
        ax = axes.flat[k]
        ax.axis("on")
        draw_heatmap(ax, face, None if heatmaps is None else heatmaps[j], boxes[j],
                     f"{ATTRIBUTES[j]}: p={probabilities[j]:.2f}")
    ax = axes.flat[len(attributes)]
    ax.axis("on")
    draw_part_boxes(ax, face, boxes, "40 part boxes (numbers: attribute index)")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig
