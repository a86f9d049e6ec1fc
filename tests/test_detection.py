"""Finding faces in real photos (PsychoPy's demo photos, used in place) and choosing one."""
from __future__ import annotations

import importlib.util
import warnings
from pathlib import Path

import numpy as np
import pytest

from stimgen.photos import load_photo
from stimgen.detection import (DetectedFace, FaceNotFoundError, MultipleFacesError,
                               MultipleFacesWarning, choose_face, detect_faces)
from stimgen.errors import StimgenError


@pytest.fixture(scope="module")
def demo_photos() -> dict[str, Path]:
    """PsychoPy's demo photos in its installed package (not copied: their licence is
    PsychoPy's); skips only when PsychoPy or its demos are not installed."""
    spec = importlib.util.find_spec("psychopy")
    if spec is None or spec.origin is None:
        pytest.skip("PsychoPy is not installed (its demo photos are the test images)")
    demos = Path(spec.origin).parent / "demos"
    photos = {}
    for name in ("face01.jpg", "face02.jpg", "face03.jpg", "face.jpg", "party.jpg",
                 "house01.jpg"):
        found = sorted(demos.rglob(name))
        if not found:
            pytest.skip(f"PsychoPy's demo photo {name} is not installed")
        photos[name] = found[0]
    return photos


def in_face_frame(face: DetectedFace) -> np.ndarray:
    """The 5 points rotated so that the eye line is horizontal (the face's own frame)."""
    right_eye, left_eye = face.points[0], face.points[1]
    angle = np.arctan2(*(left_eye - right_eye)[::-1])
    turn = np.array([[np.cos(angle), np.sin(angle)], [-np.sin(angle), np.cos(angle)]])
    return (face.points - right_eye) @ turn.T


@pytest.mark.parametrize("name", ["face01.jpg", "face02.jpg", "face03.jpg", "face.jpg"])
def test_portraits_have_one_face_with_plausible_landmarks(demo_photos, name):
    image = load_photo(demo_photos[name])
    faces = detect_faces(image)
    assert len(faces) == 1, [f.box for f in faces]
    face = faces[0]
    x0, y0, x1, y1 = face.box
    assert face.score > 0.95
    assert face.points.shape == (5, 2)
    assert ((face.points >= (x0, y0)) & (face.points <= (x1, y1))).all(), "points leave the box"
    # a real face, not the whole photo: the box covers between 10 % and 90 % of it
    assert 0.1 < face.area / (image.shape[0] * image.shape[1]) < 0.9
    right_eye, left_eye, nose, mouth_right, mouth_left = in_face_frame(face)
    eye_distance = left_eye[0]
    assert eye_distance > 0.2 * (x1 - x0), "the subject's right eye comes first (image left)"
    assert 0 < nose[1] < (mouth_right[1] + mouth_left[1]) / 2, "eyes above nose above mouth"
    assert right_eye[0] < nose[0] < left_eye[0]
    assert mouth_right[0] < mouth_left[0]


def test_party_photo_has_four_faces_largest_first(demo_photos):
    faces = detect_faces(load_photo(demo_photos["party.jpg"]))
    assert len(faces) == 4
    areas = [face.area for face in faces]
    assert areas == sorted(areas, reverse=True)
    assert all(face.score > 0.9 for face in faces)
    boxes = np.array([face.box for face in faces])
    assert (boxes[:, 3] < 260).all(), "every face found is a child or adult at the far side"

    with pytest.warns(MultipleFacesWarning, match=r"4 faces found in .*party.jpg; using the "
                                                  r"largest"):
        chosen = choose_face(faces, source=str(demo_photos["party.jpg"]))
    assert chosen is faces[0]
    with pytest.raises(MultipleFacesError, match=r"4 faces found in .*party.jpg") as info:
        choose_face(faces, source=str(demo_photos["party.jpg"]), policy="error")
    assert "multiple_faces: largest" in info.value.hint


def test_house_has_no_face_and_the_error_names_the_file(demo_photos):
    path = demo_photos["house01.jpg"]
    faces = detect_faces(load_photo(path))
    assert faces == []
    with pytest.raises(FaceNotFoundError, match=f"no face found in {path}") as info:
        choose_face(faces, source=str(path))
    assert isinstance(info.value, StimgenError) and "frontal" in info.value.hint


def test_a_face_is_found_where_it_is_not_the_whole_photo():
    """A schematic face pasted into a large grey photo: the box is around the face."""
    from PIL import Image

    from stimgen.backends.schematic import render_face, sample_identity

    face = render_face(sample_identity(7), 0.0, 0.0, size=256)
    canvas = Image.new("RGB", (800, 600), (128, 128, 128))
    canvas.paste(face.image.convert("RGB"), (400, 250))
    found = detect_faces(np.asarray(canvas))
    assert len(found) == 1
    x0, y0, x1, y1 = found[0].box
    truth_low, truth_high = face.landmarks.min(axis=0) + (400, 250), \
        face.landmarks.max(axis=0) + (400, 250)
    centre = (np.array([x0, y0]) + [x1, y1]) / 2
    assert (truth_low < centre).all() and (centre < truth_high).all()
    assert x1 - x0 < 300 and y1 - y0 < 300


def test_options_are_passed_to_the_detector(demo_photos):
    image = load_photo(demo_photos["party.jpg"])
    assert detect_faces(image, min_face_size=200) == []         # every face is smaller
    everyone = detect_faces(image)
    sure = detect_faces(image, thresholds=(0.6, 0.7, 0.999))
    assert 0 < len(sure) == sum(face.score > 0.999 for face in everyone) < len(everyone)
    with pytest.raises(ValueError, match="scale_factor"):
        detect_faces(image, scale_factor=1.2)
    with pytest.raises(ValueError, match="uint8 RGB"):
        detect_faces(image[..., 0])


# ----------------------------------------------------------------------------- choose_face

def face_with_side(side: float, x: float = 0.0) -> DetectedFace:
    return DetectedFace((x, 0.0, x + side, side * 1.2), 0.99, np.zeros((5, 2)))


def test_no_face_is_an_error():
    with pytest.raises(FaceNotFoundError, match="no face found in photos/p01.jpg"):
        choose_face([], source="photos/p01.jpg")


def test_several_faces_keep_the_largest_with_a_warning():
    faces = [face_with_side(80), face_with_side(300, 100), face_with_side(120, 500)]
    with pytest.warns(MultipleFacesWarning, match="3 faces found in group.jpg; using the largest"):
        chosen = choose_face(faces, source="group.jpg")
    assert chosen is faces[1]


def test_several_faces_can_be_refused():
    with pytest.raises(MultipleFacesError, match="2 faces found in group.jpg") as info:
        choose_face([face_with_side(80), face_with_side(300, 100)], source="group.jpg",
                    policy="error")
    assert "multiple_faces: largest" in info.value.hint


def test_one_face_is_taken_silently():
    faces = [face_with_side(200)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert choose_face(faces, source="p.jpg", policy="error") is faces[0]
    with pytest.raises(ValueError, match="policy"):
        choose_face(faces, source="p.jpg", policy="first")
