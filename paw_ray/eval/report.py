"""``paw-ray report``: a run directory -> ``<run>/report/``: ``index.html`` plus the PNG
figures it shows (referenced relatively, so the folder is self-contained: copy or serve it
as it is) and ``figures.json`` (each figure's file, title and, for the ARL matrix, the tick
labels drawn on its axes).

Sections: the stages (status, wall time); per-attribute test accuracy as a chart and as a
table in the layout of the paper's Table 5; SynthFaces pointing accuracy; the decision rule
fitted on the validation split, with reliability diagrams and a per-attribute threshold table; FRL heatmaps and
part boxes over sample test faces (Fig. 4, Fig. 3); RSL weights part vs whole (Fig. 5); the
ARL matrix (Fig. 6); the training curves of every stage. A section whose inputs the run
does not have yet (e.g. before ``evaluate``) says so instead of failing the report.
"""

from __future__ import annotations

import html
import io
import time
from typing import Callable

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from paw_ray import storage
from paw_ray.attributes import ATTRIBUTES, attribute_index
from paw_ray.data import shards
from paw_ray.data.stream import decode_batch
from paw_ray.eval.figures import (
    ROW_LABELS,
    accuracy_figure,
    arl_figure,
    curves_figure,
    heatmap_figure,
    part_boxes_figure,
    pointing_figure,
    reliability_figure,
    rsl_figure,
)
from paw_ray.train.trained_run import open_run
from paw_ray.train.checkpoints import load_state
from paw_ray.train.manifest import RunDirError
from paw_ray.train.stage_table import STAGES, TRAIN_STAGES
from paw_ray.train.stages.evaluate import pointing_scope

__all__ = ["write_report", "REPORT_DIR", "FIG4_ATTRIBUTES"]

REPORT_DIR = "report"
# local attributes with distinct places on the face: eyes, mouth, head top, forehead, lip, ears
FIG4_ATTRIBUTES = ("Eyeglasses", "Smiling", "Wearing_Hat", "Bangs", "Mustache", "Wearing_Earrings")
N_SAMPLES = 4
POOL = 64  # test faces searched for positives of each Fig. 4 attribute


def sample_faces(data_dir: str, image_size: int, n: int = N_SAMPLES) -> dict[str, np.ndarray]:
    """The first ``n`` decodable test rows, decoded by the training pipeline (no flips)."""
    info = shards.read_info(data_dir)
    columns = ["image_id", "image", "labels"] + (["part_boxes_gt"] if info.has_part_boxes_gt else [])
    for f in shards.shard_files(data_dir, info, "test"):
        fs, path = storage.resolve(f)
        for batch in pq.ParquetFile(fs.open_input_file(path)).iter_batches(batch_size=4 * n, columns=columns):
            out = decode_batch(pa.Table.from_batches([batch]), image_size=image_size)
            keep = np.flatnonzero(out["ok"])[:n]
            if len(keep):
                return {k: v[keep] for k, v in out.items()}
    raise RunDirError(f"{data_dir}: no decodable test image")


class _Report:
    def __init__(self, run, out_dir: str, log: Callable[[str], None]):
        self.run, self.out_dir, self.log = run, out_dir, log
        self.sections: list[str] = []
        self.figures: dict[str, dict] = {}
        self.run_label = run.label()

    def save(self, name: str, fig, what: str, extra: dict | None = None) -> str:
        from matplotlib import pyplot as plt

        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=100)
        plt.close(fig)
        file = f"{name}.png"
        storage.write_bytes_atomic(storage.join(self.out_dir, file), buf.getvalue())
        w, h = (int(v) for v in fig.get_size_inches() * 100)
        self.figures[name] = {"file": file, "title": what, "width": w, "height": h, **(extra or {})}
        return (f'<figure><img src="{file}" alt="{html.escape(what)}" style="max-width:100%">'
                f"<figcaption>{html.escape(what)}</figcaption></figure>")

    def section(self, title: str, body: str) -> None:
        self.sections.append(f"<section><h2>{html.escape(title)}</h2>\n{body}\n</section>")

    def missing(self, title: str, why: str) -> None:
        self.section(title, f'<p class="missing">Not available for this run: {html.escape(why)}</p>')


def _stage_table(run) -> str:
    rows = []
    for s in STAGES:
        rec = run.manifest.stages.get(s)
        if rec is None:
            rows.append(f"<tr><td>{s}</td><td>not run</td><td></td><td></td></tr>")
            continue
        m = rec.metrics or {}
        metric = ""
        if isinstance(m.get("val_mean_accuracy"), float):
            metric = f"val mean accuracy {100 * m['val_mean_accuracy']:.2f}%"
        elif "mean_accuracy" in m:
            metric = ", ".join(f"{k} {100 * v:.2f}%" for k, v in m["mean_accuracy"].items())
        elif "images" in m:
            metric = f"{m['images']} images"
        rows.append(f"<tr><td>{s}</td><td>{html.escape(rec.status)}</td><td>{rec.wall_time_s:.1f}</td>"
                    f"<td>{html.escape(metric)}</td></tr>")
    return ("<table><tr><th>stage</th><th>status</th><th>wall time (s)</th><th>result</th></tr>"
            + "".join(rows) + "</table>")


def table5_html(results: dict) -> str:
    """The accuracy table in the paper's Table 5 layout: a row per network, a column per attribute."""

    head = "".join(f"<th>{html.escape(a.replace('_', ' '))}</th>" for a in ATTRIBUTES)
    body = []
    for row, label in ROW_LABELS.items():
        if row not in results["accuracy"]:
            continue
        cells = "".join(f"<td>{100 * a:.1f}</td>" for a in results["accuracy"][row])
        body.append(f"<tr><th>{html.escape(label)}</th>{cells}<td><b>{100 * results['mean_accuracy'][row]:.2f}</b>"
                    f"</td><td>{100 * results['mean_balanced_accuracy'][row]:.2f}</td></tr>")
    return (f'<div class="wide"><table class="t5"><tr><th>network</th>{head}<th>mean</th>'
            f"<th>mean balanced</th></tr>{''.join(body)}</table></div>"
            f"<p>Accuracy (%) on the test split, {results['n_test']} images; decision: score &gt; 0.</p>")


def _accuracy(r: _Report) -> None:
    res = r.run.results
    if res is None:
        r.missing("Accuracy (Table 5)", "the evaluate stage has not run (no results.json)")
        return
    fig = r.save("accuracy", accuracy_figure(res, r.run_label), "Per-attribute test accuracy (Table 5 as a chart)")
    clean = res.get("noise_free")
    noise_free = "" if not clean else (
        f"<p>Against the noise-free labels (SynthFaces rendered with label noise {clean['label_noise']:g}; "
        f"{100 * clean['label_agreement']:.1f}% of the stored test labels agree with them), mean accuracy: "
        + ", ".join(f"{html.escape(ROW_LABELS[row])} {100 * clean['mean_accuracy'][row]:.2f}%" for row in ROW_LABELS
                    if row in clean["mean_accuracy"]) + ".</p>")
    r.section("Accuracy (Table 5)", fig + table5_html(res) + noise_free)
    loc = res.get("localization")
    if loc and loc.get("pointing_accuracy"):
        r.section("Localization (SynthFaces pointing accuracy)",
                  r.save("pointing", pointing_figure(loc, r.run_label),
                         "Pointing accuracy per local attribute vs chance")
                  + f"<p>Share of test images ({pointing_scope(loc)}) whose part centre falls inside the "
                    f"attribute's ground-truth cue box: "
                    f"mean {100 * loc['mean']:.1f}% vs {100 * loc['chance_mean']:.1f}% for a uniformly random centre.</p>")


def thresholds_html(results: dict, row: str = "paw") -> str:
    """Per attribute, ``row``'s fitted temperature and threshold and what the test split
    measures under the fixed rule and the fitted one."""
    tuned = results["tuned"]

    def pct(v):
        return "–" if v is None else f"{100 * v:.1f}"

    body = []
    for j, a in enumerate(ATTRIBUTES):
        cells = [f"{results['temperature'][row][j]:.2f}", f"{results['thresholds'][row][j]:.3f}"]
        cells += [f"{pct(results[key][row][j])} / {pct(tuned[key][row][j])}" for key in ("accuracy", "balanced_accuracy", "f1")]
        cells += [pct(results["average_precision"][row][j]),
                  f"{pct(results['ece'][row][j])} / {pct(results['ece_calibrated'][row][j])}"]
        body.append(f"<tr><th>{html.escape(a)}</th>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    return ('<table class="t5"><tr><th>attribute</th><th>T</th><th>threshold</th><th>accuracy 0.5 / fitted</th>'
            "<th>balanced 0.5 / fitted</th><th>F1 0.5 / fitted</th><th>average precision</th>"
            "<th>ECE before / after T</th></tr>" + "".join(body) + "</table>"
            f"<p>{html.escape(ROW_LABELS[row])}: the temperature T and probability threshold fitted per attribute on "
            f"{results['n_val']} validation images ({results['threshold_rule'].replace('_', ' ')}), the rule "
            f"<code>paw-ray predict</code> and the export apply; measures on the {results['n_test']} test images, "
            "in %.</p>")


def _decisions(r: _Report) -> None:
    res = r.run.results
    if res is None or "reliability" not in res:
        r.missing("Decision rule and calibration", "the evaluate stage has not written the fitted decision rule "
                                                   "(rerun it: paw-ray train --from-stage evaluate)")
        return
    fig = r.save("reliability", reliability_figure(res, r.run_label),
                 "Reliability diagrams: positive rate against probability, before and after the temperature")
    r.section("Decision rule and calibration", fig + thresholds_html(res))


def pick_faces(labels: np.ndarray, attributes: list[int], n: int) -> np.ndarray:
    """(n, len(attributes)) indices into the pool: per attribute the first faces labelled
    positive (the cue is there to be found), then negatives to fill the column."""
    picks = np.zeros((n, len(attributes)), dtype=np.int64)
    for k, j in enumerate(attributes):
        order = np.concatenate([np.flatnonzero(labels[:, j] == 1), np.flatnonzero(labels[:, j] != 1)])
        picks[:, k] = np.resize(order, n)
    return picks


def _heatmaps(r: _Report) -> None:
    run = r.run
    cascade, frl = run.cascade(), run.frl()
    pool = sample_faces(run.data_dir(r.log), cascade.image_size, n=POOL)
    attrs = [attribute_index(a) for a in FIG4_ATTRIBUTES]
    picks = pick_faces(pool["labels"], attrs, N_SAMPLES)
    shown = np.unique(np.concatenate([picks.ravel(), np.arange(min(N_SAMPLES, len(pool["labels"])))]))
    images = torch.from_numpy(pool["image"][shown])
    with torch.no_grad():
        out = cascade.run(images)
        heat = frl.heatmaps(cascade.normalise(images)).numpy()
    faces = pool["image"][shown].transpose(0, 2, 3, 1)
    where = {int(i): k for k, i in enumerate(shown)}  # pool index -> row of the computed batch
    boxes = out.boxes.numpy()
    gt = pool.get("part_boxes_gt")
    body = r.save("heatmaps", heatmap_figure(faces, heat, boxes, attrs, np.vectorize(where.get)(picks), r.run_label,
                                             out.probabilities.numpy(), pool["labels"][shown],
                                             None if gt is None else gt[shown]),
                  "FRL heatmaps and part boxes over test faces (Fig. 4)")
    first = [where[i] for i in range(min(N_SAMPLES, len(pool["labels"])))]
    body += r.save("part_boxes", part_boxes_figure(faces[first], boxes[first], r.run_label),
                   "All 40 part boxes over test faces")
    source = "FRL heatmap argmax" if run.cfg.parts.source == "frl" else "fixed 4x4 grid (parts.source=grid)"
    r.section("Where the parts are (Fig. 4)", body + f"<p>Part centres: {source}. Per attribute the first "
              f"test faces labelled positive among the first {len(pool['labels'])} test images; "
              "p = PaW probability.</p>")


def _fusion_layers(r: _Report) -> None:
    state = load_state(r.run.artifact("finetune"))
    body = r.save("rsl", rsl_figure(state["rsl.weight"].numpy(), r.run_label),
                  "RSL weight of the part subnet vs the whole subnet per attribute (Fig. 5)")
    r.section("Region switch layer (Fig. 5)", body)
    fig, labels = arl_figure(state["arl.weight"].numpy(), r.run_label)
    r.section("Attribute relation layer (Fig. 6)",
              r.save("arl", fig, "The learned 40x40 ARL matrix (Fig. 6)",
                     {"xticklabels": labels["x"], "yticklabels": labels["y"]}))


def _curves(r: _Report) -> None:
    stages = r.run.manifest.stages
    hist = {s: stages[s].metrics.get("history", []) for s in TRAIN_STAGES if s in stages}
    parts = {}
    if "parts" in stages:
        parts = {int(k): v for k, v in (stages["parts"].metrics.get("history") or {}).items() if v}
    if not any(hist.values()) and not parts:
        r.missing("Training curves", "no stage has recorded a training history")
        return
    r.section("Training curves", r.save("curves", curves_figure(hist, parts, r.run_label),
                                        "Training loss and validation accuracy per epoch of every stage"))


_CSS = """body{font-family:sans-serif;margin:1.5em;max-width:1400px}table{border-collapse:collapse;font-size:12px}
td,th{border:1px solid #ccc;padding:2px 5px;text-align:right}th{background:#f4f4f4}.wide{overflow-x:auto}
.t5 th:first-child{text-align:left;white-space:nowrap}figure{margin:1em 0}figcaption{font-size:12px;color:#555}
.missing{color:#a00}"""


def write_report(run_dir: str, out_dir: str | None = None, log: Callable[[str], None] = print) -> str:
    """Write the report of ``run_dir`` (default into ``<run>/report``); return index.html's location."""

    run = open_run(run_dir)
    out_dir = out_dir or storage.join(run_dir, REPORT_DIR)
    r = _Report(run, out_dir, log)
    r.section("Stages", _stage_table(run))
    _accuracy(r)
    _decisions(r)
    for title, build, needs in (("Where the parts are (Fig. 4)", _heatmaps, ("frl", "finetune")),
                                ("Region switch and attribute relation layers (Fig. 5, 6)", _fusion_layers,
                                 ("finetune",)),
                                ("Training curves", _curves, ())):
        missing = [s for s in needs if not run.complete(s)]
        if missing:
            r.missing(title, f"stage(s) {', '.join(missing)} not complete")
            continue
        build(r)
    head = (f"<h1>PaW cascade — run report</h1><p>Run directory <code>{html.escape(run_dir)}</code>, preset "
            f"<b>{html.escape(run.preset)}</b>, data <b>{html.escape(run.data_label)}</b>; parts from "
            f"{html.escape(run.cfg.parts.source)}; written {time.strftime('%Y-%m-%d %H:%M:%S')}.</p>")
    page = (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>PaW run report: {html.escape(run_dir)}</title>"
            f"<style>{_CSS}</style></head><body>{head}\n" + "\n".join(r.sections) + "</body></html>\n")
    index = storage.join(out_dir, "index.html")
    storage.write_bytes_atomic(index, page.encode("utf-8"))
    storage.write_json_atomic(storage.join(out_dir, "figures.json"),
                              {"run_dir": run_dir, "preset": run.preset, "data": run.data_label,
                               "figures": r.figures})
    return index
