"""The stage table (``paw_ray.train.stage_table``) is complete and consistent: every stage's
code is where the table says, it reads only earlier stages, and the CLI, tune and the
manifest take their stage lists from it."""

from __future__ import annotations

import dataclasses
import importlib

import pytest

from paw_ray import cli
from paw_ray import config as C
from paw_ray.train import stage_table as T
from paw_ray.train.manifest import stage_fingerprints


def test_every_stage_has_its_config_section_and_its_entry_point():
    sections = {f.name: f.type for f in dataclasses.fields(C.Config)}
    for spec in T.STAGE_TABLE:
        assert spec.name in sections, f"cfg.{spec.name}"
        module = importlib.import_module(spec.module)
        entry = "build_task" if spec.trains else "run_stage"
        assert callable(getattr(module, entry, None)), f"{spec.module}.{entry}"
        if spec.trains:  # a Ray Train stage trains with a StageConfig (so does parts, with its tasks)
            assert isinstance(getattr(C.preset("smoke"), spec.name), C.StageConfig), spec.name


@pytest.mark.parametrize("overrides", [[], ["parts.source=grid"], ["whole.lambda1=0.5"]])
def test_stages_read_only_earlier_stages(overrides):
    cfg = C.apply_overrides(C.preset("smoke"), overrides)
    for k, name in enumerate(T.STAGES):
        assert set(T.stage_inputs(cfg, name)) <= set(T.STAGES[:k]), name


def test_conditional_inputs():
    base = C.preset("smoke")
    assert T.stage_inputs(base, "localize") == ("frl",)
    assert T.stage_inputs(C.apply_overrides(base, ["parts.source=grid"]), "localize") == ()
    assert T.stage_inputs(base, "whole") == ("hint",)
    assert T.stage_inputs(C.apply_overrides(base, ["whole.lambda1=0.5"]), "whole") == ("hint", "frl")


def test_the_fused_stages_crop_at_the_centres_and_read_them():
    cfg = C.preset("smoke")
    for spec in T.STAGE_TABLE:
        if spec.crops_at_centres:
            assert "localize" in spec.inputs(cfg), spec.name
    assert [s.name for s in T.STAGE_TABLE if s.crops_at_centres] == ["fusion", "finetune"]


def test_an_unknown_stage_is_named_in_the_error():
    with pytest.raises(ValueError, match=r"unknown stage 'partz'; stages are frl, localize"):
        T.stage("partz")


def test_cli_and_manifest_take_their_stages_from_the_table(capsys):
    assert T.TRAIN_STAGES == ("frl", "hint", "whole", "fusion", "finetune")
    for name in T.TRAIN_STAGES:
        assert cli.build_parser().parse_args(["tune", "--stage", name]).stage == name
    for name in set(T.STAGES) - set(T.TRAIN_STAGES):
        with pytest.raises(SystemExit):
            cli.build_parser().parse_args(["tune", "--stage", name])
        assert "invalid choice" in capsys.readouterr().err
    assert list(stage_fingerprints(C.preset("smoke"), "d")) == list(T.STAGES)
