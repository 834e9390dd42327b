"""Per-epoch TensorBoard events (paw_ray.train.events), read back from the files."""

from __future__ import annotations

import os

import pytest

from events_reader import scalars
from paw_ray.train.events import EpochEvents, events_dir
from paw_ray.train.progress import images_per_s


def _record(epoch: int, validated: bool) -> dict:
    record = {"epoch": epoch, "lr": 0.01 / (epoch + 1), "train_loss": 1.0 - 0.1 * epoch, "train_rows": 640,
              "input_wait_s": 1.0, "step_s": 3.0, "epoch_time_s": 5.0}
    if validated:
        record.update(val_loss=0.9 - 0.1 * epoch, val_mean_accuracy=0.6 + 0.05 * epoch)
    return record


def test_each_epoch_is_a_point_per_scalar_in_the_run_directory(tmp_path):
    dest = events_dir(str(tmp_path), "parts/part_07")
    assert dest == os.path.join(str(tmp_path), "tensorboard", "parts", "part_07")
    records = [_record(0, validated=False), _record(1, validated=True)]
    with EpochEvents(dest) as events:
        events.add(records[0])
        after_one = scalars(dest)  # flushed into the run directory at once: a crash loses nothing written
        events.add(records[1])
    assert after_one["loss/train"] == [(1, pytest.approx(1.0))]
    got = scalars(dest)
    assert got["loss/train"] == [(1, pytest.approx(1.0)), (2, pytest.approx(0.9))]
    assert got["optim/learning_rate"] == [(1, pytest.approx(0.01)), (2, pytest.approx(0.005))]
    assert got["loss/val"] == [(2, pytest.approx(0.8))], "validation only where the epoch validated"
    assert got["accuracy/val_mean"] == [(2, pytest.approx(0.65))]
    assert got["throughput/images_per_s"] == [(1, pytest.approx(160.0)), (2, pytest.approx(160.0))]
    assert images_per_s(records[0]) == pytest.approx(640 / 4.0)
