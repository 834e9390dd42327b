"""Batch inference at scale: the trained cascade over a prepared data set's shards with
Ray Data, written as Parquet predictions (``jobs/predict.py``).

The stream is the training pipeline's own (``image_stream``: read and decode tasks with a
*fractional* CPU each, ``data.op_cpus``, so they run beside the model actors instead of
waiting for a whole CPU — see ``paw_ray.data.stream``), then
``map_batches(CascadePredictor, compute=ActorPoolStrategy(size=N), num_gpus=...)``: each
actor loads the cascade once (weights only) and keeps it for every batch; on a cluster
with GPUs each actor holds one (or a fraction, ``gpus_per_actor``).

Output: a folder of Parquet files, **one row per input row** (all rows of the chosen
splits), columns ``image_id``, ``ok`` (False: the image did not decode; its
probabilities are NaN and its decisions null), ``p_<attribute>`` (40 float32
probabilities, calibrated by the run's decision rule), ``<attribute>`` (40 bool decisions
under that rule: ``TrainedRun.decision_rule``, fitted by default) and ``box_<attribute>``
(40 x [x, y, w, h] float32, the part window in the pixels of the stored image of the row).
"""

from __future__ import annotations

import time
from typing import Callable

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from paw_ray import storage
from paw_ray.attributes import ATTRIBUTES, NUM_ATTRIBUTES
from paw_ray.data import shards
from paw_ray.data.stream import RowDecoder, image_stream
from paw_ray.errors import PawRayError
from paw_ray.train.trained_run import fell_back, open_run
from paw_ray.train.resources import given_device, how_many_fit, threads_for

__all__ = ["CascadePredictor", "predict_shards", "prediction_schema"]


def prediction_schema() -> pa.Schema:
    fields = [pa.field("image_id", pa.string()), pa.field("ok", pa.bool_())]
    fields += [pa.field(f"p_{a}", pa.float32()) for a in ATTRIBUTES]
    fields += [pa.field(a, pa.bool_()) for a in ATTRIBUTES]
    fields += [pa.field(f"box_{a}", pa.list_(pa.float32(), 4)) for a in ATTRIBUTES]
    return pa.schema(fields)


class CascadePredictor:
    """Ray Data actor: decoded batches -> prediction rows, with the cascade loaded once."""

    def __init__(self, run_dir: str, stored_size: int, cpus: float = 1.0, decision_rule: str = "fitted"):
        torch.set_num_threads(threads_for(cpus))
        self.device = given_device()
        run = open_run(run_dir)
        self.rule = run.decision_rule(decision_rule)
        self.cascade = run.cascade(self.rule).to(self.device)
        self.scale = stored_size / self.cascade.image_size  # network pixels -> stored image pixels
        self.schema = prediction_schema()

    def __call__(self, batch: dict[str, np.ndarray]) -> pa.Table:
        ok = np.asarray(batch["ok"], dtype=bool)
        n = len(ok)
        probs = np.full((n, NUM_ATTRIBUTES), np.nan, dtype=np.float32)
        boxes = np.zeros((n, NUM_ATTRIBUTES, 4), dtype=np.float32)
        if ok.any():
            images = torch.from_numpy(np.ascontiguousarray(batch["image"][ok])).to(self.device)
            with torch.no_grad():
                p, b = self.cascade(images)
            probs[ok] = p.float().cpu().numpy()
            boxes[ok] = b.cpu().numpy().astype(np.float32) * self.scale
        columns = [pa.array(np.asarray(batch["image_id"]).astype(str).tolist(), pa.string()), pa.array(ok)]
        columns += [pa.array(probs[:, j]) for j in range(NUM_ATTRIBUTES)]
        decisions = self.rule.decide(probs)
        columns += [pa.array(decisions[:, j], mask=~ok) for j in range(NUM_ATTRIBUTES)]
        columns += [pa.FixedSizeListArray.from_arrays(pa.array(boxes[:, j].ravel()), 4)
                    for j in range(NUM_ATTRIBUTES)]
        return pa.Table.from_arrays(columns, schema=self.schema)


def _count_rows(out: str) -> tuple[int, int, list[str]]:
    """(rows, rows whose image did not decode, files) of the written predictions."""
    fs, path = storage.resolve(out)
    files = sorted(n for n in storage.listdir(out) if n.endswith(".parquet"))
    rows = failed = 0
    for name in files:
        ok = pq.read_table(f"{path}/{name}", columns=["ok"], filesystem=fs).column("ok").to_numpy(zero_copy_only=False)
        rows += len(ok)
        failed += int((~ok).sum())
    return rows, failed, files


def predict_shards(run_dir: str, data_dir: str | None, out: str, *, split: str = "all",
                   num_actors: int = 0, gpus_per_actor: float | None = None, batch_size: int = 256,
                   op_cpus: float | None = None, overwrite: bool = False, decision_rule: str = "fitted",
                   log: Callable[[str], None] = print) -> dict:
    """Predict every row of ``split`` (``train|val|test|all``) of ``data_dir`` (default: the
    run's own data) into Parquet files under ``out``; return counts and throughput.

    ``num_actors`` 0 = one per GPU when the cluster has GPUs, else one per CPU but one;
    ``gpus_per_actor`` None = 1 when the cluster has GPUs, else 0. Needs a connected Ray
    (``paw_ray.train.cluster.ensure_ray``).
    """
    import ray
    import ray.data

    run = open_run(run_dir)
    cascade_cfg = run.cfg
    data_dir = data_dir or run.data_dir(log)
    info = shards.read_info(data_dir)
    splits = list(shards.SPLITS) if split == "all" else [split]
    if any(s not in shards.SPLITS for s in splits):
        raise PawRayError(f"split {split!r}: one of {', '.join(shards.SPLITS)}, all")
    splits = [s for s in splits if info.files.get(s)]
    if not splits:
        raise PawRayError(f"{data_dir}: no shards for split {split!r}")
    if storage.listdir(out) and not overwrite:
        raise PawRayError(f"{out} already holds files; choose an empty --out or pass --overwrite")
    run.artifact("finetune")  # fail here, not in every actor, when the run is unfinished
    rule = run.decision_rule(decision_rule)
    if fell_back(decision_rule, rule):
        log(f"[predict] {run_dir} holds no fitted decision rule: decisions are probability > 0.5")

    resources = ray.cluster_resources()
    gpus = resources.get("GPU", 0.0)
    if gpus_per_actor is None:
        gpus_per_actor = 1.0 if gpus > 0 else 0.0
    actor_cpus = 1.0
    if num_actors <= 0:  # one actor per GPU share; on CPUs, one per CPU but one (the stream's)
        num_actors = how_many_fit(resources, 0.0, gpus_per_actor) if gpus_per_actor > 0 else \
            max(1, how_many_fit(resources, actor_cpus) - 1)
    op_cpus = op_cpus or cascade_cfg.data.op_cpus

    t0 = time.time()
    streams = [image_stream(data_dir, s, RowDecoder(cascade_cfg.data.image_size), op_cpus=op_cpus)
               for s in splits]
    ds = streams[0].union(*streams[1:]) if len(streams) > 1 else streams[0]
    ds = ds.map_batches(
        CascadePredictor,
        fn_constructor_kwargs={"run_dir": run_dir, "stored_size": info.image_size,
                               "cpus": actor_cpus, "decision_rule": decision_rule},
        compute=ray.data.ActorPoolStrategy(size=num_actors),
        num_cpus=actor_cpus,
        num_gpus=gpus_per_actor,
        batch_size=batch_size,
        batch_format="numpy",
    )
    ds.write_parquet(out, mode=ray.data.SaveMode.OVERWRITE if overwrite else ray.data.SaveMode.APPEND)
    seconds = time.time() - t0
    rows, failed, files = _count_rows(out)
    expected = sum(info.num_rows.get(s, 0) for s in splits)
    return {"out": out, "files": len(files), "rows": rows, "input_rows": expected, "decode_failures": failed,
            "splits": splits, "seconds": round(seconds, 2), "images_per_s": round(rows / max(seconds, 1e-9), 1),
            "decision_rule": rule.rule, "actors": num_actors, "gpus_per_actor": gpus_per_actor, "op_cpus": op_cpus,
            "device": "GPU" if gpus_per_actor > 0 else "CPU"}
