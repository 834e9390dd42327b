"""A data set's identity by content (paw_ray.data.identity): dataset.json records each shard's
size and SHA-256 as written, and a shard changed in place since is caught before a run reads
it, named, or, when the user accepts the change, recorded anew so that the stages rerun."""

from __future__ import annotations

import hashlib
import os

import pyarrow.parquet as pq
import pytest

from paw_ray import config as C
from paw_ray.cli import main
from paw_ray.data import shards
from paw_ray.data.identity import changed_shards, data_identity, verify_shards
from paw_ray.data.synthfaces import synthesize
from paw_ray.train.run import resolve


@pytest.fixture
def data_dir(tmp_path) -> str:
    out = str(tmp_path / "data")
    synthesize(n=40, size=32, seed=0, out=out, num_tasks=1)
    return out


def _rewrite_labels(data_dir: str, rel: str) -> None:
    """The same shard name and row count, other labels: what a careless re-export does."""
    path = os.path.join(data_dir, rel)
    table = pq.read_table(path)
    flipped = [[1 - v for v in row] for row in table.column("labels").to_pylist()]
    table = table.set_column(table.schema.get_field_index("labels"), "labels",
                             shards.rows_to_table({**table.to_pydict(), "labels": flipped}).column("labels"))
    shards.write_shard(table, data_dir, rel.split("/")[0], int(rel.split("-")[1].split(".")[0]))


def _cfg(data_dir: str, *overrides: str) -> C.Config:
    return C.apply_overrides(C.preset("smoke"), [f"data.path={data_dir}", *overrides])


def test_dataset_json_records_each_shard_s_size_and_sha256_as_written(data_dir):
    info = shards.read_info(data_dir)
    listed = [rel for split in shards.SPLITS for rel in info.files[split]]
    assert sorted(info.content) == sorted(listed) and len(listed) >= 3
    for rel in listed:
        data = open(os.path.join(data_dir, rel), "rb").read()
        assert info.content[rel] == {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    assert changed_shards(data_dir, info, "full") == []


def test_a_shard_rewritten_in_place_stops_the_run_naming_it(data_dir, tmp_path):
    rel = shards.read_info(data_dir).files["train"][0]
    _rewrite_labels(data_dir, rel)
    assert shards.read_info(data_dir).num_rows == {"train": 32, "val": 4, "test": 4}, "names and counts unchanged"
    with pytest.raises(shards.ShardError, match=r"1 shard\(s\) changed in place .*" + rel + r".*--accept-data-change"):
        resolve(_cfg(data_dir), str(tmp_path / "run"), log=lambda _: None)


def test_the_command_refuses_it_before_ray_or_any_stage_starts(data_dir, tmp_path, capsys):
    rel = shards.read_info(data_dir).files["val"][0]
    _rewrite_labels(data_dir, rel)
    run_dir = tmp_path / "run"
    assert main(["train", "--preset", "smoke", "--data", data_dir, "--run-dir", str(run_dir)]) == 2
    assert rel in capsys.readouterr().err
    assert not run_dir.exists(), "nothing written into the run directory"


def test_the_same_size_with_other_bytes_is_caught_by_its_hash_not_by_its_size(data_dir):
    info = shards.read_info(data_dir)
    rel = info.files["test"][0]
    path = os.path.join(data_dir, rel)
    data = bytearray(open(path, "rb").read())
    data[len(data) // 2] ^= 0xFF
    open(path, "wb").write(bytes(data))
    assert changed_shards(data_dir, info, "size") == [], "a size check alone cannot see it"
    for mode in ("auto", "full"):  # auto hashes a data set this small
        [change] = changed_shards(data_dir, info, mode)
        assert change.path == rel and change.why() == "same size, other SHA-256"


def test_an_accepted_change_is_recorded_and_changes_the_identity_so_the_stages_rerun(data_dir, tmp_path):
    before = shards.read_info(data_dir)
    rel = before.files["train"][0]
    _rewrite_labels(data_dir, rel)
    said: list[str] = []
    got = resolve(_cfg(data_dir, "data.on_change=accept"), str(tmp_path / "run"), log=said.append)
    assert any(rel in line and "run again" in line for line in said), said
    assert got.identity != data_identity(before), "every fingerprint that holds the data changes"
    after = shards.read_info(data_dir)
    assert after.content[rel] != before.content[rel] and changed_shards(data_dir, after, "full") == []
    again = resolve(_cfg(data_dir), str(tmp_path / "run"), log=said.append)  # recorded: no longer a change
    assert again.identity == got.identity


def test_a_data_set_without_a_record_keeps_its_identity_and_is_told_how_to_get_one(data_dir):
    info = shards.read_info(data_dir)
    legacy = shards.DatasetInfo(**{**info.to_json(), "content": {}})
    shards.write_info(legacy, data_dir)
    assert "content" not in data_identity(legacy), "the identity it had before content was recorded"
    said: list[str] = []
    assert verify_shards(data_dir, legacy, log=said.append) is legacy
    assert len(said) == 1 and "--accept-data-change records them" in said[0]
    recorded = verify_shards(data_dir, shards.read_info(data_dir), on_change="accept", log=said.append)
    assert recorded.content == info.content and shards.read_info(data_dir).content == info.content


def test_a_missing_shard_is_never_accepted(data_dir):
    info = shards.read_info(data_dir)
    rel = info.files["test"][0]
    os.remove(os.path.join(data_dir, rel))
    [change] = changed_shards(data_dir, info)
    assert change.why() == "missing"
    with pytest.raises(shards.ShardError, match=f"missing: .*{rel}.*prepare the data again"):
        verify_shards(data_dir, info, on_change="accept", log=lambda _: None)


@pytest.mark.parametrize("item, message", [("data.verify=sha1", "data.verify: 'sha1' is not one of auto, full, size"),
                                           ("data.on_change=ignore", "data.on_change: 'ignore' is not one of stop")])
def test_bad_modes_are_refused_by_the_config(item, message):
    with pytest.raises(C.ConfigError, match=message):
        C.apply_overrides(C.preset("smoke"), [item])
