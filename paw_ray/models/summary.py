"""Parameter counts and output shapes of every network at a config's sizes
(``paw-ray models``), next to the paper's counts (Table 3, §4)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from paw_ray.models.frl import FRL
from paw_ray.models.paw import AttributeRelation, PaW, RegionSwitch
from paw_ray.models.students import SNet

__all__ = ["PAPER_PARAMS", "count_params", "model_summary", "format_model_summary"]

# Table 3 (TNet, SNet1-3) and §4 (PaW "about 11M").
PAPER_PARAMS = {"tnet": 19_000_000, "snet1": 6_000_000, "snet2": 2_000_000, "snet3": 270_000,
                "paw": 11_000_000}


def count_params(module: nn.Module) -> int:
    """Number of parameters (weights and biases; BatchNorm's running buffers excluded)."""
    return sum(p.numel() for p in module.parameters())


def _shapes(named: dict[str, Any]) -> dict[str, list[int] | None]:
    return {k: (list(v.shape) if v is not None else None) for k, v in named.items()}


@torch.no_grad()
def model_summary(cfg) -> dict[str, dict[str, Any]]:
    """``{name: {"params": int, "output_shapes": {...}, ...}}`` for ``tnet``, ``snet1``,
    ``snet2``, ``snet3``, ``paw``, ``rsl`` and ``arl``; shapes from a forward pass of a zero
    batch of one at ``cfg.data.image_size`` (parts at ``cfg.data.part_size``)."""
    s, p, n = cfg.data.image_size, cfg.data.part_size, cfg.frl.maps_per_attribute
    image = torch.zeros(1, 3, s, s)
    out: dict[str, dict[str, Any]] = {}

    tnet = FRL.from_config(cfg).eval()
    tnet_mnl = FRL(cfg.frl.width, n, True, cfg.frl.mnl_hidden, input_size=s, pools=cfg.frl.pools)
    with_mnl, without_mnl = count_params(tnet_mnl), count_params(tnet_mnl.drop_mnl())
    o = tnet(image)
    out["tnet"] = {
        "params": count_params(tnet), "params_with_mnl": with_mnl, "params_without_mnl": without_mnl,
        "mnl": cfg.frl.mnl, "width": cfg.frl.width, "input_shape": list(image.shape),
        "output_shapes": _shapes(o._asdict()), "paper_params": PAPER_PARAMS["tnet"],
    }
    for kind in ("snet1", "snet2", "snet3"):
        net = SNet(kind, cfg.student_width, n).eval()
        out[kind] = {
            "params": count_params(net), "width": cfg.student_width, "input_shape": list(image.shape),
            "output_shapes": _shapes(net(image)._asdict()), "paper_params": PAPER_PARAMS[kind],
        }

    paw = PaW.from_config(cfg).eval()
    centres = torch.full((1, paw.parts.num_parts, 2), 0.5)
    o = paw(image, centres)
    out["paw"] = {
        "params": count_params(paw), "subnet": cfg.student,
        "params_whole": count_params(paw.whole), "params_parts": count_params(paw.parts),
        "params_rsl": count_params(paw.rsl), "params_arl": count_params(paw.arl),
        "input_shape": list(image.shape), "part_shape": [1, paw.parts.num_parts, 3, p, p],
        "output_shapes": _shapes(o._asdict()), "paper_params": PAPER_PARAMS["paw"],
    }
    rsl, arl = RegionSwitch(), AttributeRelation()
    r = rsl(o.scores)
    out["rsl"] = {"params": count_params(rsl), "output_shapes": {"rsl": list(r.shape)}, "paper_params": None}
    out["arl"] = {"params": count_params(arl), "output_shapes": {"logits": list(arl(r).shape)}, "paper_params": None}
    return out


def _fmt_shapes(shapes: dict[str, Any]) -> str:
    return ", ".join(f"{k} {'x'.join(map(str, v)) if v is not None else '-'}" for k, v in shapes.items())


def format_model_summary(summary: dict[str, dict[str, Any]]) -> str:
    """A readable table: network, parameters, the paper's count and the gap, outputs."""
    rows = [("network", "params", "paper", "vs paper", "output shapes (batch of 1)")]
    for name, s in summary.items():
        paper = s.get("paper_params")
        gap = f"{100.0 * (s['params'] - paper) / paper:+.1f}%" if paper else ""
        label = name
        if name == "tnet":
            label = "tnet (with MNL)" if s["mnl"] else "tnet (no MNL)"
        elif name == "paw":
            label = f"paw ({s['subnet']} x 41)"
        rows.append((label, f"{s['params']:,}", f"{paper:,}" if paper else "", gap, _fmt_shapes(s["output_shapes"])))
        if name == "tnet":
            other = s["params_without_mnl"] if s["mnl"] else s["params_with_mnl"]
            other_label = "  without MNL" if s["mnl"] else "  with MNL"
            rows.append((other_label, f"{other:,}", "", "", "(localization branch only)" if s["mnl"] else ""))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for k, r in enumerate(rows):
        cells = [r[0].ljust(widths[0])] + [r[i].rjust(widths[i]) for i in (1, 2, 3)] + [r[4]]
        lines.append("  ".join(cells).rstrip())
        if k == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)
