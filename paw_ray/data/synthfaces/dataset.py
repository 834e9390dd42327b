"""A whole SynthFaces set on disk: :func:`synthesize` renders ``n`` examples into Parquet
shards (``docs/data-format.md``), in this process or as Ray tasks, and writes
``dataset.json`` last.

Splits are by index (:func:`split_sizes`), and a chunk of images never straddles two
splits, so each task writes exactly one shard of one split. Since an image depends only
on ``(seed, i, size)``, the shards hold the same rows however many tasks render them.
"""

from __future__ import annotations

import math
import os
import time
from typing import Callable

import numpy as np

from paw_ray import storage
from paw_ray.data import shards
from paw_ray.data.synthfaces.examples import GENERATOR_VERSION, encode_png, image_id, render_example
from paw_ray.data.synthfaces.render import SynthError

DEFAULT_CHUNK = 500


def _render_rows(seed: int, start: int, stop: int, size: int, split: str, label_noise: float) -> dict:
    rows = {k: [] for k in ("image_id", "split", "image", "labels", "face_box", "part_boxes_gt")}
    for i in range(start, stop):
        img, _, stored, boxes = render_example(seed, i, size, label_noise)
        rows["image_id"].append(image_id(i))
        rows["split"].append(split)
        rows["image"].append(encode_png(img))
        rows["labels"].append(stored)
        rows["face_box"].append([0.0, 0.0, float(size), float(size)])
        rows["part_boxes_gt"].append(boxes.ravel())
    return rows


def _render_shard(out: str, seed: int, start: int, stop: int, size: int, split: str, index: int,
                  label_noise: float) -> tuple[str, shards.WrittenShard, int]:
    rows = _render_rows(seed, start, stop, size, split, label_noise)
    return split, shards.write_shard(shards.rows_to_table(rows), out, split, index), stop - start


def split_sizes(n: int) -> dict[str, int]:
    """First 80 % train, next 10 % val, the rest test (each >= 1 for n >= 30)."""
    n_train = int(n * 0.8)
    n_val = max(1, int(n * 0.1))
    return {"train": n_train, "val": n_val, "test": n - n_train - n_val}


def _plan(n: int, num_tasks: int) -> list[tuple[str, int, int, int]]:
    """``(split, start, stop, shard_index)`` chunks; chunks never straddle splits."""
    chunk = DEFAULT_CHUNK if num_tasks <= 1 else max(1, math.ceil(n / num_tasks))
    plan, start = [], 0
    for split, m in split_sizes(n).items():
        pieces = max(1, math.ceil(m / chunk))
        bounds = np.linspace(start, start + m, pieces + 1).round().astype(int)
        for j in range(pieces):
            plan.append((split, int(bounds[j]), int(bounds[j + 1]), j))
        start += m
    return plan


def _check_int(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise SynthError(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        raise SynthError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def _check_noise(label_noise) -> float:
    try:
        label_noise = float(label_noise)
    except (TypeError, ValueError):
        raise SynthError(f"label_noise must be a number, got {label_noise!r}") from None
    if not 0.0 <= label_noise < 0.5:
        raise SynthError(f"label_noise must be in [0, 0.5), got {label_noise}")
    return label_noise


def _render_on_ray(out: str, seed: int, size: int, label_noise: float, plan,
                   finished: Callable[[int], None]) -> list[tuple[str, shards.WrittenShard, int]]:
    """One Ray task per chunk of ``plan``, on the running Ray instance or a new local one;
    ``finished(rows)`` as each chunk's shard is written. Results in ``plan``'s order."""
    import ray  # here, not at module top: importing Ray takes seconds, and one image needs none of it

    if not ray.is_initialized():
        address = None if os.environ.get("RAY_ADDRESS") else "local"
        kwargs = {"configure_logging": False, "log_to_driver": False}
        if address == "local":
            kwargs["include_dashboard"] = False
        ray.init(address=address, **kwargs)
    task = ray.remote(num_cpus=1)(_render_shard)
    refs = [task.remote(out, seed, a, b, size, split, j, label_noise) for split, a, b, j in plan]
    pending = list(refs)
    while pending:
        ready, pending = ray.wait(pending, num_returns=1)
        finished(ray.get(ready[0])[2])
    return ray.get(refs)


def synthesize(n: int, size: int, seed: int, out: str, label_noise: float = 0.0,
               num_tasks: int = 0, progress: Callable[[str], None] | None = None) -> shards.DatasetInfo:
    """Render ``n`` SynthFaces of ``size`` x ``size`` into shards under ``out`` and write
    ``dataset.json`` last. ``num_tasks`` 1 renders in this process; otherwise Ray tasks
    render chunks (~500 images each for 0, about ``n / num_tasks`` each else), each
    writing its own shard. Image ``i`` depends only on ``(seed, i, size)``. ``progress(line)``
    gets a line as each shard is written: images and shards done of all, images/s."""
    n = _check_int("n", n, 30)
    size = _check_int("size", size, 32)
    seed = _check_int("seed", seed, 0)
    num_tasks = _check_int("num_tasks", num_tasks, 0)
    label_noise = _check_noise(label_noise)
    if not isinstance(out, str) or not out:
        raise SynthError(f"out must be a folder path or URI, got {out!r}")

    if storage.is_local(out):  # Ray tasks run in other folders (other nodes, a job's working dir)
        out = storage.local_path(out)
    info_loc = storage.join(out, shards.DATASET_INFO_FILE)
    if storage.exists(info_loc):  # the set is being replaced: never leave an old, mixed index
        storage.remove_tree(info_loc)
    plan = _plan(n, num_tasks)
    t0, done = time.perf_counter(), [0, 0]  # images, shards

    def finished(rows: int) -> None:
        done[0] += rows
        done[1] += 1
        if progress is not None:
            rate = done[0] / max(time.perf_counter() - t0, 1e-9)
            progress(f"{done[0]}/{n} images, {done[1]}/{len(plan)} shards, {rate:.0f} images/s")

    if num_tasks == 1:
        results = []
        for split, a, b, j in plan:
            results.append(_render_shard(out, seed, a, b, size, split, j, label_noise))
            finished(results[-1][2])
    else:
        results = _render_on_ray(out, seed, size, label_noise, plan, finished)

    files = {s: [] for s in shards.SPLITS}
    num_rows = {s: 0 for s in shards.SPLITS}
    content = {}
    for split, written, count in results:
        files[split].append(written.path)
        content[written.path] = written.content()
        num_rows[split] += count
    info = shards.DatasetInfo(
        name="synthfaces",
        image_size=size,
        num_rows=num_rows,
        files=files,
        has_part_boxes_gt=True,
        source={"seed": seed, "n": n, "size": size, "label_noise": label_noise,
                "generator_version": GENERATOR_VERSION},
        content=content,
    )
    shards.write_info(info, out)
    return info
