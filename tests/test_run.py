"""The runner's data handling (paw_ray.train.run): what ``train`` is told about the data
before any stage runs. The pipeline itself is tested end to end in test_train_e2e.py."""

from __future__ import annotations

import pytest

from paw_ray import config as C
from paw_ray.data.synthfaces import synthesize
from paw_ray.data import shards
from paw_ray.data.identity import data_identity
from paw_ray.train.run import ResolvedData, resolve, train


def test_resolve_names_the_folder_its_label_and_identity(tmp_path):
    data_dir = str(tmp_path / "data")
    synthesize(n=40, size=32, seed=0, out=data_dir, num_tasks=1)
    cfg = C.apply_overrides(C.preset("smoke"), [f"data.path={data_dir}"])
    got = resolve(cfg, str(tmp_path / "run"), log=lambda _: None)
    assert got.dir == data_dir and data_dir in got.label
    assert got.identity == data_identity(shards.read_info(data_dir))


def test_train_refuses_data_resolved_for_another_path(tmp_path):
    """Before Ray or any stage starts: the stages would read one folder and fingerprint another."""
    cfg = C.apply_overrides(C.preset("smoke"), [f"data.path={tmp_path / 'a'}"])
    with pytest.raises(ValueError, match="another data.path"):
        train(cfg, str(tmp_path / "run"), data=ResolvedData(str(tmp_path / "b"), "b", "identity of b"))
