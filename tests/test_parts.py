"""A part task (stage ``parts``) trains on its own crops, held in memory when they fit
``parts.cache_mb`` and streamed every epoch when not; both paths see every row each epoch."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest

from paw_ray import config as C
from paw_ray import storage
from paw_ray.data import shards
from paw_ray.data.pipeline import CentresTable
from paw_ray.data.synthfaces import synthesize
from paw_ray.models.students import SNet
from paw_ray.train.checkpoints import load_state, save_state
from paw_ray.train.stages.parts import part_dir, train_part


@pytest.fixture(scope="module")
def part_inputs(tmp_path_factory):
    """A small SynthFaces set, a g_0 to start from and random part centres."""
    root = tmp_path_factory.mktemp("parts")
    data_dir = str(root / "data")
    synthesize(n=120, size=48, seed=0, out=data_dir)
    cfg = C.apply_overrides(C.preset("smoke"), ["parts.epochs=2", "parts.batch_size=16"])
    whole = str(root / "whole.pt")
    save_state(whole, SNet.from_config(cfg).state_dict())
    info = shards.read_info(data_dir)
    ids = [i for split in ("train", "val", "test") for f in shards.shard_files(data_dir, info, split)
           for i in pq.read_table(f, columns=["image_id"]).column(0).to_pylist()]
    centres = CentresTable.from_arrays(ids, np.random.default_rng(0).uniform(0, 1, (len(ids), 40, 2)))
    return cfg, data_dir, whole, centres, info.num_rows


@pytest.mark.parametrize("cache_mb, cached", [(512.0, True), (0.0, False)])
def test_a_part_task_trains_from_memory_or_from_the_stream(ray_local, part_inputs, tmp_path, cache_mb, cached):
    cfg, data_dir, whole, centres, rows = part_inputs
    cfg = C.apply_overrides(cfg, [f"parts.cache_mb={cache_mb}"])
    record = train_part(5, C.to_dict(cfg), data_dir, str(tmp_path), whole, ray_local.put(centres), "fp")
    assert record["cached"] is cached
    assert [h["train_rows"] for h in record["history"]] == [rows["train"]] * 2, "every row, every epoch"
    assert all(np.isfinite(h["train_loss"]) and 0 < h["val_mean_accuracy"] <= 1 for h in record["history"])
    trained = load_state(storage.join(part_dir(str(tmp_path), 5), "model.pt"))
    start = load_state(whole)
    assert any(not np.array_equal(trained[k].numpy(), start[k].numpy()) for k in start), "the subnet moved"


def test_cache_budget_must_not_be_negative():
    with pytest.raises(C.ConfigError, match="parts.cache_mb"):
        C.apply_overrides(C.preset("smoke"), ["parts.cache_mb=-1"])


def test_part_tasks_a_shrunken_cluster_cannot_fit_are_requeued(ray_local, part_inputs, tmp_path, monkeypatch):
    """When a node dies, Ray retries its part tasks elsewhere and more may be in flight than
    the cluster now fits: they would hold every CPU while their own data tasks wait. The
    newest are cancelled and run again later; the stage still finishes every part."""
    import ray

    from paw_ray.train.stages import parts as P
    from paw_ray.train.stages.localize import run_localize

    cfg, data_dir, whole, _, _ = part_inputs
    cfg = C.apply_overrides(cfg, ["parts.source=grid"])
    run_dir = str(tmp_path / "run")
    centres, _ = run_localize(cfg, data_dir, run_dir, None)
    for part in range(3, 40):  # finished before: only parts 0-2 train here
        here = part_dir(run_dir, part)
        save_state(storage.join(here, "model.pt"), load_state(whole))
        storage.write_json_atomic(storage.join(here, "done.json"),
                                  {"part": part, "fingerprint": "fp", "metrics": {}, "history": [], "node_id": "n"})
    limits = iter([3])  # three fit at first, then the cluster "shrinks" to one
    monkeypatch.setattr(P, "max_in_flight", lambda _cfg: next(limits, 1))
    cancelled, cancel = [], ray.cancel
    monkeypatch.setattr(ray, "cancel", lambda ref, **kw: (cancelled.append(ref), cancel(ref, **kw))[1])

    _, metrics = P.run_parts(cfg, data_dir, run_dir, "fp", whole, centres, log=lambda *_: None)
    assert len(cancelled) == 2, "the two newest of three in flight went back to the queue"
    assert metrics["parts_trained"] == 3 and metrics["parts_reused"] == 37
    for part in range(3):
        record = storage.read_json(storage.join(part_dir(run_dir, part), "done.json"))
        assert record["fingerprint"] == "fp" and len(record["history"]) == 2, part
