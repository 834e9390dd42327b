"""The face detector (paw_ray.data.detect) on real photographs and SynthFaces renders."""

from __future__ import annotations

import pytest

from paw_ray.attributes import attribute_index
from paw_ray.data.detect import FaceDetection, FaceDetector, best_match, DetectedFace
from paw_ray.data.synthfaces.examples import render_example
from photos import ASTRONAUT_FACE_CENTRE, astronaut, no_face, two_faces


@pytest.fixture(scope="module")
def detector():
    return FaceDetector()


def _centre(box):
    x, y, w, h = box
    return x + w / 2, y + h / 2


def _holds(box, point) -> bool:
    x, y, w, h = box
    return x <= point[0] <= x + w and y <= point[1] <= y + h


def test_the_astronaut_has_one_face_where_her_face_is(detector):
    faces = detector(astronaut())
    assert len(faces) == 1
    x, y, w, h = faces[0].box
    assert 0 <= x and 0 <= y and x + w <= 512 and y + h <= 512
    assert 60 <= w <= 140 and abs(w - h) <= 2
    assert _holds(faces[0].box, ASTRONAUT_FACE_CENTRE)
    assert faces[0].score > FaceDetection().threshold


def test_two_faces_come_left_to_right_the_second_mirroring_the_first(detector):
    faces = detector(two_faces())
    assert len(faces) == 2
    (x0, y0, w0, h0), (x1, y1, w1, h1) = (f.box for f in faces)
    assert x0 + w0 <= 512 <= x1
    assert abs((1024 - x1 - w1) - x0) <= 4 and abs(y1 - y0) <= 4 and abs(w1 - w0) <= 4


def test_a_photo_without_a_face_gives_none(detector):
    assert detector(no_face()) == []


def test_faces_below_the_minimum_size_are_not_found():
    small = astronaut().resize((170, 170))  # her face is now about 30 px
    assert FaceDetector(FaceDetection(min_face=40))(small) == []
    found = FaceDetector(FaceDetection(min_face=24))(small)
    assert len(found) == 1 and _holds(found[0].box, tuple(v / 3 for v in ASTRONAUT_FACE_CENTRE))


def test_a_huge_photo_is_searched_at_the_pixel_cap_for_larger_faces(detector):
    assert detector.smallest_face(512, 512) == FaceDetection().min_face
    assert detector.smallest_face(8000, 8000) > 2 * FaceDetection().min_face
    big = astronaut().resize((4000, 4000))
    faces = detector(big)
    assert len(faces) == 1 and _holds(faces[0].box, tuple(v * 4000 / 512 for v in ASTRONAUT_FACE_CENTRE))


def test_on_synthfaces_renders_the_detected_box_holds_the_eyes_and_the_mouth(detector):
    eyes, mouth = attribute_index("Narrow_Eyes"), attribute_index("Smiling")
    found = 0
    for i in range(20):
        image, _, _, boxes = render_example(0, i, 224)
        faces = detector(image)
        if not faces:
            continue
        found += 1
        for b in (boxes[eyes], boxes[mouth]):  # normalised x0, y0, x1, y1
            assert _holds(faces[0].box, ((b[0] + b[2]) / 2 * 224, (b[1] + b[3]) / 2 * 224)), i
    assert found >= 10, "the detector finds most rendered faces"


@pytest.mark.parametrize("kw", [{"min_face": 4}, {"min_face": 40.5}, {"threshold": float("nan")}])
def test_bad_settings_are_refused(kw):
    with pytest.raises(ValueError):
        FaceDetection(**kw)


def test_best_match_is_the_face_overlapping_the_reference_most():
    left, right = DetectedFace((0, 0, 10, 10), 2.0), DetectedFace((20, 0, 10, 10), 1.0)
    assert best_match([left, right], (18, 0, 10, 10)) is right
    assert best_match([left, right], (100, 100, 5, 5)) is None
    assert best_match([left, right], None) is left
    assert best_match([], (0, 0, 10, 10)) is None
