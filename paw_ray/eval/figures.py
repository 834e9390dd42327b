"""The report's figures, each a function of plain arrays returning a matplotlib figure
titled with what it shows and the run it came from (``run_label``).

- ``accuracy_figure``: per-attribute test accuracy of FRL / Whole / Part / PaW / majority
  (the paper's Table 5 as a chart).
- ``heatmap_figure``: FRL heatmaps and part boxes over sample test faces (Fig. 4).
- ``part_boxes_figure``: all 40 part boxes over sample faces (Fig. 3).
- ``rsl_figure``: per attribute, the RSL weight of its own part subnet next to the whole
  subnet's (Fig. 5).
- ``arl_figure``: the learned 40x40 attribute relation matrix with attribute names (Fig. 6).
- ``curves_figure``: training loss and validation accuracy per epoch of every stage.
- ``pointing_figure``: SynthFaces pointing accuracy per local attribute vs chance.
- ``reliability_figure``: positive rate against probability per network, before and after
  the fitted temperature.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
from matplotlib import pyplot as plt  # noqa: E402

from paw_ray.attributes import ATTRIBUTES, NUM_ATTRIBUTES  # noqa: E402
from paw_ray.eval.overlays import draw_heatmap, draw_part_boxes  # noqa: E402
from paw_ray.models.paw import rsl_whole_part  # noqa: E402
from paw_ray.train.stages.evaluate import pointing_scope  # noqa: E402

__all__ = ["ROW_LABELS", "accuracy_figure", "heatmap_figure", "part_boxes_figure", "rsl_figure",
           "arl_figure", "curves_figure", "pointing_figure", "reliability_figure"]

ROW_LABELS = {"frl": "FRL branch", "whole": "Whole-only (g_0)", "part": "Part-only (g_j)",
              "paw": "PaW", "majority": "majority class"}
_COLOURS = {"frl": "tab:purple", "whole": "tab:blue", "part": "tab:orange", "paw": "tab:red",
            "majority": "0.6"}


def _title(fig, what: str, run_label: str) -> None:
    fig.suptitle(f"{what}\n{run_label}", fontsize=10)


def accuracy_figure(results: dict, run_label: str):
    """Grouped bars: 40 attributes x (FRL, Whole, Part, PaW, majority), means in the legend."""
    rows = [r for r in ROW_LABELS if r in results["accuracy"]]
    acc = np.array([results["accuracy"][r] for r in rows]) * 100
    fig, ax = plt.subplots(figsize=(18, 5.5))
    x = np.arange(NUM_ATTRIBUTES)
    width = 0.8 / len(rows)
    for k, r in enumerate(rows):
        ax.bar(x + (k - (len(rows) - 1) / 2) * width, acc[k], width, color=_COLOURS[r],
               label=f"{ROW_LABELS[r]} (mean {100 * results['mean_accuracy'][r]:.2f}%)")
    ax.set_xticks(x, [a.replace("_", " ") for a in ATTRIBUTES], rotation=90, fontsize=8)
    ax.set_xlim(-0.6, NUM_ATTRIBUTES - 0.4)
    ax.set_ylim(max(0.0, np.floor(acc.min() / 5) * 5 - 5), 100)
    ax.set_ylabel(f"test accuracy (%), {results['n_test']} images")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, ncol=len(rows), loc="lower center", bbox_to_anchor=(0.5, 1.0))
    _title(fig, "Per-attribute test accuracy of each network (paper Table 5)", run_label)
    fig.tight_layout()
    return fig


def heatmap_figure(faces: np.ndarray, heatmaps: np.ndarray, boxes: np.ndarray, attributes: list[int],
                   picks: np.ndarray, run_label: str, probabilities: np.ndarray | None = None,
                   labels: np.ndarray | None = None, gt_boxes: np.ndarray | None = None):
    """A column per attribute, ``picks[:, k]`` the faces shown for attribute k (preferably
    ones labelled positive): its FRL heatmap over the face with its part box (white) and, on
    SynthFaces, the ground-truth cue box (green)."""
    n, m = picks.shape
    fig, axes = plt.subplots(n, m, figsize=(2.1 * m, 2.25 * n + 0.9), squeeze=False)
    for k, j in enumerate(attributes):
        for r in range(n):
            i = picks[r, k]
            title = ATTRIBUTES[j].replace("_", " ")
            if probabilities is not None:
                title += f"\np={probabilities[i, j]:.2f}"
            if labels is not None:
                title += f" label={int(labels[i, j])}"
            draw_heatmap(axes[r, k], faces[i], heatmaps[i, j], boxes[i, j], title,
                         None if gt_boxes is None else gt_boxes[i, j])
    _title(fig, "FRL heatmaps and part boxes on test faces (paper Fig. 4; white: part box, "
                "green dashed: ground-truth cue box)", run_label)
    fig.tight_layout()
    return fig


def part_boxes_figure(faces: np.ndarray, boxes: np.ndarray, run_label: str):
    """All 40 part boxes over each sample face."""
    n = len(faces)
    fig, axes = plt.subplots(1, n, figsize=(3.4 * n, 4.2), squeeze=False)
    for i in range(n):
        draw_part_boxes(axes[0, i], faces[i], boxes[i], f"test face {i}")
    _title(fig, "The 40 part boxes on test faces (numbers: attribute index in CelebA order)", run_label)
    fig.tight_layout()
    return fig


def rsl_figure(rsl_weight: np.ndarray, run_label: str):
    """Per attribute j: W[0, j] (whole subnet) beside W[j+1, j] (its own part subnet)."""
    whole, part = rsl_whole_part(rsl_weight)
    fig, ax = plt.subplots(figsize=(16, 5))
    x = np.arange(NUM_ATTRIBUTES)
    ax.bar(x - 0.2, whole, 0.4, label="whole-image subnet g_0 (RSL row 0)", color="tab:blue")
    ax.bar(x + 0.2, part, 0.4, label="the attribute's own part subnet g_j (RSL row j+1)", color="tab:orange")
    ax.axhline(0, color="k", linewidth=0.6)
    ax.set_xticks(x, [a.replace("_", " ") for a in ATTRIBUTES], rotation=90, fontsize=8)
    ax.set_xlim(-0.6, NUM_ATTRIBUTES - 0.4)
    ax.set_ylabel("RSL weight")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    _title(fig, "Region switch layer: weight of the part subnet vs the whole subnet per attribute "
                "(paper Fig. 5; fine-tuned PaW)", run_label)
    fig.tight_layout()
    return fig


def arl_figure(arl_weight: np.ndarray, run_label: str):
    """The 40x40 ARL weight (row: output attribute, column: input RSL score), names on both axes.
    Returns the figure and the tick labels actually set on (x, y)."""
    w = np.asarray(arl_weight)
    off = w[~np.eye(len(w), dtype=bool)]
    lim = float(np.abs(off).max()) or float(np.abs(w).max()) or 1.0  # the relations, not the diagonal
    fig, ax = plt.subplots(figsize=(11, 10))
    im = ax.imshow(w, cmap="RdBu_r", vmin=-lim, vmax=lim)
    names = [a.replace("_", " ") for a in ATTRIBUTES]
    ax.set_xticks(np.arange(NUM_ATTRIBUTES), names, rotation=90, fontsize=7)
    ax.set_yticks(np.arange(NUM_ATTRIBUTES), names, fontsize=7)
    ax.set_xlabel("input: RSL output r_i of attribute i")
    ax.set_ylabel("output: attribute j")
    diag = np.diag(w)
    fig.colorbar(im, ax=ax, fraction=0.04, extend="both",
                 label=f"ARL weight A[j, i] (scale: off-diagonal range; diagonal {diag.min():.2f}..{diag.max():.2f})")
    _title(fig, "Attribute relation layer: the learned 40x40 matrix (paper Fig. 6; fine-tuned PaW)", run_label)
    fig.tight_layout()
    labels = {"x": [t.get_text() for t in ax.get_xticklabels()],
              "y": [t.get_text() for t in ax.get_yticklabels()]}
    return fig, labels


def curves_figure(histories: dict[str, list[dict]], part_histories: dict[int, list[dict]], run_label: str):
    """Top row: training loss per epoch; bottom row: validation mean accuracy at the epochs
    that validated (``val_every``) — one column per Ray Train stage and one for the 40 part
    subnets (a thin line each). ``histories``: Ray Train stage -> its history, in pipeline order."""
    stages = [s for s, h in histories.items() if h]
    cols = stages + (["parts"] if part_histories else [])
    if not cols:
        raise ValueError("no stage has a training history")
    fig, axes = plt.subplots(2, len(cols), figsize=(3.3 * len(cols), 6), squeeze=False)
    for k, name in enumerate(cols):
        curves = [histories[name]] if name != "parts" else [part_histories[p] for p in sorted(part_histories)]
        for h in curves:
            epochs = [e["epoch"] + 1 for e in h]
            style = dict(marker="o", markersize=3) if name != "parts" else dict(linewidth=0.7, alpha=0.6)
            axes[0, k].plot(epochs, [e["train_loss"] for e in h], **style)
            validated = [e for e in h if "val_mean_accuracy" in e]  # every val_every-th epoch and the last
            axes[1, k].plot([e["epoch"] + 1 for e in validated], [100 * e["val_mean_accuracy"] for e in validated],
                            **style)
        label = "parts (40 subnets)" if name == "parts" else name
        axes[0, k].set_title(label, fontsize=9)
        axes[0, k].set_ylabel("train loss" if k == 0 else "")
        axes[1, k].set_ylabel("val mean accuracy (%)" if k == 0 else "")
        axes[1, k].set_xlabel("epoch")
        last = max(len(h) for h in curves)
        for ax in axes[:, k]:
            ax.grid(alpha=0.3)
            ax.set_xlim(0.5, last + 0.5)
            ax.xaxis.get_major_locator().set_params(integer=True)
    _title(fig, "Training curves of every stage (from the run manifest)", run_label)
    fig.tight_layout()
    return fig


def pointing_figure(localization: dict, run_label: str):
    """Pointing accuracy of the FRL part centre per local attribute, with the chance level
    (a uniformly random centre: the mean cue-box area); where measured, beside it the share
    of part windows that hold the cue, with its chance."""
    names = list(localization["pointing_accuracy"])
    window = "window_hit" in localization
    fig, ax = plt.subplots(figsize=(14, 5))
    x = np.arange(len(names))
    bars = [("pointing_accuracy", "chance", "tab:green", "part centre inside the cue box", "mean", "chance_mean")]
    if window:
        bars.append(("window_hit", "window_chance", "tab:blue", "cue inside the part window",
                     "window_hit_mean", "window_chance_mean"))
    width = 0.8 / len(bars)
    for i, (key, chance_key, colour, label, mean_key, chance_mean_key) in enumerate(bars):
        offset = (i - (len(bars) - 1) / 2) * width
        ax.bar(x + offset, np.array([localization[key][a] for a in names]) * 100, width, color=colour,
               label=f"{label} (mean {localization[mean_key] * 100:.1f}%)")
        ax.scatter(x + offset, np.array([localization[chance_key][a] for a in names]) * 100, marker="_",
                   s=120, color="k", zorder=3,
                   label=f"chance, random {'window' if i else 'centre'} (mean {localization[chance_mean_key] * 100:.1f}%)")
    ax.set_xticks(x, [a.replace("_", " ") for a in names], rotation=90, fontsize=8)
    ax.set_ylim(0, 100)
    ax.set_ylabel("% of test images counted")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    _title(fig, f"Localization on SynthFaces: pointing accuracy per local attribute vs chance "
                f"({pointing_scope(localization)})", run_label)
    fig.tight_layout()
    return fig


def reliability_figure(results: dict, run_label: str):
    """Per network, the test split's positive rate against its mean probability in each bin
    (every attribute pooled), before and after the fitted temperature: points on the diagonal
    are calibrated. Below each, how many probabilities fell in each bin (log scale)."""
    rows = [r for r in ROW_LABELS if r in results.get("reliability", {})]
    fig, axes = plt.subplots(2, len(rows), figsize=(3.6 * len(rows), 5.6), squeeze=False,
                             gridspec_kw={"height_ratios": (3, 1)}, sharex=True)
    for k, row in enumerate(rows):
        ax, counts = axes[0, k], axes[1, k]
        ax.plot([0, 1], [0, 1], color="0.6", lw=1, ls="--", label="calibrated")
        bins = len(results["reliability"][row]["fixed"]["count"])
        centres = (np.arange(bins) + 0.5) / bins
        for key, style, ece_key in (("fixed", "o-", "mean_ece"), ("calibrated", "s-", "mean_ece_calibrated")):
            rel = results["reliability"][row][key]
            shown = [i for i, m in enumerate(rel["mean_probability"]) if m is not None]
            label = "score / T" if key == "calibrated" else "score"
            ax.plot([rel["mean_probability"][i] for i in shown], [rel["positive_rate"][i] for i in shown], style,
                    ms=3, color=_COLOURS[row] if key == "calibrated" else "0.25",
                    label=f"{label} (mean ECE {100 * (results[ece_key][row] or 0):.2f}%)")
            counts.bar(centres + (0.25 if key == "calibrated" else -0.25) / bins, rel["count"], 0.5 / bins,
                       color=_COLOURS[row] if key == "calibrated" else "0.25", log=True)
        ax.set_title(ROW_LABELS[row], fontsize=9)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_ylabel("positive rate" if k == 0 else "")
        ax.legend(fontsize=7, loc="upper left")
        ax.grid(alpha=0.3)
        counts.set_xlabel("mean probability in the bin")
        counts.set_ylabel("count" if k == 0 else "")
    _title(fig, f"Reliability on the test split ({results['n_test']} images x 40 attributes), before and after "
                f"the temperature fitted on {results['n_val']} validation images", run_label)
    fig.tight_layout()
    return fig
