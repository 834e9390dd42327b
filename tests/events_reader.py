"""Read TensorBoard event files back (the TFRecord framing: length, its CRC, the record, its
CRC), to check what ``paw_ray.train.events`` wrote without installing TensorBoard."""

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
