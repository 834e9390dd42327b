"""Stage ``parts``: the 40 part subnets g_1..g_40, trained as 40 independent Ray tasks.

Part task j (paper §3.4): a student initialised from g_0 (the ``whole`` stage),
trained alone on the stream of attribute j's window — cut on the fly from the part
centres by the stream's ``RowDecoder(part=j)``, so the task moves only its own crop — to predict
all 40 attributes. The task's first epoch streams; its crops are kept after that pass
(``EpochFeed``: in memory within ``parts.cache_mb``, beyond it in a memory-mapped file on
the node's local disk; the pass reads train and val as one stream and keeps the val crops
too), and the later epochs reshuffle and re-flip them instead of
decoding every full image again: each image is decoded once per task. Each task has its own resources
(``parts.num_cpus``, fractional ``parts.num_gpus`` to share a GPU), Ray retries it when
its process or node dies (``parts.max_retries``), and it keeps its own checkpoint after
every epoch, so a retried task resumes where its last attempt stopped. A part whose ``done.json`` holds
the stage's fingerprint is finished: a rerun does not retrain it.

Layout::

    <run>/stages/parts/part_07/checkpoint.pt   # last epoch (model, optimizer, history)
    <run>/stages/parts/part_07/model.pt        # trained weights (standalone SNet layout)
    <run>/stages/parts/part_07/done.json       # fingerprint, metrics, where it ran
    <run>/stages/parts/model.pt                # all 40 as one vectorised PartSubnets
"""

from __future__ import annotations

import math
import os
import tempfile
import time
from typing import Any

import torch.nn.functional as F

from paw_ray import config as C
from paw_ray import storage
from paw_ray.attributes import ATTRIBUTES, NUM_ATTRIBUTES
from paw_ray.config import to_dict
from paw_ray.data import shards
from paw_ray.data.cache import choose_placement, row_bytes
from paw_ray.data.feed import EpochFeed, Holdout
from paw_ray.data.stream import RowDecoder, consumer_decoder, image_stream
from paw_ray.errors import StageFailed, root_message
from paw_ray.models.paw import PartSubnets
from paw_ray.models.students import SNet
from paw_ray.train.checkpoints import CheckpointError, UnsafeCheckpointError, load_state, save_state
from paw_ray.train.events import EpochEvents
from paw_ray.train.progress import clock, eta
from paw_ray.train.loop import (
    channels_last,
    describe_placement,
    make_optimizer,
    resume_from,
    run_epoch,
    setup_worker,
    training_state,
    validates,
)
from paw_ray.train.resources import given_device, how_many_fit, threads_for
from paw_ray.train.stage_table import StageRun
from paw_ray.train.stages.localize import load_centres
from paw_ray.train.task import TrainTask

__all__ = ["run_stage", "run_parts", "part_dir", "train_part"]


def part_dir(run_dir: str, part: int) -> str:
    return storage.join(run_dir, "stages", "parts", f"part_{part:02d}")


def _done_record(run_dir: str, part: int) -> dict[str, Any] | None:
    where = storage.join(part_dir(run_dir, part), "done.json")
    if not storage.exists(where):
        return None
    try:
        return storage.read_json(where)
    except ValueError:
        return None  # a torn or foreign record: the part is simply retrained


def _own_checkpoint(location: str, fingerprint: str) -> dict | None:
    """The part's last checkpoint if it was written for this stage's fingerprint, else None
    (none yet, unreadable or foreign: the part trains from the start)."""
    if not storage.exists(location):
        return None
    try:
        state = load_state(location)
    except UnsafeCheckpointError:
        raise  # code where weights belong: stop, never retrain over the evidence
    except CheckpointError:
        return None
    return state if state.get("fingerprint") == fingerprint else None


def train_part(part: int, cfg_dict: dict, data_dir: str, run_dir: str, whole_location: str,
               centres_ref, fingerprint: str) -> dict[str, Any]:
    """Train part subnet ``part`` (runs as a Ray task); returns its done record."""
    import ray

    cfg = C.from_dict(cfg_dict)
    pc = cfg.parts
    setup_worker(pc.num_cpus, cfg.seed * 1000 + part)
    device = given_device(pc.num_gpus)
    here = part_dir(run_dir, part)
    ckpt_location = storage.join(here, "checkpoint.pt")

    model = SNet.from_config(cfg)
    model.load_state_dict(load_state(whole_location))
    channels_last(model.to(device))
    optimizer = make_optimizer(model.parameters(), pc)
    state = _own_checkpoint(ckpt_location, fingerprint)
    start_epoch, history, attempt = resume_from(state, model, optimizer) if state else (0, [], 0)

    def loss(m, batch):
        out = m(batch["image"])
        return F.binary_cross_entropy_with_logits(out.logits, batch["labels"]), out.logits

    task = TrainTask(model=model, loss=loss)
    decoder = RowDecoder(cfg.data.image_size, centres=centres_ref, part=part, part_size=cfg.data.part_size)
    decode_in = C.decode_place(cfg.data.decode_in, part_task=True)
    common = dict(op_cpus=cfg.data.op_cpus, decode_in=decode_in)
    consumer = dict(decoder=consumer_decoder(decoder, decode_in),
                    decode_threads=threads_for(pc.num_cpus), spill_dir=tempfile.gettempdir())
    seed = cfg.seed * 100 + part
    epochs = C.epochs_to_run(cfg, pc.epochs)
    rows = shards.read_info(data_dir).num_rows
    nbytes = row_bytes(cfg.data.part_size) * (rows["train"] + rows["val"])
    epochs_left = max(epochs, 1) - start_epoch  # a cache pays only with more than one epoch (a retry may have fewer)
    placement = choose_placement(nbytes, pc.cache_mb, device, spill_dir=tempfile.gettempdir(),
                                 consumers_on_node=max(1, math.floor((os.cpu_count() or 1) / max(pc.num_cpus, 1e-3)))) \
        if epochs_left > 1 else None
    val_feed = EpochFeed(image_stream(data_dir, "val", decoder, **common), batch_size=pc.batch_size, device=device,
                         placement=placement, **consumer)
    # Rows kept: the first pass reads train and val as one stream (one Ray Data execution) and
    # fills the val cache on its way; the val stream above runs only if that pass is cut short.
    holdout = Holdout(shards.split_ids(data_dir, "val"), val_feed) if placement is not None else None
    train_stream = image_stream(data_dir, ("train", "val") if holdout else "train", decoder, shuffle=True, seed=seed,
                                **common)
    train_feed = EpochFeed(train_stream, batch_size=pc.batch_size, device=device, placement=placement,
                           flip_seed=seed, shuffle_seed=seed, holdout=holdout, **consumer)
    feeds = (train_feed, val_feed)
    t0 = time.time()
    with EpochEvents(run_dir, f"parts/part_{part:02d}", mlflow=cfg.tracking.mlflow) as events:
        for epoch in range(start_epoch, max(epochs, 1)):
            checkpointed = validates(epoch, epochs, pc.val_every)
            metrics = run_epoch(model, task, optimizer, pc, epoch=epoch, epochs=epochs, attempt=attempt,
                                device=device, max_steps=cfg.max_steps, feeds=feeds, validation=checkpointed,
                                log_prefix=f"[parts] part {part:02d}")
            history.append(metrics)
            events.add(metrics)
            if checkpointed:
                save_state(ckpt_location, training_state(model, optimizer, epoch, history, attempt,
                                                         fingerprint=fingerprint))
    save_state(storage.join(here, "model.pt"), {k: v.cpu() for k, v in model.state_dict().items()})
    ctx = ray.get_runtime_context()
    record = {"part": part, "attribute": ATTRIBUTES[part], "fingerprint": fingerprint,
              "metrics": history[-1] if history else {}, "history": history,
              "node_id": ctx.get_node_id(), "task_id": ctx.get_task_id(), "attempt": attempt, "placement": placement,
              "input": describe_placement(placement, nbytes, pc.cache_mb, epochs_left),
              "wall_time_s": round(time.time() - t0, 2)}
    storage.write_json_atomic(storage.join(here, "done.json"), record)
    return record


def max_in_flight(cfg) -> int:
    """How many part tasks may run at once so their own data tasks still find a CPU.

    A part task's stream runs Ray Data tasks of ``data.op_cpus`` each; if part tasks
    took every CPU those would never start. Each in-flight task is given room for one.
    """
    import ray

    resources = ray.cluster_resources()
    gpus = cfg.parts.num_gpus if resources.get("GPU", 0.0) > 0 else 0.0  # GPU parts on a CPU cluster: by CPUs
    return how_many_fit(resources, cfg.parts.num_cpus + cfg.data.op_cpus, gpus)


def run_stage(run: StageRun) -> tuple[str, dict[str, Any]]:
    """The runner's entry (``stage_table``): the 40 parts of ``run``."""
    return run_parts(run.cfg, run.data_dir, run.run_dir, run.fingerprint, run.inputs["whole"],
                     run.inputs["localize"], run.log)


def run_parts(cfg, data_dir: str, run_dir: str, fingerprint: str, whole_location: str,
              centres_location: str, log=print) -> tuple[str, dict[str, Any]]:
    """Fan out the unfinished parts as Ray tasks, wait for all 40, assemble the vectorised module."""
    import ray

    records: dict[int, dict] = {}
    todo = []
    for part in range(NUM_ATTRIBUTES):
        rec = _done_record(run_dir, part)
        if rec and rec.get("fingerprint") == fingerprint and storage.exists(
                storage.join(part_dir(run_dir, part), "model.pt")):
            records[part] = {**rec, "reused": True}
        else:
            todo.append(part)
    if records:
        log(f"[parts] {len(records)}/40 parts already trained for this config: reused")

    if todo:
        centres_ref = ray.put(load_centres(centres_location))
        remote = ray.remote(train_part)
        options = dict(num_cpus=cfg.parts.num_cpus, num_gpus=cfg.parts.num_gpus,
                       max_retries=cfg.parts.max_retries, retry_exceptions=False)
        cfg_dict = to_dict(cfg)
        queue, running = list(todo), {}
        t0, finished = time.time(), 0
        while queue or running:
            limit = max_in_flight(cfg)
            for ref in list(running)[limit:]:
                # The cluster shrank (a node died) and Ray retries its tasks elsewhere: with
                # more in flight than now fit, part tasks would hold every CPU while waiting
                # for data tasks that can never start. The newest go back to the queue and
                # resume from their own checkpoint later.
                ray.cancel(ref, force=True)
                queue.insert(0, running.pop(ref))
            while queue and len(running) < limit:
                part = queue.pop(0)
                ref = remote.options(name=f"part-{part:02d}", **options).remote(
                    part, cfg_dict, data_dir, run_dir, whole_location, centres_ref, fingerprint)
                running[ref] = part
            ready, _ = ray.wait(list(running), num_returns=1, timeout=5.0)
            if not ready:
                continue
            part = running.pop(ready[0])
            try:
                rec = ray.get(ready[0])
            except Exception as e:  # noqa: BLE001
                raise StageFailed(f"part {part:02d} ({ATTRIBUTES[part]}) failed after "
                                  f"{cfg.parts.max_retries} retries: {root_message(e)}") from e
            records[part] = rec
            acc = rec["metrics"].get("val_mean_accuracy", float("nan"))
            finished += 1
            elapsed = time.time() - t0
            log(f"[parts] {len(records)}/{NUM_ATTRIBUTES} done · part {part:02d} {ATTRIBUTES[part]}: "
                f"val mean acc {100 * acc:.2f}%, {rec['wall_time_s']:.1f}s, attempt {rec['attempt']} · "
                f"{clock(elapsed)} elapsed, ETA {eta(elapsed, finished, len(queue) + len(running))}")

    subnets = PartSubnets.from_config(cfg)
    for part in range(NUM_ATTRIBUTES):
        subnets.load_part_state_dict(part, load_state(storage.join(part_dir(run_dir, part), "model.pt")))
    location = storage.join(run_dir, "stages", "parts", "model.pt")
    save_state(location, subnets.state_dict())
    metrics = {
        "parts_trained": len(todo),
        "parts_reused": NUM_ATTRIBUTES - len(todo),
        "nodes": sorted({r["node_id"] for r in records.values()}),
        "val_mean_accuracy": [round(records[p]["metrics"].get("val_mean_accuracy", float("nan")), 4)
                              for p in range(NUM_ATTRIBUTES)],
        "history": {p: records[p].get("history", []) for p in range(NUM_ATTRIBUTES)},
    }
    return location, metrics
