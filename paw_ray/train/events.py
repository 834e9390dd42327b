"""Per-epoch metrics as TensorBoard event files, and in MLflow when asked
(docs/architecture.md, "Progress").

Rank 0 of each Ray Train stage, and each part task, adds one point per finished epoch to
its own folder: ``<run>/tensorboard/<stage>/`` and ``<run>/tensorboard/parts/part_NN/``,
so ``tensorboard --logdir <run>/tensorboard`` shows every stage side by side. Each epoch's
event (tensorboardX's protocol buffers and record writer; tensorboardX comes with Ray Tune)
is written synchronously to a local file, which is then copied into the run directory
through ``paw_ray.storage``: the same code stores the events on a local disk or a bucket,
and an epoch's point is stored when ``add`` returns.

With ``tracking.mlflow`` (a tracking URI; ``paw-ray train --mlflow URI``, the ``mlflow``
extra) the same points go to MLflow: an experiment named after the run directory, one MLflow
run per stage (``parts/part_NN`` per part), found again by its tags when a stage resumes.
A tracking server that stops answering mid-stage costs its points, not the stage: the event
files still hold them.
"""

from __future__ import annotations

import logging
import os
import posixpath
import shutil
import socket
import sys
import tempfile
import time

from paw_ray import storage
from paw_ray.errors import PawRayError
from paw_ray.train.progress import images_per_s

__all__ = ["events_dir", "EpochEvents", "MlflowStage", "absolute_tracking_uri", "experiment_name",
           "mlflow_experiment", "SCALARS"]

# TensorBoard tag -> the epoch record's key (loop.run_epoch's metrics)
SCALARS = {
    "loss/train": "train_loss",
    "loss/val": "val_loss",
    "accuracy/train_mean": "train_mean_accuracy",
    "accuracy/val_mean": "val_mean_accuracy",
    "optim/learning_rate": "lr",
}


def events_dir(run_dir: str, name: str) -> str:
    """``<run>/tensorboard/<name>``; ``name`` may hold ``/`` (``parts/part_07``)."""
    return storage.join(run_dir, "tensorboard", *name.split("/"))


def absolute_tracking_uri(uri: str) -> str:
    """``uri`` with a relative SQLite path made absolute: the stages log from Ray workers,
    which run in other folders (``sqlite:///mlflow.db`` -> ``sqlite:////abs/mlflow.db``)."""
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri[len(prefix):].startswith("/"):
        return prefix + os.path.abspath(uri[len(prefix):])
    return uri


def experiment_name(run_dir: str) -> str:
    """A run's MLflow experiment: the run directory's name."""
    return posixpath.basename(run_dir.rstrip("/")) or run_dir


def mlflow_experiment(uri: str, name: str) -> str:
    """The id of the MLflow experiment ``name`` at ``uri`` (made if new). Called by the driver
    before any stage runs, so a wrong URI or a missing extra stops the command there."""
    try:
        import mlflow  # noqa: F401
    except ImportError:
        raise PawRayError("--mlflow needs MLflow: pip install 'paw-ray[mlflow]'") from None
    client = None
    try:
        client = _client(uri)
        found = client.get_experiment_by_name(name)
        return found.experiment_id if found else client.create_experiment(name)
    except Exception as e:  # noqa: BLE001 - MLflow raises its own, requests' and SQLAlchemy's errors
        found = client and _quietly(client.get_experiment_by_name, name)  # another process made it meanwhile
        if found is not None:
            return found.experiment_id
        raise PawRayError(f"--mlflow {uri}: cannot log there ({type(e).__name__}: {e})") from None


def _client(uri: str):
    """An MLflow client for ``uri``, its store's INFO lines (table creation, migrations) off."""
    from mlflow.tracking import MlflowClient

    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)
    return MlflowClient(uri)


def _quietly(fn, *args):
    try:
        return fn(*args)
    except Exception:  # noqa: BLE001
        return None


class MlflowStage:
    """One stage's MLflow run: ``tags`` say which run directory and stage it is, so a rerun
    of the stage (a resume, a retried part task) continues it instead of starting another."""

    def __init__(self, uri: str, run_dir: str, name: str):
        self.name, self.run_id, self.failed = name, None, ""  # failed: the first error, once one happened
        tags = {"paw_ray.run_dir": run_dir, "paw_ray.stage": name}
        query = " and ".join(f"tags.`{k}` = '{v}'" for k, v in tags.items())
        try:
            self.client = _client(uri)
            experiment = mlflow_experiment(uri, experiment_name(run_dir))
            found = self.client.search_runs([experiment], filter_string=query, max_results=1)
            self.run_id = found[0].info.run_id if found else \
                self.client.create_run(experiment, run_name=name, tags=tags).info.run_id
        except Exception as e:  # noqa: BLE001 - the stage goes on; the event files hold its points
            self._failed("no MLflow run", e)

    def _failed(self, what: str, error: Exception) -> None:
        if not self.failed:
            self.failed = f"{type(error).__name__}: {error}"
            print(f"[mlflow] {self.name}: {what} ({self.failed}); the TensorBoard files still hold every epoch",
                  file=sys.stderr, flush=True)

    def log(self, step: int, values: dict[str, float]) -> None:
        from mlflow.entities import Metric

        if self.run_id is None:
            return
        stamp = int(time.time() * 1000)
        try:
            self.client.log_batch(self.run_id, metrics=[Metric(k, v, stamp, step) for k, v in values.items()])
        except Exception as e:  # noqa: BLE001
            self._failed(f"epoch {step} not logged", e)

    def close(self) -> None:
        if self.run_id is not None:
            _quietly(self.client.set_terminated, self.run_id)


class EpochEvents:
    """``add(record)`` once per finished epoch; ``close()`` at the end (or use ``with``).
    ``name`` is the stage (``parts/part_07`` for a part); ``mlflow`` a tracking URI or ""."""

    def __init__(self, run_dir: str, name: str, mlflow: str = ""):
        from tensorboardX.proto.event_pb2 import Event  # imported where events are written: protobuf
        from tensorboardX.record_writer import RecordWriter

        self.dest = events_dir(run_dir, name)
        self.mlflow = MlflowStage(mlflow, run_dir, name) if mlflow else None
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
        step = int(record["epoch"]) + 1
        self._write(self._event(wall_time=time.time(), step=step, summary=summary))
        with open(os.path.join(self._local, self._name), "rb") as f:
            storage.write_bytes_atomic(storage.join(self.dest, self._name), f.read())
        if self.mlflow is not None:
            self.mlflow.log(step, values)

    def close(self) -> None:
        if self.mlflow is not None:
            self.mlflow.close()
        self._records.close()
        shutil.rmtree(self._local, ignore_errors=True)

    def __enter__(self) -> "EpochEvents":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
