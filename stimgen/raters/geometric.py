"""The ``geometric`` rater: valence and arousal measured from 68 facial landmarks.

Facial-action proxies (lip corners, mouth opening, brows, eye aperture) in units of the
inter-ocular distance, combined by a fixed linear formula calibrated on schematic faces
(:class:`GeometricModel`); :class:`GeometricRater` applies it to rendered faces.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from stimgen.backends.base import Rendered
from stimgen.errors import BackendUnavailableError
from stimgen.landmarks import (
    INNER_LIP_BOTTOM, INNER_LIP_TOP, LEFT_BROW, LEFT_BROW_INNER, LEFT_BROW_OUTER,
    LEFT_EYE_LOWER_LID, LEFT_EYE_UPPER_LID, MOUTH_LEFT_CORNER, MOUTH_RIGHT_CORNER, RIGHT_BROW,
    RIGHT_BROW_INNER, RIGHT_BROW_OUTER, RIGHT_EYE_LOWER_LID, RIGHT_EYE_UPPER_LID, LEFT_EYE,
    RIGHT_EYE, LandmarkError, check_landmarks, face_frame)
from stimgen.raters.base import RaterInfo

#: The measured action proxies, in the order of the coefficient rows. All lengths are in
#: inter-ocular distances (outer eye corners) in an eye-aligned frame, y pointing down.
MEASUREMENTS: dict[str, str] = {
    "lip_corner_height": "upper inner-lip centre (62) minus mean mouth-corner height (48, 54); "
                         "> 0 when the corners are above it (AU12), < 0 below (AU15); "
                         "a dropping jaw leaves it unchanged",
    "mouth_opening":     "lower inner-lip centre (66) minus upper inner-lip centre (62) (AU25-27)",
    "brow_height":       "mean eye height (36-47) minus mean brow height (17-26) (AU1+2 up, AU4 down)",
    "brow_obliqueness":  "outer brow ends (17, 26) minus inner ends (21, 22) in height; "
                         "> 0 when the inner ends are raised (AU1, sadness)",
    "inner_brow_gap":    "distance between the inner brow ends 21 and 22 (AU4 draws them together)",
    "eye_aperture":      "mean lower-lid (40, 41, 46, 47) minus upper-lid (37, 38, 43, 44) height "
                         "(AU5 opens, AU43 and AU6 close)",
}
MEASUREMENT_NAMES: tuple[str, ...] = tuple(MEASUREMENTS)

#: Signs the calibration enforces (+1: >= 0, -1: <= 0, 0: free), from FACS logic: raised
#: lip corners are pleasant; an open mouth, raised brows and wide eyes are aroused; inner
#: brows raised above the outer ends (AU1) are unpleasant; brows drawn together (AU4) are
#: unpleasant and aroused. Rows follow MEASUREMENT_NAMES; columns are (valence, arousal).
COEFFICIENT_SIGNS = np.array([
    [+1, 0],    # lip_corner_height
    [0, +1],    # mouth_opening
    [0, +1],    # brow_height
    [-1, 0],    # brow_obliqueness
    [+1, -1],   # inner_brow_gap
    [0, +1],    # eye_aperture
])

# How the coefficients were obtained: sign-constrained least-squares fits
# (``fit_coefficients``, no intercept) of the drawn targets on measurement changes, over the
# FACS-driven schematic faces (issue 15: prototypes blended by angle) of 160 seeds
# (1000-1159) x 140 VA points each (the 28 named emotions x intensities 0.25/0.5/0.75/1 and
# 28 random points in the unit disc). RELATIVE: changes from the same identity's neutral
# face; ABSOLUTE: changes from POPULATION_NEUTRAL, the mean neutral measurements of those
# seeds. Reproduce with ``python benchmarks/bench_schematic.py --calibrate``;
# tests/test_geometric_rater.py re-derives them on other seeds.
# Rows follow MEASUREMENT_NAMES; columns are (valence, arousal).
RELATIVE_COEFFICIENTS = np.array([
    #  valence  arousal
    [ 9.3253,  2.2476],   # lip_corner_height
    [ 1.7625,  2.1404],   # mouth_opening
    [ 3.0998,  0.0000],   # brow_height
    [-0.0000, -5.8649],   # brow_obliqueness
    [ 0.0000, -10.9908],  # inner_brow_gap
    [-3.2149, 20.4229],   # eye_aperture
])
ABSOLUTE_COEFFICIENTS = np.array([
    #  valence  arousal
    [ 9.4524, -1.9364],   # lip_corner_height
    [ 2.4266,  5.9961],   # mouth_opening
    [ 1.8809,  0.0000],   # brow_height
    [-0.0000, -8.0197],   # brow_obliqueness
    [ 0.0000, -3.6607],   # inner_brow_gap
    [-2.3462, 11.0148],   # eye_aperture
])
POPULATION_NEUTRAL = np.array([0.0000, 0.0000, 0.1642, 0.0273, 0.3474, 0.1011])


def _measure(frame: np.ndarray) -> np.ndarray:
    """Measurements ``[..., M]`` of landmarks already in the eye-aligned frame."""
    y = frame[..., 1]
    corners = (y[..., MOUTH_RIGHT_CORNER] + y[..., MOUTH_LEFT_CORNER]) / 2
    eyes = y[..., np.concatenate([RIGHT_EYE, LEFT_EYE])].mean(axis=-1)
    brows = y[..., np.concatenate([RIGHT_BROW, LEFT_BROW])].mean(axis=-1)
    outer_brows = (y[..., RIGHT_BROW_OUTER] + y[..., LEFT_BROW_OUTER]) / 2
    inner_brows = (y[..., RIGHT_BROW_INNER] + y[..., LEFT_BROW_INNER]) / 2
    upper_lids = y[..., np.concatenate([RIGHT_EYE_UPPER_LID, LEFT_EYE_UPPER_LID])].mean(axis=-1)
    lower_lids = y[..., np.concatenate([RIGHT_EYE_LOWER_LID, LEFT_EYE_LOWER_LID])].mean(axis=-1)
    brow_ends = frame[..., LEFT_BROW_INNER, :] - frame[..., RIGHT_BROW_INNER, :]
    return np.stack([
        y[..., INNER_LIP_TOP] - corners,
        y[..., INNER_LIP_BOTTOM] - y[..., INNER_LIP_TOP],
        eyes - brows,
        outer_brows - inner_brows,
        np.linalg.norm(brow_ends, axis=-1),
        lower_lids - upper_lids,
    ], axis=-1)


def measurement_array(landmarks) -> np.ndarray:
    """Action proxies of one face ``[68, 2]`` -> ``[M]`` or a batch ``[N, 68, 2]`` -> ``[N, M]``,
    in the order of ``MEASUREMENT_NAMES``."""
    return _measure(face_frame(check_landmarks(landmarks)))


def action_measurements(landmarks) -> dict[str, float]:
    """The facial-action proxies of one face ``[68, 2]``, by name, in inter-ocular distances.

    >>> from stimgen.backends.schematic import face_landmarks, sample_identity
    >>> m = action_measurements(face_landmarks(sample_identity(0), 0.9, 0.0))
    >>> m["lip_corner_height"] > 0   # a pleasant face has raised mouth corners
    True
    """
    points = check_landmarks(landmarks)
    if points.shape != (68, 2):
        raise LandmarkError(f"action_measurements takes one face [68, 2], got {list(points.shape)}",
                            hint="use measurement_array for a batch")
    return {name: float(v) for name, v in zip(MEASUREMENT_NAMES, measurement_array(points))}


def fit_coefficients(measurements: np.ndarray, references: np.ndarray, targets: np.ndarray,
                     signs: np.ndarray | None = None) -> np.ndarray:
    """Sign-constrained least-squares coefficients ``[M, 2]`` from measurement changes to VA.

    Parameters
    ----------
    measurements : array [N, M]
        Proxies of the expressive faces (``measurement_array``).
    references : array [N, M] or [M]
        Proxies of each face's neutral reference (or one shared reference).
    targets : array [N, 2]
        The (valence, arousal) each face was drawn or posed for.
    signs : array [M, 2] of -1, 0, +1, optional
        Required sign of each coefficient (0 = free); default ``COEFFICIENT_SIGNS``.
        Without them, correlated proxies can take weights of the wrong sign that fit the
        calibration faces but misread a face that moves only one feature.
    """
    from scipy.optimize import lsq_linear   # calibration only; rating needs numpy alone

    deltas = np.asarray(measurements, dtype=float) - np.asarray(references, dtype=float)
    targets = np.asarray(targets, dtype=float)
    signs = COEFFICIENT_SIGNS if signs is None else np.asarray(signs)
    coefficients = np.zeros((deltas.shape[1], 2))
    for column in range(2):
        lower = np.where(signs[:, column] > 0, 0.0, -np.inf)
        upper = np.where(signs[:, column] < 0, 0.0, np.inf)
        coefficients[:, column] = lsq_linear(deltas, targets[:, column], bounds=(lower, upper)).x
    return coefficients


class GeometricModel:
    """Valence and arousal from landmark geometry alone, by a fixed linear formula.

    With the same person's neutral face: ``(v, a) = clip((m - m_neutral) @ RELATIVE_COEFFICIENTS)``;
    without: ``clip((m - POPULATION_NEUTRAL) @ ABSOLUTE_COEFFICIENTS)``, clipped to [-1, 1],
    where ``m`` are the ``MEASUREMENTS`` of the landmarks. Model estimates, not human ratings.

    Examples
    --------
    >>> from stimgen.backends.schematic import face_landmarks, sample_identity
    >>> person = sample_identity(3)
    >>> v, a = GeometricModel().rate(face_landmarks(person, 0.0, 0.9), face_landmarks(person, 0, 0))
    >>> a > 0.5
    True
    """

    def __init__(self, relative_coefficients: np.ndarray | None = None,
                 absolute_coefficients: np.ndarray | None = None,
                 population_neutral: np.ndarray | None = None):
        m = len(MEASUREMENT_NAMES)
        self.relative = np.asarray(RELATIVE_COEFFICIENTS if relative_coefficients is None
                                   else relative_coefficients, dtype=float)   # [M, 2], own neutral
        self.absolute = np.asarray(ABSOLUTE_COEFFICIENTS if absolute_coefficients is None
                                   else absolute_coefficients, dtype=float)   # [M, 2], no neutral
        self.population_neutral = np.asarray(POPULATION_NEUTRAL if population_neutral is None
                                             else population_neutral, dtype=float)  # [M]
        assert self.relative.shape == (m, 2) and self.absolute.shape == (m, 2)
        assert self.population_neutral.shape == (m,)

    def estimate(self, measured: np.ndarray, neutral_measured: np.ndarray | None) -> np.ndarray:
        """(valence, arousal) ``[..., 2]`` from measurements ``[..., M]`` (see ``measurement_array``)."""
        if neutral_measured is None:
            raw = (measured - self.population_neutral) @ self.absolute
        else:
            raw = (measured - neutral_measured) @ self.relative
        return np.clip(raw, -1.0, 1.0)

    def rate(self, landmarks: np.ndarray, neutral: np.ndarray | None = None) -> tuple[float, float]:
        """(valence, arousal) of one face ``[68, 2]``; ``neutral``: the same person's
        neutral face ``[68, 2]``, or None to compare with the population constants."""
        points = check_landmarks(landmarks)
        if points.shape != (68, 2):
            raise LandmarkError(f"rate takes one face [68, 2], got {list(points.shape)}",
                                hint="use rate_many for a batch [N, 68, 2]")
        batch_neutral = None if neutral is None else check_landmarks(neutral, name="neutral")[None]
        v, a = self.rate_many(points[None], batch_neutral)[0]
        return float(v), float(a)

    def rate_many(self, landmarks: np.ndarray, neutral: np.ndarray | None = None) -> np.ndarray:
        """(valence, arousal) ``[N, 2]`` of faces ``[N, 68, 2]``; ``neutral`` is ``[N, 68, 2]``
        (each face's own neutral), ``[68, 2]`` (one neutral shared by all) or None."""
        points = check_landmarks(landmarks)
        if points.ndim != 3:
            raise LandmarkError(f"rate_many takes a batch [N, 68, 2], got {list(points.shape)}",
                                hint="use rate for a single face")
        reference = None
        if neutral is not None:
            neutral = check_landmarks(neutral, name="neutral")
            if neutral.ndim == 3 and len(neutral) != len(points):
                raise LandmarkError(f"neutral has {len(neutral)} faces but landmarks has {len(points)}",
                                    hint="give one neutral per face, or a single [68, 2] neutral")
            reference = measurement_array(neutral)
        return self.estimate(measurement_array(points), reference)


class GeometricRater:
    """The registered ``geometric`` rater: :class:`GeometricModel` on the landmarks that a
    backend renders with each face, relative to the identity's neutral face when given.

    Parameters
    ----------
    info : RaterInfo
        Name, description, and whether the generator was trained against this rater
        (see :func:`stimgen.raters.describe_rater`).
    model : GeometricModel, optional
        The formula; default: the calibrated coefficients.
    """

    def __init__(self, info: RaterInfo, model: GeometricModel | None = None):
        self.info = info
        self.model = model if model is not None else GeometricModel()

    def rate(self, faces: Sequence[Rendered], neutral: Rendered | None = None) -> np.ndarray:
        """[N, 2] achieved (valence, arousal) of ``faces``, each in [-1, 1]."""
        if any(face.landmarks is None for face in faces):
            raise BackendUnavailableError(
                "the geometric rater needs 68 landmarks for every face, and this backend "
                "did not provide them")
        stack = np.stack([face.landmarks for face in faces])
        reference = neutral.landmarks if neutral is not None else None
        return np.asarray(self.model.rate_many(stack, neutral=reference), dtype=float)
