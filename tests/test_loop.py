"""The training loop's cross-worker sums: the epoch's counts and the validation accuracy
are reduced over DDP workers with gloo on CPUs and with NCCL on GPUs."""

import json

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from paw_ray.train.loop import all_reduce_in_place

from ray_cluster import free_port


def _reduce_in_group(rank: int, world: int, backend: str, port: int, device: str, out_dir: str) -> None:
    dist.init_process_group(backend, init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        t = torch.tensor([1.0 + rank, 10.0 * (rank + 1)], dtype=torch.float64)
        out = all_reduce_in_place(t, torch.device(device))
        with open(f"{out_dir}/rank{rank}.json", "w") as f:
            json.dump([out is t, t.device.type, t.tolist()], f)
    finally:
        dist.destroy_process_group()


def _run_group(world: int, backend: str, device: str, out_dir) -> dict:
    """Run ``world`` fresh processes (spawned, never a fork of this one: the test process
    may hold a Ray driver) and return each rank's [same tensor?, device, values]."""
    mp.spawn(_reduce_in_group, args=(world, backend, free_port(), device, str(out_dir)), nprocs=world)
    return {rank: json.loads((out_dir / f"rank{rank}.json").read_text()) for rank in range(world)}


def test_all_reduce_sums_cpu_tensors_across_gloo_workers_in_place(tmp_path):
    results = _run_group(2, "gloo", "cpu", tmp_path)
    assert results == {0: [True, "cpu", [3.0, 30.0]], 1: [True, "cpu", [3.0, 30.0]]}


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_all_reduce_of_cpu_tensors_with_nccl(tmp_path):
    """NCCL reduces only GPU tensors; the loop's CPU counts go through the worker's GPU."""
    results = _run_group(1, "nccl", "cuda", tmp_path)
    assert results == {0: [True, "cpu", [1.0, 10.0]]}


class _FixedLogits:
    """A task whose logits are the batch's own ``logits`` column, plus a weight to train."""

    def loss(self, model, b):
        logits = b["logits"] + 0 * model.weight.sum()
        return torch.nn.functional.binary_cross_entropy_with_logits(logits, b["labels"]), logits


def test_an_epoch_measures_the_training_decisions_mean_accuracy():
    from paw_ray.train.loop import train_epoch

    labels = torch.zeros(6, 40)
    labels[:3, :10] = 1.0
    logits = torch.full((6, 40), -1.0)
    logits[:3, :10] = 1.0  # right on every attribute but: row 0 wrong on attributes 0..3
    logits[0, :4] = -1.0
    batches = [{"image_id": list(range(3)), "labels": labels[:3], "logits": logits[:3]},
               {"image_id": [], "labels": labels[:0], "logits": logits[:0]},  # an empty batch counts nothing
               {"image_id": list(range(3, 6)), "labels": labels[3:], "logits": logits[3:]}]
    model = torch.nn.Linear(1, 1)
    run = train_epoch(model, _FixedLogits(), torch.optim.SGD(model.parameters(), lr=0.1), batches)
    assert run.steps == 2 and run.rows == 6
    assert run.correct_sum() == 6 * 40 - 4
