"""Tests of stimgen.landmarks: iBUG 300-W index constants and shared landmark geometry."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stimgen.backends.schematic import face_landmarks, sample_identity
from stimgen.errors import StimgenError
from stimgen.landmarks import (
    GROUPS, MIRROR_PERMUTATION, N_LANDMARKS, LandmarkError, check_landmarks, eye_centres,
    face_frame, inter_ocular_distance, mirror_landmarks)


def test_groups_partition_the_68_points_in_order():
    indices = np.concatenate(list(GROUPS.values()))
    assert indices.tolist() == list(range(N_LANDMARKS))


def test_mirror_permutation_is_an_involution_that_swaps_sides():
    assert sorted(MIRROR_PERMUTATION.tolist()) == list(range(68))
    assert (MIRROR_PERMUTATION[MIRROR_PERMUTATION] == np.arange(68)).all()
    assert MIRROR_PERMUTATION[36] == 45 and MIRROR_PERMUTATION[48] == 54
    assert MIRROR_PERMUTATION[8] == 8 and MIRROR_PERMUTATION[30] == 30 and MIRROR_PERMUTATION[66] == 66


@pytest.mark.parametrize("seed", [0, 5, 11])
def test_schematic_faces_are_mirror_symmetric_under_ibug_relabelling(seed):
    # A symmetric face flipped and relabelled must land on itself: this only holds if both
    # the permutation and the renderer's landmark order follow iBUG 300-W.
    points = face_landmarks(sample_identity(seed), 0.6, -0.3, size=512)
    np.testing.assert_allclose(mirror_landmarks(points, 512), points, atol=1e-6)


def test_inter_ocular_distance_and_eye_centres_on_batches():
    points = face_landmarks(sample_identity(2), 0.0, 0.0, size=400)
    batch = np.stack([points, points * 2])
    iod = inter_ocular_distance(batch)
    assert iod.shape == (2,) and iod[1] == pytest.approx(2 * iod[0])
    right, left = eye_centres(points)
    assert right[0] < left[0]                      # subject's right eye is on the image left
    assert iod[0] > np.linalg.norm(left - right)   # outer corners are wider than eye centres


@settings(max_examples=40, deadline=None)
@given(angle=st.floats(-0.5, 0.5), scale=st.floats(0.2, 5.0),
       dx=st.floats(-300, 300), dy=st.floats(-300, 300))
def test_face_frame_removes_position_scale_and_roll(angle, scale, dx, dy):
    points = face_landmarks(sample_identity(4), -0.3, 0.7)
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    moved = points @ rotation.T * scale + (dx, dy)
    np.testing.assert_allclose(face_frame(moved), face_frame(points), atol=1e-9)
    frame = face_frame(points)
    assert frame[8, 1] > 0 > frame[19, 1]          # chin below, brows above the eye line
    assert np.linalg.norm(frame[45] - frame[36]) == pytest.approx(1.0)


@pytest.mark.parametrize("bad", [np.zeros((67, 2)), np.zeros((68, 3)), np.zeros(136)])
def test_check_landmarks_rejects_wrong_shapes_with_a_user_error(bad):
    with pytest.raises(LandmarkError, match=r"\[68, 2\]") as info:
        check_landmarks(bad)
    assert isinstance(info.value, StimgenError)


def test_check_landmarks_rejects_nan_and_degenerate_faces():
    points = np.zeros((68, 2))
    with pytest.raises(LandmarkError, match="no scale"):
        face_frame(points)
    points[5, 0] = np.nan
    with pytest.raises(LandmarkError, match="NaN"):
        check_landmarks(points)
