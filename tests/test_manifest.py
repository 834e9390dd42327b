"""Run-directory manifest: fingerprints decide what reruns; writes are atomic; bad manifests are refused."""

from __future__ import annotations

import json
import os

import pytest

from paw_ray import config as C
from paw_ray.train.manifest import Manifest, RunDirError, stage_fingerprints
from paw_ray.train.stage_table import STAGES


def _changed(a: dict, b: dict) -> list[str]:
    return [s for s in STAGES if a[s] != b[s]]


def test_config_change_reruns_the_stage_and_those_after_it():
    base = C.preset("smoke")
    fps = stage_fingerprints(base, "data-A")
    assert _changed(fps, stage_fingerprints(C.apply_overrides(base, ["fusion.lr=0.2"]), "data-A")) == [
        "fusion", "finetune", "evaluate"]
    assert _changed(fps, stage_fingerprints(C.apply_overrides(base, ["frl.lr=0.5"]), "data-A")) == list(STAGES)
    assert _changed(fps, stage_fingerprints(C.apply_overrides(base, ["whole.epochs=5"]), "data-A")) == [
        "whole", "parts", "fusion", "finetune", "evaluate"]
    # the grid baseline needs no FRL centres: FRL and g_0 are shared with the FRL variant
    assert _changed(fps, stage_fingerprints(C.apply_overrides(base, ["parts.source=grid"]), "data-A")) == [
        "localize", "parts", "fusion", "finetune", "evaluate"]
    assert _changed(fps, stage_fingerprints(base, "data-B")) == list(STAGES)


def test_placement_fields_do_not_invalidate_results():
    base = C.preset("smoke")
    moved = C.apply_overrides(base, ["frl.num_workers=1", "parts.num_cpus=1", "frl.use_gpu=true",
                                     "data.op_cpus=0.5", "ray.address=auto"])
    assert stage_fingerprints(base, "d") == stage_fingerprints(moved, "d")


def test_manifest_round_trip(tmp_path):
    m = Manifest.load_or_create(str(tmp_path))
    m.preset = "smoke"
    m.start("frl", "abc", {"frl": {"lr": 1}})
    (tmp_path / "model.pt").write_bytes(b"x")
    m.complete("frl", str(tmp_path / "model.pt"), {"val_mean_accuracy": 0.9})
    again = Manifest.load_or_create(str(tmp_path))
    assert again.is_complete("frl", "abc") and not again.is_complete("frl", "other")
    assert again.stages["frl"].metrics == {"val_mean_accuracy": 0.9}
    assert not list(tmp_path.glob(".*tmp*")), "no temporary files left behind"


def test_a_manifest_written_before_artifact_was_named_so_still_reads(tmp_path):
    """Run directories made when the record's field was called ``checkpoint`` stay usable."""
    (tmp_path / "model.pt").write_bytes(b"x")
    old = {"version": 1, "run_dir": str(tmp_path), "preset": "smoke", "data": "d", "created_at": 1.0,
           "stages": {"frl": {"status": "complete", "fingerprint": "abc",
                              "checkpoint": str(tmp_path / "model.pt")}}}
    (tmp_path / "manifest.json").write_text(json.dumps(old))
    m = Manifest.load_or_create(str(tmp_path))
    assert m.stages["frl"].artifact == str(tmp_path / "model.pt") and m.is_complete("frl", "abc")
    m.save()
    assert "artifact" in json.loads((tmp_path / "manifest.json").read_text())["stages"]["frl"]


def test_complete_stage_whose_artifact_vanished_is_not_complete(tmp_path):
    m = Manifest.load_or_create(str(tmp_path))
    m.start("frl", "abc", {})
    m.complete("frl", str(tmp_path / "gone.pt"), {})
    assert not Manifest.load_or_create(str(tmp_path)).is_complete("frl", "abc")


@pytest.mark.parametrize("content, message", [
    ('{"stages": {', "not valid JSON"),
    ("[1, 2]", "not a paw_ray manifest"),
    ('{"version": 1, "stages": {"frl": {"bogus": 1}}}', "malformed stage record"),
    ('{"version": 1, "stages": {"warp": {}}}', "unknown stage"),
])
def test_corrupted_manifest_is_refused_with_its_path(tmp_path, content, message):
    (tmp_path / "manifest.json").write_text(content)
    with pytest.raises(RunDirError, match=message) as err:
        Manifest.load_or_create(str(tmp_path))
    assert str(tmp_path / "manifest.json") in str(err.value)
    assert (tmp_path / "manifest.json").read_text() == content, "the run directory is left as it was"


def test_failed_stage_is_recorded(tmp_path):
    m = Manifest.load_or_create(str(tmp_path))
    m.start("frl", "abc", {})
    m.fail("frl", "RuntimeError: boom")
    rec = json.loads((tmp_path / "manifest.json").read_text())["stages"]["frl"]
    assert rec["status"] == "failed" and "boom" in rec["error"]


def test_a_write_that_dies_midway_leaves_the_old_manifest(tmp_path, monkeypatch):
    """Every checkpoint, shard, centres table and manifest goes through
    ``storage.write_bytes_atomic``: the new bytes reach the real name only by a rename, so a
    writer dying mid-write (here: at the flush to disk) leaves the previous file whole."""
    m = Manifest.load_or_create(str(tmp_path))
    m.preset = "smoke"
    m.save()
    before = (tmp_path / "manifest.json").read_bytes()

    def die(fd):
        raise OSError("disk gone")

    monkeypatch.setattr(os, "fsync", die)
    with pytest.raises(OSError, match="disk gone"):
        m.start("frl", "abc", {})
    assert (tmp_path / "manifest.json").read_bytes() == before
    assert "frl" not in Manifest.load_or_create(str(tmp_path)).stages
    assert not list(tmp_path.glob(".*tmp*")), "the half-written temporary file is removed"
