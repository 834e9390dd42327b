"""Progress a user can read while a stage trains (docs/architecture.md, "Progress").

Rank 0 of a Ray Train stage writes one small JSON record per finished epoch into the
stage's progress folder (``write_progress``); the driver's ``ProgressTail`` prints each new
record as one line: epoch k/N, training loss and accuracy, validation accuracy where measured, images/s,
elapsed time and ETA. Records travel as files in the run directory, not in Ray's log
stream, so they reach the driver from any node (the run directory is shared storage on a
cluster) and read the same whether or not Ray forwards its workers' output.
"""

from __future__ import annotations

import threading
import time
from typing import Callable

from paw_ray import storage

__all__ = ["progress_dir", "write_progress", "images_per_s", "epoch_line", "clock", "eta", "ProgressTail"]


def progress_dir(run_dir: str, stage: str) -> str:
    return storage.join(run_dir, "stages", stage, "progress")


def write_progress(folder: str, record: dict) -> None:
    """One finished epoch's record (``loop.run_epoch``'s metrics plus ``epochs``, the number
    the stage runs), named so that the names sort in the order the epochs ran."""
    name = f"attempt{record['attempt']:02d}-epoch{record['epoch']:04d}.json"
    storage.write_json_atomic(storage.join(folder, name), record)


def clock(seconds: float) -> str:
    """``42 s``, ``3 min 05 s``, ``1 h 02 min``."""
    s = max(0, round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


def eta(elapsed_s: float, done: int, left: int) -> str:
    """The time ``left`` more units take at the rate ``done`` units took ``elapsed_s``."""
    return clock(elapsed_s / done * left) if done else "unknown"


def images_per_s(record: dict) -> float:
    """Training throughput of one epoch's record: every worker's rows over rank 0's time in
    the training pass (input wait plus steps; the whole epoch where those are not recorded)."""
    training_s = record.get("input_wait_s", 0.0) + record.get("step_s", 0.0)
    return record.get("train_rows", 0) / max(training_s or record["epoch_time_s"], 1e-9)


def epoch_line(stage: str, record: dict, elapsed_s: float, epochs_seen: int) -> str:
    """The line the driver prints for one epoch's record."""
    k, epochs = record["epoch"] + 1, record["epochs"]
    words = [f"[{stage}] epoch {k}/{epochs}", f"train loss {record['train_loss']:.4f}"]
    if "train_mean_accuracy" in record:
        words.append(f"train acc {100 * record['train_mean_accuracy']:.2f}%")
    if "val_mean_accuracy" in record:
        words.append(f"val mean acc {100 * record['val_mean_accuracy']:.2f}%")
    if record.get("train_rows"):
        words.append(f"{images_per_s(record):,.0f} img/s")
    words.append(f"{clock(elapsed_s)} elapsed, ETA {eta(elapsed_s, epochs_seen, epochs - k)}")
    if record.get("decode_failures"):
        words.append(f"{record['decode_failures']} image(s) skipped: they did not decode")
    return " · ".join(words)


class ProgressTail:
    """While open, prints each record that appears in ``folder`` as ``epoch_line`` through
    ``log``, polling from a thread; records there before it opened (an earlier attempt's)
    are not repeated. Closing prints what is left."""

    def __init__(self, folder: str, stage: str, log: Callable[[str], None], every_s: float = 1.0):
        self.folder, self.stage, self.log, self.every_s = folder, stage, log, every_s
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name=f"progress-{stage}", daemon=True)

    def __enter__(self) -> "ProgressTail":
        self._seen = set(storage.listdir(self.folder))
        self._printed = 0
        self._t0 = time.time()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.poll()

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            self.poll()

    def poll(self) -> None:
        with self._lock:
            for name in storage.listdir(self.folder):
                if name in self._seen or not name.endswith(".json"):
                    continue
                self._seen.add(name)
                self._printed += 1
                record = storage.read_json(storage.join(self.folder, name))
                self.log(epoch_line(self.stage, record, time.time() - self._t0, self._printed))
