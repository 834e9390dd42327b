"""The in-the-wild face-box rule (paw_ray.data.facebox): box, landmark fallback, margin,
squaring, snapping, clamping at each image border, padding, cutting."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from paw_ray.data import facebox as F

W, H = 100, 80


# --------------------------------------------------------------------------- usable_box


@pytest.mark.parametrize(
    "box, usable",
    [
        ((10, 10, 30, 40), True),
        ((-5, -5, 30, 40), True),  # partly outside: still a face box
        ((90, 70, 30, 40), True),  # overlaps the bottom-right corner by 10x10
        ((10, 10, 1, 40), False),  # w <= 1
        ((10, 10, 30, 1), False),  # h <= 1
        ((10, 10, 0, 0), False),  # the "missing" box of a blank annotation
        ((10, 10, -30, 40), False),
        ((100, 10, 30, 40), False),  # wholly right of the image
        ((-30, 10, 30, 40), False),  # wholly left
        ((10, 80, 30, 40), False),  # wholly below
        ((10, -40, 30, 40), False),  # wholly above
        ((99.5, 10, 30, 40), False),  # overlaps by half a pixel only
        ((np.nan, 10, 30, 40), False),
        ((10, 10, np.inf, 40), False),
    ],
)
def test_usable_box(box, usable):
    assert bool(F.usable_box(box, W, H)) is usable


def test_usable_box_vectorised():
    boxes = np.array([[10, 10, 30, 40], [0, 0, 0, 0], [200, 0, 10, 10]])
    assert F.usable_box(boxes, W, H).tolist() == [True, False, False]


# --------------------------------------------------------------------------- landmarks


LMS = np.array([[40, 30], [60, 30], [50, 40], [42, 50], [58, 50]])  # eyes, nose, mouth corners


def test_landmark_box_is_the_landmarks_bbox_expanded_2x_about_its_centre():
    # bbox of the points: x 40..60, y 30..50 -> centre (50, 40), size 20x20 -> 40x40
    np.testing.assert_allclose(F.landmark_box(LMS), [30, 20, 40, 40])
    np.testing.assert_allclose(F.landmark_box(LMS.ravel()), [30, 20, 40, 40])  # flat file order
    np.testing.assert_allclose(F.landmark_box(LMS, scale=1.0), [40, 30, 20, 20])


def test_landmark_box_vectorised_over_rows():
    rows = np.stack([LMS.ravel(), (LMS + 10).ravel()])
    np.testing.assert_allclose(F.landmark_box(rows), [[30, 20, 40, 40], [40, 30, 40, 40]])


def test_choose_box_prefers_the_annotated_box():
    box, src = F.choose_box((10, 12, 30, 40), LMS, W, H)
    assert src == "bbox"
    np.testing.assert_allclose(box, [10, 12, 30, 40])


@pytest.mark.parametrize("bbox", [None, (0, 0, 0, 0), (10, 10, 1, 40), (500, 500, 30, 30)])
def test_choose_box_falls_back_to_the_landmarks(bbox):
    box, src = F.choose_box(bbox, LMS, W, H)
    assert src == "landmarks"
    np.testing.assert_allclose(box, [30, 20, 40, 40])


def test_choose_box_with_neither_usable_says_why():
    with pytest.raises(F.FaceBoxError, match=r"no usable face box in the 100x80 image.*degenerate.*landmarks"):
        F.choose_box((0, 0, 0, 0), np.zeros((5, 2)), W, H)
    with pytest.raises(F.FaceBoxError, match="there are no landmarks"):
        F.choose_box((0, 0, 0, 0), None, W, H)
    with pytest.raises(F.FaceBoxError, match="there is no annotated box"):
        F.choose_box(None, np.zeros((5, 2)), W, H)


# --------------------------------------------------------------------------- margin, square, snap


def test_margin_adds_a_share_of_the_side_on_each_side():
    np.testing.assert_allclose(F.add_margin((10, 20, 30, 40), 0.1), [7, 16, 36, 48])
    np.testing.assert_allclose(F.add_margin((10, 20, 30, 40), 0.0), [10, 20, 30, 40])
    np.testing.assert_allclose(F.add_margin([[10, 20, 30, 40]], 0.5), [[-5, 0, 60, 80]])


def test_square_keeps_the_centre_and_takes_the_longer_side():
    np.testing.assert_allclose(F.to_square((10, 20, 30, 40)), [5, 20, 40, 40])  # tall
    np.testing.assert_allclose(F.to_square((10, 20, 40, 30)), [10, 15, 40, 40])  # wide
    np.testing.assert_allclose(F.to_square((10, 20, 30, 30)), [10, 20, 30, 30])


def test_snap_rounds_to_whole_pixels_from_the_centre():
    np.testing.assert_allclose(F.snap_square((10.3, 20.3, 29.6, 29.6)), [10, 20, 30, 30])
    np.testing.assert_allclose(F.snap_square((0, 0, 0.2, 0.2)), [0, 0, 1, 1])  # at least 1 pixel


# --------------------------------------------------------------------------- clamping


@pytest.mark.parametrize(
    "square, expected",
    [
        ((10, 10, 40, 40), (10, 10, 40, 40)),  # inside: unchanged
        ((-7, 10, 40, 40), (0, 10, 40, 40)),  # left border: shifted right
        ((75, 10, 40, 40), (60, 10, 40, 40)),  # right border: shifted left
        ((10, -3, 40, 40), (10, 0, 40, 40)),  # top border: shifted down
        ((10, 61, 40, 40), (10, 40, 40, 40)),  # bottom border: shifted up
        ((-5, -5, 40, 40), (0, 0, 40, 40)),  # top-left corner
        ((90, 70, 40, 40), (60, 40, 40, 40)),  # bottom-right corner
    ],
)
def test_clamp_shifts_a_square_that_fits_inside_the_image(square, expected):
    np.testing.assert_allclose(F.clamp_square(square, W, H), expected)


def test_clamp_of_a_square_taller_than_the_image_covers_that_axis_and_pads():
    # side 90 > H = 80: vertically the square must cover the image (-10 <= y <= 0);
    # horizontally it fits (0 <= x <= 10) and is shifted inside.
    np.testing.assert_allclose(F.clamp_square((20, 5, 90, 90), W, H), [10, 0, 90, 90])
    np.testing.assert_allclose(F.clamp_square((20, -30, 90, 90), W, H), [10, -10, 90, 90])
    np.testing.assert_allclose(F.clamp_square((5, -4, 90, 90), W, H), [5, -4, 90, 90])  # already covering


def test_clamp_of_a_square_larger_than_the_image_both_ways():
    np.testing.assert_allclose(F.clamp_square((-50, -50, 120, 120), W, H), [-20, -40, 120, 120])
    np.testing.assert_allclose(F.clamp_square((30, 30, 120, 120), W, H), [0, 0, 120, 120])


def test_clamp_is_vectorised():
    sq = np.array([[-7, 10, 40, 40], [75, 61, 40, 40]])
    np.testing.assert_allclose(F.clamp_square(sq, W, H), [[0, 10, 40, 40], [60, 40, 40, 40]])


# --------------------------------------------------------------------------- the whole rule


def test_face_square_runs_choose_margin_square_snap_clamp():
    sq, src = F.face_square((10, 20, 30, 40), LMS, W, H, margin=0.1)
    # margin: (7, 16, 36, 48); square: side 48 centred at (25, 40) -> (1, 16, 48, 48)
    assert src == "bbox"
    np.testing.assert_allclose(sq, [1, 16, 48, 48])


def test_face_square_landmark_fallback_clamped_at_the_border():
    lms = LMS + np.array([45, 0])  # moved right: landmark box (75, 20, 40, 40) crosses x = 100
    sq, src = F.face_square((0, 0, 0, 0), lms, W, H)
    assert src == "landmarks"
    np.testing.assert_allclose(sq, [60, 20, 40, 40])


# --------------------------------------------------------------------------- cutting


def _img():
    a = np.zeros((H, W, 3), dtype=np.uint8)
    a[:, :50] = (200, 0, 0)
    a[:, 50:] = (0, 0, 200)
    return Image.fromarray(a)


def test_cut_square_inside_is_a_resize_of_that_region():
    img = _img()
    out = F.cut_square(img, (30, 10, 40, 40), 20)
    assert out.size == (20, 20) and out.mode == "RGB"
    ref = img.crop((30, 10, 70, 50)).resize((20, 20), Image.Resampling.LANCZOS)
    assert np.abs(np.asarray(out, int) - np.asarray(ref, int)).max() <= 1
    a = np.asarray(out)
    assert a[10, 2, 0] > 150 and a[10, 17, 2] > 150  # red left half, blue right half


def test_cut_square_pads_with_black_outside_the_image():
    img = _img()
    out = np.asarray(F.cut_square(img, (0, -10, 100, 100), 50))  # rows -10..0 and 80..90 outside
    assert out.shape == (50, 50, 3)
    assert out[:4].max() < 10 and out[-4:].max() < 10  # padded top and bottom
    assert out[25, 5, 0] > 150 and out[25, 45, 2] > 150  # the image in between


def test_cut_square_with_a_draft_scale_matches_full_resolution():
    img = _img()
    full = np.asarray(F.cut_square(img, (20, 20, 60, 60), 16), int)
    half = img.resize((W // 2, H // 2), Image.Resampling.BOX)
    drafted = np.asarray(F.cut_square(half, (20, 20, 60, 60), 16, scale=0.5), int)
    assert np.abs(full - drafted).mean() < 8
