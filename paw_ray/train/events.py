"""Per-epoch metrics as TensorBoard event files (docs/architecture.md, "Progress").

Rank 0 of each Ray Train stage, and each part task, adds one point per finished epoch to
its own folder: ``<run>/tensorboard/<stage>/`` and ``<run>/tensorboard/parts/part_NN/``,
so ``tensorboard --logdir <run>/tensorboard`` shows every stage side by side. Each epoch's
event (tensorboardX's protocol buffers and record writer; tensorboardX comes with Ray Tune)
is written synchronously to a local file, which is then copied into the run directory
through ``paw_ray.storage``: the same code stores the events on a local disk or a bucket,
and an epoch's point is stored when ``add`` returns.
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import time

from paw_ray import storage
from paw_ray.train.progress import images_per_s

__all__ = ["events_dir", "EpochEvents", "SCALARS"]

# TensorBoard tag -> the epoch record's key (loop.run_epoch's metrics)
SCALARS = {
    "loss/train": "train_loss",
    "loss/val": "val_loss",
    "accuracy/val_mean": "val_mean_accuracy",
    "optim/learning_rate": "lr",
}


def events_dir(run_dir: str, name: str) -> str:
    """``<run>/tensorboard/<name>``; ``name`` may hold ``/`` (``parts/part_07``)."""
    return storage.join(run_dir, "tensorboard", *name.split("/"))


class EpochEvents:
    """``add(record)`` once per finished epoch; ``close()`` at the end (or use ``with``)."""

    def __init__(self, dest: str):
        from tensorboardX.proto.event_pb2 import Event  # imported where events are written: protobuf
        from tensorboardX.record_writer import RecordWriter

        self.dest = dest  # an ``events_dir``
        self._local = tempfile.mkdtemp(prefix="paw-ray-events-")
        self._name = f"events.out.tfevents.{time.time():.0f}.{socket.gethostname()}.{os.getpid()}"
        self._records = RecordWriter(os.path.join(self._local, self._name))
        self._event = Event
        self._write(Event(wall_time=time.time(), file_version="brain.Event:2"))

    def _write(self, event) -> None:
        self._records.write(event.SerializeToString())
        self._records.flush()  # written now, not by a background thread: each epoch is on disk when add returns

    def add(self, record: dict) -> None:
        """The epoch's scalars at step ``epoch + 1``, then copied into the run directory."""
        from tensorboardX.proto.summary_pb2 import Summary

        values = {tag: float(record[key]) for tag, key in SCALARS.items() if record.get(key) is not None}
        if record.get("train_rows"):
            values["throughput/images_per_s"] = images_per_s(record)
        summary = Summary(value=[Summary.Value(tag=tag, simple_value=v) for tag, v in values.items()])
        self._write(self._event(wall_time=time.time(), step=int(record["epoch"]) + 1, summary=summary))
        with open(os.path.join(self._local, self._name), "rb") as f:
            storage.write_bytes_atomic(storage.join(self.dest, self._name), f.read())

    def close(self) -> None:
        self._records.close()
        shutil.rmtree(self._local, ignore_errors=True)

    def __enter__(self) -> "EpochEvents":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
