"""SynthFaces: determinism, ground-truth boxes, visible cues, shards, argument errors."""

from __future__ import annotations

import io
import json

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image

from paw_ray import storage
from paw_ray.attributes import ATTRIBUTES, LOCAL_MASK, attribute_index
from paw_ray.data import shards
from paw_ray.data import synthfaces as sf
from paw_ray.errors import PawRayError

LOCAL = np.array(LOCAL_MASK)


def _labels(*on: str, off: tuple[str, ...] = ()) -> np.ndarray:
    """A plain face: beardless, young, attractive (symmetric), brown hair, plus ``on``."""
    lab = np.zeros(40, dtype=np.int8)
    for name in ("No_Beard", "Young", "Attractive", "Brown_Hair", *on):
        lab[attribute_index(name)] = 1
    for name in off:
        lab[attribute_index(name)] = 0
    return lab


def _pixels(img: Image.Image) -> np.ndarray:
    return np.asarray(img, dtype=np.int16)


# --------------------------------------------------------------------------- render_face

def test_render_face_image_and_boxes():
    rng = np.random.default_rng(0)
    for size in (32, 48, 96):
        for _ in range(6):
            lab = rng.integers(0, 2, 40)
            img, boxes = sf.render_face(rng, lab, size)
            assert img.mode == "RGB" and img.size == (size, size)
            assert boxes.dtype == np.float32 and boxes.shape == (40, 4)
            assert np.all((boxes >= 0) & (boxes <= 1))
            assert np.all(boxes[~LOCAL] == 0), "global attributes get an empty box"
            assert np.all(boxes[LOCAL, 2] > boxes[LOCAL, 0]) and np.all(boxes[LOCAL, 3] > boxes[LOCAL, 1])


def test_boxes_of_many_faces_are_nonempty_inside_and_not_at_a_fixed_place():
    centres = []
    for i in range(40):
        _, _, _, boxes = sf.render_example(5, i, 48)
        assert np.all(boxes[LOCAL, 2] > boxes[LOCAL, 0]) and np.all(boxes[LOCAL, 3] > boxes[LOCAL, 1])
        assert boxes.min() >= 0 and boxes.max() <= 1
        e = boxes[attribute_index("Eyeglasses")]
        centres.append(((e[0] + e[2]) / 2, (e[1] + e[3]) / 2))
    spread = np.std(np.array(centres), axis=0)
    assert np.all(spread > 0.05), f"eye region barely moves across faces: std {spread}"


def test_render_is_deterministic_and_depends_on_index_only():
    a = sf.render_example(3, 17, 64, label_noise=0.0)
    b = sf.render_example(3, 17, 64, label_noise=0.3)
    c = sf.render_example(3, 18, 64)
    assert a[0].tobytes() == b[0].tobytes(), "label noise must not change the picture"
    assert np.array_equal(a[1], b[1]) and np.array_equal(a[3], b[3])
    assert a[0].tobytes() != c[0].tobytes()
    again = sf.render_example(3, 17, 64)
    assert again[0].tobytes() == a[0].tobytes() and np.array_equal(again[2], a[2])


def _centre(box) -> np.ndarray:
    return np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2])


def test_boxes_move_with_the_face():
    """Same face, two poses: the eye box follows the transformed eye midpoint (0, -0.15)
    and scales with the face; a rotated pose rotates the necklace around the face."""
    size = 128
    lab = _labels("Wearing_Necklace")
    eyes, neck = attribute_index("Narrow_Eyes"), attribute_index("Wearing_Necklace")
    poses = [sf.Pose(45.0, 40.0, 18.0, 0.0), sf.Pose(80.0, 60.0, 30.0, 0.0), sf.Pose(64.0, 50.0, 24.0, 25.0)]
    results = [sf.render_face(np.random.default_rng(11), lab, size, pose=p)[1] for p in poses]
    for pose, boxes in zip(poses, results):
        expect = pose.to_image([[0.0, -0.15]])[0] / size
        assert np.allclose(_centre(boxes[eyes]), expect, atol=1.0 / size), (pose, boxes[eyes])
    w0 = results[0][eyes][2] - results[0][eyes][0]
    w1 = results[1][eyes][2] - results[1][eyes][0]
    assert w1 / w0 == pytest.approx(30.0 / 18.0, rel=0.02)
    # rotation: the necklace (below the chin, on the midline) moves off the vertical line
    # through the face centre, to the side the rotation turns it
    upright, rotated = _centre(results[0][neck]) * size, _centre(results[2][neck]) * size
    assert abs(upright[0] - 45.0) < 1.0
    expect = poses[2].to_image([[0.0, 1.45]])[0]
    assert rotated[0] < 64.0 - 10 and np.allclose(rotated, expect, atol=4.0)


def test_pose_does_not_change_the_other_random_choices():
    lab = _labels("Eyeglasses", "Wearing_Hat")
    a, _ = sf.render_face(np.random.default_rng(2), lab, 96, pose=sf.Pose(48, 40, 20, 0))
    b, _ = sf.render_face(np.random.default_rng(2), lab, 96, pose=sf.Pose(48, 40, 20, 0))
    assert a.tobytes() == b.tobytes()


# cues that, toggled alone on the same face, change pixels only where their box says
TOGGLES = [
    ("Eyeglasses", 1), ("Wearing_Earrings", 1), ("Wearing_Necklace", 1), ("Wearing_Necktie", 1),
    ("Wearing_Hat", 1), ("Goatee", 1), ("Mustache", 1), ("No_Beard", 0), ("5_o_Clock_Shadow", 1),
    ("Bags_Under_Eyes", 1), ("Rosy_Cheeks", 1), ("High_Cheekbones", 1), ("Heavy_Makeup", 1),
    ("Double_Chin", 1), ("Sideburns", 1), ("Bangs", 1), ("Receding_Hairline", 1), ("Young", 0),
    ("Arched_Eyebrows", 1), ("Bushy_Eyebrows", 1), ("Narrow_Eyes", 1), ("Big_Nose", 1), ("Pointy_Nose", 1),
    ("Big_Lips", 1), ("Smiling", 1), ("Mouth_Slightly_Open", 1), ("Wearing_Lipstick", 1),
    ("Blond_Hair", 1), ("Wavy_Hair", 1),
]


@pytest.mark.parametrize("name,value", TOGGLES, ids=[t[0] for t in TOGGLES])
def test_cue_is_visible_inside_its_box(name, value):
    """Same face and pose, one label flipped: the pixels that change are (almost all)
    inside that attribute's ground-truth box, and there are enough of them to see."""
    size = 96
    j = attribute_index(name)
    inside = total = 0
    for seed in (1, 2):
        on = _labels(*([name] if value else []), off=(() if value else (name,)))
        off = on.copy()
        off[j] = 1 - value
        img_on, boxes_on = sf.render_face(np.random.default_rng(seed), on, size)
        img_off, boxes_off = sf.render_face(np.random.default_rng(seed), off, size)
        changed = np.abs(_pixels(img_on) - _pixels(img_off)).max(axis=2) > 0
        assert changed.sum() >= 4, f"{name}: only {changed.sum()} pixels change"
        x0, y0, x1, y1 = boxes_on[j] * size
        ys, xs = np.nonzero(changed)
        ok = (xs + 0.5 >= x0 - 1) & (xs + 0.5 <= x1 + 1) & (ys + 0.5 >= y0 - 1) & (ys + 0.5 <= y1 + 1)
        inside += int(ok.sum())
        total += int(changed.sum())
    assert inside / total >= 0.9, f"{name}: {inside}/{total} changed pixels inside its box"


def test_stubble_replaces_the_full_beard():
    """5_o_Clock_Shadow with No_Beard = 0 is stubble (CelebA counts stubble as a beard):
    visible against both a clean and a fully bearded jaw, inside the jaw box."""
    j = attribute_index("No_Beard")
    clean = _labels()
    beard = _labels(off=("No_Beard",))
    stubble = _labels("5_o_Clock_Shadow", off=("No_Beard",))
    imgs = {}
    for name, lab in (("clean", clean), ("beard", beard), ("stubble", stubble)):
        imgs[name], boxes = sf.render_face(np.random.default_rng(6), lab, 96)
    x0, y0, x1, y1 = boxes[j] * 96
    for other in ("clean", "beard"):
        changed = np.abs(_pixels(imgs["stubble"]) - _pixels(imgs[other])).max(axis=2) > 20
        ys, xs = np.nonzero(changed)
        assert changed.sum() >= 20, other
        assert np.all((xs + 0.5 >= x0 - 1) & (xs + 0.5 <= x1 + 1) & (ys + 0.5 >= y0 - 1) & (ys + 0.5 <= y1 + 1))


def test_eyeglasses_change_is_real_contrast():
    lab = _labels()
    g = attribute_index("Eyeglasses")
    a, boxes = sf.render_face(np.random.default_rng(4), lab, 96)
    lab[g] = 1
    b, _ = sf.render_face(np.random.default_rng(4), lab, 96)
    diff = np.abs(_pixels(a) - _pixels(b)).max(axis=2)
    assert (diff > 40).sum() >= 30


def test_render_face_rejects_wrong_label_length():
    with pytest.raises(sf.SynthError, match="40"):
        sf.render_face(np.random.default_rng(0), np.zeros(39), 64)


# --------------------------------------------------------------------------- synthesize

def _rows(out: str) -> dict[str, dict]:
    info = shards.read_info(out)
    rows = {}
    for split in shards.SPLITS:
        for f in shards.shard_files(out, info, split):
            table = pq.read_table(f)
            assert table.schema.equals(shards.SHARD_SCHEMA)
            shards.validate_table(table, f)
            for r in table.to_pylist():
                assert r["split"] == split
                rows[r["image_id"]] = r
    return rows


def test_synthesize_in_process_writes_the_shard_format(tmp_path):
    out = str(tmp_path / "synth")
    info = sf.synthesize(n=30, size=32, seed=3, out=out, num_tasks=1)
    assert info.num_rows == {"train": 24, "val": 3, "test": 3}
    assert info.name == "synthfaces" and info.image_size == 32 and info.has_part_boxes_gt
    assert info.source == {"seed": 3, "n": 30, "size": 32, "label_noise": 0.0,
                           "generator_version": sf.GENERATOR_VERSION}
    back = shards.read_info(out)
    assert back == info
    rows = _rows(out)
    assert sorted(rows) == [f"synth-{i:07d}" for i in range(30)]
    for i, (_, r) in enumerate(sorted(rows.items())):
        split = "train" if i < 24 else "val" if i < 27 else "test"
        assert r["split"] == split
        img = Image.open(io.BytesIO(r["image"]))
        assert img.format == "PNG" and img.mode == "RGB" and img.size == (32, 32)
        assert r["face_box"] == [0.0, 0.0, 32.0, 32.0]
        assert len(r["labels"]) == 40 and len(r["part_boxes_gt"]) == 160
        img_e, clean, stored, boxes = sf.render_example(3, i, 32)
        assert np.array_equal(np.asarray(img), np.asarray(img_e)), "PNG must be lossless"
        assert r["labels"] == stored.tolist()
        assert np.allclose(r["part_boxes_gt"], boxes.ravel())


def test_synthesize_same_bytes_via_ray_tasks(ray_local, tmp_path):
    a, b = str(tmp_path / "local"), str(tmp_path / "ray")
    sf.synthesize(n=30, size=32, seed=9, out=a, num_tasks=1)
    lines: list[str] = []
    info = sf.synthesize(n=30, size=32, seed=9, out=b, num_tasks=2, progress=lines.append)
    assert len(info.files["train"]) == 2, info.files  # several tasks, each its own shard
    shards_made = sum(len(f) for f in info.files.values())
    assert [line.split(", ")[1] for line in lines] == [f"{k}/{shards_made} shards" for k in range(1, shards_made + 1)]
    assert lines[-1].startswith("30/30 images, ") and lines[-1].endswith(" images/s")
    ra, rb = _rows(a), _rows(b)
    assert ra.keys() == rb.keys()
    for k in ra:
        assert ra[k] == rb[k], k


def test_label_noise_changes_only_stored_labels(tmp_path):
    clean = _rows(_synth(tmp_path / "clean", 0.0))
    noisy = _rows(_synth(tmp_path / "noisy", 0.3))
    flips = total = 0
    for k in clean:
        assert clean[k]["image"] == noisy[k]["image"]
        flips += int(np.sum(np.array(clean[k]["labels"]) != np.array(noisy[k]["labels"])))
        total += 40
    assert 0.2 < flips / total < 0.4
    assert shards.read_info(str(tmp_path / "noisy")).source["label_noise"] == 0.3


def test_clean_labels_are_what_the_pictures_show_without_rendering(tmp_path):
    noisy = _rows(_synth(tmp_path / "noisy", 0.3))
    ids = sorted(noisy)
    clean = sf.clean_labels(1, ids)
    assert clean.shape == (len(ids), 40) and clean.dtype == bool
    for k, name in zip(clean, ids):
        index = int(name.split("-")[1])
        np.testing.assert_array_equal(k, sf.render_example(1, index, 32)[1].astype(bool))
    stored = np.array([noisy[i]["labels"] for i in ids], bool)
    assert 0.2 < (stored != clean).mean() < 0.4
    with pytest.raises(ValueError, match="not a SynthFaces image id"):
        sf.clean_labels(1, ["000001.jpg"])


def _synth(path, noise: float) -> str:
    sf.synthesize(n=30, size=32, seed=1, out=str(path), label_noise=noise, num_tasks=1)
    return str(path)


def test_rewriting_a_data_set_replaces_its_index(tmp_path):
    out = str(tmp_path / "again")
    sf.synthesize(n=40, size=32, seed=1, out=out, num_tasks=1)
    info = sf.synthesize(n=30, size=32, seed=2, out=out, num_tasks=1)
    assert shards.read_info(out).num_rows == info.num_rows == {"train": 24, "val": 3, "test": 3}
    assert json.loads(storage.read_bytes(storage.join(out, "dataset.json")))["source"]["seed"] == 2


def test_split_sizes_every_split_nonempty():
    for n in (30, 31, 39, 99, 1000, 6000):
        s = sf.split_sizes(n)
        assert sum(s.values()) == n and min(s.values()) >= 1
        assert s["train"] == int(0.8 * n)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"n": 29}, "n must be >= 30"),
        ({"n": 30.5}, "n must be an integer"),
        ({"size": 31}, "size must be >= 32"),
        ({"seed": -1}, "seed must be >= 0"),
        ({"label_noise": 0.5}, r"label_noise must be in \[0, 0.5\)"),
        ({"label_noise": -0.1}, "label_noise must be in"),
        ({"label_noise": "x"}, "label_noise must be a number"),
        ({"num_tasks": -1}, "num_tasks must be >= 0"),
        ({"out": ""}, "out must be"),
    ],
)
def test_bad_arguments_give_clear_errors(tmp_path, kwargs, match):
    args = {"n": 30, "size": 32, "seed": 0, "out": str(tmp_path / "x"), "num_tasks": 1, **kwargs}
    with pytest.raises(sf.SynthError, match=match) as e:
        sf.synthesize(**args)
    assert isinstance(e.value, PawRayError) and isinstance(e.value, ValueError)
    assert not (tmp_path / "x").exists()


def test_cli_synth(tmp_path, capsys):
    from paw_ray.cli import main

    out = str(tmp_path / "cli")
    assert main(["synth", "--n", "30", "--size", "32", "--tasks", "1", "--out", out]) == 0
    said = capsys.readouterr()
    printed = json.loads(said.out)
    assert printed["num_rows"] == {"train": 24, "val": 3, "test": 3}
    progress = [line for line in said.err.splitlines() if line.startswith("paw-ray synth: ")]
    assert progress and progress[-1].startswith("paw-ray synth: 30/30 images, "), said.err
    assert main(["synth", "--n", "10", "--size", "32", "--tasks", "1", "--out", out]) == 2
    assert "n must be >= 30" in capsys.readouterr().err


def test_attribute_names_cover_all_40():
    assert len(ATTRIBUTES) == 40 and LOCAL.sum() == 34
