"""The Ray Data input pipeline on a small hand-made shard set, with a real local Ray."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from paw_ray.attributes import NUM_ATTRIBUTES
from paw_ray.data import shards
from paw_ray.data.pipeline import CentresTable, StreamStats, image_stream, to_torch_batch, window_corners

N_TRAIN, N_TEST, SIZE = 200, 20, 32
CORRUPT_ID = "img-0007"


def _image(i: int) -> bytes:
    """Left half dark, right half bright (so a mirror is visible), pixel (0, 0) encodes i."""
    a = np.zeros((SIZE, SIZE, 3), dtype=np.uint8)
    a[:, SIZE // 2 :] = 200
    a[:, :, 2] = i % 256
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="PNG")
    return buf.getvalue()


def _labels(i: int) -> list[int]:
    return [(i >> (k % 8)) & 1 for k in range(NUM_ATTRIBUTES)]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("pipe"))
    files = {}
    counts = {}
    start = 0
    for split, n in (("train", N_TRAIN), ("val", N_TEST), ("test", N_TEST)):
        ids = [f"img-{i:04d}" for i in range(start, start + n)]
        rows = {
            "image_id": ids,
            "split": [split] * n,
            "image": [b"not an image" if x == CORRUPT_ID else _image(start + k) for k, x in enumerate(ids)],
            "labels": [_labels(start + k) for k in range(n)],
            "face_box": [[0, 0, SIZE, SIZE]] * n,
            # attribute 0's box sits in the left quarter; others empty
            "part_boxes_gt": [[0.0, 0.1, 0.25, 0.3] + [0.0] * 156] * n,
        }
        files[split] = [shards.write_shard(shards.rows_to_table(rows), out, split, 0)]
        counts[split] = n
        start += n
    shards.write_info(shards.DatasetInfo(name="test", image_size=SIZE, num_rows=counts, files=files,
                                         has_part_boxes_gt=True), out)
    return out


def _collect(ds) -> dict[str, np.ndarray]:
    parts = list(ds.iter_batches(batch_size=64, batch_format="numpy"))
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def test_shapes_dtypes_and_label_alignment(ray_local, data_dir):
    got = _collect(image_stream(data_dir, "test", 24, train=False))
    n = len(got["image_id"])
    assert n == N_TEST
    assert got["image"].shape == (n, 3, 24, 24) and got["image"].dtype == np.uint8
    assert got["labels"].shape == (n, NUM_ATTRIBUTES) and got["labels"].dtype == np.int8
    assert got["part_boxes_gt"].shape == (n, NUM_ATTRIBUTES, 4)
    for image_id, labels in zip(got["image_id"], got["labels"]):
        assert labels.tolist() == _labels(int(image_id.split("-")[1]))
    assert not got["flipped"].any(), "no flips at evaluation"


def test_training_flips_half_the_rows_and_mirror_boxes(ray_local, data_dir):
    got = _collect(image_stream(data_dir, "train", SIZE, train=True, seed=3))
    ok, flipped = got["ok"], got["flipped"]
    assert 0.35 < flipped.mean() < 0.65
    left = got["image"][:, 0, :, : SIZE // 2].mean(axis=(1, 2))
    right = got["image"][:, 0, :, SIZE // 2 :].mean(axis=(1, 2))
    assert (left[flipped & ok] > right[flipped & ok]).all(), "flipped rows are mirrored"
    assert (left[~flipped & ok] < right[~flipped & ok]).all()
    box = got["part_boxes_gt"][:, 0]
    np.testing.assert_allclose(box[flipped], [[0.75, 0.1, 1.0, 0.3]] * int(flipped.sum()), atol=1e-6)
    np.testing.assert_allclose(box[~flipped], [[0.0, 0.1, 0.25, 0.3]] * int((~flipped).sum()), atol=1e-6)
    assert (got["part_boxes_gt"][:, 1:] == 0).all(), "empty boxes stay empty"


def test_flips_change_between_epochs_but_not_between_runs(ray_local, data_dir):
    ds = image_stream(data_dir, "train", SIZE, train=True, seed=5)
    epoch0 = _collect(ds)
    epoch1 = _collect(ds)
    f0 = dict(zip(epoch0["image_id"], epoch0["flipped"]))
    f1 = dict(zip(epoch1["image_id"], epoch1["flipped"]))
    assert f0 != f1, "a new epoch draws new flips"
    again = _collect(image_stream(data_dir, "train", SIZE, train=True, seed=5))
    assert dict(zip(again["image_id"], again["flipped"])) == f0, "same seed, same first epoch"


def test_corrupt_image_is_counted_not_fatal(ray_local, data_dir):
    stats = StreamStats()
    ds = image_stream(data_dir, "train", SIZE, train=False)
    seen = []
    for batch in ds.iter_batches(batch_size=64, batch_format="numpy"):
        t = to_torch_batch(batch, stats)
        seen.extend(t["image_id"].tolist())
        assert t["image"].dtype.is_floating_point and t["image"].shape[1:] == (3, SIZE, SIZE)
        assert abs(float(t["image"].mean())) < 3.0  # normalised
    assert stats.decode_failures == 1 and stats.failed_ids == [CORRUPT_ID]
    assert stats.rows == N_TRAIN - 1 and CORRUPT_ID not in seen


def test_part_stream_carries_only_its_window(ray_local, data_dir):
    whole = _collect(image_stream(data_dir, "val", SIZE, train=False))
    rng = np.random.default_rng(0)
    centres = CentresTable.from_arrays(whole["image_id"], rng.uniform(0, 1, (len(whole["image_id"]), 40, 2)))
    part, p = 7, 16
    crops = _collect(image_stream(data_dir, "val", SIZE, train=False, centres=ray_local.put(centres),
                                  part=part, part_size=p))
    assert crops["image"].shape == (N_TEST, 3, p, p)
    by_id = {k: v for k, v in zip(whole["image_id"], whole["image"])}
    for image_id, crop in zip(crops["image_id"], crops["image"]):
        x0, y0 = window_corners(centres.lookup(np.array([image_id]))[0, part], SIZE, p)
        np.testing.assert_array_equal(crop, by_id[image_id][:, y0 : y0 + p, x0 : x0 + p])


def test_missing_centres_is_a_clear_error(ray_local, data_dir):
    centres = CentresTable.from_arrays(["nope"], np.zeros((1, 40, 2)))
    with pytest.raises(Exception, match="no part centres"):
        _collect(image_stream(data_dir, "val", SIZE, train=False, centres=centres))


def test_missing_data_dir_names_it(tmp_path):
    with pytest.raises(shards.ShardError, match="does not exist"):
        image_stream(str(tmp_path / "nowhere"), "train", 32, train=True)
    (tmp_path / "empty").mkdir()
    with pytest.raises(shards.ShardError, match="not a prepared data set"):
        image_stream(str(tmp_path / "empty"), "train", 32, train=True)


def test_cached_part_crops_are_reshuffled_and_flipped_as_the_stream_would_flip_them(data_dir):
    import pyarrow.parquet as pq

    from paw_ray.data.cache import InMemorySplit
    from paw_ray.data.pipeline import decode_batch

    table = pq.read_table(shards.shard_files(data_dir, shards.read_info(data_dir), "train")[0])
    ids = np.array(table.column("image_id").to_pylist())
    centres = CentresTable.from_arrays(ids, np.random.default_rng(1).uniform(0, 1, (len(ids), 40, 2)))
    crop = dict(image_size=SIZE, centres=centres, part=7, part_size=16)
    plain = decode_batch(table, train=False, **crop)
    cache = InMemorySplit.collect([{k: plain[k][:100] for k in plain}, {k: plain[k][100:] for k in plain}])
    orders = []
    for epoch in (0, 1):
        streamed = decode_batch(table, train=True, seed=3, epoch=epoch, **crop)
        batches = list(cache.batches(64, shuffle_seed=3, flip_seed=3, epoch=epoch))
        assert [len(b["image_id"]) for b in batches] == [64, 64, 64, 8]
        served = {k: np.concatenate([b[k] for b in batches]) for k in batches[0]}
        orders.append(served["image_id"])
        assert sorted(served["image_id"]) == sorted(ids)
        assert 0.3 < served["flipped"].mean() < 0.7
        row = {image_id: i for i, image_id in enumerate(streamed["image_id"])}
        for i, image_id in enumerate(served["image_id"]):
            j = row[image_id]
            assert served["flipped"][i] == streamed["flipped"][j]
            assert served["ok"][i] == streamed["ok"][j] and (served["labels"][i] == streamed["labels"][j]).all()
            np.testing.assert_array_equal(served["image"][i], streamed["image"][j], err_msg=image_id)
    assert (orders[0] != orders[1]).any(), "a new order each epoch"
    assert not cache.batches(64).__next__()["flipped"].any(), "validation batches are not flipped"
    np.testing.assert_array_equal(cache.image, plain["image"])  # serving never mirrors the cache in place
