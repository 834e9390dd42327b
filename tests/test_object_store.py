"""paw_ray.storage on a real S3-compatible server: moto's standalone server on 127.0.0.1,
reached the way a user reaches MinIO or Ceph (``AWS_ENDPOINT_URL``). Round trips, one
filesystem per bucket, a missing bucket named, a store that stops answering and comes back,
and a data set on the bucket whose shard is changed in place. The whole pipeline on the
bucket (train, a crashed driver resumed, predict, export) is ``test_crash_recovery``'s run."""

from __future__ import annotations

import hashlib
import threading
import time

import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from celeba_fixtures import make_celeba
from paw_ray import storage
from paw_ray.data import celeba, shards
from paw_ray.data.identity import changed_shards, verify_shards
from paw_ray.data.synthfaces import synthesize

from s3_store import BUCKET, running_store


@pytest.fixture(scope="module")
def store():
    with running_store() as s:
        yield s


def test_files_round_trip_through_the_bucket(store):
    root = f"s3://{BUCKET}/round-trip"
    storage.write_json_atomic(storage.join(root, "run", "manifest.json"), {"stages": {"frl": 1}})
    storage.write_bytes_atomic(storage.join(root, "run", "photos", "a.JPG"), b"\xff\xd8 not really")
    assert storage.read_json(f"{root}/run/manifest.json") == {"stages": {"frl": 1}}
    assert storage.exists(f"{root}/run") and storage.is_dir(f"{root}/run") and storage.is_file(f"{root}/run/manifest.json")
    assert storage.listdir(f"{root}/run") == ["manifest.json", "photos"]
    assert storage.find_files(f"{root}/run", (".jpg",)) == [f"{root}/run/photos/a.JPG"]
    assert storage.file_size(f"{root}/run/photos/a.JPG") == 13 and storage.file_size(f"{root}/nothing") is None
    assert storage.sha256(f"{root}/run/photos/a.JPG") == hashlib.sha256(b"\xff\xd8 not really").hexdigest()
    storage.remove_tree(f"{root}/run")
    assert not storage.exists(f"{root}/run/manifest.json")
    with pytest.raises(FileNotFoundError):
        storage.read_bytes(f"{root}/run/manifest.json")


def test_one_filesystem_per_bucket_with_the_paths_pyarrow_gives(store):
    other = "paw-ray-other"
    store.create_bucket(other)
    fs_a, _ = storage.resolve(f"s3://{BUCKET}/x")
    fs_b, _ = storage.resolve(f"s3://{other}/x")
    for uri in (f"s3://{BUCKET}", f"s3://{BUCKET}/runs/demo", f"s3://{BUCKET}/runs/demo/"):
        fs, path = storage.resolve(uri)
        assert fs is fs_a, "made once for the bucket"
        assert path == pafs.FileSystem.from_uri(uri)[1], uri
    assert fs_b is not fs_a


def test_a_store_at_another_endpoint_gets_a_filesystem_of_its_own(store, monkeypatch):
    """A process pointed at another server (another test's, another S3-compatible store) never
    reuses the filesystem made for the first one."""
    here, _ = storage.resolve(f"s3://{BUCKET}/x")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    elsewhere, _ = storage.resolve(f"s3://{BUCKET}/x")
    monkeypatch.setenv("AWS_ENDPOINT_URL", store.endpoint)
    assert elsewhere is not here and storage.resolve(f"s3://{BUCKET}/y")[0] is here


def test_a_missing_bucket_is_named_at_once_not_retried(store, capsys):
    uri = "s3://no-such-bucket-here/runs/x/manifest.json"
    with pytest.raises(storage.StorageError, match=r"s3://no-such-bucket-here/runs/x/manifest.json: writing it "
                                                   r"failed: .*no-such-bucket-here"):
        storage.write_json_atomic(uri, {})
    assert "did not answer" not in capsys.readouterr().err, "a permanent error is not retried"


def test_a_store_that_stops_answering_is_retried_until_it_is_back(store, capsys):
    uri = f"s3://{BUCKET}/retry/manifest.json"
    storage.write_json_atomic(uri, {"epoch": 3})
    store.stop()
    back = threading.Timer(8.0, store.start)  # down for 8 s: longer than pyarrow's own retries (about 6 s)
    back.start()
    t0 = time.monotonic()
    try:
        assert storage.read_json(uri) == {"epoch": 3}
    finally:
        back.join()
    said = capsys.readouterr().err
    assert f"paw_ray storage: {uri}: reading it: the store did not answer" in said, said
    assert time.monotonic() - t0 >= 8.0, "answered by the server that came back"


def test_a_data_set_on_the_bucket_is_checked_by_content(store):
    data = f"s3://{BUCKET}/shards"
    synthesize(n=40, size=32, seed=0, out=data, num_tasks=1)
    info = shards.check_data(data)
    assert changed_shards(data, info, "full") == [] and set(info.content) == set(info.files["train"]) | set(
        info.files["val"]) | set(info.files["test"])
    rel = info.files["val"][0]
    raw = bytearray(storage.read_bytes(storage.join(data, rel)))
    raw[len(raw) // 2] ^= 0xFF
    storage.write_bytes_atomic(storage.join(data, rel), bytes(raw))
    with pytest.raises(shards.ShardError, match=f"{data}/{rel} \\(same size, other SHA-256\\)"):
        verify_shards(data, info, "auto", log=lambda _: None)


def test_prepare_celeba_writes_its_shards_and_their_content_into_the_bucket(store, ray_local, tmp_path):
    """Its Ray Data tasks write from the workers (which reach the store as the driver does)."""
    fx = make_celeba(tmp_path / "celeba")
    out = f"s3://{BUCKET}/celeba"
    info = celeba.prepare_celeba(str(fx.root), out, image_size=32, chunk_size=4, progress=lambda _: None)
    assert shards.check_data(out) == info and sum(info.num_rows.values()) == len(fx.ids)
    assert changed_shards(out, info, "full") == [], "each shard's size and SHA-256 as written"
    fs, _ = storage.resolve(out)
    ids = [i for split in shards.SPLITS for f in shards.shard_files(out, info, split)
           for i in pq.read_table(f.removeprefix("s3://"), filesystem=fs, columns=["image_id"]).column(0).to_pylist()]
    assert sorted(ids) == fx.ids


def test_a_store_down_through_every_retry_is_named_with_the_tries(store, monkeypatch, capsys):
    uri = f"s3://{BUCKET}/down/manifest.json"
    storage.write_json_atomic(uri, {"epoch": 1})
    monkeypatch.setattr(storage, "RETRY_DELAYS_S", (0.1,))
    store.stop()
    try:
        with pytest.raises(storage.StorageError, match=f"{uri}: reading it failed after 2 tries: .*NETWORK_CONNECTION"):
            storage.read_json(uri)
    finally:
        store.start()
    assert capsys.readouterr().err.count("the store did not answer") == 1
