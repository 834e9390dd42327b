"""Main-job wall time per stage and peak memory, from a finished run's manifest.

Reads ``<run>/manifest.json`` (``paw-ray train`` writes it): each stage record's
``wall_time_s`` and, in its metrics' per-epoch ``history``, the ``peak_rss_mb`` of the
process that trained it (the Train workers' rank 0, each part task) and, for stages that
trained on a GPU, its ``peak_gpu_mb``. Prints the stages with their share of the total
and the largest peaks, the training step's share of each loop (rank 0's ``step_s`` against
``input_wait_s``) and the share of each Ray Train stage spent validating and checkpointing,
and where a Ray cluster address is
given, the object-store spilling reported by ``ray memory --stats-only``. The driver's
own peak memory is not in the manifest.

    python benchmarks/run_breakdown.py RUN_DIR [--address 127.0.0.1:6379]
"""

from __future__ import annotations

import argparse
import subprocess
from typing import Any

from paw_ray import storage
from paw_ray.train.manifest import MANIFEST_FILE
from paw_ray.train.stage_table import STAGES


def peak(metrics: dict[str, Any], key: str = "peak_rss_mb") -> float | None:
    """Largest ``key`` in a stage's history: a list of epochs, or for ``parts`` a dict of
    such lists per part (None when the stage records none)."""
    history = metrics.get("history") or []
    epochs = [e for h in history.values() for e in h] if isinstance(history, dict) else history
    peaks = [e[key] for e in epochs if isinstance(e, dict) and key in e]
    return max(peaks) if peaks else None


def busy_share(metrics: dict[str, Any]) -> float | None:
    """The share of the training loop's time spent in training steps rather than waiting for
    the next batch, over all epochs (rank 0 of a Train stage; all part tasks together)."""
    history = metrics.get("history") or []
    epochs = [e for h in history.values() for e in h] if isinstance(history, dict) else history
    timed = [e for e in epochs if isinstance(e, dict) and "step_s" in e and "input_wait_s" in e]
    total = sum(e["step_s"] + e["input_wait_s"] for e in timed)
    return sum(e["step_s"] for e in timed) / total if total > 0 else None


def validation_share(metrics: dict[str, Any], wall_time_s: float) -> float | None:
    """The share of a Ray Train stage's wall time spent validating and checkpointing: each
    epoch's ``val_s`` plus the gaps between one epoch's end and the next one's start (the
    report and its checkpoint). None for ``parts`` and for runs that do not record it."""
    history = metrics.get("history") or []
    if isinstance(history, dict) or not history or not all("val_s" in e and "started_at" in e for e in history):
        return None
    gaps = sum(max(0.0, b["started_at"] - (a["started_at"] + a["epoch_time_s"])) for a, b in zip(history, history[1:]))
    return (sum(e["val_s"] for e in history) + gaps) / wall_time_s if wall_time_s > 0 else None


def breakdown(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per stage in pipeline order: stage, status, wall time, share, peak RSS and GPU
    memory, the training step's share of the loop and the validation + checkpoint share."""
    records = manifest.get("stages", {})
    total = sum(r.get("wall_time_s", 0.0) for r in records.values()) or 1.0
    rows = []
    for s in STAGES:
        if s not in records:
            continue
        metrics, wall = records[s].get("metrics", {}), records[s].get("wall_time_s", 0.0)
        rows.append({"stage": s, "status": records[s].get("status", ""), "wall_time_s": wall, "share": wall / total,
                     "peak_rss_mb": peak(metrics), "peak_gpu_mb": peak(metrics, "peak_gpu_mb"),
                     "busy": busy_share(metrics), "validation": validation_share(metrics, wall)})
    return rows


def format_breakdown(rows: list[dict[str, Any]]) -> str:
    """The breakdown as a plain-text table with a total line."""
    def mb(value: float | None) -> str:
        return f"{value:.0f}" if value is not None else "-"

    def pct(value: float | None) -> str:
        return f"{value:.0%}" if value is not None else "-"

    lines = [f"{'stage':10s} {'status':9s} {'wall s':>8s} {'share':>6s} {'peak RSS MB':>12s} {'peak GPU MB':>12s} "
             f"{'step share':>10s} {'val+ckpt':>8s}"]
    for r in rows:
        lines.append(f"{r['stage']:10s} {r['status']:9s} {r['wall_time_s']:8.1f} {r['share']:6.1%} "
                     f"{mb(r['peak_rss_mb']):>12s} {mb(r['peak_gpu_mb']):>12s} {pct(r.get('busy')):>10s} "
                     f"{pct(r.get('validation')):>8s}")
    total = sum(r["wall_time_s"] for r in rows)
    peaks = [(r["peak_rss_mb"], r["stage"]) for r in rows if r["peak_rss_mb"] is not None]
    lines.append(f"{'total':10s} {'':9s} {total:8.1f} {'100%':>6s}")
    if peaks:
        mb, stage = max(peaks)
        lines.append(f"largest worker peak RSS: {mb:.0f} MB ({stage}); driver peak RSS: not recorded in the manifest")
    return "\n".join(lines)


def spilling(address: str | None) -> str:
    """Object-store spilling as ``ray memory --stats-only`` reports it for a running cluster."""
    if not address:
        return "object-store spilling: no cluster address given (--address); not measured"
    out = subprocess.run(["ray", "memory", "--stats-only", "--address", address],
                         capture_output=True, text=True, timeout=120)
    spilled = [line.strip() for line in out.stdout.splitlines() if "pill" in line]
    if out.returncode != 0:
        return f"object-store spilling: `ray memory` failed: {out.stderr.strip()[-300:]}"
    return "object-store spilling: " + ("; ".join(spilled) if spilled else "none reported")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run_dir")
    ap.add_argument("--address", default="", help="a running Ray cluster to ask about spilling")
    args = ap.parse_args()
    manifest = storage.read_json(storage.join(args.run_dir, MANIFEST_FILE))
    print(f"run {args.run_dir}: preset {manifest.get('preset')}, data {manifest.get('data')}")
    print(format_breakdown(breakdown(manifest)))
    print(spilling(args.address))


if __name__ == "__main__":
    main()
