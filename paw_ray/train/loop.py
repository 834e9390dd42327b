"""The epoch loop every Ray Train stage runs on each worker.

A stage supplies a ``TrainTask`` (its model, its trainable parameters, its loss and
the artifact it leaves); this module does the rest the same way for all of them:
DDP through ``ray.train.torch.prepare_model``, SGD with momentum and weight decay,
the learning-rate schedule, the input stream from ``get_dataset_shard``, validation
accuracy all-reduced across workers, and a checkpoint with ``ray.train.report`` every
epoch. Each worker's first epoch streams its shard from Ray Data; when the shard fits the
cache budget (``data.cache_mb``) the worker keeps it decoded and serves the later epochs
from there (``EpochFeed``). A restarted worker group (``FailureConfig``) or a rerun with the same run name
resumes from the last reported checkpoint: ``history`` records every epoch with the
attempt that ran it, so the resume point is visible.
"""

from __future__ import annotations

import contextlib
import math
import os
import resource
import tempfile
import time
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from paw_ray import config as C
from paw_ray.data.batches import StreamStats
from paw_ray.data.cache import choose_placement, row_bytes
from paw_ray.data.feed import EpochFeed
from paw_ray.train.checkpoints import load_state, save_state
from paw_ray.train.events import EpochEvents
from paw_ray.train.progress import write_progress
from paw_ray.train.resources import threads_for
from paw_ray.train.stage_table import stage as stage_spec
from paw_ray.train.task import TrainTask

__all__ = ["train_worker_loop", "make_optimizer", "run_epoch", "train_epoch", "validate", "STATE_FILE", "epoch_lr",
           "per_attribute_correct", "peak_rss_mb", "channels_last", "describe_placement", "validates",
           "setup_worker", "training_state", "resume_from",
           "all_reduce_in_place"]

STATE_FILE = "state.pt"


def make_optimizer(params, scfg):
    """SGD with momentum and weight decay (the paper), or AdamW with the same weight decay
    (the small CPU presets: it reaches in a few epochs what SGD needs many more for)."""
    params = list(params) or [torch.zeros(1, requires_grad=True)]
    if scfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=scfg.lr, weight_decay=scfg.weight_decay)
    return torch.optim.SGD(params, lr=scfg.lr, momentum=scfg.momentum, weight_decay=scfg.weight_decay)


def epoch_lr(base_lr: float, schedule: str, epoch: int, epochs: int) -> float:
    """Cosine annealing from ``base_lr`` to 0 over the epochs, or constant."""
    if schedule == "constant" or epochs <= 1:
        return base_lr
    return 0.5 * base_lr * (1.0 + math.cos(math.pi * epoch / epochs))


def per_attribute_correct(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """(40,) count of correct decisions (score > 0 <=> positive) in a batch."""
    return ((logits > 0).float() == labels).float().sum(dim=0)


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if hasattr(model, "module") else model


def channels_last(x):
    """``x`` (a model or an image batch) in the channels_last memory format, where every
    stage's convolutions run faster, on CPUs and GPUs (``benchmarks/bench_roofline.py``)."""
    if isinstance(x, nn.Module):
        return x.to(memory_format=torch.channels_last)
    return x.contiguous(memory_format=torch.channels_last) if x.dim() == 4 else x


def describe_placement(placement: str | None, nbytes: int, budget_mb: float, epochs_left: int) -> str:
    """The run log's line on where a consumer's rows live after its first epoch."""
    size = f"{nbytes / 2**20:.0f} MB"
    if placement is None:
        why = ("one epoch to run, nothing to keep" if epochs_left <= 1 else
               "never cached: cache_mb=0" if budget_mb == 0 else "over the cache budget")
        return f"input: streamed from Ray Data every epoch ({size}, {why})"
    where = {"gpu": "on the GPU", "host": "in host memory", "disk": "in a memory-mapped file on local disk"}
    return f"input: first epoch streamed, later epochs from the decoded cache {where[placement]} ({size})"


def setup_worker(cpus: float, seed: int) -> None:
    """A training process's torch: one intra-op thread per CPU it holds (at least one), and
    its own seed."""
    torch.set_num_threads(threads_for(cpus))
    torch.manual_seed(seed)


def training_state(model: nn.Module, optimizer, epoch: int, history: list, attempt: int, **extra) -> dict:
    """What a checkpoint holds to resume training: the weights, the optimizer, the last epoch
    run, every epoch's record so far and the attempt that ran it (plus ``extra``)."""
    return {"model": _unwrap(model).state_dict(), "optimizer": optimizer.state_dict(), "epoch": epoch,
            "history": history, "attempt": attempt, **extra}


def resume_from(state: dict, model: nn.Module, optimizer) -> tuple[int, list, int]:
    """Load a ``training_state`` into ``model`` and ``optimizer``; return the epoch to start
    from, the history so far and this attempt's number."""
    _unwrap(model).load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    return state["epoch"] + 1, state["history"], state["attempt"] + 1


def validates(epoch: int, epochs: int, val_every: int) -> bool:
    """Whether ``epoch`` validates and checkpoints: every ``val_every``-th epoch and the last."""
    return epoch == max(epochs, 1) - 1 or (epoch + 1) % val_every == 0


def autocast(device, precision: str):
    """A factory of the forward passes' precision context: bfloat16 autocast on a CUDA device
    when ``precision`` is ``bf16`` (weights, gradients and the optimizer stay float32), float32
    everywhere else."""
    if precision == "bf16" and torch.device(device).type == "cuda":
        return lambda: torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext


def all_reduce_in_place(t: torch.Tensor, device) -> torch.Tensor:
    """Sum the CPU tensor ``t`` across DDP workers, in place. The reduction runs on the
    workers' ``device``: NCCL (Ray Train's backend with ``use_gpu``) reduces only GPU tensors."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        on_device = t.to(device)
        torch.distributed.all_reduce(on_device)
        t.copy_(on_device)
    return t


def train_worker_loop(loop_config: dict[str, Any]) -> None:
    """``train_loop_per_worker`` of every TorchTrainer stage (see ``trainer.run_train_stage``)."""
    import ray.train
    import ray.train.torch

    stage = loop_config["stage"]
    cfg = C.from_dict(loop_config["cfg"])
    scfg: C.StageConfig = getattr(cfg, stage)
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    setup_worker(scfg.cpus_per_worker, cfg.seed * 1000 + rank)
    device = ray.train.torch.get_device()

    task = stage_spec(stage).code().build_task(stage, cfg, loop_config["inputs"], device, loop_config["label_prior"])
    trainable = [p for p in task.model.parameters() if p.requires_grad]
    channels_last(task.model)
    model = ray.train.torch.prepare_model(task.model) if trainable else task.model.to(device)
    optimizer = make_optimizer(trainable, scfg)

    start_epoch, history = 0, []
    attempt = 0
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as d:
            start_epoch, history, attempt = resume_from(load_state(os.path.join(d, STATE_FILE)), model, optimizer)

    # where the workers run (the manifest's record of a stage shows it)
    nodes = [ray.get_runtime_context().get_node_id()]
    if world > 1 and torch.distributed.is_available() and torch.distributed.is_initialized():
        gathered = [None] * world
        torch.distributed.all_gather_object(gathered, nodes[0])
        nodes = gathered
    epochs = C.epochs_to_run(cfg, scfg.epochs)
    per_worker_batch = max(1, scfg.batch_size // world)
    rows = loop_config["rows"]
    nbytes = row_bytes(cfg.data.image_size, centres=stage_spec(stage).crops_at_centres) * sum(
        math.ceil(rows[s] / world) for s in ("train", "val"))
    epochs_left = max(epochs, 1) - start_epoch  # a cache pays only when this attempt runs more than one epoch
    placement = choose_placement(nbytes, cfg.data.cache_mb, device, consumers_on_node=ctx.get_local_world_size()) \
        if epochs_left > 1 else None
    if rank == 0:
        print(f"[{stage}] {describe_placement(placement, nbytes, cfg.data.cache_mb, epochs_left)} per worker",
              flush=True)
    decode = dict(decoder=loop_config["decoder"], decode_threads=threads_for(scfg.cpus_per_worker))
    feeds = (EpochFeed(ray.train.get_dataset_shard("train"), batch_size=per_worker_batch, device=device,
                       placement=placement, flip_seed=cfg.seed, shuffle_seed=cfg.seed, **decode),
             EpochFeed(ray.train.get_dataset_shard("val"), batch_size=per_worker_batch, device=device,
                       placement=placement, **decode))

    events = EpochEvents(**loop_config["events"], mlflow=cfg.tracking.mlflow) \
        if rank == 0 and loop_config.get("events") else None
    for epoch in range(start_epoch, max(epochs, 1)):
        last = epoch == max(epochs, 1) - 1
        checkpointed = validates(epoch, epochs, scfg.val_every)
        metrics = run_epoch(model, task, optimizer, scfg, epoch=epoch, epochs=epochs, attempt=attempt,
                            device=device, max_steps=cfg.max_steps, feeds=feeds, train=bool(trainable),
                            validation=checkpointed, log_prefix=f"[{stage}]" if rank == 0 else None)
        metrics["workers"] = world
        metrics["nodes"] = sorted(set(nodes))
        history.append(metrics)
        if rank == 0 and loop_config.get("progress"):
            write_progress(loop_config["progress"], {**metrics, "epochs": max(epochs, 1)})
        if events is not None:
            events.add(metrics)
        if rank == 0 and checkpointed:
            state = training_state(model, optimizer, epoch, history, attempt)
            if last:
                state["artifact"] = (task.artifact or (lambda m: m.state_dict()))(_unwrap(model))
            with tempfile.TemporaryDirectory() as d:
                save_state(os.path.join(d, STATE_FILE), state)
                ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(d))
        else:
            ray.train.report(metrics, checkpoint=None)
    if events is not None:
        events.close()


def run_epoch(model, task: TrainTask, optimizer, scfg, *, epoch: int, epochs: int, attempt: int, device,
              max_steps: int, feeds: tuple[EpochFeed, EpochFeed], train: bool = True,
              validation: bool = True, log_prefix: str | None = None) -> dict[str, Any]:
    """Set the epoch's learning rate, train over the training feed's epoch (not when ``epochs``
    is 0 or ``train`` is False), validate over the validation feed's (when ``validation``);
    return the epoch's metrics (summed across DDP workers; no ``val_*`` without validation)."""
    t0 = time.time()
    lr = epoch_lr(scfg.lr, scfg.lr_schedule, epoch, epochs)
    for group in optimizer.param_groups:
        group["lr"] = lr
    model.train()
    stats = StreamStats()
    train_feed, val_feed = feeds
    cast = autocast(device, scfg.precision)
    run = train_epoch(model, task, optimizer, train_feed.epoch(epoch, stats), max_steps, cast) \
        if epochs > 0 and train else TrainedEpoch()
    t_val = time.time()
    val = {"decode_failures": 0}
    if validation:
        val_stats = StreamStats()
        val = validate(model, task, val_feed.epoch(epoch, val_stats), val_stats, device, max_steps, cast)
    val_s = time.time() - t_val
    counts = all_reduce_in_place(torch.tensor([run.loss_sum, run.steps, stats.rows, stats.decode_failures,
                                               run.correct_sum(), run.rows], dtype=torch.float64), device)
    metrics = {
        "epoch": epoch,
        "attempt": attempt,
        "lr": lr,
        "train_loss": float(counts[0] / max(counts[1], 1)),
        "train_steps": int(counts[1]),
        "train_rows": int(counts[2]),
        "decode_failures": int(counts[3] + val["decode_failures"]),
        "epoch_time_s": round(time.time() - t0, 2),
        "started_at": round(t0, 3),
        # where this worker's training batches came from, how long it waited for them (the
        # first one alone too) and how long it spent in the training steps
        "input": train_feed.last_source,
        "input_wait_s": round(run.wait_s, 3),
        "first_batch_s": round(run.first_batch_s, 3),
        "step_s": round(run.step_s, 3),
        "val_s": round(val_s, 3),
        "peak_rss_mb": peak_rss_mb(),
    }
    if counts[5]:  # the training decisions' mean accuracy over the 40 attributes, as the epoch trained
        metrics["train_mean_accuracy"] = float(counts[4] / (counts[5] * 40))
    if validation:
        metrics["val_loss"], metrics["val_mean_accuracy"] = val["loss"], val["mean_accuracy"]
        metrics["val_input"] = val_feed.last_source
    if getattr(device, "type", "") == "cuda":
        metrics["peak_gpu_mb"] = round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
    if metrics["decode_failures"] and log_prefix:
        print(f"{log_prefix} epoch {epoch}: skipped {metrics['decode_failures']} row(s) whose image "
              f"did not decode, e.g. {stats.failed_ids[:3]}")
    return metrics


def peak_rss_mb() -> float:
    """This process's peak resident memory so far (a dry run's memory check), in MiB."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)  # Linux: KiB


@dataclass
class TrainedEpoch:
    """One worker's pass over its training batches: the summed loss, the steps, and where its
    time went (``float(loss)`` waits for the device, so a step's time is its own)."""

    loss_sum: float = 0.0
    steps: int = 0
    wait_s: float = 0.0  # waiting for the next batch
    first_batch_s: float = 0.0  # of which for the first one
    step_s: float = 0.0  # in the training steps
    rows: int = 0  # trained on
    correct: torch.Tensor | None = None  # (40,) correct decisions so far, on the device (no sync per step)

    def correct_sum(self) -> float:
        return float(self.correct.sum()) if self.correct is not None else 0.0


def train_epoch(model, task: TrainTask, optimizer, batches, max_steps: int = 0,
                cast=contextlib.nullcontext) -> TrainedEpoch:
    """One pass of SGD over ``batches`` (model batches from an ``EpochFeed``), each forward
    pass and loss inside ``cast()`` (``autocast``)."""
    out = TrainedEpoch()
    it = iter(batches)
    while True:
        t0 = time.perf_counter()
        b = next(it, None)
        t1 = time.perf_counter()
        out.wait_s += t1 - t0
        if out.steps == 0:
            out.first_batch_s = out.wait_s
        if b is None:
            break
        if len(b["image_id"]) == 0:
            continue
        with cast():
            loss, logits = task.loss(model, b)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        out.steps += 1
        out.loss_sum += float(loss.detach())
        right = per_attribute_correct(logits.detach().float(), b["labels"])
        out.correct = right if out.correct is None else out.correct + right
        out.rows += len(b["image_id"])
        out.step_s += time.perf_counter() - t1
        if max_steps and out.steps >= max_steps:
            break
    return out


@torch.no_grad()
def validate(model, task: TrainTask, batches, stats: StreamStats, device, max_steps: int = 0,
             cast=contextlib.nullcontext) -> dict[str, float]:
    """Loss and mean per-attribute accuracy over ``batches`` (whose feed counts into ``stats``),
    summed across DDP workers."""
    model.eval()
    correct = torch.zeros(40, dtype=torch.float64)
    totals = torch.zeros(3, dtype=torch.float64)  # rows, loss sum, batches
    for i, b in enumerate(batches):
        if len(b["image_id"]) == 0:
            continue
        with cast():
            loss, logits = task.loss(model, b)
        correct += per_attribute_correct(logits.float(), b["labels"]).double().cpu()
        totals += torch.tensor([len(b["image_id"]), float(loss), 1.0], dtype=torch.float64)
        if max_steps and i + 1 >= max_steps:
            break
    all_reduce_in_place(correct, device)
    all_reduce_in_place(totals, device)
    failures = int(all_reduce_in_place(torch.tensor([stats.decode_failures], dtype=torch.float64), device)[0])
    rows = max(float(totals[0]), 1.0)
    return {"loss": float(totals[1] / max(float(totals[2]), 1.0)),
            "mean_accuracy": float((correct / rows).mean()),
            "decode_failures": failures}
