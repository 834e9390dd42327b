"""The benchmark scripts' pure parts, so they cannot rot: the RESULT line, FLOP counting,
the training steps they time, the DataLoader baseline and the manifest breakdown."""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest
import torch

BENCH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks")
sys.path.insert(0, BENCH)

import benchlib  # noqa: E402
import bench_roofline  # noqa: E402
import run_all  # noqa: E402
import run_breakdown  # noqa: E402


def test_result_line_round_trip():
    line = benchlib.result_line("input_demo96", 0.93456, 0.9)
    assert line == "RESULT input_demo96 ratio=0.93 target=0.9"
    assert benchlib.parse_result(line) == ("input_demo96", 0.93, 0.9)
    with pytest.raises(ValueError):
        benchlib.parse_result("RESULT x 1.0 0.9")


def test_every_benchmark_script_exists_and_takes_quick():
    for script, _ in run_all.BENCHMARKS.values():
        with open(os.path.join(BENCH, script), encoding="utf-8") as f:
            assert '"--quick"' in f.read(), script


def test_count_flops_of_a_convolution():
    conv = torch.nn.Conv2d(3, 8, 3, padding=1, bias=False)
    x = torch.randn(2, 3, 8, 8)
    assert bench_roofline.count_flops(lambda: conv(x)) == 2 * 2 * 8 * 8 * 8 * 3 * 9
    # backward adds the gradients of input and weight: twice the forward
    assert bench_roofline.count_flops(lambda: conv(x.requires_grad_()).sum().backward()) == 3 * 2 * 2 * 8 * 64 * 27


def test_count_flops_of_a_grouped_convolution_backward():
    """Each gradient costs the grouped forward, not the ungrouped one (torch's formula)."""
    conv = torch.nn.Conv2d(8, 16, 3, padding=1, groups=4, bias=False)
    x = torch.randn(2, 8, 8, 8, requires_grad=True)
    forward = 2 * 2 * 64 * 16 * (8 // 4) * 9
    assert bench_roofline.count_flops(lambda: conv(x)) == forward
    assert bench_roofline.count_flops(lambda: conv(x).sum().backward()) == 3 * forward


def test_part_subnets_count_the_same_however_they_are_blocked():
    """The CPU runs the 40 part subnets in blocks of parts, a GPU as one group of 40: the
    same arithmetic, so the same FLOPs."""
    from paw_ray.models.paw import PartSubnets

    parts = PartSubnets(40, "snet3", 0.25, 2)
    crops = torch.randn(2, 40, 3, 16, 16)
    counts = set()
    for block in (4, 8, 40):
        parts.parts_per_block = block
        counts.add(bench_roofline.count_flops(lambda: parts(crops).sum().backward()))
    assert len(counts) == 1


@pytest.mark.parametrize("stage", ["frl", "finetune"])
def test_training_steps_run_and_count(stage):
    from paw_ray import config as C

    cfg = C.preset("smoke")
    for channels_last in (False, True):
        step = bench_roofline.build_step(stage, cfg, 2, torch.device("cpu"), channels_last)
        assert bench_roofline.count_flops(step) > 0


def test_dataloader_baseline_batches(tmp_path):
    from bench_input import ShardBatches

    from paw_ray.data import shards
    from paw_ray.data.synthfaces import synthesize

    out = str(tmp_path / "synth")
    synthesize(n=30, size=32, seed=0, out=out, num_tasks=1)
    info = shards.read_info(out)
    batches = list(ShardBatches(shards.shard_files(out, info, "train"), 24, batch_size=10))
    assert sum(len(b["image_id"]) for b in batches) == info.num_rows["train"]
    assert batches[0]["image"].shape[1:] == (3, 24, 24) and batches[0]["image"].dtype == np.uint8


def _epochs(*peaks, gpu=None):
    return [{"epoch": i, "peak_rss_mb": p, **({"peak_gpu_mb": gpu} if gpu else {})} for i, p in enumerate(peaks)]


def test_manifest_breakdown():
    manifest = {"stages": {
        "evaluate": {"status": "complete", "wall_time_s": 10.0, "metrics": {"mean_accuracy": {}}},
        "frl": {"status": "complete", "wall_time_s": 60.0, "metrics": {"history": _epochs(900.0, 950.5)}},
        "parts": {"status": "complete", "wall_time_s": 30.0,
                  "metrics": {"history": {"0": _epochs(400.0, gpu=80.0), "1": _epochs(1200.0, 500.0, gpu=96.5)}}},
    }}
    rows = run_breakdown.breakdown(manifest)
    assert [r["stage"] for r in rows] == ["frl", "parts", "evaluate"]  # pipeline order
    assert [r["peak_rss_mb"] for r in rows] == [950.5, 1200.0, None]
    assert [r["peak_gpu_mb"] for r in rows] == [None, 96.5, None], "GPU memory only where a stage used one"
    assert [round(r["share"], 2) for r in rows] == [0.6, 0.3, 0.1]
    assert [r["busy"] for r in rows] == [None, None, None], "no step timings recorded"
    text = run_breakdown.format_breakdown(rows)
    assert "total" in text and "1200 MB (parts)" in text
    assert "not measured" in run_breakdown.spilling(None)


def test_breakdown_step_and_validation_shares():
    history = [{"epoch": 0, "started_at": 100.0, "epoch_time_s": 10.0, "val_s": 1.0, "step_s": 6.0, "input_wait_s": 2.0},
               {"epoch": 1, "started_at": 112.0, "epoch_time_s": 8.0, "val_s": 0.0, "step_s": 7.0, "input_wait_s": 1.0}]
    parts = {"0": [{"epoch": 0, "step_s": 3.0, "input_wait_s": 1.0}], "1": [{"epoch": 0, "step_s": 1.0, "input_wait_s": 3.0}]}
    manifest = {"stages": {"frl": {"status": "complete", "wall_time_s": 30.0, "metrics": {"history": history}},
                           "parts": {"status": "complete", "wall_time_s": 8.0, "metrics": {"history": parts}}}}
    frl, part = run_breakdown.breakdown(manifest)
    assert frl["busy"] == pytest.approx(13 / 16) and part["busy"] == pytest.approx(4 / 8)
    # validation 1 s + the 2 s gap between epoch 0's end (110) and epoch 1's start (112), of 30 s
    assert frl["validation"] == pytest.approx(3 / 30) and part["validation"] is None
    assert "81%" in run_breakdown.format_breakdown([frl, part])
