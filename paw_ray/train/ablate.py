"""``paw-ray ablate``: the paper's ablations on this implementation — Table 1 (FRL with or
without multi-net learning), Table 3 (the student that builds the subnets) and Table 5's
fixed 4x4 grid instead of FRL part centres.

Each variant is the paper's design with one switch flipped (``VARIANTS``), trained by
``train()`` in its own run directory::

    <ablate-dir>/seed<k>/synthfaces-.../    # the seed's data set, rendered once for all variants
    <ablate-dir>/seed<k>/<variant>/         # an ordinary run directory (manifest, results.json)
    <ablate-dir>/ablations.json, ablations.md

Every stage a variant shares with another is trained once. Stage fingerprints chain over
a stage's config, data and inputs, so a sibling's complete record with the same
fingerprint is exactly the result this variant would compute: before a variant runs, its
manifest is seeded with such records (``adopt_shared_stages``), pointing at the sibling's
checkpoint (no copy) and marked ``reused_from``, and ``train()`` skips them as complete.
So ``grid`` trains no FRL, hint or g_0, and ``snet1`` no FRL and no part centres.

Seed k sets ``seed`` and ``data.synth_seed`` to k. Rerunning with the same directory
continues: adoption is idempotent and each variant's ``train()`` resumes. Runs made outside
the ablation (``reuse``: say the demo main job, ``paw-ray train --run-dir runs/demo``) are
siblings too: a variant adopts their stages where the fingerprints match (same preset,
seed and data), so the baseline of seed 0 costs nothing after the main job.
"""

from __future__ import annotations

import copy
import os
import platform
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from paw_ray import config as C
from paw_ray import storage
from paw_ray.errors import PawRayError
from paw_ray.models.frl import FRL
from paw_ray.models.paw import PaW, rsl_whole_part
from paw_ray.models.students import SNet
from paw_ray.models.summary import PAPER_PARAMS, count_params
from paw_ray.train.checkpoints import load_state
from paw_ray.train.cluster import check_placement_fits, ensure_ray
from paw_ray.train.manifest import MANIFEST_FILE, Manifest, stage_fingerprints
from paw_ray.train.run import resolve, train
from paw_ray.train.stage_table import STAGES
from paw_ray.train.stages.evaluate import SCORED_ROWS

__all__ = ["Variant", "VARIANTS", "PAPER_DESIGN", "ablate", "adopt_shared_stages", "measure", "summarize",
           "machine", "format_ablations"]

# The paper's design, which every variant starts from (whatever the preset or --set say).
PAPER_DESIGN = ("frl.mnl=true", "student=snet3", "parts.source=frl")


@dataclass(frozen=True)
class Variant:
    """The paper's design with at most one switch flipped, and what the paper measured for it
    (mean accuracy in % per row; rows the paper does not report are absent)."""

    name: str
    change: str  # "key=value" flipped from PAPER_DESIGN; "" for the baseline
    paper_accuracy: dict[str, float] = field(default_factory=dict)
    paper_note: str = ""

    def overrides(self) -> list[str]:
        key = self.change.split("=", 1)[0]
        return [o for o in PAPER_DESIGN if o.split("=", 1)[0] != key] + ([self.change] if self.change else [])


# Paper: Table 1 (FRL localization branch 91.07 with MNL, 91.01 without), Table 3 (whole-image
# students: SNet1 91.02, SNet2 90.89, SNet3 90.60) and Table 5 (uCelebA: Whole-only 90.60,
# Part-only 90.46, PaW 91.23; 4x4 grid parts 90.95). Variants that keep the baseline's FRL or
# g_0 keep its paper numbers for those rows.
VARIANTS: dict[str, Variant] = {v.name: v for v in (
    Variant("baseline", "", {"frl": 91.07, "whole": 90.60, "part": 90.46, "paw": 91.23}),
    Variant("no_mnl", "frl.mnl=false", {"frl": 91.01}),
    Variant("snet1", "student=snet1", {"frl": 91.07, "whole": 91.02}),
    Variant("snet2", "student=snet2", {"frl": 91.07, "whole": 90.89}),
    Variant("grid", "parts.source=grid", {"frl": 91.07, "whole": 90.60, "paw": 90.95},
            "paper Fig. 5: with the grid the RSL weighs the whole subnet above the part for every attribute"),
)}


# --------------------------------------------------------------------------- sharing

def adopt_shared_stages(cfg: C.Config, run_dir: str, siblings: list[str], data_identity: str) -> dict[str, str]:
    """Seed ``run_dir``'s manifest with every stage record of a sibling run directory that is
    complete for the same fingerprint under ``cfg``; return ``{stage: run dir that trained it}``
    for all of its stages that are reused (adopted now or by an earlier call)."""
    fps = stage_fingerprints(cfg, data_identity)
    manifest = Manifest.load_or_create(run_dir)
    others = [Manifest.load_or_create(d) for d in siblings
              if d != run_dir and storage.exists(storage.join(d, MANIFEST_FILE))]
    changed = False
    for stage in STAGES:
        if manifest.is_complete(stage, fps[stage]):
            continue
        source = next((m for m in others if m.is_complete(stage, fps[stage])), None)
        if source is not None:
            rec = copy.deepcopy(source.stages[stage])
            rec.reused_from = rec.reused_from or source.run_dir  # the run that trained it, not a reuser
            manifest.stages[stage] = rec
            changed = True
    if changed:
        manifest.stages = {s: manifest.stages[s] for s in STAGES if s in manifest.stages}  # pipeline order
        manifest.save()
    return {s: r.reused_from for s, r in manifest.stages.items()
            if r.reused_from and manifest.is_complete(s, fps[s])}


# --------------------------------------------------------------------------- measuring

def _params(cfg: C.Config) -> dict[str, int]:
    """Parameters of one student subnet and of the deployed networks: PaW, plus the FRL's
    localization branch where it places the parts (the MNL branch is dropped after training)."""
    with torch.device("meta"):  # shapes only: PaW of 41 SNet1s would be 1 GB of weights
        paw = count_params(PaW.from_config(cfg))
        frl = count_params(FRL.from_config(cfg).drop_mnl()) if cfg.parts.source == "frl" else 0
        student = count_params(SNet.from_config(cfg))
    return {"student": student, "paw": paw, "frl": frl, "deployed": paw + frl}


def _paper_params(cfg: C.Config) -> dict[str, int | None]:
    return {"student": PAPER_PARAMS[cfg.student],
            "paw": PAPER_PARAMS["paw"] if cfg.student == "snet3" else None}


def measure(cfg: C.Config, manifest: Manifest, params: dict[str, int] | None = None) -> dict[str, Any]:
    """One finished variant run: mean test accuracy (%) per row, pointing accuracy (%), parameter
    counts, wall time (``spent``: stages trained here; ``total``: reused stages counted too) and
    the fine-tuned RSL's mean weight on the whole vs the own part subnet (as in Fig. 5)."""

    results = storage.read_json(manifest.stages["evaluate"].artifact)
    whole, part = rsl_whole_part(load_state(manifest.stages["finetune"].artifact)["rsl.weight"].numpy())
    loc = results.get("localization") or {}
    records = [manifest.stages[s] for s in STAGES]
    return {
        "accuracy": {row: round(100 * results["mean_accuracy"][row], 2) for row in SCORED_ROWS},
        "pointing": round(100 * loc["mean"], 2) if loc.get("mean") is not None else None,
        "params": params if params is not None else _params(cfg),
        "wall_time_s": {"spent": round(sum(r.wall_time_s for r in records if not r.reused_from), 1),
                        "total": round(sum(r.wall_time_s for r in records), 1)},
        "rsl": {"whole": round(float(whole.mean()), 4), "part": round(float(part.mean()), 4),
                "whole_heavier": int((whole > part).sum())},
        "reused": {s: r.reused_from for s in STAGES if (r := manifest.stages[s]).reused_from},
        "run_dir": manifest.run_dir,
    }


def _mean(values: list[Any]) -> Any:
    """Mean over seeds of every number in a list of ``measure`` dicts (None if any is None)."""
    if isinstance(values[0], dict):
        return {k: _mean([v[k] for v in values]) for k in values[0] if k not in ("reused", "run_dir")}
    if any(v is None for v in values):
        return None
    return round(sum(values) / len(values), 4)


def machine() -> dict[str, Any]:
    """What the ablation ran on (for the table's reader)."""
    import ray

    resources = ray.cluster_resources()
    return {"platform": platform.platform(), "cpu_count": os.cpu_count(),
            "ray_cpus": resources.get("CPU", 0.0), "ray_gpus": resources.get("GPU", 0.0)}


def summarize(cfg: C.Config, ablate_dir: str, seeds: list[int], names: list[str],
              runs: dict[str, dict[int, dict]], data: dict[int, str], machine_info: dict[str, Any]) -> dict:
    """The content of ablations.json: per variant its paper numbers, mean over the seeds done
    and every seed's ``measure``; ``runs[variant][seed]`` holds those measures."""
    variants = {}
    for name in names:
        per_seed = runs.get(name, {})
        v = VARIANTS[name]
        variants[name] = {
            "change": v.change or "none (the paper's design)",
            "overrides": v.overrides(),
            "paper": {"accuracy": v.paper_accuracy, "note": v.paper_note,
                      "params": _paper_params(C.apply_overrides(cfg, v.overrides()))},
            "seeds_done": sorted(per_seed),
            "mean": _mean(list(per_seed.values())) if per_seed else None,
            "per_seed": {str(k): m for k, m in sorted(per_seed.items())},
        }
    done = [m for per_seed in runs.values() for m in per_seed.values()]
    return {
        "preset": cfg.preset,
        "ablate_dir": ablate_dir,
        "seeds": seeds,
        "data": {str(k): label for k, label in data.items()},
        "complete": all(len(runs.get(n, {})) == len(seeds) for n in names),
        "machine": machine_info,
        "units": {"accuracy": "% mean over the 40 attributes, test split", "pointing": "% (local attributes, images that show the attribute)",
                  "wall_time_s": "seconds; spent = stages trained in this variant, total = with reused ones",
                  "rsl": "mean RSL weight of the fine-tuned PaW: whole = W[0, j], part = W[j+1, j]; "
                         "whole_heavier = attributes with W[0, j] > W[j+1, j]"},
        "wall_time_s": {"spent": round(sum(m["wall_time_s"]["spent"] for m in done), 1),
                        "without_sharing": round(sum(m["wall_time_s"]["total"] for m in done), 1)},
        "variants": variants,
    }


# --------------------------------------------------------------------------- tables

def _cell(value: float | None, paper: float | None = None, fmt: str = "{:.2f}") -> str:
    if value is None:
        return "–"
    text = fmt.format(value)
    return f"{text} ({fmt.format(paper)})" if paper is not None else text


def _millions(n: float | None) -> str:
    return "–" if n is None else f"{n / 1e6:.2f}M"


def format_ablations(summary: dict) -> str:
    """Markdown: the per-variant means (the paper's number in brackets), then every seed."""
    head = ("| variant | change | FRL | Whole | Part | PaW | pointing | student params | deployed params "
            "| wall spent (s) | wall incl. reused (s) | RSL whole / part (attrs whole > part) |")
    sep = "|---" * 12 + "|"

    def row(name: str, v: dict, m: dict, label: str) -> str:
        acc, paper = m["accuracy"], v["paper"]
        student = _millions(m["params"]["student"])
        if v["paper"]["params"]["student"]:
            student += f" ({_millions(paper['params']['student'])})"
        rsl = m["rsl"]
        return " | ".join([
            f"| {label}", v["change"], *(_cell(acc[r], paper["accuracy"].get(r)) for r in SCORED_ROWS),
            _cell(m["pointing"], fmt="{:.1f}"), student, _millions(m["params"]["deployed"]),
            _cell(m["wall_time_s"]["spent"], fmt="{:.0f}"), _cell(m["wall_time_s"]["total"], fmt="{:.0f}"),
            f"{rsl['whole']:.3f} / {rsl['part']:.3f} ({rsl['whole_heavier']:g}/40)"]) + " |"

    seeds = ", ".join(map(str, summary["seeds"]))
    mach = summary["machine"]
    lines = [f"# Ablations — preset `{summary['preset']}`, seeds {seeds}", "",
             f"Machine: {mach['platform']}, {mach['cpu_count']} CPUs (Ray: {mach['ray_cpus']:g} CPUs, "
             f"{mach['ray_gpus']:g} GPUs). Data: " + "; ".join(f"seed {k}: {d}" for k, d in summary["data"].items()),
             "", "Mean over seeds; in brackets the paper's number (uCelebA; Tables 1, 3, 5). Accuracy: % mean "
             "over the 40 attributes on the test split; pointing: % of local-attribute part centres inside "
             "the cue box, on the images that show the attribute; wall time: stages trained for the variant (shared stages count once, for the "
             "variant that trained them) and with the reused stages' time included.", "", head, sep]
    for name, v in summary["variants"].items():
        if v["mean"]:
            lines.append(row(name, v, v["mean"], name))
    notes = [f"- {name}: {v['paper']['note']}" for name, v in summary["variants"].items() if v["paper"]["note"]]
    if notes:
        lines += ["", *notes]
    lines += ["", "## Per seed", "", head.replace("| variant |", "| variant, seed |"), sep]
    for name, v in summary["variants"].items():
        for seed, m in v["per_seed"].items():
            lines.append(row(name, v, m, f"{name}, {seed}"))
    lines += ["", "Reused stages (trained once, by the run named):", ""]
    for name, v in summary["variants"].items():
        for seed, m in v["per_seed"].items():
            reused = ", ".join(f"{s} ← {_relative(src, summary['ablate_dir'])}" for s, src in m["reused"].items())
            lines.append(f"- {name}, seed {seed}: {reused or 'none'}")
    w = summary["wall_time_s"]
    lines += ["", f"Total wall time spent: {w['spent']:.0f}s (without sharing stages: {w['without_sharing']:.0f}s)."]
    return "\n".join(lines) + "\n"


def _relative(location: str, base: str) -> str:
    return location[len(base) + 1:] if location.startswith(base + "/") else location


# --------------------------------------------------------------------------- the run

def ablate(cfg: C.Config, ablate_dir: str, seeds: int = 1, variants: list[str] | None = None,
           reuse: list[str] = (), log: Callable[[str], None] = print) -> dict:
    """Train every variant for seeds 0..``seeds``-1, sharing stages with each other and with the
    run directories in ``reuse``; write and return the summary."""

    names = list(variants or VARIANTS)
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        raise PawRayError(f"unknown variant(s) {unknown}; variants are {', '.join(VARIANTS)}")
    if seeds < 1:
        raise PawRayError(f"--seeds must be >= 1, got {seeds}")
    ablate_dir = storage.absolute(ablate_dir)
    reuse = [storage.absolute(r) for r in reuse]
    missing = [r for r in reuse if not storage.exists(storage.join(r, MANIFEST_FILE))]
    if missing:
        raise PawRayError(f"--reuse: no run directory (manifest.json) at {', '.join(missing)}")
    if ensure_ray(cfg.ray):
        check_placement_fits(cfg)
    params = {n: _params(C.apply_overrides(cfg, VARIANTS[n].overrides())) for n in names}
    machine_info = machine()
    runs: dict[str, dict[int, dict]] = {}
    data: dict[int, str] = {}
    total, k, t_start = len(names) * seeds, 0, time.time()
    summary: dict = {}
    for seed in range(seeds):
        seed_dir = storage.join(ablate_dir, f"seed{seed}")
        seed_cfg = copy.deepcopy(cfg)
        seed_cfg.seed, seed_cfg.data.synth_seed = seed, seed
        resolved = resolve(seed_cfg, seed_dir, log)  # one data set for all variants
        data_dir, data[seed], identity = resolved.dir, resolved.label, resolved.identity
        siblings = [storage.join(seed_dir, n) for n in VARIANTS] + reuse
        for name in names:
            k += 1
            vcfg = C.apply_overrides(seed_cfg, VARIANTS[name].overrides() + [f"data.path={data_dir}"])
            run_dir = storage.join(seed_dir, name)
            reused = adopt_shared_stages(vcfg, run_dir, siblings, identity)
            shared = ", ".join(f"{s} from {_relative(src, seed_dir)}" for s, src in reused.items())
            log(f"[ablate] {k}/{total} seed {seed} {name} ({VARIANTS[name].change or 'paper design'}): "
                f"{'reusing ' + shared if shared else 'nothing to reuse'}")
            t0 = time.time()
            out = train(vcfg, run_dir, log=lambda s, p=f"[ablate seed{seed}/{name}] ": log(p + s), data=resolved)
            m = measure(vcfg, out["manifest"], params[name])
            runs.setdefault(name, {})[seed] = m
            log(f"[ablate] {k}/{total} seed {seed} {name} done in {time.time() - t0:.0f}s: "
                + ", ".join(f"{r} {m['accuracy'][r]:.2f}%" for r in SCORED_ROWS)
                + f"; {time.time() - t_start:.0f}s since the start")
            summary = summarize(cfg, ablate_dir, list(range(seeds)), names, runs, data, machine_info)
            storage.write_json_atomic(storage.join(ablate_dir, "ablations.json"), summary)
            storage.write_bytes_atomic(storage.join(ablate_dir, "ablations.md"), format_ablations(summary).encode())
    log(f"[ablate] finished in {time.time() - t_start:.0f}s: {storage.join(ablate_dir, 'ablations.md')}")
    return summary
