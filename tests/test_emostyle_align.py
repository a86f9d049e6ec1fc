"""FFHQ alignment: where the eyes land, invariance to in-plane rotation, padding, 5 or 68 points."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from PIL import Image

from stimgen.backends.emostyle import align
from stimgen.backends.emostyle.align import (
    SmallFaceWarning, align_face, aligned_to_image, ffhq_quad, image_to_aligned)
from stimgen.backends.schematic import render_face, sample_identity
from stimgen.landmarks import MOUTH_LEFT_CORNER, MOUTH_RIGHT_CORNER, LandmarkError, eye_centres

GREY = (128, 128, 128)


def canonical_eyes(eye_distance: float, eye_to_mouth: float, resolution: int) -> np.ndarray:
    """Where FFHQ alignment puts the eye centres of an upright face, worked out by hand.

    For eyes on a horizontal line and the mouth midpoint straight below their midpoint, the
    crop square is axis-aligned with half side s = max(2 d_eyes, 1.8 d_mouth), centred
    0.1 d_mouth below the eye midpoint; so each eye sits d_eyes / 2 left or right of the
    centre and 0.1 d_mouth above it, in a square of side 2 s mapped onto ``resolution``.
    """
    s = max(2.0 * eye_distance, 1.8 * eye_to_mouth)
    u = np.array([-eye_distance / 2, eye_distance / 2]) / (2 * s) + 0.5
    v = -0.1 * eye_to_mouth / (2 * s) + 0.5
    return np.stack([u * resolution - 0.5, np.full(2, v * resolution - 0.5)], axis=1)


def blob_photo(width, height, right_eye, left_eye, sigma) -> np.ndarray:
    """Black photo with a red blob at the right eye and a green one at the left eye."""
    ys, xs = np.mgrid[:height, :width]
    image = np.zeros((height, width, 3))
    for channel, (x, y) in ((0, right_eye), (1, left_eye)):
        image[..., channel] = 255 * np.exp(-((xs - x) ** 2 + (ys - y) ** 2) / (2 * sigma ** 2))
    return np.uint8(np.rint(image))


def centroid(channel: np.ndarray) -> np.ndarray:
    weights = np.where(channel > 20, channel.astype(float), 0.0)
    ys, xs = np.mgrid[:channel.shape[0], :channel.shape[1]]
    return np.array([(weights * xs).sum(), (weights * ys).sum()]) / weights.sum()


def upright_landmarks(right_eye, left_eye, mouth_y) -> np.ndarray:
    points = np.zeros((68, 2))
    points[36:42], points[42:48] = right_eye, left_eye
    mid = (right_eye[0] + left_eye[0]) / 2
    points[48], points[54] = (mid - 30, mouth_y), (mid + 30, mouth_y)
    return points


@pytest.mark.parametrize("scale, resolution", [
    (1.0, 64),   # face fits in the photo: no shrink, no padding
    (6.0, 32),   # huge face: FFHQ's shrink step, and the square leaves the photo (padding)
])
def test_eye_centres_land_at_the_ffhq_positions(scale, resolution):
    right_eye, left_eye = np.array([150.0, 140.0]) * scale, np.array([230.0, 140.0]) * scale
    mouth_y = 230.0 * scale
    landmarks = upright_landmarks(right_eye, left_eye, mouth_y)
    image = blob_photo(int(400 * scale), int(320 * scale), right_eye, left_eye, sigma=4 * scale)

    aligned = align_face(image, landmarks, resolution)

    expected = canonical_eyes(80.0 * scale, 90.0 * scale, resolution)
    found = np.stack([centroid(aligned.image[..., 0]), centroid(aligned.image[..., 1])])
    np.testing.assert_allclose(found, expected, atol=0.05 * resolution / 32)
    np.testing.assert_allclose(np.stack(eye_centres(aligned.landmarks)), expected, atol=1e-9)
    assert aligned.image.shape == (resolution, resolution, 3) and aligned.image.dtype == np.uint8


def rotate_photo(image: Image.Image, landmarks: np.ndarray, degrees: float):
    """Rotate counter-clockwise about the image centre, and the landmarks with it."""
    rotated = image.rotate(degrees, resample=Image.Resampling.BICUBIC, fillcolor=GREY)
    centre = np.array([image.width / 2 - 0.5, image.height / 2 - 0.5])
    t = np.deg2rad(degrees)
    turn = np.array([[np.cos(t), np.sin(t)], [-np.sin(t), np.cos(t)]])   # y points down
    return rotated, (landmarks - centre) @ turn.T + centre


@pytest.fixture(scope="module")
def schematic_photo():
    """A schematic face in the middle of a larger grey photo, with its exact landmarks."""
    face = render_face(sample_identity(7), 0.5, 0.3, size=256)
    canvas = Image.new("RGB", (640, 560), GREY)
    canvas.paste(face.image, (190, 150))
    return canvas, face.landmarks + (190, 150)


@pytest.mark.parametrize("degrees", [25.0, -40.0])
def test_alignment_undoes_in_plane_rotation(schematic_photo, degrees):
    photo, landmarks = schematic_photo
    upright = align_face(np.asarray(photo), landmarks, 128)
    rotated_photo, rotated_landmarks = rotate_photo(photo, landmarks, degrees)

    turned = align_face(np.asarray(rotated_photo), rotated_landmarks, 128)

    np.testing.assert_allclose(turned.landmarks, upright.landmarks, atol=1e-6)
    difference = np.abs(turned.image.astype(float) - upright.image.astype(float))
    assert difference.mean() < 2.5, f"aligned images differ by {difference.mean():.2f} on average"
    assert not np.allclose(rotated_landmarks, landmarks)


def test_face_landmarks_follow_the_pixels(schematic_photo):
    """Aligned landmarks sit on the drawn features and map back to the photo's exactly."""
    photo, landmarks = schematic_photo
    aligned = align_face(np.asarray(photo), landmarks, 256)
    quad = ffhq_quad(landmarks)
    np.testing.assert_allclose(aligned_to_image(aligned.landmarks, quad, 256), landmarks, atol=1e-9)
    # The schematic irises are dark on light skin: the darkest pixel near each aligned eye
    # centre must be within 4 pixels of it.
    gray = aligned.image.mean(axis=2)
    for centre in eye_centres(aligned.landmarks):
        x, y = np.rint(centre).astype(int)
        window = gray[y - 8:y + 9, x - 8:x + 9]
        dy, dx = np.unravel_index(np.argmin(window), window.shape)
        assert abs(dx - 8) <= 4 and abs(dy - 8) <= 4


def test_padding_fills_beyond_the_photo(schematic_photo):
    photo, landmarks = schematic_photo
    cropped = np.asarray(photo)[:, 260:]         # the crop square starts 36 px left of this
    shifted = landmarks - (260, 0)
    padded = align_face(cropped, shifted, 64)
    black = align_face(cropped, shifted, 64, padding=False)
    assert (black.image[:, :4] == 0).all()
    assert padded.image[:, :4].min() > 40, "FFHQ padding should leave no black border"
    np.testing.assert_allclose(padded.landmarks, black.landmarks)


def test_small_face_warns(schematic_photo):
    """Upscaled more than MAX_UPSCALE times: a warning; a little less: none. The photo is
    shrunk 8x so that the warning needs no large warp."""
    photo, landmarks = schematic_photo
    small = np.asarray(photo.resize((photo.width // 8, photo.height // 8)))
    points = (landmarks + 0.5) / 8 - 0.5
    quad = ffhq_quad(points)
    limit = align.MAX_UPSCALE * np.hypot(*(quad[3] - quad[0]))    # ~94 px for this face
    with pytest.warns(SmallFaceWarning, match="upscaled"):
        align_face(small, points, int(limit) + 4)
    with warnings.catch_warnings():
        warnings.simplefilter("error", SmallFaceWarning)
        align_face(small, points, int(limit) - 4)


@settings(max_examples=50, deadline=None)
@given(st.floats(-180, 180), st.floats(10, 500), st.integers(4, 2048),
       st.lists(st.floats(-1000, 1000), min_size=2, max_size=2))
def test_point_mapping_round_trips(degrees, half_side, resolution, point):
    t = np.deg2rad(degrees)
    x = half_side * np.array([np.cos(t), np.sin(t)])
    y = np.array([-x[1], x[0]])
    c = np.array([300.0, 200.0])
    quad = np.stack([c - x - y, c - x + y, c + x + y, c + x - y])
    there = image_to_aligned(np.array(point), quad, resolution)
    np.testing.assert_allclose(aligned_to_image(there, quad, resolution), point, atol=1e-6)
    np.testing.assert_allclose(image_to_aligned(quad[0], quad, resolution), [-0.5, -0.5], atol=1e-6)


def five_points(landmarks: np.ndarray) -> np.ndarray:
    """The detector's 5 points of a face whose 68 landmarks are known: eye centres, nose tip,
    mouth corners (the subject's right first)."""
    right_eye, left_eye = eye_centres(landmarks)
    return np.stack([right_eye, left_eye, landmarks[30], landmarks[MOUTH_RIGHT_CORNER],
                     landmarks[MOUTH_LEFT_CORNER]])


@pytest.mark.parametrize("degrees", [0.0, 30.0])
def test_five_detector_points_align_as_the_68_landmarks_do(schematic_photo, degrees):
    photo, landmarks = schematic_photo
    photo, landmarks = rotate_photo(photo, landmarks, degrees)
    from_68 = align_face(np.asarray(photo), landmarks, 64)
    from_5 = align_face(np.asarray(photo), five_points(landmarks), 64)
    np.testing.assert_allclose(from_5.quad, from_68.quad, atol=1e-9)
    assert np.array_equal(from_5.image, from_68.image)
    assert from_5.landmarks.shape == (5, 2)
    np.testing.assert_allclose(from_5.landmarks, five_points(from_68.landmarks), atol=1e-9)


def test_alignment_refuses_points_of_another_shape():
    with pytest.raises(LandmarkError, match=r"68 landmarks \[68, 2\] or the detector's 5 points"):
        ffhq_quad(np.zeros((7, 2)))
    with pytest.raises(LandmarkError, match="not finite"):
        ffhq_quad(np.full((5, 2), np.nan))
