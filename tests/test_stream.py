"""The input path on a small hand-made shard set, with a real local Ray: the Ray Data
stream, the model batches made from it, and the decoded cache that serves later epochs."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from paw_ray.attributes import NUM_ATTRIBUTES
from paw_ray.data import shards
from paw_ray.data.batches import IMAGENET_MEAN, IMAGENET_STD, StreamStats, flip_decisions, model_batch
from paw_ray.data.cache import choose_placement
from paw_ray.data.feed import EpochFeed, Holdout, decoded_in_order, rebatched
from paw_ray.data.stream import (CentresTable, RowDecoder, consumer_decoder, decode_batch, decode_image,
                                 decode_jpeg_batch, decode_pil, image_stream, window_corners)

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
        files[split] = [shards.write_shard(shards.rows_to_table(rows), out, split, 0).path]
        counts[split] = n
        start += n
    shards.write_info(shards.DatasetInfo(name="test", image_size=SIZE, num_rows=counts, files=files,
                                         has_part_boxes_gt=True), out)
    return out


def _collect(ds) -> dict[str, np.ndarray]:
    parts = list(ds.iter_batches(batch_size=64, batch_format="numpy"))
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def _pixels(x):
    """A model batch's normalised images back to uint8 pixels (N, 3, H, W)."""
    mean = torch.as_tensor(IMAGENET_MEAN * 255.0).view(1, 3, 1, 1)
    std = torch.as_tensor(IMAGENET_STD * 255.0).view(1, 3, 1, 1)
    return (x.float() * std + mean).round().clamp(0, 255).to(torch.uint8).numpy()


def _epoch(feed, epoch, stats=None) -> dict[str, np.ndarray]:
    """One epoch of a feed as numpy columns (pixels back to uint8), in the order served."""
    parts = list(feed.epoch(epoch, stats))
    out = {"image_id": np.concatenate([p["image_id"] for p in parts]),
           "image": np.concatenate([_pixels(p["image"].cpu()) for p in parts]),
           "labels": np.concatenate([p["labels"].cpu().numpy() for p in parts])}
    for key in ("flipped",):
        if key in parts[0]:
            out[key] = np.concatenate([p[key] for p in parts])
    if "centres" in parts[0]:
        out["centres"] = np.concatenate([p["centres"].cpu().numpy() for p in parts])
    return out


def test_shapes_dtypes_and_label_alignment(ray_local, data_dir):
    got = _collect(image_stream(data_dir, "test", RowDecoder(24), cue_boxes=True))
    n = len(got["image_id"])
    assert n == N_TEST
    assert got["image"].shape == (n, 3, 24, 24) and got["image"].dtype == np.uint8
    assert got["labels"].shape == (n, NUM_ATTRIBUTES) and got["labels"].dtype == np.int8
    assert got["part_boxes_gt"].shape == (n, NUM_ATTRIBUTES, 4)
    np.testing.assert_allclose(got["part_boxes_gt"][:, 0], [[0.0, 0.1, 0.25, 0.3]] * n)
    for image_id, labels in zip(got["image_id"], got["labels"]):
        assert labels.tolist() == _labels(int(image_id.split("-")[1]))
    assert "part_boxes_gt" not in _collect(image_stream(data_dir, "test", RowDecoder(24))), "cue boxes only when asked for"


def test_training_feed_flips_half_the_rows_and_mirrors_their_centres(ray_local, data_dir):
    ids = _collect(image_stream(data_dir, "train", RowDecoder(SIZE)))["image_id"]
    centres = CentresTable.from_arrays(ids, np.random.default_rng(2).uniform(0, 1, (len(ids), 40, 2)))
    feed = EpochFeed(image_stream(data_dir, "train", RowDecoder(SIZE, centres=centres), shuffle=True, seed=3),
                     batch_size=64,
                     device="cpu", flip_seed=3)
    got = _epoch(feed, 0)
    flipped = got["flipped"]
    assert 0.35 < flipped.mean() < 0.65
    np.testing.assert_array_equal(flipped, flip_decisions(got["image_id"], 3, 0))
    left = got["image"][:, 0, :, : SIZE // 2].mean(axis=(1, 2))
    right = got["image"][:, 0, :, SIZE // 2 :].mean(axis=(1, 2))
    assert (left[flipped] > right[flipped]).all(), "flipped rows are mirrored"
    assert (left[~flipped] < right[~flipped]).all()
    truth = centres.lookup(got["image_id"])
    np.testing.assert_allclose(got["centres"][flipped, :, 0], 1.0 - truth[flipped, :, 0], atol=1e-6)
    np.testing.assert_allclose(got["centres"][~flipped], truth[~flipped], atol=1e-6)
    np.testing.assert_allclose(got["centres"][..., 1], truth[..., 1], atol=1e-6)


def test_flips_change_between_epochs_but_not_between_runs(ray_local, data_dir):
    def feed():
        return EpochFeed(image_stream(data_dir, "train", RowDecoder(SIZE), shuffle=True, seed=5), batch_size=64, device="cpu",
                         flip_seed=5)

    first = feed()
    epoch0, epoch1 = _epoch(first, 0), _epoch(first, 1)
    f0 = dict(zip(epoch0["image_id"], epoch0["flipped"]))
    f1 = dict(zip(epoch1["image_id"], epoch1["flipped"]))
    assert f0 != f1, "a new epoch draws new flips"
    again = _epoch(feed(), 0)
    assert dict(zip(again["image_id"], again["flipped"])) == f0, "same seed, same first epoch"


def _encoded(fmt: str, size: int) -> tuple[np.ndarray, bytes]:
    rng = np.random.default_rng(size)
    smooth = np.kron(rng.integers(0, 256, (size // 4, size // 4, 3)), np.ones((4, 4, 1))).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(smooth).save(buf, format=fmt, **({"quality": 95} if fmt == "JPEG" else {}))
    return smooth, buf.getvalue()


def test_decoders_give_the_stored_pixels_as_uint8_chw():
    pixels, png = _encoded("PNG", 48)
    np.testing.assert_array_equal(decode_image(png, 48), pixels.transpose(2, 0, 1))
    _, jpeg = _encoded("JPEG", 48)
    fast, reference = decode_image(jpeg, 48), decode_pil(jpeg, 48)  # libjpeg-turbo through torchvision vs PIL
    assert fast.dtype == np.uint8 and fast.shape == (3, 48, 48)
    assert np.abs(fast.astype(int) - reference).max() <= 1
    _, big = _encoded("JPEG", 96)  # stored larger than the training size: PIL, scaled in the DCT
    np.testing.assert_array_equal(decode_image(big, 48), decode_pil(big, 48))
    assert decode_image(big, 48).shape == (3, 48, 48)


def test_a_truncated_jpeg_is_a_failed_row_not_an_error():
    _, jpeg = _encoded("JPEG", 32)
    table = shards.rows_to_table({"image_id": ["ok", "cut"], "split": ["train"] * 2, "image": [jpeg, jpeg[:200]],
                                  "labels": [_labels(0)] * 2, "face_box": [[0, 0, 32, 32]] * 2,
                                  "part_boxes_gt": [None, None]})
    out = decode_batch(table, image_size=32)
    assert out["ok"].tolist() == [True, False] and out["image"].shape == (2, 3, 32, 32)


def test_a_jpeg_batch_decodes_in_one_call_as_row_by_row():
    """The nvJPEG path's code (here on the CPU: the same ``decode_jpeg`` call on a list):
    the stored pixels of every row, a row stored larger resized to the training size, and no
    answer for a batch it cannot take whole (a PNG, a corrupt JPEG)."""
    jpegs = [_encoded("JPEG", 48)[1] for _ in range(3)]
    got = decode_jpeg_batch(jpegs, 48, "cpu")
    assert got.dtype == torch.uint8 and got.shape == (3, 3, 48, 48)
    for row, data in zip(got, jpegs):
        np.testing.assert_array_equal(row.numpy(), decode_image(data, 48))
    ramp = np.broadcast_to(np.linspace(0, 255, 96)[None, :, None], (96, 96, 3)).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(ramp).save(buf, format="JPEG", quality=95)
    big = decode_jpeg_batch([buf.getvalue()], 48, "cpu")  # stored at twice the size: resized where decoded
    assert big.shape == (1, 3, 48, 48)
    assert np.abs(big[0].numpy().astype(int) - decode_pil(buf.getvalue(), 48)).max() <= 4
    assert decode_jpeg_batch(jpegs + [_encoded("PNG", 48)[1]], 48, "cpu") is None
    assert decode_jpeg_batch(jpegs + [jpegs[0][:-400]], 48, "cpu") is None


@pytest.mark.skipif(not torch.cuda.is_available(), reason="nvJPEG needs a CUDA device")
def test_nvjpeg_decodes_the_pixels_libjpeg_turbo_decodes():
    jpegs = [_encoded("JPEG", 48)[1] for _ in range(4)]
    table = shards.rows_to_table({"image_id": list("abcd"), "split": ["train"] * 4, "image": jpegs,
                                  "labels": [_labels(0)] * 4, "face_box": [[0, 0, 48, 48]] * 4,
                                  "part_boxes_gt": [None] * 4})
    on_gpu = RowDecoder(48)(table, jpeg_device="cuda")["image"]
    assert on_gpu.device.type == "cuda" and on_gpu.dtype == torch.uint8
    on_cpu = RowDecoder(48)(table)["image"]
    assert np.abs(on_gpu.cpu().numpy().astype(int) - on_cpu).max() <= 2  # IDCTs may round differently


def test_decoded_batches_come_in_the_streams_order():
    import random
    import time

    def slow_identity(x):
        time.sleep(random.uniform(0, 0.01))
        return x

    assert list(decoded_in_order(range(50), slow_identity, threads=4)) == list(range(50))
    assert list(decoded_in_order([], slow_identity, threads=2)) == []


@pytest.mark.parametrize("part", [None, 7])
def test_rows_decoded_by_the_consumer_are_the_rows_decoded_in_tasks(ray_local, data_dir, part):
    """``decode_in="consumer"``: the stream carries encoded rows and the feed decodes them in two
    threads; epoch by epoch it serves the same rows, pixels, labels, centres and flips as the
    stream decoded in Ray Data's tasks, counts the undecodable row, and its decoded cache
    serves the later epochs."""
    ids = _collect(image_stream(data_dir, "train", RowDecoder(SIZE)))["image_id"]
    centres = ray_local.put(CentresTable.from_arrays(ids, np.random.default_rng(1).uniform(0, 1, (len(ids), 40, 2))))
    decoder = RowDecoder(SIZE, centres=centres, **(dict(part=part, part_size=16) if part is not None else {}))
    tasks = EpochFeed(image_stream(data_dir, "train", decoder, shuffle=True, seed=3), batch_size=64, device="cpu",
                      flip_seed=3)
    consumer = EpochFeed(image_stream(data_dir, "train", decoder, shuffle=True, seed=3, decode_in="consumer"),
                         batch_size=64, device="cpu", flip_seed=3, shuffle_seed=3, placement="host",
                         decoder=decoder, decode_threads=2)
    for epoch in range(2):
        stats = StreamStats()
        served, truth = _epoch(consumer, epoch, stats), _epoch(tasks, epoch)
        assert consumer.last_source == ("stream" if epoch == 0 else "cache:host")
        assert stats.rows == N_TRAIN - 1 and stats.decode_failures == 1 and stats.failed_ids == [CORRUPT_ID]
        assert sorted(served["image_id"]) == sorted(truth["image_id"])
        row = {image_id: i for i, image_id in enumerate(truth["image_id"])}
        j = np.array([row[i] for i in served["image_id"]])
        for key in ("image", "labels", "flipped") + (("centres",) if part is None else ()):
            np.testing.assert_array_equal(served[key], truth[key][j], err_msg=key)
    assert consumer.cache.columns["image"].shape[1:] == ((3, 16, 16) if part is not None else (3, SIZE, SIZE))


def test_a_bad_decode_place_is_refused(data_dir):
    with pytest.raises(ValueError, match="decode_in must be one of"):
        image_stream(data_dir, "train", RowDecoder(SIZE), decode_in="gpu")


def test_corrupt_image_is_counted_not_fatal(ray_local, data_dir):
    stats = StreamStats()
    ds = image_stream(data_dir, "train", RowDecoder(SIZE))
    seen = []
    for batch in ds.iter_batches(batch_size=64, batch_format="numpy"):
        t = model_batch(batch, "cpu", stats)
        seen.extend(t["image_id"].tolist())
        assert t["image"].dtype.is_floating_point and t["image"].shape[1:] == (3, SIZE, SIZE)
        assert abs(float(t["image"].mean())) < 3.0  # normalised
    assert stats.decode_failures == 1 and stats.failed_ids == [CORRUPT_ID]
    assert stats.rows == N_TRAIN - 1 and CORRUPT_ID not in seen


def test_part_stream_carries_only_its_window(ray_local, data_dir):
    whole = _collect(image_stream(data_dir, "val", RowDecoder(SIZE)))
    rng = np.random.default_rng(0)
    centres = CentresTable.from_arrays(whole["image_id"], rng.uniform(0, 1, (len(whole["image_id"]), 40, 2)))
    part, p = 7, 16
    crops = _collect(image_stream(data_dir, "val", RowDecoder(SIZE, centres=ray_local.put(centres), part=part, part_size=p)))
    assert crops["image"].shape == (N_TEST, 3, p, p)
    by_id = {k: v for k, v in zip(whole["image_id"], whole["image"])}
    for image_id, crop in zip(crops["image_id"], crops["image"]):
        x0, y0 = window_corners(centres.lookup(np.array([image_id]))[0, part], SIZE, p)
        np.testing.assert_array_equal(crop, by_id[image_id][:, y0 : y0 + p, x0 : x0 + p])


def test_missing_centres_is_a_clear_error(ray_local, data_dir):
    centres = CentresTable.from_arrays(["nope"], np.zeros((1, 40, 2)))
    with pytest.raises(Exception, match="no part centres"):
        _collect(image_stream(data_dir, "val", RowDecoder(SIZE, centres=centres)))


def test_missing_data_dir_names_it(tmp_path):
    with pytest.raises(shards.ShardError, match="does not exist"):
        image_stream(str(tmp_path / "nowhere"), "train", RowDecoder(32), shuffle=True)
    (tmp_path / "empty").mkdir()
    with pytest.raises(shards.ShardError, match="not a prepared data set"):
        image_stream(str(tmp_path / "empty"), "train", RowDecoder(32), shuffle=True)


DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.mark.parametrize("device, placement", [(d, p) for d in DEVICES for p in ("host", "disk")]
                         + [("cuda", "gpu")] * torch.cuda.is_available())
@pytest.mark.parametrize("part", [None, 7])
def test_the_cache_serves_what_the_stream_serves(ray_local, data_dir, tmp_path, device, placement, part):
    """Whole images with centres (the PaW stages) and one part's crops (a part task): epoch by
    epoch, a feed that keeps its first pass serves each row with the same pixels, labels,
    centres and flip as a feed that streams every epoch; every row once per epoch; a new
    order each cached epoch; the cache itself never mirrored in place."""
    ids = _collect(image_stream(data_dir, "train", RowDecoder(SIZE)))["image_id"]
    centres = ray_local.put(CentresTable.from_arrays(ids, np.random.default_rng(1).uniform(0, 1, (len(ids), 40, 2))))
    crop = dict(part=part, part_size=16) if part is not None else {}

    def feed(keep):
        return EpochFeed(image_stream(data_dir, "train", RowDecoder(SIZE, centres=centres, **crop), shuffle=True, seed=3),
                         batch_size=64, device=device, placement=placement if keep else None, flip_seed=3,
                         shuffle_seed=3, spill_dir=str(tmp_path))

    cached, streamed = feed(True), feed(False)
    orders = []
    for epoch in range(3):
        stats = StreamStats()
        served, truth = _epoch(cached, epoch, stats), _epoch(streamed, epoch)
        assert cached.last_source == ("stream" if epoch == 0 else f"cache:{placement}")
        assert stats.rows == N_TRAIN - 1 and stats.decode_failures == 1, "the undecodable row is counted every epoch"
        assert sorted(served["image_id"]) == sorted(truth["image_id"]) == sorted(set(ids) - {CORRUPT_ID})
        orders.append(served["image_id"])
        row = {image_id: i for i, image_id in enumerate(truth["image_id"])}
        j = np.array([row[i] for i in served["image_id"]])
        np.testing.assert_array_equal(served["flipped"], truth["flipped"][j])
        np.testing.assert_array_equal(served["labels"], truth["labels"][j])
        np.testing.assert_array_equal(served["image"], truth["image"][j])
        if part is None:
            np.testing.assert_array_equal(served["centres"], truth["centres"][j])
    assert (orders[1] != orders[2]).any(), "a new order each cached epoch"
    kept = cached.cache.columns["image"]
    kept = kept.cpu().numpy() if isinstance(kept, torch.Tensor) else np.asarray(kept)
    left, right = kept[..., : kept.shape[-1] // 2].mean(), kept[..., kept.shape[-1] // 2 :].mean()
    if part is None:
        assert left < right, "the cache holds the unflipped images"


def test_a_cache_cut_short_is_not_kept(ray_local, data_dir, tmp_path):
    feed = EpochFeed(image_stream(data_dir, "train", RowDecoder(SIZE)), batch_size=64, device="cpu", placement="disk",
                     spill_dir=str(tmp_path))
    for _ in feed.epoch(0):
        break  # max_steps: the first pass stops early
    assert feed.cache is None and not list(tmp_path.iterdir()), "no partial cache, no file left behind"
    _epoch(feed, 1)
    assert feed.cache is not None and len(feed.cache) == N_TRAIN
    assert not list(tmp_path.iterdir()), "a disk cache's file is unlinked once mapped"


def test_rebatched_keeps_every_row_in_order_at_the_batch_size():
    spans = ((0, 5), (5, 5), (5, 12), (12, 13), (13, 30))
    batches = [{"image_id": np.array([f"r{i}" for i in range(lo, hi)], dtype=object), "image": torch.arange(lo, hi)}
               for lo, hi in spans]
    out = list(rebatched(batches, 8))
    assert [len(b["image_id"]) for b in out] == [8, 8, 8, 6]
    np.testing.assert_array_equal(np.concatenate([b["image_id"] for b in out]), [f"r{i}" for i in range(30)])
    torch.testing.assert_close(torch.cat([b["image"] for b in out]), torch.arange(30))


def _joint_feeds(data_dir, decoder, placement, spill_dir):
    """A part task's feeds over one stream of train and val (``parts.train_part``)."""
    val = EpochFeed(image_stream(data_dir, "val", decoder), batch_size=16, device="cpu", placement=placement,
                    spill_dir=spill_dir)
    train = EpochFeed(image_stream(data_dir, ("train", "val"), decoder, shuffle=True, seed=3), batch_size=16,
                      device="cpu", placement=placement, flip_seed=3, shuffle_seed=3, spill_dir=spill_dir,
                      holdout=Holdout(shards.split_ids(data_dir, "val"), val))
    return train, val


def _same_rows(served, truth):
    assert sorted(served["image_id"]) == sorted(truth["image_id"])
    row = {image_id: i for i, image_id in enumerate(truth["image_id"])}
    j = np.array([row[i] for i in served["image_id"]])
    for key in ("image", "labels") + (("flipped",) if "flipped" in truth else ()):
        np.testing.assert_array_equal(served[key], truth[key][j])


@pytest.mark.parametrize("placement", ["host", "disk"])
def test_one_stream_of_train_and_val_serves_each_split_its_own_rows(ray_local, data_dir, tmp_path, placement):
    """The training feed serves only its own rows, at the batch size, with the pixels, labels
    and flips of the train split's own stream; the val rows fill the validation feed's cache,
    which serves what the val split's own stream serves."""
    ids = [i for split in ("train", "val") for i in shards.split_ids(data_dir, split)]
    centres = ray_local.put(CentresTable.from_arrays(ids, np.random.default_rng(1).uniform(0, 1, (len(ids), 40, 2))))
    decoder = RowDecoder(SIZE, centres=centres, part=7, part_size=16)
    train, val = _joint_feeds(data_dir, decoder, placement, str(tmp_path))
    batches = list(train.epoch(0))
    assert len(batches) == -(-N_TRAIN // 16), "rebatched: full batches despite the val rows taken out"
    served = _epoch(train, 1)  # the same rows from the cache, to compare as columns
    assert train.last_source == f"cache:{placement}"
    alone = EpochFeed(image_stream(data_dir, "train", decoder, shuffle=True, seed=3), batch_size=16, device="cpu",
                      flip_seed=3)
    _same_rows(served, _epoch(alone, 1))
    assert val.cache is not None and len(val.cache) == N_TEST
    served_val = _epoch(val, 0)
    assert val.last_source == f"cache:{placement}", "the val split was never streamed on its own"
    _same_rows(served_val, _epoch(EpochFeed(image_stream(data_dir, "val", decoder), batch_size=16, device="cpu"), 0))


def test_a_joint_pass_cut_short_leaves_the_val_feed_streaming(ray_local, data_dir, tmp_path):
    train, val = _joint_feeds(data_dir, RowDecoder(SIZE), "host", str(tmp_path))
    for _ in train.epoch(0):
        break  # max_steps: the first pass stops early
    assert train.cache is None and val.cache is None
    assert len(_epoch(val, 0)["image_id"]) == N_TEST and val.last_source == "stream"


def test_only_a_consumer_of_encoded_rows_decodes_them():
    decoder = RowDecoder(SIZE)
    assert consumer_decoder(decoder, "consumer") is decoder
    assert consumer_decoder(decoder, "tasks") is None
    with pytest.raises(ValueError, match="decode_in"):
        consumer_decoder(decoder, "auto")  # resolved by config.decode_place before it gets here


def test_rows_over_the_budget_keep_streaming(tmp_path):
    mb = 2**20
    assert choose_placement(10 * mb, 20, "cpu") == "host"
    assert choose_placement(30 * mb, 20, "cpu") is None, "over the budget, no spill folder: stream"
    assert choose_placement(30 * mb, 20, "cpu", spill_dir=str(tmp_path)) == "disk"
    assert choose_placement(1, 0, "cpu", spill_dir=str(tmp_path)) is None, "0: never cache"
    assert choose_placement(10 * mb, -1, "cpu") == "host", "automatic: a share of the host's memory"
    assert choose_placement(2**50, -1, "cpu") is None
