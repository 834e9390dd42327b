"""Stage ``evaluate``: the test split through every network, in the layout of the
paper's Table 5.

A streaming Ray Data pass with an actor pool holding the trained networks scores each
test image with: the FRL's localization branch (``frl``), the whole-image subnet g_0
(``whole``), for attribute j the part subnet j alone (``part``, the paper's
Part-only), and the fine-tuned PaW (``paw``). The majority-class baseline predicts,
per attribute, the training split's more frequent label. On data with ground-truth
cue boxes (SynthFaces) it also scores localization: for each local attribute, the
share of test images whose part centre falls inside the cue's box ("pointing
accuracy"), beside the chance level of a centre drawn uniformly over the image (the
mean box area); and the share whose part window holds the cue, beside its chance.

The same pass scores the validation split, on which each network's decision rule is fitted
(a temperature and a threshold per attribute); the test split is measured under the fixed
and the fitted rule (``decision_tables``, docs/architecture.md "Evaluation").

Writes ``<run-dir>/results.json`` and ``<run-dir>/results.md``.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from paw_ray import config as C
from paw_ray import metrics as M
from paw_ray import storage
from paw_ray.attributes import ATTRIBUTES, LOCAL_MASK, NUM_ATTRIBUTES
from paw_ray.config import to_dict
from paw_ray.data import shards
from paw_ray.data.batches import model_batch
from paw_ray.data.stream import RowDecoder, image_stream
from paw_ray.data.synthfaces import GENERATOR_VERSION, clean_labels
from paw_ray.models.paw import PartSubnets, PaW
from paw_ray.models.students import SNet
from paw_ray.models.windows import crop_windows, part_windows
from paw_ray.train.checkpoints import load_state
from paw_ray.train.resources import given_device, threads_for
from paw_ray.train.stage_table import StageRun
from paw_ray.train.stages.frl import load_frl
from paw_ray.train.stages.localize import load_centres

__all__ = ["run_stage", "run_evaluate", "RESULT_ROWS", "SCORED_ROWS", "Scorer", "decision_tables", "format_decisions", "accuracy_tables", "pointing_accuracy", "pointing_scope",
           "format_table"]

RESULT_ROWS = ("frl", "whole", "part", "paw", "majority")


class Scorer:
    """Ray Data actor: a batch of test images -> the 40 scores of each network."""

    def __init__(self, cfg_dict: dict, inputs: dict[str, str], cpus: float = 1.0):
        torch.set_num_threads(threads_for(cpus))
        cfg = C.from_dict(cfg_dict)
        self.device = given_device()
        self.frl = load_frl(cfg, inputs["frl"])
        self.whole = SNet.from_config(cfg)
        self.whole.load_state_dict(load_state(inputs["whole"]))
        self.parts = PartSubnets.from_config(cfg)
        self.parts.load_state_dict(load_state(inputs["parts"]))
        self.paw = PaW.from_config(cfg)
        self.paw.load_state_dict(load_state(inputs["finetune"]))
        for m in (self.frl, self.whole, self.parts, self.paw):
            m.to(self.device).eval()
        self.image_size, self.part_size = cfg.data.image_size, cfg.data.part_size

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        b = model_batch(batch, self.device)
        out = {"image_id": b["image_id"], "labels": batch["labels"][batch["ok"]],
               "centres": b["centres"].cpu().numpy()}
        if "part_boxes_gt" in b:
            out["part_boxes_gt"] = b["part_boxes_gt"].cpu().numpy()
        with torch.no_grad():
            x, centres = b["image"], b["centres"]
            out["frl"] = self.frl(x).logits.cpu().numpy()
            out["whole"] = self.whole(x).logits.cpu().numpy()
            crops = crop_windows(x, part_windows(centres, self.image_size, self.part_size), self.part_size)
            part_scores = self.parts(crops)  # (B, part i, attribute j)
            out["part"] = torch.diagonal(part_scores, dim1=1, dim2=2).cpu().numpy()
            out["paw"] = self.paw(x, centres).logits.cpu().numpy()
        return out


def accuracy_tables(scores: dict[str, np.ndarray], labels: np.ndarray, train_positive_rate: np.ndarray):
    """Per-attribute accuracy and balanced accuracy (mean of the true-positive and
    true-negative rates) of each row; scores > 0 are positive decisions. Balanced accuracy
    is NaN for an attribute whose test labels are all one class (it is undefined there)."""
    labels = labels.astype(bool)
    preds = {row: scores[row] > 0 for row in RESULT_ROWS if row != "majority"}
    preds["majority"] = np.broadcast_to(train_positive_rate > 0.5, labels.shape)
    pos, neg = labels.sum(axis=0), (~labels).sum(axis=0)
    defined = (pos > 0) & (neg > 0)
    accuracy, balanced = {}, {}
    for row in RESULT_ROWS:
        p = preds[row]
        accuracy[row] = (p == labels).mean(axis=0)
        tpr = (p & labels).sum(axis=0) / np.maximum(pos, 1)
        tnr = (~p & ~labels).sum(axis=0) / np.maximum(neg, 1)
        balanced[row] = np.where(defined, (tpr + tnr) / 2, np.nan)
    return accuracy, balanced


SCORED_ROWS = tuple(r for r in RESULT_ROWS if r != "majority")  # the rows with scores (the trained networks)


def decision_tables(val: dict[str, np.ndarray], test: dict[str, np.ndarray], rule: str) -> dict:
    """For each network, the decision rule fitted on the validation rows (a temperature and a
    threshold per attribute, ``metrics.DecisionRule``) and what the test rows measure: F1,
    average precision, calibration error and the reliability diagram's bins before and after
    the temperature, worst-group accuracy, each decision-based one under the fixed rule (score > 0,
    probability 0.5) and under the fitted one (``tuned``). Without validation rows the rule
    stays T = 1, threshold 0.5."""
    labels, n_val = test["labels"].astype(bool), len(val.get("labels", ()))
    pairs = [(a, g) for a, g in M.WORST_GROUP_PAIRS if a in ATTRIBUTES and g in ATTRIBUTES]
    out: dict = {"threshold_rule": rule, "n_val": n_val}
    for key in ("temperature", "thresholds", "f1", "average_precision", "ece", "ece_calibrated", "worst_group",
                "reliability"):
        out[key] = {}
    tuned: dict = {key: {} for key in ("accuracy", "balanced_accuracy", "f1", "worst_group")}
    for row in SCORED_ROWS:
        fit = M.DecisionRule.fit(val[row], val["labels"], rule) if n_val else M.DecisionRule.fixed()
        t, calibrated = fit.temperature, fit.probabilities(test[row])
        fixed, fitted = test[row] > 0, fit.decide(calibrated)
        out["temperature"][row], out["thresholds"][row] = _json_floats(t), _json_floats(fit.thresholds)
        out["f1"][row], tuned["f1"][row] = _json_floats(M.f1(fixed, labels)), _json_floats(M.f1(fitted, labels))
        out["average_precision"][row] = _json_floats(M.average_precision(test[row], labels))
        out["ece"][row] = _json_floats(M.expected_calibration_error(M.sigmoid(test[row]), labels))
        out["ece_calibrated"][row] = _json_floats(M.expected_calibration_error(calibrated, labels))
        out["reliability"][row] = {"fixed": M.reliability(M.sigmoid(test[row]), labels),
                                   "calibrated": M.reliability(calibrated, labels)}
        tuned["accuracy"][row] = _json_floats((fitted == labels).mean(0))
        tuned["balanced_accuracy"][row] = _json_floats(M.balanced_accuracy(fitted, labels))
        for decisions, where in ((fixed, out), (fitted, tuned)):
            where["worst_group"][row] = {f"{a} x {g}": M.worst_group_accuracy(
                decisions, labels, ATTRIBUTES.index(a), ATTRIBUTES.index(g)) for a, g in pairs}
    for where in (out, tuned):
        for key in ("f1", "average_precision", "ece", "ece_calibrated", "accuracy", "balanced_accuracy"):
            if key in where:
                where[f"mean_{key}"] = {r: _nanmean(where[key][r]) for r in SCORED_ROWS}
    out["tuned"] = tuned
    return out


def _nanmean(values: list) -> float | None:
    defined = [v for v in values if v is not None]
    return round(float(np.mean(defined)), 5) if defined else None


def _json_floats(values) -> list:
    """Rounded floats, ``None`` where undefined (JSON has no NaN)."""
    return [None if np.isnan(v) else round(float(v), 5) for v in values]


def pointing_accuracy(centres: np.ndarray, boxes: np.ndarray, window: float | None = None,
                      present: np.ndarray | None = None) -> dict:
    """Share of images whose centre lies inside the ground-truth box, per local attribute,
    beside its chance level (a centre drawn uniformly: the box's area).

    With ``present`` ((N, 40) bool, the labels), only the images that show the attribute
    count: the pointing game's protocol (Zhang et al., ECCV 2016). Without it every image
    counts, including those where the box marks a place where no cue is drawn, which no
    weakly supervised localizer can find (its heatmap there has nothing to peak on).

    With ``window`` (the part crop's side as a share of the image's), also the share whose
    part window (clamped inside the image, as the crops are cut) holds the cue box's centre:
    what the part subnet needs, and less strict than pointing into a cue a few pixels wide.
    """
    inside = ((centres[..., 0] >= boxes[..., 0]) & (centres[..., 0] <= boxes[..., 2])
              & (centres[..., 1] >= boxes[..., 1]) & (centres[..., 1] <= boxes[..., 3]))
    valid = boxes[..., 2] > boxes[..., 0]
    if present is not None:
        valid = valid & present.astype(bool)
    area = np.clip(boxes[..., 2] - boxes[..., 0], 0, 1) * np.clip(boxes[..., 3] - boxes[..., 1], 0, 1)
    out = {"pointing_accuracy": _per_local_attribute(inside, valid), "chance": _per_local_attribute(area, valid)}
    if window is not None:
        cue = (boxes[..., :2] + boxes[..., 2:]) / 2
        start = np.clip(centres - window / 2, 0, 1 - window)
        held = ((cue >= start) & (cue <= start + window)).all(-1)
        out["window_hit"] = _per_local_attribute(held, valid)
        out["window_chance"] = _per_local_attribute(_window_chance(cue, window).prod(-1), valid)
        out["window"] = window
    for key in ("pointing_accuracy", "chance", "window_hit", "window_chance"):
        if key in out:
            mean_key = {"pointing_accuracy": "mean", "chance": "chance_mean"}.get(key, key + "_mean")
            out[mean_key] = float(np.mean(list(out[key].values()))) if out[key] else None
    return out


def _per_local_attribute(values: np.ndarray, valid: np.ndarray) -> dict[str, float]:
    return {name: float(values[valid[:, j], j].mean()) for j, name in enumerate(ATTRIBUTES)
            if LOCAL_MASK[j] and valid[:, j].any()}


def _window_chance(cue: np.ndarray, w: float) -> np.ndarray:
    """Per axis, the chance that a window of side ``w`` centred on a uniform random point
    and clamped inside [0, 1] holds ``cue``: its start is 0 or 1-w with mass w/2 each, else
    uniform on (0, 1-w), and it holds the cue when the start is in [cue-w, cue]."""
    lo, hi = cue - w, cue
    spread = np.clip(np.minimum(hi, 1 - w) - np.maximum(lo, 0), 0, None)
    return spread + w / 2 * (lo <= 0) + w / 2 * (hi >= 1 - w)


def pointing_scope(localization: dict) -> str:
    """Which test images a ``localization`` dict counted, in words."""
    return localization.get("protocol", "all test images")


def noise_free_labels(data_dir: str, image_ids) -> np.ndarray | None:
    """For SynthFaces rendered with ``label_noise``, the noise-free labels (N, 40) of these
    images: what their pictures show. None for other data, or a set rendered by another
    generator version (its labels would not be these)."""
    info = shards.read_info(data_dir)
    source = info.source or {}
    if info.name != "synthfaces" or not source.get("label_noise") or source.get("generator_version") != GENERATOR_VERSION:
        return None
    return clean_labels(source["seed"], image_ids)


def noise_free_tables(scores: dict[str, np.ndarray], labels: np.ndarray, clean: np.ndarray,
                      train_positive_rate: np.ndarray, label_noise: float) -> dict:
    """Test accuracy against the noise-free labels, beside the share of stored labels that
    agree with them: with label noise, the stored labels cap the measurable accuracy."""
    accuracy, _ = accuracy_tables(scores, clean, train_positive_rate)
    return {"label_noise": label_noise, "label_agreement": round(float((labels.astype(bool) == clean).mean()), 5),
            "accuracy": {r: [round(float(a), 5) for a in accuracy[r]] for r in RESULT_ROWS},
            "mean_accuracy": {r: round(float(np.mean(accuracy[r])), 5) for r in RESULT_ROWS}}


def format_table(results: dict) -> str:
    """Markdown in the layout of the paper's Table 5: a column per attribute, then the mean."""
    head = "| row | " + " | ".join(a.replace("_", " ") for a in ATTRIBUTES) + " | **mean** |"
    sep = "|---" * (NUM_ATTRIBUTES + 2) + "|"
    lines = [f"Accuracy (%) on the test split — preset `{results['preset']}`, data `{results['data']}`, "
             f"{results['n_test']} images.", "", head, sep]
    for row in RESULT_ROWS:
        acc = results["accuracy"][row]
        lines.append(f"| {row} | " + " | ".join(f"{100 * a:.1f}" for a in acc)
                     + f" | **{100 * results['mean_accuracy'][row]:.2f}** |")
    lines += ["", "Balanced accuracy (%): " + ", ".join(
        f"{row} {100 * results['mean_balanced_accuracy'][row]:.2f}" for row in RESULT_ROWS)]
    if "tuned" in results:
        lines += ["", *format_decisions(results)]
    clean = results.get("noise_free")
    if clean:
        lines += ["", f"Against the noise-free labels (SynthFaces, label noise {clean['label_noise']:g}: "
                      f"{100 * clean['label_agreement']:.1f}% of the stored test labels agree with them), "
                      "mean accuracy (%): " + ", ".join(f"{row} {100 * clean['mean_accuracy'][row]:.2f}"
                                                        for row in RESULT_ROWS)]
    loc = results.get("localization")
    if loc:
        lines += ["", f"Localization (pointing accuracy, local attributes, {pointing_scope(loc)}): mean "
                      f"{100 * loc['mean']:.1f}% vs {100 * loc['chance_mean']:.1f}% for a uniformly random centre."]
        window = "window_hit" in loc
        if window:
            lines += [f"Cue inside the part window: mean {100 * loc['window_hit_mean']:.1f}% vs "
                      f"{100 * loc['window_chance_mean']:.1f}% for a random window."]
        every = loc.get("all_images")
        if every:
            lines += [f"Over all test images, with or without the attribute: pointing {100 * every['mean']:.1f}% "
                      f"(chance {100 * every['chance_mean']:.1f}%), part window {100 * every['window_hit_mean']:.1f}% "
                      f"(chance {100 * every['window_chance_mean']:.1f}%)."]
        lines += ["", "| attribute | pointing % | chance % |" + (" in window % | chance % |" if window else ""),
                  "|---|---|---|" + ("---|---|" if window else "")]
        lines += [f"| {a} | {100 * v:.1f} | {100 * loc['chance'][a]:.1f} |"
                  + (f" {100 * loc['window_hit'][a]:.1f} | {100 * loc['window_chance'][a]:.1f} |" if window else "")
                  for a, v in loc["pointing_accuracy"].items()]
    return "\n".join(lines) + "\n"


def format_decisions(results: dict) -> list[str]:
    """The fixed rule (probability 0.5) beside the rule fitted on the validation split, and the
    threshold-free measures, as markdown lines (means over the attributes, in %)."""
    tuned = results["tuned"]

    def pct(v):
        return "–" if v is None else f"{100 * v:.2f}"

    pairs = sorted({p for row in SCORED_ROWS for p in results["worst_group"][row]})
    lines = [f"Decisions: the fixed rule (probability > 0.5) against a temperature and threshold per attribute "
             f"fitted on {results['n_val']} validation images ({results['threshold_rule'].replace('_', ' ')}); "
             "means over the attributes (%).", "",
             "| row | accuracy 0.5 / fitted | balanced 0.5 / fitted | F1 0.5 / fitted | average precision "
             "| ECE before / after temperature |" + "".join(f" worst group {p} 0.5 / fitted |" for p in pairs),
             "|---|---|---|---|---|---|" + "---|" * len(pairs)]
    for row in SCORED_ROWS:
        worst = "".join(f" {pct(results['worst_group'][row][p]['worst'])} / {pct(tuned['worst_group'][row][p]['worst'])} |"
                        for p in pairs)
        lines.append(f"| {row} | {pct(results['mean_accuracy'][row])} / {pct(tuned['mean_accuracy'][row])} "
                     f"| {pct(results['mean_balanced_accuracy'][row])} / {pct(tuned['mean_balanced_accuracy'][row])} "
                     f"| {pct(results['mean_f1'][row])} / {pct(tuned['mean_f1'][row])} "
                     f"| {pct(results['mean_average_precision'][row])} "
                     f"| {pct(results['mean_ece'][row])} / {pct(results['mean_ece_calibrated'][row])} |" + worst)
    return lines


def run_stage(run: StageRun) -> tuple[str, dict]:
    """The runner's entry (``stage_table``): score ``run``'s test split."""
    return run_evaluate(run.cfg, run.data_dir, run.run_dir, run.inputs, run.data_label)


def run_evaluate(cfg, data_dir: str, run_dir: str, inputs: dict[str, str], data_label: str) -> tuple[str, dict]:
    """Score the test split, write results.json and results.md; return results.json's location."""
    import ray
    import ray.data

    t0 = time.time()
    centres_ref = ray.put(load_centres(inputs["localize"]))
    # val (to fit the decision rule) and test as one Ray Data execution, told apart by image id
    ds = image_stream(data_dir, ("val", "test"), RowDecoder(cfg.data.image_size, centres=centres_ref),
                      op_cpus=cfg.data.op_cpus, cue_boxes=True)
    ds = ds.map_batches(Scorer, fn_constructor_kwargs={"cfg_dict": to_dict(cfg), "inputs": inputs, "cpus": 1.0},
                        compute=ray.data.ActorPoolStrategy(size=1), num_cpus=1.0,
                        batch_size=cfg.evaluate.batch_size, batch_format="numpy")
    cols: dict[str, list] = {}
    for batch in ds.iter_batches(batch_size=1024, batch_format="numpy"):
        for k, v in batch.items():
            cols.setdefault(k, []).append(v)
    scored = {k: np.concatenate(v) for k, v in cols.items()}
    val_ids = shards.split_ids(data_dir, "val")
    is_val = np.fromiter((str(i) in val_ids for i in scored.get("image_id", ())), dtype=bool)
    data = {k: v[~is_val] for k, v in scored.items()}
    val = {k: v[is_val] for k, v in scored.items()}
    if not data or not len(data["image_id"]):
        raise shards.ShardError(f"{data_dir}: the test split has no decodable image")
    train_rate = shards.label_positive_rate(data_dir, "train")
    accuracy, balanced = accuracy_tables(data, data["labels"], train_rate)
    results = {
        "attributes": list(ATTRIBUTES),
        "accuracy": {r: [round(float(a), 5) for a in accuracy[r]] for r in RESULT_ROWS},
        "mean_accuracy": {r: round(float(np.mean(accuracy[r])), 5) for r in RESULT_ROWS},
        "balanced_accuracy": {r: _json_floats(balanced[r]) for r in RESULT_ROWS},
        "mean_balanced_accuracy": {r: round(float(np.nanmean(balanced[r])), 5) for r in RESULT_ROWS},
        "preset": cfg.preset,
        "data": data_label,
        "n_test": int(len(data["labels"])),
        "run_dir": run_dir,
        **decision_tables(val, data, cfg.evaluate.threshold_rule),
    }
    clean = noise_free_labels(data_dir, data["image_id"])
    if clean is not None:
        results["noise_free"] = noise_free_tables(data, data["labels"], clean, train_rate,
                                                  shards.read_info(data_dir).source["label_noise"])
    if "part_boxes_gt" in data:
        window = cfg.data.part_size / cfg.data.image_size
        loc = pointing_accuracy(data["centres"], data["part_boxes_gt"], window=window, present=data["labels"])
        loc["protocol"] = "images that show the attribute, as in the pointing game"
        loc["all_images"] = pointing_accuracy(data["centres"], data["part_boxes_gt"], window=window)
        results["localization"] = loc
    location = storage.join(run_dir, "results.json")
    storage.write_json_atomic(location, results)
    storage.write_bytes_atomic(storage.join(run_dir, "results.md"), format_table(results).encode())
    metrics = {"mean_accuracy": results["mean_accuracy"], "n_test": results["n_test"],
               "seconds": round(time.time() - t0, 1)}
    if "localization" in results:
        metrics["pointing_mean"] = results["localization"]["mean"]
        metrics["window_hit_mean"] = results["localization"]["window_hit_mean"]
    return location, metrics
