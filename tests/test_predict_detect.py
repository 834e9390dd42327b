"""``paw-ray predict`` on real photographs with no face box: the detector finds each face,
one prediction per face, cut by the face-box rule; a photo with no face is a clear error."""

from __future__ import annotations

import csv
import io
import json

import pytest

from paw_ray import cli
from fake_run import make_run
from photos import ASTRONAUT_FACE_CENTRE, astronaut, no_face, two_faces


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("photos")
    paths = {}
    for name, image in (("astronaut", astronaut()), ("two", two_faces()), ("coffee", no_face())):
        paths[name] = str(tmp / f"{name}.jpg")
        image.save(paths[name], quality=95)
    paths["run"] = make_run(str(tmp / "run"))
    return paths


def _predict(capsys, *argv):
    rc = cli.main(["predict", *argv])
    out, err = capsys.readouterr()
    assert "Traceback" not in err, err
    return rc, [json.loads(line) for line in out.splitlines()], err


def _holds(box, point) -> bool:
    x, y, w, h = box
    return x <= point[0] <= x + w and y <= point[1] <= y + h


def test_a_photo_with_no_box_gets_its_face_found(photos, capsys):
    rc, preds, err = _predict(capsys, "--run-dir", photos["run"], photos["astronaut"])
    assert rc == 0 and len(preds) == 1
    p = preds[0]
    assert p["face_box_source"] == "detector" and p["face_index"] == 0 and p["detection_score"] > 0
    x, y, s, s2 = p["face_box"]
    assert s == s2 and 0 <= x and 0 <= y and x + s <= 512 and y + s <= 512 and s < 256
    assert _holds(p["face_box"], ASTRONAUT_FACE_CENTRE)
    assert "whole image" not in err
    assert "training faces are whole SynthFaces frames" in err, "the crop's scale differs from training: said"


def test_two_faces_give_two_rows_left_to_right(photos, capsys):
    rc, preds, _ = _predict(capsys, "--run-dir", photos["run"], photos["two"], "--format", "jsonl")
    assert rc == 0 and [p["face_index"] for p in preds] == [0, 1]
    assert {p["input"] for p in preds} == {photos["two"]}
    left, right = (p["face_box"] for p in preds)
    assert left[0] + left[2] <= 512 <= right[0]
    assert preds[0]["probabilities"] != preds[1]["probabilities"], "each face is its own input"


def test_a_photo_with_no_face_is_a_clear_error_and_the_others_are_predicted(photos, capsys):
    rc, preds, err = _predict(capsys, "--run-dir", photos["run"], photos["coffee"], photos["astronaut"])
    assert rc == 1 and [p["input"] for p in preds] == [photos["astronaut"]]
    assert f"{photos['coffee']}: no face found" in err and "--detect none" in err and "--min-face" in err


def test_detect_none_takes_the_whole_photo_and_a_box_skips_detection(photos, capsys):
    rc, preds, err = _predict(capsys, "--run-dir", photos["run"], photos["coffee"], "--detect", "none")
    assert rc == 0 and preds[0]["face_box_source"] == "whole image" and preds[0]["detection_score"] is None
    assert "whole image is taken as the face" in err
    rc, preds, _ = _predict(capsys, "--run-dir", photos["run"], photos["two"], "--box", "10,20,100,100")
    assert rc == 0 and len(preds) == 1 and preds[0]["face_box_source"] == "--box"
    assert preds[0]["face_box"] == [10, 20, 100, 100]


def test_a_detected_face_is_cut_as_a_given_box_would_be(photos, capsys):
    """The detected box goes through the face-box rule: predicting with --box set to the
    square it chose gives the same answer, and --face-margin grows the square."""
    _, (detected,), _ = _predict(capsys, "--run-dir", photos["run"], photos["astronaut"])
    box = ",".join(str(v) for v in detected["face_box"])
    _, (boxed,), _ = _predict(capsys, "--run-dir", photos["run"], photos["astronaut"], "--box", box)
    assert boxed["face_box"] == detected["face_box"]
    assert boxed["probabilities"] == pytest.approx(detected["probabilities"], abs=1e-6)
    _, (wide,), _ = _predict(capsys, "--run-dir", photos["run"], photos["astronaut"], "--face-margin", "0.25")
    assert wide["face_box"][2] == pytest.approx(1.5 * detected["face_box"][2], abs=2)


def test_csv_rows_name_the_face_and_its_score(photos, capsys):
    rc = cli.main(["predict", "--run-dir", photos["run"], photos["two"], "--format", "csv"])
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert rc == 0 and [r["face_index"] for r in rows] == ["0", "1"]
    assert all(r["face_box_source"] == "detector" and float(r["detection_score"]) > 0 for r in rows)


@pytest.mark.parametrize("flag, value", [("--min-face", "4"), ("--detect-threshold", "nan")])
def test_bad_detector_settings_exit_2(photos, capsys, flag, value):
    rc = cli.main(["predict", "--run-dir", photos["run"], photos["astronaut"], flag, value])
    assert rc == 2 and flag in capsys.readouterr().err


def _job(name: str):
    """A job script under jobs/, imported as a module."""
    import importlib.util
    import os

    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "jobs", f"{name}.py")
    spec = importlib.util.spec_from_file_location(f"job_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_batch_job_finds_every_face_in_a_folder_of_photos(photos, ray_local, tmp_path, capsys):
    """jobs/predict.py --photos on Ray Data: a row per face, as `paw-ray predict` gives them,
    and one failed row naming why for a photo with no face and for a file that is no image."""
    import shutil

    import numpy as np
    import pyarrow.parquet as pq

    from paw_ray.attributes import ATTRIBUTES

    album = tmp_path / "album"
    (album / "more").mkdir(parents=True)
    for name, where in (("astronaut", album), ("two", album / "more"), ("coffee", album)):
        shutil.copy(photos[name], where / f"{name}.jpg")
    (album / "broken.jpg").write_bytes(b"not an image")
    out = str(tmp_path / "preds")
    rc = _job("predict").main(["--run-dir", photos["run"], "--photos", str(album), "--out", out, "--actors", "1"])
    stdout, stderr = capsys.readouterr()
    assert rc == 1, "two photos have no prediction"
    assert "4 photos, 2 without one" in stdout and "no face found" in stderr

    rows = pq.read_table(out).to_pylist()
    by_photo: dict[str, list[dict]] = {}
    for row in rows:
        by_photo.setdefault(row["image_id"], []).append(row)
    assert sorted(by_photo) == ["astronaut.jpg", "broken.jpg", "coffee.jpg", "two.jpg"]
    assert sorted(r["face_index"] for r in by_photo["two.jpg"]) == [0, 1]
    (coffee,), (broken,) = by_photo["coffee.jpg"], by_photo["broken.jpg"]
    assert not coffee["ok"] and "no face found" in coffee["error"] and coffee["Smiling"] is None
    assert not broken["ok"] and "not an image" in broken["error"] and broken["face_box"] is None
    (face,) = by_photo["astronaut.jpg"]
    assert face["ok"] and face["error"] is None and face["detection_score"] > 0

    # the same face, box and probabilities as `paw-ray predict` on the same photo
    _, (single,), _ = _predict(capsys, "--run-dir", photos["run"], str(album / "astronaut.jpg"))
    assert face["face_box"] == pytest.approx(single["face_box"], abs=1e-3)
    np.testing.assert_allclose([face[f"p_{a}"] for a in ATTRIBUTES],
                               [single["probabilities"][a] for a in ATTRIBUTES], atol=2e-6)
    assert face["Smiling"] == single["decisions"]["Smiling"]
    assert face["box_Smiling"] == pytest.approx(single["part_boxes"]["Smiling"], abs=0.01)
