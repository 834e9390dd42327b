"""Driver side of a Ray Train stage: one ``TorchTrainer`` per stage.

``ScalingConfig`` (workers, GPUs, CPUs per worker), ``RunConfig(name, storage_path)``
and ``FailureConfig(max_failures)`` come from the stage's config section. The run
name carries the stage's fingerprint, so rerunning the same stage with the same
config after a crash resumes from its last checkpoint (Ray Train V2: same name and
storage path), while a changed config starts a fresh run beside it.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any, Callable

from paw_ray import storage
from paw_ray.config import Config, StageConfig, to_dict
from paw_ray.data.stream import RowDecoder
from paw_ray.errors import StageFailed, root_message
from paw_ray.train.checkpoints import load_state, save_state
from paw_ray.train.loop import STATE_FILE, train_worker_loop
from paw_ray.train.progress import ProgressTail, progress_dir

__all__ = ["run_train_stage", "ray_train_storage", "worker_count_for_ray"]


def ray_train_storage(run_dir: str) -> str:
    """Where Ray Train keeps a run's per-epoch checkpoints (inside the run directory)."""
    path = storage.join(run_dir, "ray_train")
    return storage.absolute(path)


def worker_count_for_ray(scfg: StageConfig) -> int | tuple[int, int]:
    """``ScalingConfig.num_workers``: the fixed count, or ``(min, max)`` for an elastic stage.
    A resized stage restarts its workers from the last checkpoint; each recomputes its share
    of the global batch from the world size (``loop.train_worker_loop``)."""
    counts = scfg.worker_counts()
    return (counts[0], counts[-1]) if len(counts) > 1 else scfg.num_workers


def run_train_stage(stage: str, cfg: Config, run_dir: str, fingerprint: str,
                    inputs: dict[str, str], datasets: dict[str, Any], label_prior: list[float],
                    rows: dict[str, int], decoder: RowDecoder | None = None,
                    callbacks: list | None = None, log: Callable[[str], None] | None = None) -> tuple[str, dict[str, Any]]:
    """Fit ``stage`` with a TorchTrainer; save its artifact to ``<run>/stages/<stage>/model.pt``.
    ``rows``: each split's row count (the workers size their decoded caches from it).
    ``decoder``: the ``RowDecoder`` the workers apply to streams that carry encoded rows.
    ``log``: where each epoch's progress line goes while the stage trains (``progress``).

    Returns the artifact's location and the final metrics (with the per-epoch history).
    """
    import ray.train
    from ray.train.torch import TorchTrainer

    scfg: StageConfig = getattr(cfg, stage)
    trainer = TorchTrainer(
        train_worker_loop,
        train_loop_config={"stage": stage, "cfg": to_dict(cfg), "inputs": inputs,
                           "label_prior": [float(p) for p in label_prior], "rows": dict(rows),
                           "decoder": decoder, "progress": progress_dir(run_dir, stage),
                           "events": {"run_dir": run_dir, "name": stage}},
        scaling_config=ray.train.ScalingConfig(
            num_workers=worker_count_for_ray(scfg), use_gpu=scfg.use_gpu,
            resources_per_worker={"CPU": scfg.cpus_per_worker, **({"GPU": 1} if scfg.use_gpu else {})},
            placement_strategy=scfg.placement, elastic_resize_monitor_interval_s=cfg.ray.elastic_resize_s,
        ),
        run_config=ray.train.RunConfig(
            name=f"{stage}-{fingerprint}",
            storage_path=ray_train_storage(run_dir),
            failure_config=ray.train.FailureConfig(max_failures=scfg.max_failures),
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=2),
            callbacks=callbacks or None,
        ),
        datasets=datasets,
    )
    try:
        with ProgressTail(progress_dir(run_dir, stage), stage, log) if log else contextlib.nullcontext():
            result = trainer.fit()
    except Exception as e:  # noqa: BLE001 - Ray wraps worker errors; keep the message short and useful
        raise StageFailed(f"stage {stage!r} failed after {scfg.max_failures} allowed restart(s): "
                          f"{root_message(e)}") from e
    if result.checkpoint is None:
        raise StageFailed(f"stage {stage!r} finished without a checkpoint")
    with result.checkpoint.as_directory() as d:
        state = load_state(os.path.join(d, STATE_FILE))
    if "artifact" not in state:
        raise StageFailed(f"stage {stage!r}: last checkpoint has no final artifact")
    artifact = storage.join(run_dir, "stages", stage, "model.pt")
    save_state(artifact, state["artifact"])
    final = dict(state["history"][-1])
    final["history"] = state["history"]
    return artifact, final
