"""Checkpoints are data, never code: a checkpoint carrying a pickled payload (an object whose
``__reduce__`` runs code on load — here it creates a marker file) is refused by every loader
of training checkpoints and of a run's artifacts (predict, export), and the payload never runs.

``test_the_payload_is_live`` shows the payload does run under an unsafe ``torch.load``: the
other tests would fail (marker created, no error) without ``weights_only`` loading."""

from __future__ import annotations

import io
import os

import pytest
import torch

from fake_run import artifact, make_run
from paw_ray import cli
from paw_ray import config as C
from paw_ray.models.students import SNet
from paw_ray.train.checkpoints import UnsafeCheckpointError, load_state, save_state


class Payload:
    """Unpickling it calls ``open(marker, "w")``: the file appears if the pickle is run."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def poisoned(state: dict, marker) -> bytes:
    """``state`` with the payload beside the real tensors, as ``torch.save`` writes it."""
    buf = io.BytesIO()
    torch.save({**state, "extra": Payload(str(marker))}, buf)
    return buf.getvalue()


def test_the_payload_is_live(tmp_path):
    marker = tmp_path / "ran"
    torch.load(io.BytesIO(poisoned({}, marker)), weights_only=False)
    assert marker.exists(), "an unsafe load runs the payload"


def test_training_checkpoints_are_refused(tmp_path):
    """The Ray Train worker loop's ``state.pt`` and a stage artifact, read by ``load_state``."""
    marker = tmp_path / "ran"
    for name in ("ray_train/frl-x/checkpoint_0/state.pt", "stages/whole/model.pt"):
        where = tmp_path / name
        where.parent.mkdir(parents=True)
        where.write_bytes(poisoned({"epoch": 3}, marker))
        with pytest.raises(UnsafeCheckpointError, match="refused") as e:
            load_state(str(where))
        assert str(where) in str(e.value)
    assert not marker.exists()


def test_part_task_refuses_a_poisoned_checkpoint_instead_of_retraining_over_it(tmp_path):
    from paw_ray.train.stages.parts import part_dir, train_part

    cfg = C.preset("smoke")
    marker = tmp_path / "ran"
    whole = str(tmp_path / "whole.pt")
    save_state(whole, SNet.from_config(cfg).state_dict())
    ckpt = os.path.join(part_dir(str(tmp_path), 3), "checkpoint.pt")
    os.makedirs(os.path.dirname(ckpt))
    with open(ckpt, "wb") as f:
        f.write(poisoned({"fingerprint": "fp", "epoch": 0}, marker))
    with pytest.raises(UnsafeCheckpointError, match="refused"):
        train_part(3, C.to_dict(cfg), str(tmp_path / "no-data"), str(tmp_path), whole, None, "fp")
    assert not marker.exists()
    # a poisoned stage input (g_0, which every part starts from) is refused the same way
    with open(whole, "wb") as f:
        f.write(poisoned(SNet.from_config(cfg).state_dict(), marker))
    with pytest.raises(UnsafeCheckpointError):
        train_part(3, C.to_dict(cfg), str(tmp_path / "no-data"), str(tmp_path), whole, None, "fp")
    assert not marker.exists()


@pytest.mark.parametrize("stage", ["finetune", "frl"])
@pytest.mark.parametrize("command", ["predict", "export"])
def test_predict_and_export_refuse_a_poisoned_run(tmp_path, capsys, stage, command):
    run = make_run(str(tmp_path / "run"))
    marker = tmp_path / "ran"
    where = artifact(run, stage)
    clean = load_state(where)
    with open(where, "wb") as f:
        f.write(poisoned(clean, marker))
    args = ["--run-dir", run] + (["x.png"] if command == "predict" else ["--format", "onnx"])
    assert cli.main([command, *args]) == 2
    err = capsys.readouterr().err
    assert "refused" in err and where in err and "Traceback" not in err
    assert not marker.exists()
    assert not os.path.exists(os.path.join(run, "export")), "nothing exported from a refused run"
