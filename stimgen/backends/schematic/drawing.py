"""Pixels of a schematic face: draws a FaceLayout with Pillow, supersampled and anti-aliased.

Painter's order, back to front: back hair, clothes and neck, ears, face, wrinkles,
front hair, brows, eyes, nose, mouth. Every shape is a polygon, ellipse or polyline.
"""
from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from stimgen.backends.schematic.geometry import CENTRE_X, EyeLayout, FaceLayout, hairline
from stimgen.backends.schematic.identity import Colour, SchematicIdentity, crease, mix, shade

SCLERA: Colour = (238, 234, 228)
TEETH: Colour = (236, 232, 220)
MOUTH_INSIDE: Colour = (74, 30, 34)
LASHES: Colour = (38, 30, 28)
EARS_HIDDEN_BY = ("long", "bob", "curly")


class Canvas:
    """A supersampled RGB image whose drawing calls take image-side units (0..1)."""

    def __init__(self, pixels: int, background: Colour):
        self.scale = float(pixels)                             # pixels per image side
        self.image = Image.new("RGB", (pixels, pixels), tuple(background))
        self.draw = ImageDraw.Draw(self.image)

    def flat(self, points: np.ndarray) -> list[float]:
        return (np.asarray(points) * self.scale).ravel().tolist()

    def px(self, length: float) -> int:
        """A stroke width of ``length`` image sides, at least one pixel."""
        return max(1, int(round(length * self.scale)))

    def polygon(self, points: np.ndarray, fill: Colour, outline: Colour | None = None,
                width: float = 0.0):
        self.draw.polygon(self.flat(points), fill=fill)
        if outline is not None:
            closed = np.concatenate([points, points[:1]])
            self.line(closed, outline, width)

    def line(self, points: np.ndarray, fill: Colour, width: float):
        self.draw.line(self.flat(points), fill=fill, width=self.px(width), joint="curve")

    def ellipse(self, centre, radii, fill: Colour, outline: Colour | None = None,
                width: float = 0.0):
        (x, y), (rx, ry) = centre, radii
        box = [(x - rx) * self.scale, (y - ry) * self.scale,
               (x + rx) * self.scale, (y + ry) * self.scale]
        self.draw.ellipse(box, fill=fill, outline=outline,
                          width=self.px(width) if outline is not None else 0)


def _arc(centre_x: float, centre_y: float, rx: float, ry: float, start: float, stop: float,
         count: int = 48) -> np.ndarray:
    """Points of an elliptical arc; angles in radians, y up (so pi/2 is the top)."""
    angles = np.linspace(start, stop, count)
    return np.stack([centre_x + rx * np.cos(angles), centre_y - ry * np.sin(angles)], axis=1)


def _offset_curve(curve: np.ndarray, distance) -> np.ndarray:
    """``curve`` moved ``distance`` along its left-hand normal (up for a left->right curve)."""
    tangent = np.gradient(curve, axis=0)
    tangent /= np.linalg.norm(tangent, axis=1, keepdims=True) + 1e-12
    normal = np.stack([tangent[:, 1], -tangent[:, 0]], axis=1)
    return curve + normal * np.asarray(distance, dtype=float).reshape(-1, 1)


# ----------------------------------------------------------------------------- hair

def _hair_cap(identity: SchematicIdentity, face: FaceLayout, volume: float,
              side_y: float) -> np.ndarray:
    """Polygon of the hair covering the skull: outer silhouette, then the hairline
    (``geometry.hairline``: a bob's fringe is flatter and lower)."""
    w = identity.face_half_width
    rx, ry = w + volume, identity.crown_height + 1.2 * volume
    start = np.arcsin(np.clip((face.cheek_y - side_y) / ry, -1.0, 1.0))
    outer = _arc(CENTRE_X, face.cheek_y, rx, ry, start, np.pi - start, 64)   # right -> left
    u = np.linspace(-1.0, 1.0, 41)                                           # left -> right
    front = np.stack([CENTRE_X + 0.97 * w * u, hairline(identity, face.eye_y, u)], axis=1)
    return np.concatenate([outer, front])


def _draw_back_hair(canvas: Canvas, identity: SchematicIdentity, face: FaceLayout):
    """Hair seen behind the head and neck (long, bob, bun, curly)."""
    w, v, style = identity.face_half_width, identity.hair_volume, identity.hair_style
    crown_to_cheek = face.cheek_y - face.crown_y
    if style in ("long", "bob"):
        bottom = face.chin_y + 0.16 if style == "long" else face.chin_y - 0.03
        half = w + v + (0.035 if style == "long" else 0.02)
        top = face.cheek_y - 0.02
        canvas.ellipse((CENTRE_X, face.cheek_y), (w + v + 0.01, crown_to_cheek + 1.2 * v + 0.01),
                       identity.hair)
        box = [(CENTRE_X - half) * canvas.scale, top * canvas.scale,
               (CENTRE_X + half) * canvas.scale, bottom * canvas.scale]
        canvas.draw.rounded_rectangle(box, radius=canvas.px(0.06), fill=identity.hair)
    elif style == "curly":
        rx, ry = w + 2.2 * v + 0.02, crown_to_cheek + 2.0 * v + 0.02
        centre_y = face.cheek_y + 0.02
        canvas.ellipse((CENTRE_X, centre_y), (rx, ry), identity.hair)
        bumps = _arc(CENTRE_X, centre_y, rx, ry, -0.45, np.pi + 0.45, 22)
        for x, y in bumps:
            canvas.ellipse((x, y), (0.026, 0.026), identity.hair)
    elif style == "bun":
        r = 0.05 + 0.4 * v
        canvas.ellipse((CENTRE_X, face.crown_y - 0.6 * r), (r * 1.1, r), identity.hair)


def _draw_front_hair(canvas: Canvas, identity: SchematicIdentity, face: FaceLayout):
    """Hair over the forehead and temples, with a few strands for texture."""
    w, v, style = identity.face_half_width, identity.hair_volume, identity.hair_style
    hairline_y = face.eye_y - identity.hairline
    if style == "bald":
        return
    volume = {"short": v, "long": v * 0.7, "bob": v * 0.8, "bun": 0.45 * v, "curly": 1.4 * v,
              "shaved": 0.02 * w}[style]
    side_y = face.eye_y - (0.02 if style in ("long", "bob") else 0.06 * w)
    colour = mix(identity.skin, identity.hair, 0.55) if style == "shaved" else identity.hair
    cap = _hair_cap(identity, face, volume, side_y)
    canvas.polygon(cap, colour)
    if style == "shaved":
        return
    if style == "curly":   # ringlets soften the hairline
        for x, y in cap[-41:][2:-2:3]:
            canvas.ellipse((x, y - 0.006), (0.02, 0.018), identity.hair)
        return
    strand = shade(identity.hair, 0.72) if sum(identity.hair) > 150 else mix(identity.hair, (90, 80, 75), 0.4)
    top = np.array([CENTRE_X + identity.hair_part * 0.45 * 0.97 * w, face.crown_y - 0.6 * volume])
    t = np.linspace(0, 1, 12)[:, None]
    for k in range(-3, 4):   # strands fan out from the parting
        end = np.array([CENTRE_X + k * 0.27 * w, hairline_y + 0.01 + abs(k) * 0.045 * w])
        mid = (top + end) / 2 + (k * 0.05 * w, -0.03 * w)
        curve = (1 - t) ** 2 * top + 2 * (1 - t) * t * mid + t**2 * end
        canvas.line(curve[2:-1], strand, 0.0025)


# ----------------------------------------------------------------------------- body & face

def _draw_body(canvas: Canvas, identity: SchematicIdentity, face: FaceLayout):
    """Shoulders in clothing, the neck, and the chin's shadow on the neck."""
    w, neck = identity.face_half_width, identity.neck_half_width
    shoulder_y = face.chin_y + 0.07
    canvas.ellipse((CENTRE_X, shoulder_y + 0.3), (2.5 * w, 0.32), identity.shirt)
    neck_skin = shade(identity.skin, 0.93)
    top = face.cheek_y + 0.3 * identity.jaw_height
    neckline = _arc(CENTRE_X, shoulder_y + 0.02, neck * 1.25, 0.07, np.pi, 2 * np.pi, 24)
    canvas.polygon(np.concatenate([[(CENTRE_X - neck, top)], [(CENTRE_X - neck * 1.1, shoulder_y)],
                                   neckline, [(CENTRE_X + neck * 1.1, shoulder_y)],
                                   [(CENTRE_X + neck, top)]]), neck_skin)
    under_chin = face.jaw[np.abs(face.jaw[:, 0] - CENTRE_X) < neck * 1.02]
    shadow = np.concatenate([under_chin, (under_chin + (0, 0.03))[::-1]])
    canvas.polygon(shadow, crease(identity.skin, 0.82))


def _draw_ears(canvas: Canvas, identity: SchematicIdentity, face: FaceLayout):
    w = identity.face_half_width
    nose_y = face.nose_base[:, 1].max()
    height = (nose_y - face.eye_y) * 0.62 * identity.ear_size
    centre_y = (face.eye_y + nose_y) / 2 - 0.01
    for side in (-1, 1):
        x = CENTRE_X + side * (w * 0.97)
        canvas.ellipse((x, centre_y), (0.45 * height, height), shade(identity.skin, 0.97),
                       crease(identity.skin, 0.78), 0.003)
        canvas.ellipse((x + side * 0.12 * height, centre_y), (0.2 * height, 0.62 * height),
                       crease(identity.skin, 0.86))


def _draw_wrinkles(canvas: Canvas, identity: SchematicIdentity, face: FaceLayout):
    """Skin folds that make the action units legible, as the FACS manual describes them:
    forehead lines (AU1/2), vertical furrows between the brows (AU4), crow's feet (AU6), a
    bulge under the tightened lower lid (AU7), wrinkles across and along the nose (AU9),
    nasolabial furrows (AU12, AU10, AU9), the dimple (AU14), chin-boss wrinkles (AU17) and
    tired lids (AU43). Strokes are at least two pixels wide at 256 px."""
    w, a, skin = identity.face_half_width, face.actions, identity.skin
    fold = crease(skin, 0.6)
    brow_top = min(face.brows[0][:, 1].min(), face.brows[1][:, 1].min())
    raise_ = max(a["AU02"], 0.8 * a["AU01"])
    if raise_ > 0.2:
        strength = min(1.0, (raise_ - 0.2) / 0.6)
        half = 0.42 * w if a["AU02"] >= a["AU01"] else 0.3 * w
        for k in range(3 if raise_ > 0.6 else 2):
            y = brow_top - 0.12 * w - k * 0.075 * w
            canvas.line(_arc(CENTRE_X, y + 0.25 * w, half, 0.25 * w, np.pi / 2 - 0.9 * half / w,
                             np.pi / 2 + 0.9 * half / w, 24), mix(skin, fold, 0.8 * strength),
                        0.0045)
    lower = a["AU04"]          # AU9's wrinkles run across the nose root instead (below)
    if lower > 0.2:
        strength = min(1.0, (lower - 0.2) / 0.5)
        inner_y = max(face.brows[0][-1, 1], face.brows[1][0, 1])
        for side in (-1, 1):
            x = CENTRE_X + side * 0.045 * w
            canvas.line(np.array([(x - side * 0.01 * w, inner_y - 0.1 * w),
                                  (x, inner_y + 0.02 * w)]),
                        mix(skin, fold, 0.9 * strength), 0.0045)
    if a["AU06"] > 0.3:
        strength = min(1.0, (a["AU06"] - 0.3) / 0.4)
        for eye, side in zip(face.eyes, (-1, 1)):
            corner = eye.upper[0]
            for k, tilt in enumerate((-0.35, 0.0, 0.35)):
                start = corner + (side * 0.05 * w, 0.01 * w * tilt)
                end = start + (side * 0.09 * w, 0.09 * w * tilt + 0.01 * w)
                canvas.line(np.array([start, end]), mix(skin, fold, 0.7 * strength), 0.0035)
    if a["AU07"] > 0.3:
        strength = min(1.0, (a["AU07"] - 0.3) / 0.4)
        for eye in face.eyes:
            bulge = eye.lower[4:-4] + (0, 0.22 * identity.eye_half_width)
            canvas.line(bulge, mix(skin, fold, 0.6 * strength), 0.003)
    if a["AU09"] > 0.2:
        strength = min(1.0, (a["AU09"] - 0.2) / 0.5)
        for eye in face.eyes:   # the infraorbital triangle pushed up bags the skin under the eye
            bag = eye.lower[3:-3] + (0, 0.3 * identity.eye_half_width)
            canvas.line(bag, mix(skin, fold, 0.7 * strength), 0.0035)
        top = face.nose_bridge[0, 1] + 0.03 * w
        for k in range(3):
            y = top + k * 0.05 * w
            canvas.line(_arc(CENTRE_X, y + 0.08 * w, 0.11 * w, 0.06 * w, np.pi / 2 - 0.9,
                             np.pi / 2 + 0.9, 12), mix(skin, fold, 0.95 * strength), 0.0045)
        for ala, side in zip(face.alae, (-1, 1)):   # wrinkles along the sides of the nose
            for k in range(2):
                start = ala[-1] + (side * (0.02 + 0.04 * k) * w, -(0.06 + 0.04 * k) * w)
                end = start + (side * 0.09 * w, 0.02 * w)
                canvas.line(np.array([start, end]), mix(skin, fold, 0.8 * strength), 0.0035)
    fold_depth = max(a["AU12"], a["AU10"], 0.9 * a["AU09"])
    if fold_depth > 0.05:
        # a smile's fold curves down past the raised corner; the upper-lip raisers' fold
        # (AU9, AU10) ends beside the corner
        below = 0.05 * w * a["AU12"] / fold_depth
        corners = face.mouth.upper_outer[[0, -1]]
        for side, corner in zip((-1, 1), corners):
            start = (CENTRE_X + side * identity.nose_half_width * 1.15, face.nose_base[0, 1] - 0.1 * w)
            end = corner + (side * 0.06 * w, below)
            mid = ((start[0] + end[0]) / 2 + side * 0.07 * w, (start[1] + end[1]) / 2)
            t = np.linspace(0, 1, 16)[:, None]
            curve = (1 - t) ** 2 * np.array(start) + 2 * (1 - t) * t * np.array(mid) + t**2 * end
            canvas.line(curve, mix(skin, fold, min(1.0, 1.3 * fold_depth)), 0.004)
    if a["AU14"] > 0.2:
        # the dimple beside the tightened corner (subject's right = image left)
        corner = face.mouth.upper_outer[0]
        canvas.line(_arc(corner[0] - 0.03 * w, corner[1], 0.025 * w, 0.045 * w, np.pi / 2 + 0.3,
                         3 * np.pi / 2 - 0.3, 10), mix(skin, fold, 0.8 * min(1.0, a["AU14"])),
                    0.0035)
    if a["AU17"] > 0.2:
        lip = face.mouth.lower_outer
        below = lip[len(lip) // 2] + (0, 0.07 * w)
        canvas.line(_arc(below[0], below[1] - 0.05 * w, 0.12 * w, 0.05 * w, np.pi + 0.5,
                         2 * np.pi - 0.5, 12), mix(skin, fold, 0.7 * min(1.0, a["AU17"] / 0.6)),
                    0.0035)
    if a["AU43"] > 0.15:
        for eye in face.eyes:
            bag = eye.lower[3:-3] + (0, 0.35 * identity.eye_half_width)
            canvas.line(bag, mix(skin, fold, 0.6 * min(1.0, a["AU43"])), 0.0025)


def _draw_cheeks(canvas: Canvas, identity: SchematicIdentity, face: FaceLayout):
    w = identity.face_half_width
    blush = mix(identity.skin, (214, 96, 100), 0.06 + 0.12 * face.actions["AU06"])
    y = face.nose_base[0, 1] - 0.08 * w - 0.06 * w * face.actions["AU06"]
    for side in (-1, 1):
        canvas.ellipse((CENTRE_X + side * identity.eye_spacing * 1.1, y), (0.2 * w, 0.12 * w), blush)


# ----------------------------------------------------------------------------- features

def _draw_brows(canvas: Canvas, identity: SchematicIdentity, face: FaceLayout):
    for line, width in zip(face.brows, face.brow_widths):
        upper = _offset_curve(line, width / 2)
        lower = _offset_curve(line, -width / 2)
        canvas.polygon(np.concatenate([upper, lower[::-1]]), identity.brow)


def _draw_eye(canvas: Canvas, identity: SchematicIdentity, eye: EyeLayout):
    """Sclera, iris and pupil clipped to the lid aperture, then lids, lashes and crease."""
    skin = identity.skin
    canvas.line(eye.fold[3:-3], crease(skin, 0.8), 0.0025)
    aperture = np.concatenate([eye.upper, eye.lower[::-1]]) * canvas.scale
    x0, y0 = np.floor(aperture.min(axis=0)).astype(int) - 2
    x1, y1 = np.ceil(aperture.max(axis=0)).astype(int) + 2
    size = (int(x1 - x0), int(y1 - y0))
    mask = Image.new("L", size, 0)
    ImageDraw.Draw(mask).polygon((aperture - (x0, y0)).ravel().tolist(), fill=255)
    patch = Image.new("RGB", size, mix(SCLERA, skin, 0.08))
    draw = ImageDraw.Draw(patch)
    cx, cy = eye.iris_centre * canvas.scale - (x0, y0)
    r = eye.iris_radius * canvas.scale
    draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=identity.iris,
                 outline=shade(identity.iris, 0.55), width=max(1, int(r * 0.12)))
    p = 0.42 * r
    draw.ellipse([cx - p, cy - p, cx + p, cy + p], fill=(16, 12, 12))
    g = 0.2 * r
    draw.ellipse([cx + 0.25 * r - g, cy - 0.35 * r - g, cx + 0.25 * r + g, cy - 0.35 * r + g],
                 fill=(250, 250, 250))
    canvas.image.paste(patch, (int(x0), int(y0)), mask)
    canvas.line(eye.lower, crease(skin, 0.62), 0.0025)
    canvas.line(eye.upper, LASHES, 0.0055)


def _draw_nose(canvas: Canvas, identity: SchematicIdentity, face: FaceLayout):
    skin, w = identity.skin, identity.face_half_width
    canvas.line(face.nose_bridge[1:], mix(skin, (255, 255, 255), 0.1), 0.012)
    for side in (-1, 1):
        x = CENTRE_X + side * 0.075 * w
        shadow = np.array([(x, face.nose_bridge[0, 1] + 0.08 * w),
                           (x + side * 0.01 * w, face.alae[0][-1, 1])])
        canvas.line(shadow, shade(skin, 0.92), 0.006)
    for box in face.nostrils:
        centre = (box[:2] + box[2:]) / 2
        canvas.ellipse(centre, (box[2:] - box[:2]) / 2, crease(skin, 0.42))
    line = crease(skin, 0.66)
    for ala in face.alae:
        canvas.line(ala, line, 0.003)
    canvas.line(face.nose_base, line, 0.003)


def _draw_mouth(canvas: Canvas, identity: SchematicIdentity, face: FaceLayout):
    mouth, lips = face.mouth, identity.lips
    gap = mouth.lower_inner[:, 1] - mouth.upper_inner[:, 1]
    if gap.max() > 0.002:
        canvas.polygon(np.concatenate([mouth.upper_inner, mouth.lower_inner[::-1]]), MOUTH_INSIDE)
        inside = slice(len(gap) // 8, len(gap) - len(gap) // 8)
        xs = mouth.upper_inner[inside, 0]
        upper_edge = np.minimum(mouth.upper_inner[inside, 1] + mouth.upper_teeth,
                                mouth.lower_inner[inside, 1])
        canvas.polygon(np.concatenate([mouth.upper_inner[inside],
                                       np.stack([xs, upper_edge], axis=1)[::-1]]), TEETH)
        if mouth.lower_teeth > 0.001:
            lower_edge = np.maximum(mouth.lower_inner[inside, 1] - mouth.lower_teeth, upper_edge)
            canvas.polygon(np.concatenate([np.stack([xs, lower_edge], axis=1),
                                           mouth.lower_inner[inside][::-1]]), TEETH)
    canvas.polygon(np.concatenate([mouth.upper_outer, mouth.upper_inner[::-1]]), shade(lips, 0.95))
    canvas.polygon(np.concatenate([mouth.lower_inner, mouth.lower_outer[::-1]]), lips)
    highlight = mouth.lower_inner[14:-14] + (mouth.lower_outer[14:-14] - mouth.lower_inner[14:-14]) * 0.45
    canvas.line(highlight, mix(lips, (255, 255, 255), 0.12), 0.006)
    canvas.line(mouth.upper_inner, shade(lips, 0.55), 0.003)
    if gap.max() > 0.002:
        canvas.line(mouth.lower_inner, shade(lips, 0.7), 0.002)


def draw_face(identity: SchematicIdentity, face: FaceLayout, size: int, supersample: int,
              background: Colour) -> Image.Image:
    """Render ``face`` at ``size`` x ``size`` pixels: draw ``supersample`` times larger,
    then average each ``supersample`` x ``supersample`` block (box-filter anti-aliasing;
    as smooth as Lanczos for flat shapes at a tenth of the cost)."""
    canvas = Canvas(size * supersample, background)
    _draw_back_hair(canvas, identity, face)
    _draw_body(canvas, identity, face)
    if identity.hair_style not in EARS_HIDDEN_BY:
        _draw_ears(canvas, identity, face)
    canvas.polygon(face.outline, identity.skin, crease(identity.skin, 0.8), 0.0035)
    _draw_cheeks(canvas, identity, face)
    _draw_wrinkles(canvas, identity, face)
    _draw_front_hair(canvas, identity, face)
    _draw_brows(canvas, identity, face)
    for eye in face.eyes:
        _draw_eye(canvas, identity, eye)
    _draw_nose(canvas, identity, face)
    _draw_mouth(canvas, identity, face)
    return canvas.image if supersample == 1 else canvas.image.reduce(supersample)
