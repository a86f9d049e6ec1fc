"""Where every part of a schematic face lies, given an identity and facial-action strengths.

Pure geometry, no pixels: the renderer draws exactly these curves and the 68 iBUG
landmarks are sampled from them, so landmarks sit on the drawn contours by construction.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from stimgen.backends.schematic.identity import SchematicIdentity

CENTRE_X = 0.5          # faces are centred horizontally
FACE_MID_Y = 0.47       # crown-to-chin midpoint, fraction of the image side


@dataclass(frozen=True)
class EyeLayout:
    """One eye: lid curves from the outer to the inner corner, the iris and the lid fold."""

    upper: np.ndarray    # [K, 2] upper-lid margin, outer -> inner corner
    lower: np.ndarray    # [K, 2] lower-lid margin, outer -> inner corner
    iris_centre: np.ndarray  # [2]
    iris_radius: float
    fold: np.ndarray     # [K, 2] upper-lid fold (the crease above the lid), outer -> inner


@dataclass(frozen=True)
class MouthLayout:
    """Lip curves sampled at the same mouth positions u in [-1, 1] (image left -> right)."""

    upper_outer: np.ndarray  # [K, 2] vermilion border of the upper lip
    upper_inner: np.ndarray  # [K, 2] lower edge of the upper lip
    lower_inner: np.ndarray  # [K, 2] upper edge of the lower lip
    lower_outer: np.ndarray  # [K, 2] vermilion border of the lower lip
    upper_teeth: float       # how far the upper teeth show below the upper lip, image sides
    lower_teeth: float       # how far the lower teeth show above the lower lip, image sides


@dataclass(frozen=True)
class FaceLayout:
    """All drawn curves of one face in image-side units, plus its 68 landmarks."""

    outline: np.ndarray              # [K, 2] closed face contour, image-left cheek -> chin -> crown
    jaw: np.ndarray                  # [K, 2] lower contour, image-left cheek -> chin -> right cheek
    cheek_y: float                   # height of the widest face line
    crown_y: float                   # top of the skull
    chin_y: float                    # bottom of the chin
    eye_y: float                     # eye-corner line
    brows: tuple[np.ndarray, np.ndarray]       # centre lines, each left -> right in the image
    brow_widths: tuple[np.ndarray, np.ndarray]  # brow thickness along each centre line
    eyes: tuple[EyeLayout, EyeLayout]          # subject's right (image left), then left
    nose_bridge: np.ndarray          # [4, 2] points 27-30
    nose_base: np.ndarray            # [K, 2] ala -> subnasale -> ala
    alae: tuple[np.ndarray, np.ndarray]  # nostril wings, image left then right
    nostrils: tuple[np.ndarray, np.ndarray]  # ellipse boxes (x0, y0, x1, y1)
    mouth: MouthLayout
    landmarks: np.ndarray            # [68, 2] iBUG 300-W order, image-side units
    actions: dict[str, float]        # action strengths this layout shows


def cubic_bezier(p0, p1, p2, p3, t: np.ndarray) -> np.ndarray:
    """Points of the cubic Bezier curve with control points p0..p3 at parameters ``t``."""
    t = np.asarray(t, dtype=float)[:, None]
    p0, p1, p2, p3 = (np.asarray(p, dtype=float) for p in (p0, p1, p2, p3))
    s = 1.0 - t
    return s**3 * p0 + 3 * s**2 * t * p1 + 3 * s * t**2 * p2 + t**3 * p3


def resample_by_arc_length(curve: np.ndarray, count: int) -> np.ndarray:
    """``count`` points equally spaced along the polyline ``curve``, ends included."""
    seg = np.linalg.norm(np.diff(curve, axis=0), axis=1)
    cumulative = np.concatenate([[0.0], np.cumsum(seg)])
    targets = np.linspace(0.0, cumulative[-1], count)
    return np.stack([np.interp(targets, cumulative, curve[:, i]) for i in range(2)], axis=1)


def catmull_rom(points: np.ndarray, per_segment: int) -> np.ndarray:
    """Smooth curve through every one of ``points`` (uniform Catmull-Rom spline)."""
    padded = np.concatenate([2 * points[:1] - points[1:2], points, 2 * points[-1:] - points[-2:-1]])
    t = np.linspace(0.0, 1.0, per_segment, endpoint=False)[:, None]
    pieces = []
    for p0, p1, p2, p3 in zip(padded[:-3], padded[1:-2], padded[2:-1], padded[3:]):
        pieces.append(0.5 * (2 * p1 + (p2 - p0) * t + (2 * p0 - 5 * p1 + 4 * p2 - p3) * t**2
                             + (3 * p1 - p0 - 3 * p2 + p3) * t**3))
    return np.concatenate(pieces + [points[-1:]])


def _superellipse_arc(angles: np.ndarray, exponent: float) -> tuple[np.ndarray, np.ndarray]:
    """cos- and sin-like coordinates of a superellipse |x|^n + |y|^n = 1."""
    c, s = np.cos(angles), np.sin(angles)
    return (np.sign(c) * np.abs(c) ** (2.0 / exponent),
            np.sign(s) * np.abs(s) ** (2.0 / exponent))


def head_contours(identity: SchematicIdentity, jaw_drop: float = 0.0):
    """Lower (jaw) and upper (skull) contours and the cheek line of ``identity``.

    Returns ``(jaw, skull, cheek_y)``; ``jaw`` runs image left -> chin -> right,
    ``skull`` image right -> crown -> left. ``jaw_drop`` lengthens the lower face.
    """
    w = identity.face_half_width
    jaw_height = identity.jaw_height + jaw_drop
    cheek_y = FACE_MID_Y + (identity.crown_height - identity.jaw_height) / 2.0
    c, s = _superellipse_arc(np.linspace(0.0, np.pi, 97), identity.jaw_squareness)
    depth = s  # 0 at the cheek line, 1 at the chin
    taper = 1.0 - identity.chin_taper * depth**2
    jaw = np.stack([CENTRE_X - w * c * taper, cheek_y + jaw_height * depth], axis=1)
    c, s = _superellipse_arc(np.linspace(0.0, np.pi, 65), 2.3)
    skull = np.stack([CENTRE_X + w * c, cheek_y - identity.crown_height * s], axis=1)
    return jaw, skull, cheek_y


#: How far a bob's straight-cut fringe flattens and lowers the hairline (0: none, 1: flat).
FRINGE = {"bob": 0.55}


def hairline(identity: SchematicIdentity, eye_y: float, u: np.ndarray) -> np.ndarray:
    """Height of the front hairline at positions ``u`` (-1 image left ... +1 right, over
    0.97 face half-widths): rounded, with a dip at the parting, or a fringe's straighter,
    lower line. The drawing cuts the hair along it; a raised brow stays below it."""
    w, fringe = identity.face_half_width, FRINGE.get(identity.hair_style, 0.0)
    temple_y = eye_y - 0.12 * w
    top_y = eye_y - identity.hairline
    rise = (1 - fringe) * (1 - np.abs(u) ** 2.4) + fringe * 0.35 * (1 - u**4)
    parting = 0.06 * w * (1 - fringe) * np.exp(-((u - 0.45 * identity.hair_part) / 0.12) ** 2)
    return temple_y - (temple_y - top_y) * rise - parting


def _eye(identity: SchematicIdentity, side: int, eye_y: float, a: dict[str, float]) -> EyeLayout:
    """Eye on ``side`` (-1 image left = subject's right, +1 image right) under action units ``a``.

    Upper lid: AU5 retracts it until white shows above the iris (at B, about level with the
    iris top; at E, a band of sclera); AU43 closes it; the brow pushed down by AU4 and the
    cheek raised by AU6 narrow the eye from above a little. Lower lid: AU7 raises and
    straightens it over the bottom of the iris; AU6 and AU9 push it up from below (FACS,
    Ekman, Friesen & Hager 2002).
    """
    half = identity.eye_half_width
    centre_x = CENTRE_X + side * identity.eye_spacing
    outer = np.array([centre_x + side * half, eye_y - identity.eye_tilt * 2 * half])
    inner = np.array([centre_x - side * half, eye_y])
    # lid retraction grows fastest at low intensity, so that 5B already bares a line of white
    opening = 1 + 1.2 * a["AU05"] ** 0.8 - 0.75 * a["AU43"] - 0.25 * a["AU04"] * (1 - a["AU05"]) \
        - 0.2 * a["AU06"] - 0.2 * a["AU07"] - 0.2 * a["AU09"]
    lowering = 1 + 0.2 * a["AU05"] - 0.45 * a["AU06"] - 0.65 * a["AU07"] - 0.55 * a["AU09"] \
        - 0.1 * a["AU43"]
    upper_h = half * identity.eye_openness * max(0.12, opening) / 0.75
    lower_h = half * identity.eye_openness * 0.62 * max(0.15, lowering) / 0.75
    span = inner - outer
    t = np.linspace(0.0, 1.0, 25)
    upper = cubic_bezier(outer, outer + span * 0.3 + (0, -upper_h * 0.95),
                         outer + span * 0.72 + (0, -upper_h * 1.05), inner, t)
    flat = 1 - 0.45 * a["AU07"]          # a tightened lower lid is straighter
    lower = cubic_bezier(outer, outer + span * 0.3 + (0, lower_h * 1.05 * flat),
                         outer + span * 0.7 + (0, lower_h * 0.95 * flat), inner, t)
    iris_centre = np.array([centre_x, eye_y - identity.eye_tilt * half - 0.06 * half])
    # the fold stays where the skin folds: a retracted lid (AU5) slides up under it
    rest_h = half * identity.eye_openness / 0.75
    fold_height = max(0.1 * half, 0.45 * half + 0.75 * (rest_h - upper_h))
    fold = upper + np.stack([np.zeros(len(t)), -fold_height * np.sin(np.pi * t)], axis=1)
    return EyeLayout(upper, lower, iris_centre, 0.46 * half, fold)


def _brow(identity: SchematicIdentity, side: int, eye_y: float, eye: EyeLayout,
          a: dict[str, float]) -> tuple[np.ndarray, np.ndarray]:
    """Brow centre line (image left -> right) and thickness along it.

    AU1 lifts the inner end (an oblique brow), AU2 the outer end (an arched brow); AU4 pulls
    the brow down and together, the inner end most, so that it slants down toward the nose;
    AU9 lowers the inner end too, less, without drawing the brows together; 1+2 together lift
    the whole brow higher and curve it (surprise). With AU1 (fear, sadness) the inner end
    stays raised and the brow flattens and draws in instead (FACS, Ekman, Friesen & Hager
    2002).
    """
    w, half = identity.face_half_width, identity.eye_half_width
    centre_x = CENTRE_X + side * identity.eye_spacing
    inner_up, outer_up = a["AU01"], a["AU02"]
    lower = min(1.0, a["AU04"] + 0.35 * a["AU09"])
    inner_drop = lower * (1 - 0.7 * inner_up)
    base = eye_y - identity.brow_gap
    # with 1+2 the whole brow rises and curves (surprise), the skin below it stretched
    both_up = min(inner_up, outer_up)
    inner_y = base + w * (-0.22 * inner_up - 0.05 * outer_up - 0.04 * both_up + 0.3 * inner_drop)
    outer_y = base + 0.04 * w + w * (-0.2 * outer_up + 0.03 * inner_up - 0.05 * both_up
                                     + 0.01 * lower)
    inner_x = centre_x - side * (half * 1.05 + 0.1 * w * a["AU04"])   # AU4 draws them together
    outer_x = centre_x + side * half * 1.3
    arch = identity.brow_arch * max(0.0, 1 + 0.8 * outer_up + 0.6 * both_up
                                    - 0.8 * inner_up * (1 - outer_up) - 0.8 * lower)
    lid_top = float(eye.upper[:, 1].min())
    # brows never sink into the eye: the outer end stays above the lid, the inner end (beside
    # the nose root, where there is no lid under it) above the inner eye corner
    inner_y = min(inner_y, eye_y - 0.15 * half - 0.5 * identity.brow_thickness)
    outer_y = min(outer_y, lid_top - 0.4 * identity.brow_thickness + 0.02 * w)
    outer, inner = np.array([outer_x, outer_y]), np.array([inner_x, inner_y])
    peak = outer + (inner - outer) * np.array([0.4, 0.5]) + (0, -2 * arch)
    t = np.linspace(0.0, 1.0, 21)[:, None]
    line = (1 - t) ** 2 * outer + 2 * (1 - t) * t * peak + t**2 * inner  # outer -> inner
    width = identity.brow_thickness * (0.45 + 0.55 * np.sqrt(t[:, 0])) * (1 + 0.15 * lower)
    if identity.hair_style != "bald":
        # a brow raised into the hair would vanish against it: it stops just below the hairline
        ceiling = hairline(identity, eye_y, (line[:, 0] - CENTRE_X) / (0.97 * w))
        overlap = float(np.max(ceiling + 0.6 * width + 0.01 * w - line[:, 1]))
        line = line + (0.0, max(0.0, overlap))
    if side > 0:  # store left -> right in the image
        line, width = line[::-1], width[::-1]
    return line, width


def _mouth(identity: SchematicIdentity, stomion_y: float, a: dict[str, float],
           jaw_drop: float, u: np.ndarray) -> MouthLayout:
    """Lip curves at mouth positions ``u`` (-1 image-left corner ... +1 right corner).

    AU12 pulls the corners up and out, AU15 down; AU20 stretches the mouth sideways and
    flattens it into a wide, tense rectangle; AU23 narrows and thins the lips; AU17 pushes the
    lower lip up; AU10 (and AU9, less) raises the upper lip, squarely, baring the upper teeth;
    AU16 pulls the lower lip down, baring the lower teeth; AU25 parts the lips and AU26 drops
    the jaw, a relaxed, rounder opening (FACS, Ekman, Friesen & Hager 2002).
    """
    w = identity.face_half_width
    smile, frown, stretch = a["AU12"], a["AU15"], a["AU20"]
    tight, chin, lower_down = a["AU23"], a["AU17"], a["AU16"]
    raise_upper = min(1.0, a["AU10"] + 0.6 * a["AU09"])
    relaxed_open = a["AU26"] * (1 - smile) * (1 - stretch)
    half = identity.mouth_half_width * (1 + 0.14 * smile + 0.3 * stretch - 0.05 * frown
                                        - 0.2 * tight - 0.3 * relaxed_open
                                        + 0.06 * lower_down)
    corner_dy = w * (-0.2 * smile + 0.17 * frown + 0.06 * stretch + 0.02 * lower_down)
    centre_y = stomion_y - 0.02 * w * smile - 0.03 * w * chin
    x = CENTRE_X + half * u
    line = centre_y + (corner_dy + 0.02 * w * smile + 0.03 * w * chin) * np.abs(u) ** 1.7
    if a["AU14"] > 0.0:
        # R14 (contempt): the subject's right corner (image left, u < 0) is pulled in and up;
        # skipped at 0 so that every other face keeps its exact floats
        one_side = np.clip(-u, 0.0, 1.0) ** 2
        x = x + half * 0.12 * a["AU14"] * one_side
        line = line - 0.09 * w * a["AU14"] * one_side
    profile = (1 - u**2).clip(0) ** (0.55 - 0.35 * stretch)
    # the raised upper lip and the lowered lower lip keep their height further out: squarer
    square = (1 - np.abs(u) ** 3).clip(0) ** 0.8
    parted = 0.05 * w * a["AU25"] * (1 - 0.5 * tight) + 0.025 * w * smile * (1 - tight)
    gap_up = (0.18 * jaw_drop + 0.4 * parted) * profile + 0.09 * w * raise_upper * square
    # the lower lip rides on the jaw: a jaw drop moves it as far as the chin
    gap_low = (jaw_drop + 0.6 * parted) * profile + 0.08 * w * lower_down * square
    upper_inner = line - gap_up
    lower_inner = line + gap_low
    bow = 1 + 0.15 * np.exp(-((np.abs(u) - 0.3) / 0.16) ** 2) - 0.15 * np.exp(-(u / 0.1) ** 2)
    thin = max(0.25, 1 - 0.3 * smile - 0.35 * stretch - 0.6 * tight - 0.25 * raise_upper)
    upper_outer = upper_inner - identity.upper_lip * thin * (1 - u**2).clip(0) ** 0.45 * bow
    lower_outer = lower_inner + identity.lower_lip * (thin + 0.05 + 0.2 * chin) \
        * (1 - u**2).clip(0) ** 0.55
    # teeth show where a lip is pulled off them: the upper ones under a raised or stretched
    # lip (AU10, AU9, AU12, AU20), the lower ones over a lowered or stretched lip (AU16, AU20)
    upper_teeth = w * (0.025 + 0.07 * max(raise_upper, smile, 0.3 * stretch))
    lower_teeth = w * 0.07 * max(lower_down, 0.4 * stretch)
    pack = lambda y: np.stack([x, y], axis=1)  # noqa: E731 - tiny local helper
    return MouthLayout(pack(upper_outer), pack(upper_inner), pack(lower_inner), pack(lower_outer),
                       upper_teeth, lower_teeth)


# Mouth positions u of the lip landmarks, in iBUG order.
_OUTER_UPPER_U = np.array([-1.0, -0.6, -0.28, 0.0, 0.28, 0.6, 1.0])      # 48-54
_OUTER_LOWER_U = np.array([0.6, 0.28, 0.0, -0.28, -0.6])                 # 55-59
_INNER_UPPER_U = np.array([-0.45, 0.0, 0.45])                            # 61-63
_INNER_LOWER_U = np.array([0.45, 0.0, -0.45])                            # 65-67
_INNER_CORNER_U = 0.92                                                   # 60, 64
# Brow landmarks along the 21-point centre line, ends pulled in so they sit on the brow.
_BROW_SAMPLES = np.array([1, 5, 10, 15, 19])


def _eye_landmarks(eye: EyeLayout, side: int) -> np.ndarray:
    """Six eye landmarks in iBUG order for the eye on ``side``."""
    n = len(eye.upper) - 1
    third, two_thirds = n // 3, 2 * n // 3
    outer, inner = eye.upper[0], eye.upper[-1]
    if side < 0:   # right eye: outer, upper 1/3, upper 2/3, inner, lower 2/3, lower 1/3
        return np.stack([outer, eye.upper[third], eye.upper[two_thirds], inner,
                         eye.lower[two_thirds], eye.lower[third]])
    # left eye: inner, upper (near inner), upper (near outer), outer, lower (near outer), ...
    return np.stack([inner, eye.upper[two_thirds], eye.upper[third], outer,
                     eye.lower[third], eye.lower[two_thirds]])


def face_layout(identity: SchematicIdentity, actions: dict[str, float]) -> FaceLayout:
    """Every curve of ``identity``'s face showing action units ``actions`` (see
    ``ACTION_UNITS``), and its 68 landmarks."""
    w = identity.face_half_width
    jaw_drop = 0.32 * w * actions["AU26"]
    jaw, skull, cheek_y = head_contours(identity, jaw_drop)
    outline = np.concatenate([jaw, skull[1:-1]])
    eye_y = cheek_y + identity.eye_line
    eyes = (_eye(identity, -1, eye_y, actions), _eye(identity, +1, eye_y, actions))
    right_brow, right_width = _brow(identity, -1, eye_y, eyes[0], actions)
    left_brow, left_width = _brow(identity, +1, eye_y, eyes[1], actions)

    wrinkle = actions["AU09"]        # AU9 lifts and flares the alae
    rest_subnasale_y = eye_y + identity.nose_length
    subnasale_y = rest_subnasale_y - 0.05 * w * wrinkle
    nose_half = identity.nose_half_width * (1 + 0.18 * wrinkle)
    nose_top = eye_y - 0.25 * identity.eye_half_width
    nose_tip = subnasale_y - 0.1 * w
    bridge = np.stack([np.full(4, CENTRE_X), np.linspace(nose_top, nose_tip, 4)], axis=1)
    base_points = np.array([[-0.62, -0.16], [-0.3, -0.03], [0.0, 0.0], [0.3, -0.03], [0.62, -0.16]])
    base_points = base_points * (nose_half, w * 0.3) + (CENTRE_X, subnasale_y)
    nose_base = catmull_rom(base_points, 8)
    alae = tuple(
        cubic_bezier(base_points[k], base_points[k] + (side * 0.4 * nose_half, -0.02 * w),
                     (CENTRE_X + side * nose_half * 1.05, subnasale_y - 0.3 * w),
                     (CENTRE_X + side * nose_half * 0.7, subnasale_y - 0.42 * w),
                     np.linspace(0, 1, 17))
        for k, side in ((0, -1), (4, 1)))
    nostrils = tuple(
        np.array([CENTRE_X + min(side * 0.2, side * 0.55) * nose_half, subnasale_y - 0.1 * w,
                  CENTRE_X + max(side * 0.2, side * 0.55) * nose_half, subnasale_y - 0.035 * w])
        for side in (-1, 1))

    chin_rest_y = cheek_y + identity.jaw_height
    stomion_y = rest_subnasale_y + identity.mouth_height * (chin_rest_y - rest_subnasale_y)
    u = np.linspace(-1.0, 1.0, 41)
    mouth = _mouth(identity, stomion_y, actions, jaw_drop, u)
    lip_points = lambda curve, us: np.stack(  # noqa: E731 - sample a lip curve at positions us
        [np.interp(us, u, curve[:, 0]), np.interp(us, u, curve[:, 1])], axis=1)
    inner_corners = (lip_points(mouth.upper_inner, [-_INNER_CORNER_U, _INNER_CORNER_U])
                     + lip_points(mouth.lower_inner, [-_INNER_CORNER_U, _INNER_CORNER_U])) / 2

    landmarks = np.concatenate([
        resample_by_arc_length(jaw, 17),
        right_brow[_BROW_SAMPLES],
        left_brow[_BROW_SAMPLES],
        bridge,
        base_points,
        _eye_landmarks(eyes[0], -1),
        _eye_landmarks(eyes[1], +1),
        lip_points(mouth.upper_outer, _OUTER_UPPER_U),
        lip_points(mouth.lower_outer, _OUTER_LOWER_U),
        inner_corners[:1],
        lip_points(mouth.upper_inner, _INNER_UPPER_U),
        inner_corners[1:],
        lip_points(mouth.lower_inner, _INNER_LOWER_U),
    ])
    assert landmarks.shape == (68, 2), landmarks.shape
    return FaceLayout(
        outline=outline, jaw=jaw, cheek_y=cheek_y, crown_y=cheek_y - identity.crown_height,
        chin_y=float(jaw[:, 1].max()), eye_y=eye_y, brows=(right_brow, left_brow),
        brow_widths=(right_width, left_width), eyes=eyes, nose_bridge=bridge,
        nose_base=nose_base, alae=alae, nostrils=nostrils, mouth=mouth,
        landmarks=landmarks, actions=dict(actions))
