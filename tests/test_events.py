"""Per-epoch TensorBoard events (paw_ray.train.events), read back from the files."""

from __future__ import annotations

import os

import pytest

from events_reader import mlflow_history, scalars
from paw_ray.train.events import EpochEvents, events_dir
from paw_ray.train.progress import images_per_s


def _record(epoch: int, validated: bool) -> dict:
    record = {"epoch": epoch, "lr": 0.01 / (epoch + 1), "train_loss": 1.0 - 0.1 * epoch,
              "train_mean_accuracy": 0.5 + 0.1 * epoch, "train_rows": 640,
              "input_wait_s": 1.0, "step_s": 3.0, "epoch_time_s": 5.0}
    if validated:
        record.update(val_loss=0.9 - 0.1 * epoch, val_mean_accuracy=0.6 + 0.05 * epoch)
    return record


def test_each_epoch_is_a_point_per_scalar_in_the_run_directory(tmp_path):
    dest = events_dir(str(tmp_path), "parts/part_07")
    assert dest == os.path.join(str(tmp_path), "tensorboard", "parts", "part_07")
    records = [_record(0, validated=False), _record(1, validated=True)]
    with EpochEvents(str(tmp_path), "parts/part_07") as events:
        events.add(records[0])
        after_one = scalars(dest)  # flushed into the run directory at once: a crash loses nothing written
        events.add(records[1])
    assert after_one["loss/train"] == [(1, pytest.approx(1.0))]
    got = scalars(dest)
    assert got["loss/train"] == [(1, pytest.approx(1.0)), (2, pytest.approx(0.9))]
    assert got["optim/learning_rate"] == [(1, pytest.approx(0.01)), (2, pytest.approx(0.005))]
    assert got["loss/val"] == [(2, pytest.approx(0.8))], "validation only where the epoch validated"
    assert got["accuracy/val_mean"] == [(2, pytest.approx(0.65))]
    assert got["accuracy/train_mean"] == [(1, pytest.approx(0.5)), (2, pytest.approx(0.6))]
    assert got["throughput/images_per_s"] == [(1, pytest.approx(160.0)), (2, pytest.approx(160.0))]
    assert images_per_s(records[0]) == pytest.approx(640 / 4.0)


def test_with_a_tracking_uri_the_same_points_go_to_mlflow_and_a_resume_continues_its_run(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    run_dir = str(tmp_path / "demo")
    with EpochEvents(run_dir, "frl", mlflow=uri) as events:
        events.add(_record(0, validated=False))
    with EpochEvents(run_dir, "frl", mlflow=uri) as events:  # the stage resumed after a crash
        events.add(_record(1, validated=True))
    history = mlflow_history(uri, "demo")
    assert list(history) == ["frl"]
    assert history["frl"]["loss/train"] == [(1, pytest.approx(1.0)), (2, pytest.approx(0.9))]
    assert history["frl"]["accuracy/val_mean"] == [(2, pytest.approx(0.65))]
    assert history["frl"]["throughput/images_per_s"] == [(1, pytest.approx(160.0)), (2, pytest.approx(160.0))]
    assert scalars(events_dir(run_dir, "frl"))["loss/train"][-1] == (2, pytest.approx(0.9)), "TensorBoard too"


def test_a_tracking_uri_that_cannot_be_used_stops_the_run_naming_it(tmp_path):
    from paw_ray.errors import PawRayError
    from paw_ray.train.events import absolute_tracking_uri, mlflow_experiment

    (tmp_path / "a_file").write_text("not a folder")
    bad = f"sqlite:///{tmp_path}/a_file/mlflow.db"
    with pytest.raises(PawRayError, match="--mlflow sqlite:///.*a_file/mlflow.db: cannot log there"):
        mlflow_experiment(bad, "demo")
    assert absolute_tracking_uri("sqlite:///mlflow.db") == f"sqlite:///{os.path.abspath('mlflow.db')}"
    assert absolute_tracking_uri("http://127.0.0.1:5000") == "http://127.0.0.1:5000"


def test_a_tracking_store_lost_mid_stage_costs_its_points_not_the_stage(tmp_path, capsys):
    """The store's folder vanishes after the first epoch: the next epochs still train and reach
    the event files, and one line says what MLflow missed."""
    import shutil

    store = tmp_path / "store"
    store.mkdir()
    run_dir = str(tmp_path / "demo")
    with EpochEvents(run_dir, "whole", mlflow=f"sqlite:///{store}/mlflow.db") as events:
        events.add(_record(0, validated=False))
        shutil.rmtree(store)
        events.add(_record(1, validated=True))
        events.add(_record(2, validated=True))
    assert [step for step, _ in scalars(events_dir(run_dir, "whole"))["loss/train"]] == [1, 2, 3]
    err = capsys.readouterr().err
    assert err.count("[mlflow] whole:") == 1 and "TensorBoard files still hold every epoch" in err
