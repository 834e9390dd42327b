"""What Ray Train has recorded of a stage's checkpoints in a run directory (local or in a
bucket), read as a test watching a running stage reads it."""

from __future__ import annotations

import json

from paw_ray import storage
from paw_ray.train.trainer import ray_train_storage

SNAPSHOT = "checkpoint_manager_snapshot.json"  # Ray Train V2's record of a run's checkpoints


def latest_checkpoint_metrics(run_dir: str, stage: str) -> dict | None:
    """The metrics reported with the stage's last recorded checkpoint (its checkpoint
    manager's snapshot: a restarted run of the same name resumes from it), or None before
    the first."""
    folder = ray_train_storage(run_dir)
    for name in storage.listdir(folder):
        snapshot = storage.join(folder, name, SNAPSHOT)
        if name.startswith(f"{stage}-") and storage.exists(snapshot):
            state = storage.read_json(snapshot)
            state = json.loads(state) if isinstance(state, str) else state
            return (state.get("latest_checkpoint_result") or {}).get("metrics")
    return None
