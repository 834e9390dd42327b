"""The per-epoch progress lines: rank 0's records and the driver's tail that prints them."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from paw_ray.train.progress import ProgressTail, clock, epoch_line, eta, progress_dir, write_progress
from paw_ray.train.stage_table import TRAIN_STAGES

# what Ray printed on a fresh install before the stages reported their own progress
RAY_INTERNALS = ("TrainingReport(", "(RayTrainWorker", "(SplitCoordinator", "Execution plan",
                 "tqdm is not installed", "Cluster resources are not enough", "(train_part pid=",
                 "Token authentication is")


def _record(epoch: int, epochs: int = 3, attempt: int = 0, **extra) -> dict:
    return {"epoch": epoch, "epochs": epochs, "attempt": attempt, "train_loss": 0.25 + epoch,
            "train_rows": 800, "epoch_time_s": 3.0, "input_wait_s": 0.5, "step_s": 1.5, "decode_failures": 0,
            **extra}


def test_clock_and_eta_read_as_a_person_would_say_them():
    assert [clock(s) for s in (0.4, 42, 185, 3725)] == ["0 s", "42 s", "3 min 05 s", "1 h 02 min"]
    assert eta(60.0, 2, 3) == "1 min 30 s" and eta(5.0, 0, 3) == "unknown"


def test_an_epoch_line_names_the_epoch_loss_accuracy_rate_and_eta():
    line = epoch_line("frl", _record(1, train_mean_accuracy=0.7, val_mean_accuracy=0.8123), elapsed_s=20.0,
                      epochs_seen=2)
    assert line == ("[frl] epoch 2/3 · train loss 1.2500 · train acc 70.00% · val mean acc 81.23% · 400 img/s · "
                    "20 s elapsed, ETA 10 s")
    quiet = epoch_line("hint", _record(0, decode_failures=2), elapsed_s=5.0, epochs_seen=1)
    assert "val mean acc" not in quiet and quiet.endswith("2 image(s) skipped: they did not decode")


def test_the_tail_prints_each_new_record_once_in_order_and_not_an_earlier_attempts(tmp_path):
    folder = progress_dir(str(tmp_path / "run"), "whole")
    write_progress(folder, _record(0, attempt=0))  # before the tail opened: a previous attempt's
    lines: list[str] = []
    with ProgressTail(folder, "whole", lines.append, every_s=0.05):
        write_progress(folder, _record(1, attempt=1))
        deadline = time.time() + 10
        while not lines and time.time() < deadline:
            time.sleep(0.05)
        assert len(lines) == 1, "printed while the stage runs, not only at its end"
        write_progress(folder, _record(2, attempt=1))
    assert [line.split(" · ")[0] for line in lines] == ["[whole] epoch 2/3", "[whole] epoch 3/3"]
    assert lines[-1].endswith("ETA 0 s")


def test_a_tail_over_a_folder_not_yet_made_waits_for_it(tmp_path):
    folder = progress_dir(str(tmp_path / "run"), "frl")
    lines: list[str] = []
    with ProgressTail(folder, "frl", lines.append, every_s=0.05):
        pass
    assert lines == []
    with ProgressTail(folder, "frl", lines.append, every_s=0.05):
        write_progress(folder, _record(0))
    assert len(lines) == 1


@pytest.mark.slow
def test_a_train_command_shows_its_epochs_and_none_of_rays_internals(tmp_path):
    """`paw-ray train` as a user starts it, in a process of its own with a Ray of its own
    (a dry run: one step per epoch and per part task)."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {**os.environ, "PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", "")}
    env.pop("RAY_ADDRESS", None)
    env.pop("RAY_AUTH_MODE", None)  # unset, as on a user's machine: Ray then says which mode it took
    out = subprocess.run([sys.executable, "-m", "paw_ray", "train", "--preset", "smoke", "--run-dir",
                          str(tmp_path / "run"), "--set", "max_steps=1", "--set", "ray.num_cpus=2"],
                         capture_output=True, text=True, cwd=root, env=env, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    shown = out.stdout + out.stderr
    for stage in TRAIN_STAGES:
        assert f"[{stage}] epoch 1/" in out.stdout, stage
    assert "[parts] 40/40 done" in out.stdout
    for internal in RAY_INTERNALS:
        assert internal not in shown, f"{internal!r} reached the terminal:\n{shown[-3000:]}"
