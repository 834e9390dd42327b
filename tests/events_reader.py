"""Read back what ``paw_ray.train.events`` wrote: TensorBoard event files (the TFRecord
framing: length, its CRC, the record, its CRC; no TensorBoard install needed) and MLflow runs."""

from __future__ import annotations

import os
import struct

from tensorboardX.proto import event_pb2


def scalars(folder: str) -> dict[str, list[tuple[int, float]]]:
    """``{tag: [(step, value), ...]}`` from every event file in ``folder``, in file order."""
    out: dict[str, list[tuple[int, float]]] = {}
    for name in sorted(os.listdir(folder)):
        if "tfevents" not in name:
            continue
        with open(os.path.join(folder, name), "rb") as f:
            data = f.read()
        at = 0
        while at < len(data):
            (length,) = struct.unpack("<Q", data[at:at + 8])
            event = event_pb2.Event.FromString(data[at + 12:at + 12 + length])
            at += 12 + length + 4
            for v in event.summary.value:
                out.setdefault(v.tag, []).append((event.step, v.simple_value))
    return out


def mlflow_history(uri: str, experiment: str) -> dict[str, dict[str, list[tuple[int, float]]]]:
    """{stage: {metric: [(step, value)]}} of every MLflow run in ``experiment``."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    found = client.get_experiment_by_name(experiment)
    out = {}
    for run in client.search_runs([found.experiment_id]):
        stage = run.data.tags["paw_ray.stage"]
        assert stage not in out, f"{stage}: one MLflow run per stage, not one per attempt"
        out[stage] = {key: sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, key))
                      for key in run.data.metrics}
    return out
