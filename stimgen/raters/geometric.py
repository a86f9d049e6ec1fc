"""The ``geometric`` rater: valence and arousal measured from 68 facial landmarks.

Facial-action proxies (lip corners, mouth opening and width, lips, brows, eye aperture, nose)
in units of the inter-ocular distance, combined by a fixed linear formula calibrated on
schematic faces (:class:`GeometricModel`); :class:`GeometricRater` applies it to rendered faces.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from stimgen.backends.base import Rendered
from stimgen.errors import BackendUnavailableError
from stimgen.landmarks import (
    CHIN, INNER_LIP_BOTTOM, INNER_LIP_TOP, LEFT_BROW, LEFT_BROW_INNER, LEFT_BROW_OUTER, LEFT_EYE,
    LEFT_EYE_INNER, LEFT_EYE_LOWER_LID, LEFT_EYE_OUTER, LEFT_EYE_UPPER_LID, LOWER_LIP_BOTTOM,
    MOUTH_LEFT_CORNER, MOUTH_RIGHT_CORNER, NOSE_BASE, RIGHT_BROW, RIGHT_BROW_INNER,
    RIGHT_BROW_OUTER, RIGHT_EYE, RIGHT_EYE_INNER, RIGHT_EYE_LOWER_LID, RIGHT_EYE_OUTER,
    RIGHT_EYE_UPPER_LID, SUBNASALE, UPPER_LIP_TOP, LandmarkError, check_landmarks, face_frame)
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
    "lower_lid_height":  "mean lower-lid height (40, 41, 46, 47) below the eye-corner line "
                         "(36, 39, 42, 45) (AU6 and AU7 push the lower lid up; AU43 does not)",
    "nose_length":       "subnasale (33) minus the eye-corner line (36, 39, 42, 45) in height "
                         "(AU9 lifts the nose base and shortens it)",
    "nose_width":        "distance between the alae (31, 35) (AU9 flares them)",
    "upper_lip_height":  "upper inner-lip centre (62) minus the eye-corner line in height "
                         "(AU10 lifts the upper lip; AU12, AU17 and AU25 lift it a little)",
    "mouth_width":       "distance between the mouth corners (48, 54) (AU20 stretches and AU12 "
                         "pulls the mouth wide; AU23 narrows it)",
    "lip_thickness":     "upper (51 to 62) plus lower (66 to 57) red-lip height "
                         "(AU23 presses and AU20 stretches the lips thin)",
    "lip_to_chin":       "chin (8) minus lower-lip border (57) in height (AU16 lowers the lower "
                         "lip toward the chin, AU17 pushes it up; a jaw drop, AU26, moves both)",
    "inner_brow_height": "eye-corner line minus the inner brow ends (21, 22) in height (AU1 "
                         "raises them; AU4 and AU9 pull them down toward the nose)",
}
MEASUREMENT_NAMES: tuple[str, ...] = tuple(MEASUREMENTS)
EYE_CORNERS = np.array([RIGHT_EYE_OUTER, RIGHT_EYE_INNER, LEFT_EYE_INNER, LEFT_EYE_OUTER])
RIGHT_ALA, LEFT_ALA = NOSE_BASE[0], NOSE_BASE[-1]      # 31, 35

#: Sign code of a coefficient the calibration holds at zero: the proxy says nothing about
#: that axis.
OFF = 2

#: Signs the calibration enforces (+1: >= 0, -1: <= 0, 0: free, OFF: held at 0), from FACS
#: logic: raised lip corners are pleasant; an open mouth, raised brows and wide eyes are
#: aroused; inner brows raised above the outer ends (AU1) are unpleasant; brows drawn
#: together (AU4) are unpleasant and aroused; a wrinkled nose (AU9: shorter, wider) is
#: unpleasant; a lower lid pushed up (AU6 cheek raiser, AU7 lid tightener: happiness and
#: anger) narrows the eye without the low arousal of drooping upper lids (AU43), so it may
#: only add arousal, and so may thinned lips (AU20, AU23). The upper lip (AU10 disgust,
#: AU12 happiness), the mouth width (AU12 and AU20 widen it, AU23 narrows it) and the lip
#: thickness move with pleasant and unpleasant actions alike, so their valence signs are
#: free; the upper lip and the mouth width also move with the jaw drop (AU26), and given an
#: arousal weight they took the jaw drop's arousal from the mouth opening (a face that only
#: opened its mouth then read as calm), so they inform valence only. Rows follow
#: MEASUREMENT_NAMES; columns are (valence, arousal).
COEFFICIENT_SIGNS = np.array([
    [+1, 0],    # lip_corner_height
    [0, +1],    # mouth_opening
    [0, +1],    # brow_height
    [-1, 0],    # brow_obliqueness
    [+1, -1],   # inner_brow_gap
    [0, +1],    # eye_aperture
    [0, -1],    # lower_lid_height
    [+1, 0],    # nose_length
    [-1, 0],    # nose_width
    [0, OFF],   # upper_lip_height
    [0, OFF],   # mouth_width
    [0, -1],    # lip_thickness
    [0, 0],     # lip_to_chin
    [0, 0],     # inner_brow_height
])

#: Largest weight the calibration gives a proxy, in VA units per inter-ocular distance, so
#: that a landmark error of 1 % of the inter-ocular distance (about a pixel on a detected
#: photograph) moves an estimate by at most 0.3 per proxy. Uncapped, the fit on schematic
#: faces reaches weights of 70 (and distance MAE 0.047 instead of 0.084 on held-out seeds):
#: exact on the faces it was fitted to, fragile on any other.
MAX_COEFFICIENT = 30.0

#: Smallest weight of a proxy that FACS logic makes a cue on its own: (measurement, column
#: 0 valence / 1 arousal) -> floor. On the faces redrawn in issue 28 wide eyes (AU5) carry
#: the arousal of every open-mouthed prototype, and the unconstrained fit gave the mouth
#: opening no arousal weight at all: a face that only dropped its jaw read as calm. The floor
#: (0.1 inter-ocular distances of jaw drop -> +0.2 arousal) costs about 0.01 held-out MAE.
MIN_COEFFICIENTS: dict[tuple[str, int], float] = {("mouth_opening", 1): 2.0}

# How the coefficients were obtained: sign-constrained least-squares fits
# (``fit_coefficients``, no intercept) of the drawn targets on measurement changes, over the
# FACS-driven schematic faces (issue 15: prototypes blended by angle) of 160 seeds
# (1000-1159) x 140 VA points each (the 28 named emotions x intensities 0.25/0.5/0.75/1 and
# 28 random points in the unit disc). RELATIVE: changes from the same identity's neutral
# face; ABSOLUTE: changes from POPULATION_NEUTRAL, the mean neutral measurements of those
# seeds. Reproduce with ``python benchmarks/bench_schematic.py --calibrate``;
# tests/test_geometric_rater.py re-derives them on other seeds. Held-out seeds 2000-2039:
# distance MAE 0.129 with the neutral face, 0.173 without (refitted after surprise and
# disgust were redrawn, issue 28; 0.125 and 0.161 on the faces before that). Refitted when
# the faces were redrawn after the FACS manual (issue 28): the old coefficients read the new
# faces at 0.231 on the demo. The lip-to-chin (AU16 lowers the lower lip, AU17 raises it) and inner-brow-
# height (AU1 vs AU4/AU9) proxies gain about 0.01; the mouth-opening floor
# (``MIN_COEFFICIENTS``) costs about 0.01. (On the faces before issue 28: 0.084 and 0.158;
# 0.141 and 0.235 before the lower-lid, nose, upper-lip, mouth-width and lip-thickness
# proxies measured AU6/7, AU9, AU10, AU20 and AU23.)
# Rows follow MEASUREMENT_NAMES; columns are (valence, arousal).
RELATIVE_COEFFICIENTS = np.array([
    #  valence  arousal
    [  7.1847,   2.1395],   # lip_corner_height
    [ -3.2533,   2.0000],   # mouth_opening
    [  0.4662,   0.0000],   # brow_height
    [ -0.0000,   2.2653],   # brow_obliqueness
    [  1.8622,  -0.0000],   # inner_brow_gap
    [ -4.0480,  21.3194],   # eye_aperture
    [ 30.0000, -30.0000],   # lower_lid_height
    [  0.0000,  -1.7824],   # nose_length
    [ -0.0000,  -4.4390],   # nose_width
    [-28.8142,   0.0000],   # upper_lip_height
    [ -0.5428,   0.0000],   # mouth_width
    [  2.7588,  -0.0000],   # lip_thickness
    [  6.3943,  -8.8771],   # lip_to_chin
    [  0.7363,  -3.9050],   # inner_brow_height
])
ABSOLUTE_COEFFICIENTS = np.array([
    #  valence  arousal
    [  9.0207,   0.9829],   # lip_corner_height
    [  2.7496,   2.0000],   # mouth_opening
    [ -4.1268,   6.1292],   # brow_height
    [ -1.7443,   4.3085],   # brow_obliqueness
    [  0.0000,  -0.0000],   # inner_brow_gap
    [ -5.2754,  19.6246],   # eye_aperture
    [  8.3237, -30.0000],   # lower_lid_height
    [  0.6237,  -0.1139],   # nose_length
    [ -0.0000,   0.5275],   # nose_width
    [ -0.3335,   0.0000],   # upper_lip_height
    [ -0.6877,   0.0000],   # mouth_width
    [ -1.3017,  -0.0000],   # lip_thickness
    [  0.4166,  -0.4731],   # lip_to_chin
    [  4.1315,  -8.7412],   # inner_brow_height
])
POPULATION_NEUTRAL = np.array([0.0000, 0.0000, 0.1642, 0.0273, 0.3474, 0.1011, 0.0387, 0.5090,
                               0.1865, 0.7045, 0.6070, 0.1342, 0.3077, 0.1740])


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
    # the eye corners do not move with the lids (AU5, AU43), the eye centres do
    eye_line = y[..., EYE_CORNERS].mean(axis=-1)
    alae = frame[..., LEFT_ALA, :] - frame[..., RIGHT_ALA, :]
    mouth = frame[..., MOUTH_LEFT_CORNER, :] - frame[..., MOUTH_RIGHT_CORNER, :]
    return np.stack([
        y[..., INNER_LIP_TOP] - corners,
        y[..., INNER_LIP_BOTTOM] - y[..., INNER_LIP_TOP],
        eyes - brows,
        outer_brows - inner_brows,
        np.linalg.norm(brow_ends, axis=-1),
        lower_lids - upper_lids,
        lower_lids - eye_line,
        y[..., SUBNASALE] - eye_line,
        np.linalg.norm(alae, axis=-1),
        y[..., INNER_LIP_TOP] - eye_line,
        np.linalg.norm(mouth, axis=-1),
        (y[..., INNER_LIP_TOP] - y[..., UPPER_LIP_TOP])
        + (y[..., LOWER_LIP_BOTTOM] - y[..., INNER_LIP_BOTTOM]),
        y[..., CHIN] - y[..., LOWER_LIP_BOTTOM],
        eye_line - inner_brows,
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
                     signs: np.ndarray | None = None,
                     max_weight: float = MAX_COEFFICIENT,
                     min_weights: dict[tuple[str, int], float] | None = None) -> np.ndarray:
    """Sign-constrained least-squares coefficients ``[M, 2]`` from measurement changes to VA.

    Parameters
    ----------
    measurements : array [N, M]
        Proxies of the expressive faces (``measurement_array``).
    references : array [N, M] or [M]
        Proxies of each face's neutral reference (or one shared reference).
    targets : array [N, 2]
        The (valence, arousal) each face was drawn or posed for.
    signs : array [M, 2] of -1, 0, +1 or OFF, optional
        Required sign of each coefficient (0 = free, OFF = held at zero); default
        ``COEFFICIENT_SIGNS``. Without them, correlated proxies can take weights of the wrong
        sign that fit the calibration faces but misread a face that moves only one feature.
    max_weight : float
        Largest magnitude of a coefficient (VA units per inter-ocular distance); default
        ``MAX_COEFFICIENT``.
    min_weights : dict, optional
        Smallest magnitude of some sign-constrained coefficients, by (measurement, column);
        default ``MIN_COEFFICIENTS``.
    """
    from scipy.optimize import lsq_linear   # calibration only; rating needs numpy alone

    deltas = np.asarray(measurements, dtype=float) - np.asarray(references, dtype=float)
    targets = np.asarray(targets, dtype=float)
    signs = COEFFICIENT_SIGNS if signs is None else np.asarray(signs)
    floors = MIN_COEFFICIENTS if min_weights is None else min_weights
    floor = np.zeros((deltas.shape[1], 2))
    for (name, column), value in floors.items():
        floor[MEASUREMENT_NAMES.index(name), column] = value
    coefficients = np.zeros((deltas.shape[1], 2))
    for column in range(2):
        used = signs[:, column] != OFF
        lower = np.where(signs[used, column] > 0, floor[used, column], -max_weight)
        upper = np.where(signs[used, column] < 0, -floor[used, column], max_weight)
        coefficients[used, column] = lsq_linear(deltas[:, used], targets[:, column],
                                                bounds=(lower, upper)).x
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
