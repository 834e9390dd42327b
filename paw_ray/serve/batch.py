"""Batch inference at scale: the trained cascade over a prepared data set's shards, or over
folders of raw photos, with Ray Data, written as Parquet predictions (``jobs/predict.py``).

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

Photos (``predict_photos``): ``read_binary_files`` over the folders, then a
``PhotoPredictor`` actor pool that finds the faces in each photo as ``paw-ray predict`` does
(``Predictor.faces_in``: the detector, the face-box rule, the run's margin). **One row per
face**: ``input`` (the photo's path), ``image_id`` (its file name), ``face_index``, ``ok``
and ``error`` (a photo that does not decode or holds no face is one row with ``ok`` False
and the reason), ``face_box`` (the face square, x, y, s, s), ``detection_score``, and the
same attribute columns, the part boxes in the photo's pixels.
"""

from __future__ import annotations

import dataclasses
import posixpath
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
from paw_ray.data.detect import FaceDetection
from paw_ray.errors import PawRayError
from paw_ray.serve.predict import IMAGE_SUFFIXES, Predictor, open_image
from paw_ray.train.trained_run import fell_back, open_run
from paw_ray.train.resources import given_device, how_many_fit, threads_for

__all__ = ["CascadePredictor", "PhotoPredictor", "predict_shards", "predict_photos", "prediction_schema",
           "photo_prediction_schema"]


def _attribute_fields() -> list[pa.Field]:
    fields = [pa.field(f"p_{a}", pa.float32()) for a in ATTRIBUTES]
    fields += [pa.field(a, pa.bool_()) for a in ATTRIBUTES]
    fields += [pa.field(f"box_{a}", pa.list_(pa.float32(), 4)) for a in ATTRIBUTES]
    return fields


def _attribute_columns(probs: np.ndarray, boxes: np.ndarray, ok: np.ndarray, rule) -> list[pa.Array]:
    """The 40 probabilities, the 40 decisions under ``rule`` (null where not ``ok``) and the 40
    part boxes, as Arrow columns."""
    columns = [pa.array(probs[:, j]) for j in range(NUM_ATTRIBUTES)]
    decisions = rule.decide(probs)
    columns += [pa.array(decisions[:, j], mask=~ok) for j in range(NUM_ATTRIBUTES)]
    columns += [pa.FixedSizeListArray.from_arrays(pa.array(boxes[:, j].ravel()), 4) for j in range(NUM_ATTRIBUTES)]
    return columns


def prediction_schema() -> pa.Schema:
    return pa.schema([pa.field("image_id", pa.string()), pa.field("ok", pa.bool_()), *_attribute_fields()])


def photo_prediction_schema() -> pa.Schema:
    return pa.schema([pa.field("input", pa.string()), pa.field("image_id", pa.string()),
                      pa.field("face_index", pa.int32()), pa.field("ok", pa.bool_()), pa.field("error", pa.string()),
                      pa.field("face_box", pa.list_(pa.float32(), 4)), pa.field("detection_score", pa.float32()),
                      *_attribute_fields()])


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
        columns += _attribute_columns(probs, boxes, ok, self.rule)
        return pa.Table.from_arrays(columns, schema=self.schema)


class PhotoPredictor:
    """Ray Data actor: batches of photo files (``path``, ``bytes``) -> a row per face found,
    or one failed row per photo that does not decode or holds no face."""

    def __init__(self, run_dir: str, cpus: float = 1.0, decision_rule: str = "fitted", detect: str = "auto",
                 detection: dict | None = None, face_margin: float | None = None):
        torch.set_num_threads(threads_for(cpus))
        self.predictor = Predictor(open_run(run_dir), decision_rule=decision_rule, detect=detect,
                                   detection=FaceDetection(**(detection or {})), face_margin=face_margin,
                                   device=given_device())
        self.schema = photo_prediction_schema()

    def __call__(self, batch: dict[str, np.ndarray]) -> pa.Table:
        faces, failed = [], []
        for path, data in zip(batch["path"], batch["bytes"]):
            try:
                faces += self.predictor.faces_in(open_image(str(path), bytes(data)), str(path))
            except PawRayError as e:
                failed.append((str(path), str(e)))
        preds = self.predictor.predict_faces(faces)
        n, ok = len(preds) + len(failed), np.arange(len(preds) + len(failed)) < len(preds)
        probs = np.full((n, NUM_ATTRIBUTES), np.nan, dtype=np.float32)
        boxes = np.zeros((n, NUM_ATTRIBUTES, 4), dtype=np.float32)
        for i, p in enumerate(preds):
            probs[i], boxes[i] = p.probabilities, p.boxes
        inputs = [p.face.source for p in preds] + [path for path, _ in failed]
        squares = [list(p.face.square) for p in preds] + [None] * len(failed)
        scores = [p.face.detection_score for p in preds] + [None] * len(failed)
        ids = [p.face.image_id for p in preds] + [posixpath.basename(path) for path, _ in failed]
        columns = [pa.array(inputs, pa.string()), pa.array(ids, pa.string()),
                   pa.array([p.face.face_index for p in preds] + [0] * len(failed), pa.int32()), pa.array(ok),
                   pa.array([None] * len(preds) + [why for _, why in failed], pa.string()),
                   pa.array(squares, pa.list_(pa.float32(), 4)), pa.array(scores, pa.float32())]
        columns += _attribute_columns(probs, boxes, ok, self.predictor.rule)
        return pa.Table.from_arrays(columns, schema=self.schema)


ACTOR_CPUS = 1.0  # CPUs each model actor holds


def _actor_pool(num_actors: int, gpus_per_actor: float | None) -> tuple[int, float]:
    """(actors, GPUs per actor): ``num_actors`` 0 = one per GPU share when the cluster has
    GPUs, else one per CPU but one (left to the stream); ``gpus_per_actor`` None = 1 when the
    cluster has GPUs, else 0."""
    import ray

    resources = ray.cluster_resources()
    if gpus_per_actor is None:
        gpus_per_actor = 1.0 if resources.get("GPU", 0.0) > 0 else 0.0
    if num_actors <= 0:
        num_actors = how_many_fit(resources, 0.0, gpus_per_actor) if gpus_per_actor > 0 else \
            max(1, how_many_fit(resources, ACTOR_CPUS) - 1)
    return num_actors, gpus_per_actor


def _refuse_used_out(out: str, overwrite: bool) -> None:
    if storage.listdir(out) and not overwrite:
        raise PawRayError(f"{out} already holds files; choose an empty --out or pass --overwrite")


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

    Actors as ``_actor_pool``. Needs a connected Ray (``paw_ray.train.cluster.ensure_ray``).
    """
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
    _refuse_used_out(out, overwrite)
    run.artifact("finetune")  # fail here, not in every actor, when the run is unfinished
    rule = run.decision_rule(decision_rule)
    if fell_back(decision_rule, rule):
        log(f"[predict] {run_dir} holds no fitted decision rule: decisions are probability > 0.5")

    num_actors, gpus_per_actor = _actor_pool(num_actors, gpus_per_actor)
    op_cpus = op_cpus or cascade_cfg.data.op_cpus

    t0 = time.time()
    streams = [image_stream(data_dir, s, RowDecoder(cascade_cfg.data.image_size), op_cpus=op_cpus)
               for s in splits]
    ds = streams[0].union(*streams[1:]) if len(streams) > 1 else streams[0]
    _write_predictions(ds, CascadePredictor, {"run_dir": run_dir, "stored_size": info.image_size, "cpus": ACTOR_CPUS,
                                              "decision_rule": decision_rule},
                       out, num_actors, gpus_per_actor, batch_size, overwrite)
    seconds = time.time() - t0
    rows, failed, files = _count_rows(out)
    expected = sum(info.num_rows.get(s, 0) for s in splits)
    return {"out": out, "files": len(files), "rows": rows, "input_rows": expected, "decode_failures": failed,
            "splits": splits, "seconds": round(seconds, 2), "images_per_s": round(rows / max(seconds, 1e-9), 1),
            "decision_rule": rule.rule, "actors": num_actors, "gpus_per_actor": gpus_per_actor, "op_cpus": op_cpus,
            "device": "GPU" if gpus_per_actor > 0 else "CPU"}


def _write_predictions(ds, predictor, kwargs: dict, out: str, num_actors: int, gpus_per_actor: float,
                       batch_size: int, overwrite: bool) -> None:
    """``ds`` through a pool of ``num_actors`` ``predictor(**kwargs)`` model actors, written
    as Parquet under ``out``."""
    import ray.data

    ds = ds.map_batches(predictor, fn_constructor_kwargs=kwargs, compute=ray.data.ActorPoolStrategy(size=num_actors),
                        num_cpus=ACTOR_CPUS, num_gpus=gpus_per_actor, batch_size=batch_size, batch_format="numpy")
    ds.write_parquet(out, mode=ray.data.SaveMode.OVERWRITE if overwrite else ray.data.SaveMode.APPEND)


def _photo_files(inputs: list[str]) -> list[str]:
    """The image files named, and those under each folder named (``IMAGE_SUFFIXES``)."""
    files = []
    for location in inputs:
        if storage.is_file(location):
            files.append(storage.absolute(location))
        elif storage.is_dir(location):
            found = storage.find_files(storage.absolute(location), IMAGE_SUFFIXES)
            if not found:
                raise PawRayError(f"{location}: no image files in this folder ({', '.join(IMAGE_SUFFIXES)})")
            files += found
        else:
            raise PawRayError(f"{location}: no such file or folder")
    return files


def predict_photos(run_dir: str, inputs: list[str], out: str, *, num_actors: int = 0,
                   gpus_per_actor: float | None = None, batch_size: int = 32, overwrite: bool = False,
                   decision_rule: str = "fitted", detect: str = "auto", detection: FaceDetection | None = None,
                   face_margin: float | None = None, log: Callable[[str], None] = print) -> dict:
    """Find and predict every face in the photos of ``inputs`` (files and folders, local or
    URIs) into Parquet files under ``out``, a row per face (``photo_prediction_schema``);
    return counts and throughput. Actors as ``_actor_pool``; needs a connected Ray."""
    import ray
    import ray.data

    run = open_run(run_dir)
    files = _photo_files(inputs)
    _refuse_used_out(out, overwrite)
    run.artifact("finetune")
    rule = run.decision_rule(decision_rule)
    if fell_back(decision_rule, rule):
        log(f"[predict] {run_dir} holds no fitted decision rule: decisions are probability > 0.5")
    num_actors, gpus_per_actor = _actor_pool(num_actors, gpus_per_actor)
    detection = detection or FaceDetection()
    t0 = time.time()
    ds = ray.data.read_binary_files(files, include_paths=True)
    _write_predictions(ds, PhotoPredictor, {"run_dir": run_dir, "cpus": ACTOR_CPUS, "decision_rule": decision_rule,
                                            "detect": detect, "detection": dataclasses.asdict(detection),
                                            "face_margin": face_margin},
                       out, num_actors, gpus_per_actor, batch_size, overwrite)
    seconds = time.time() - t0
    fs, path = storage.resolve(out)
    table = pq.read_table(path, columns=["input", "ok", "error"], filesystem=fs)
    ok = table.column("ok").to_numpy(zero_copy_only=False)
    failures = [why for why, fine in zip(table.column("error").to_pylist(), ok) if not fine]
    for why in sorted(failures)[:10]:
        log(f"[predict] {why}")
    if len(failures) > 10:
        log(f"[predict] ... and {len(failures) - 10} more photos without a prediction (column 'error')")
    return {"out": out, "photos": len(files), "photos_failed": len(failures), "faces": int(ok.sum()),
            "rows": len(ok), "seconds": round(seconds, 2), "photos_per_s": round(len(files) / max(seconds, 1e-9), 2),
            "decision_rule": rule.rule, "detect": detect, "detection": detection.to_json(), "actors": num_actors,
            "gpus_per_actor": gpus_per_actor, "device": "GPU" if gpus_per_actor > 0 else "CPU"}
