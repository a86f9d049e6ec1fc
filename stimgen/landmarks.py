"""The 68-point iBUG 300-W landmark convention and the small geometry every consumer shares.

Index groups, the left/right mirror permutation, inter-ocular normalisation and an
eye-aligned face frame, used by the schematic backend, the geometric rater and aligners.

"Right" and "left" are the *subject's*: the right eye (36-41) appears on the image's left.
Every function accepts one face ``[68, 2]`` or a batch ``[..., 68, 2]`` of (x, y) pixel
coordinates with y pointing down, as face-alignment returns them.
"""
from __future__ import annotations

import numpy as np

from stimgen.errors import StimgenError

N_LANDMARKS = 68

JAW = np.arange(0, 17)              # 0 = subject's right (image left) ... 8 = chin ... 16
RIGHT_BROW = np.arange(17, 22)      # 17 outer end ... 21 inner end
LEFT_BROW = np.arange(22, 27)       # 22 inner end ... 26 outer end
NOSE_BRIDGE = np.arange(27, 31)     # 27 between the eyes ... 30 nose tip
NOSE_BASE = np.arange(31, 36)       # 31 right ala ... 33 subnasale ... 35 left ala
RIGHT_EYE = np.arange(36, 42)       # 36 outer, 37-38 upper lid, 39 inner, 40-41 lower lid
LEFT_EYE = np.arange(42, 48)        # 42 inner, 43-44 upper lid, 45 outer, 46-47 lower lid
OUTER_LIP = np.arange(48, 60)       # 48 right corner, 51 upper centre, 54 left corner, 57 lower centre
INNER_LIP = np.arange(60, 68)       # 60 right corner, 62 upper centre, 64 left corner, 66 lower centre

GROUPS: dict[str, np.ndarray] = {
    "jaw": JAW, "right_brow": RIGHT_BROW, "left_brow": LEFT_BROW,
    "nose_bridge": NOSE_BRIDGE, "nose_base": NOSE_BASE, "right_eye": RIGHT_EYE,
    "left_eye": LEFT_EYE, "outer_lip": OUTER_LIP, "inner_lip": INNER_LIP,
}

CHIN = 8
NOSE_TIP = 30
SUBNASALE = 33
RIGHT_EYE_OUTER, RIGHT_EYE_INNER = 36, 39
LEFT_EYE_INNER, LEFT_EYE_OUTER = 42, 45
RIGHT_EYE_UPPER_LID, RIGHT_EYE_LOWER_LID = np.array([37, 38]), np.array([41, 40])
LEFT_EYE_UPPER_LID, LEFT_EYE_LOWER_LID = np.array([43, 44]), np.array([47, 46])
RIGHT_BROW_INNER, LEFT_BROW_INNER = 21, 22
RIGHT_BROW_OUTER, LEFT_BROW_OUTER = 17, 26
MOUTH_RIGHT_CORNER, MOUTH_LEFT_CORNER = 48, 54
UPPER_LIP_TOP, LOWER_LIP_BOTTOM = 51, 57
INNER_LIP_TOP, INNER_LIP_BOTTOM = 62, 66


def _mirror_permutation() -> np.ndarray:
    """Index map of a horizontal flip: point i of the flipped face is point perm[i]."""
    perm = np.arange(N_LANDMARKS)
    perm[JAW] = JAW[::-1]
    perm[17:27] = np.arange(26, 16, -1)                      # brows swap end to end
    perm[NOSE_BASE] = NOSE_BASE[::-1]
    perm[RIGHT_EYE] = [45, 44, 43, 42, 47, 46]               # outer<->outer, upper<->upper
    perm[LEFT_EYE] = [39, 38, 37, 36, 41, 40]
    perm[OUTER_LIP] = [54, 53, 52, 51, 50, 49, 48, 59, 58, 57, 56, 55]
    perm[INNER_LIP] = [64, 63, 62, 61, 60, 67, 66, 65]
    return perm


#: ``flipped = mirror_landmarks(points, width)`` relabels with this so 36 stays the right eye.
MIRROR_PERMUTATION = _mirror_permutation()


class LandmarkError(StimgenError, ValueError):
    """Landmarks that are not a usable 68-point iBUG 300-W set."""


def check_landmarks(landmarks, *, name: str = "landmarks") -> np.ndarray:
    """Validate and return ``landmarks`` as a float64 array of shape ``[..., 68, 2]``.

    Raises
    ------
    LandmarkError
        If the shape is not ``[..., 68, 2]`` or a coordinate is not finite.
    """
    points = np.asarray(landmarks, dtype=np.float64)
    if points.ndim < 2 or points.shape[-2:] != (N_LANDMARKS, 2):
        raise LandmarkError(
            f"{name} must have shape [68, 2] or [N, 68, 2] (x, y per iBUG 300-W point), "
            f"got {list(points.shape)}",
            hint="use a 68-point detector such as face-alignment (LandmarksType.TWO_D)")
    if not np.all(np.isfinite(points)):
        raise LandmarkError(f"{name} contain NaN or infinite coordinates",
                            hint="drop faces the landmark detector failed on")
    return points


def eye_centres(landmarks) -> tuple[np.ndarray, np.ndarray]:
    """Centres (mean of the six points) of the right and left eye, each ``[..., 2]``."""
    points = check_landmarks(landmarks)
    return points[..., RIGHT_EYE, :].mean(axis=-2), points[..., LEFT_EYE, :].mean(axis=-2)


def inter_ocular_distance(landmarks) -> np.ndarray | float:
    """Distance between the outer eye corners (36, 45): the 300-W normalising length.

    >>> points = np.zeros((68, 2)); points[45] = (3.0, 4.0)
    >>> inter_ocular_distance(points)
    5.0
    """
    points = check_landmarks(landmarks)
    d = np.linalg.norm(points[..., LEFT_EYE_OUTER, :] - points[..., RIGHT_EYE_OUTER, :], axis=-1)
    return float(d) if d.ndim == 0 else d


def face_frame(landmarks) -> np.ndarray:
    """Landmarks in an eye-aligned frame: origin between the eye centres, unit = inter-ocular
    distance, x along the right-to-left eye axis, y pointing down (chin has y > 0).

    Removes position, scale and in-plane roll, so measurements compare across faces.

    Raises
    ------
    LandmarkError
        If the outer eye corners coincide (no face scale to normalise by).
    """
    points = check_landmarks(landmarks)
    right, left = eye_centres(points)
    axis = left - right
    iod = np.linalg.norm(points[..., LEFT_EYE_OUTER, :] - points[..., RIGHT_EYE_OUTER, :], axis=-1)
    if np.any(iod <= 1e-9) or np.any(np.linalg.norm(axis, axis=-1) <= 1e-9):
        raise LandmarkError("landmarks have coincident eye corners; the face has no scale",
                            hint="check the detector output for this image")
    cos_sin = axis / np.linalg.norm(axis, axis=-1, keepdims=True)
    c, s = cos_sin[..., 0, None], cos_sin[..., 1, None]
    centred = points - ((right + left) / 2)[..., None, :]
    x = centred[..., 0] * c + centred[..., 1] * s
    y = -centred[..., 0] * s + centred[..., 1] * c
    return np.stack([x, y], axis=-1) / iod[..., None, None]


def mirror_landmarks(landmarks, width: float) -> np.ndarray:
    """Landmarks of the horizontally flipped image of ``width`` pixels, relabelled so every
    index keeps its iBUG meaning (the flipped right eye is again 36-41)."""
    points = check_landmarks(landmarks).copy()
    points[..., 0] = width - points[..., 0]
    return points[..., MIRROR_PERMUTATION, :]
