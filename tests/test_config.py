"""Configuration: presets, YAML, --set overrides, and clear errors for bad values."""

from __future__ import annotations

import pytest

from paw_ray import config as C


def test_presets_exist_and_scale_down():
    paper, demo, smoke = C.preset("paper"), C.preset("demo"), C.preset("smoke")
    assert (paper.data.image_size, paper.data.part_size) == (224, 64)
    assert paper.frl.lr == 1e-4 and paper.frl.epochs == 10 and paper.frl.batch_size == 128
    assert paper.fusion.lr == 0.1 and paper.finetune.lr == 1e-3 and paper.parts.epochs == 15
    for cfg in (paper, demo, smoke):
        assert cfg.frl.momentum == 0.9 and cfg.frl.weight_decay == 5e-4
    assert smoke.data.image_size < demo.data.image_size < paper.data.image_size
    assert smoke.data.synth_n < demo.data.synth_n


def test_set_overrides_parse_types():
    cfg = C.apply_overrides(C.preset("smoke"), ["frl.lr=0.5", "frl.mnl=false", "parts.source=grid",
                                                 "frl.epochs=3", "seed=7"])
    assert cfg.frl.lr == 0.5 and cfg.frl.mnl is False and cfg.parts.source == "grid"
    assert cfg.frl.epochs == 3 and cfg.seed == 7


@pytest.mark.parametrize("item, message", [
    ("frl.lrr=1", r"unknown config key\(s\) \['frl.lrr'\]"),
    ("nosuch.key=1", r"unknown config key\(s\) \['nosuch'\]"),
    ("frl.epochs=abc", "frl.epochs: expected an integer"),
    ("frl.mnl=maybe", "frl.mnl: expected true/false"),
    ("frl.epochs=-1", "frl.epochs: must be >= 0"),
    ("parts.source=random", "parts.source: 'random' is not one of frl, grid"),
    ("student=snet9", "student: 'snet9' is not one of"),
    ("frl.lr=0", "frl.lr: must be > 0"),
    ("parts.val_every=0", "parts.val_every: must be >= 1"),
    ("frl.precision=fp16", "frl.precision: .fp16. is not one of fp32, bf16"),
    ("data.decode_in=gpu", "data.decode_in: .gpu. is not one of auto, consumer, tasks"),
    ("frl", "expected section.key=value"),
    ("frl.batch_size=65", r"frl.batch_size: 65 does not divide over frl.num_workers=2 \(each worker would take 32, "
                          r"64 a step in all\); choose a multiple of 2"),
    ("frl.min_workers=3", "frl.min_workers: must be between 0 \\(a fixed worker count\\) and frl.num_workers=2, got 3"),
])
def test_bad_overrides_name_the_key(item, message):
    with pytest.raises(C.ConfigError, match=message):
        C.apply_overrides(C.preset("smoke"), [item])


def test_an_elastic_range_keeps_the_global_batch_at_every_worker_count():
    """A stage elastic over 2..4 workers may train with 3: 128 would train at 126 there."""
    cfg = C.preset("smoke")
    for key in ("frl.num_workers=4", "frl.min_workers=2"):
        cfg = C.apply_overrides(cfg, [key, "frl.batch_size=120"])
    assert list(cfg.frl.worker_counts()) == [2, 3, 4] and cfg.frl.batch_size == 120
    with pytest.raises(C.ConfigError, match=r"frl.batch_size: 128 does not divide over 3 worker\(s\), which the "
                                            r"elastic range frl.min_workers..num_workers = 2..4 allows .*; choose a "
                                            r"multiple of 12 or a narrower range"):
        C.apply_overrides(cfg, ["frl.batch_size=128"])
    assert list(C.preset("smoke").frl.worker_counts()) == [2], "min_workers 0: the fixed count"


def test_the_elastic_range_is_placement_not_part_of_a_stage_fingerprint():
    from paw_ray.train.trainer import worker_count_for_ray

    fixed = C.preset("smoke")
    elastic = C.apply_overrides(fixed, ["frl.min_workers=1"])
    assert C.semantic_dict(fixed.frl) == C.semantic_dict(elastic.frl)
    assert worker_count_for_ray(fixed.frl) == 2 and worker_count_for_ray(elastic.frl) == (1, 2)


def test_yaml_round_trip_and_errors(tmp_path):
    good = tmp_path / "good.yaml"
    good.write_text("preset: smoke\nfrl:\n  lr: 0.3\n  epochs: 4\nparts:\n  source: grid\n")
    cfg = C.load_yaml(str(good))
    assert cfg.preset == "smoke" and cfg.frl.lr == 0.3 and cfg.parts.source == "grid"
    assert cfg.data.image_size == C.preset("smoke").data.image_size
    bad = tmp_path / "bad.yaml"
    bad.write_text("frl:\n  learning_rate: 0.3\n")
    with pytest.raises(C.ConfigError, match=r"bad.yaml: unknown config key\(s\) \['frl.learning_rate'\]"):
        C.load_yaml(str(bad))
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text("frl:\n  epochs: [1, 2]\n")
    with pytest.raises(C.ConfigError, match="frl.epochs: expected an integer"):
        C.load_yaml(str(wrong))
    broken = tmp_path / "broken.yaml"
    broken.write_text("frl: [unclosed\n")
    with pytest.raises(C.ConfigError, match="not valid YAML"):
        C.load_yaml(str(broken))
    with pytest.raises(C.ConfigError, match="config file not found"):
        C.load_yaml(str(tmp_path / "missing.yaml"))


def test_unknown_preset():
    with pytest.raises(C.ConfigError, match="unknown preset 'huge'"):
        C.preset("huge")


def test_decode_in_auto_decodes_on_train_workers_and_in_data_tasks_for_part_tasks():
    assert C.Config().data.decode_in == "auto"
    assert C.decode_place("auto", part_task=False) == "consumer"
    assert C.decode_place("auto", part_task=True) == "tasks"


@pytest.mark.parametrize("place", C.DECODE_PLACES)
def test_decode_in_named_explicitly_holds_for_every_consumer(place):
    assert C.decode_place(place, part_task=False) == C.decode_place(place, part_task=True) == place
