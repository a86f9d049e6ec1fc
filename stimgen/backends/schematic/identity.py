"""Who a schematic face is: every drawn parameter of one person, sampled from a seed.

Lengths are fractions of the image side (resolution-free); colours are sRGB tuples.
The same seed always gives the same identity, in every environment.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

Colour = tuple[int, int, int]

#: Monk Skin Tone scale, MST-1 (lightest) ... MST-10 (darkest), sRGB. Skin is sampled
#: continuously along this ramp so that identities span light to dark skin evenly.
MONK_SKIN_TONES: tuple[Colour, ...] = (
    (246, 237, 228), (243, 231, 219), (247, 234, 208), (234, 218, 186), (215, 189, 150),
    (160, 126, 86), (130, 92, 67), (96, 65, 52), (58, 49, 42), (41, 36, 32),
)

HAIR_STYLES = ("short", "long", "bob", "bun", "curly", "shaved", "bald")
_HAIR_STYLE_WEIGHTS = (0.24, 0.20, 0.13, 0.12, 0.15, 0.09, 0.07)

# name: (colour, weight for light skin, weight for dark skin)
_HAIR_COLOURS: dict[str, tuple[Colour, float, float]] = {
    "black":       ((28, 24, 22), 0.15, 0.65),
    "dark_brown":  ((58, 40, 30), 0.25, 0.25),
    "brown":       ((98, 68, 44), 0.22, 0.06),
    "light_brown": ((142, 108, 72), 0.12, 0.0),
    "auburn":      ((128, 62, 36), 0.08, 0.0),
    "blonde":      ((206, 170, 110), 0.13, 0.0),
    "grey":        ((168, 164, 160), 0.05, 0.04),
}

_IRIS_COLOURS: dict[str, tuple[Colour, float, float]] = {
    "dark_brown": ((62, 40, 28), 0.25, 0.75),
    "brown":      ((104, 66, 38), 0.25, 0.23),
    "hazel":      ((126, 100, 54), 0.14, 0.02),
    "green":      ((82, 118, 80), 0.10, 0.0),
    "blue":       ((78, 118, 164), 0.18, 0.0),
    "grey":       ((118, 132, 142), 0.08, 0.0),
}

_SHIRT_COLOURS: tuple[Colour, ...] = (
    (52, 64, 92), (46, 96, 98), (110, 48, 54), (86, 92, 58), (74, 74, 80),
    (196, 192, 182), (128, 96, 70), (66, 88, 130),
)


@dataclass(frozen=True)
class SchematicIdentity:
    """All the drawn parameters of one person. Lengths: fraction of the image side."""

    seed: int                       # the seed this identity was sampled from
    face_half_width: float          # half the face width at the cheekbones
    crown_height: float             # cheekbone line to top of skull
    jaw_height: float               # cheekbone line to chin
    jaw_squareness: float           # superellipse exponent of the jaw: 2 oval ... 3.4 square
    chin_taper: float               # 0 broad chin ... 0.4 narrow, pointed chin
    skin_tone: float                # position on the Monk ramp: 0 = MST-1 ... 1 = MST-10
    skin: Colour                    # skin colour
    hair_style: str                 # one of HAIR_STYLES
    hair: Colour                    # hair colour
    hair_volume: float              # how far hair stands off the skull
    hairline: float                 # hairline height above the eyes
    hair_part: float                # side of the parting: -1 image left ... +1 image right
    eye_spacing: float              # half the distance between the eye centres
    eye_half_width: float           # half the eye-fissure width
    eye_openness: float             # upper-lid height over eye half-width at rest
    eye_tilt: float                 # canthal tilt: outer corner above inner, fraction of eye width
    eye_line: float                 # eye-corner line below (+) the cheekbone line
    iris: Colour                    # iris colour
    brow_gap: float                 # brow centre line above the eye-corner line
    brow_thickness: float           # brow thickness at its inner end
    brow_arch: float                # extra height of the brow peak
    brow: Colour                    # brow colour
    nose_length: float              # eye line to nose tip
    nose_half_width: float          # half the width across the alae
    mouth_height: float             # stomion position between subnasale (0) and chin (1)
    mouth_half_width: float         # half the mouth width at rest
    upper_lip: float                # upper-lip thickness at the centre
    lower_lip: float                # lower-lip thickness at the centre
    lips: Colour                    # lip colour
    ear_size: float                 # ear height as a multiple of the default
    neck_half_width: float          # half the neck width
    shirt: Colour                   # colour of the clothing on the shoulders


def mix(a: Colour, b: Colour, t: float) -> Colour:
    """Colour ``t`` of the way from ``a`` to ``b`` (``t`` in [0, 1])."""
    return tuple(int(round(x + (y - x) * t)) for x, y in zip(a, b))


def shade(colour: Colour, factor: float) -> Colour:
    """``colour`` darkened (factor < 1) or lightened (factor > 1), clipped to [0, 255]."""
    return tuple(int(min(255, max(0, round(c * factor)))) for c in colour)


def luminance(colour: Colour) -> float:
    """Relative luminance proxy (Rec. 601 luma) of an sRGB colour, 0-255."""
    r, g, b = colour
    return 0.299 * r + 0.587 * g + 0.114 * b


def crease(colour: Colour, factor: float) -> Colour:
    """A fold or line colour on ``colour``: ``shade(colour, factor)``, but at least a fixed
    absolute step darker, so features stay visible on the darkest skin tones."""
    step = 90.0 * (1.0 - factor)
    return tuple(int(max(0, min(c * factor, c - step))) for c in colour)


def skin_from_tone(tone: float) -> Colour:
    """Colour at position ``tone`` in [0, 1] along the Monk skin-tone ramp."""
    position = float(np.clip(tone, 0.0, 1.0)) * (len(MONK_SKIN_TONES) - 1)
    low = int(np.floor(position))
    high = min(low + 1, len(MONK_SKIN_TONES) - 1)
    return mix(MONK_SKIN_TONES[low], MONK_SKIN_TONES[high], position - low)


def _choose(rng: np.random.Generator, table: dict[str, tuple[Colour, float, float]],
            darkness: float) -> Colour:
    """A colour from ``table`` with weights interpolated between light and dark skin."""
    weights = np.array([(1 - darkness) * light + darkness * dark
                        for _, light, dark in table.values()])
    name = list(table)[rng.choice(len(table), p=weights / weights.sum())]
    return table[name][0]


def sample_identity(seed: int) -> SchematicIdentity:
    """Draw one person from ``seed`` with ``numpy.random.default_rng(seed)``.

    Parameters are sampled in a fixed order, so a seed maps to the same identity forever
    (changing that order is a breaking change to every stimulus set).

    >>> sample_identity(7) == sample_identity(7)
    True
    """
    rng = np.random.default_rng(int(seed))
    u = rng.uniform
    half_width = u(0.19, 0.225)
    tone = u(0.0, 1.0)
    darkness = float(np.clip((tone - 0.35) / 0.3, 0.0, 1.0))
    skin = skin_from_tone(tone)
    hair_style = HAIR_STYLES[rng.choice(len(HAIR_STYLES), p=_HAIR_STYLE_WEIGHTS)]
    hair = _choose(rng, _HAIR_COLOURS, darkness)
    iris = _choose(rng, _IRIS_COLOURS, darkness)
    brow = shade(hair, 0.8) if sum(hair) < 420 else shade(hair, 0.62)
    if luminance(brow) > 0.7 * luminance(skin):      # brows must read darker than the skin
        brow = crease(mix(brow, skin, 0.5), 0.5)
    lips = shade(mix(skin, (176, 84, 92), u(0.28, 0.42)), u(0.8, 0.9))
    return SchematicIdentity(
        seed=int(seed),
        face_half_width=half_width,
        crown_height=half_width * u(1.08, 1.2),
        jaw_height=half_width * u(1.3, 1.5),
        jaw_squareness=u(2.0, 3.2),
        chin_taper=u(0.08, 0.32),
        skin_tone=tone,
        skin=skin,
        hair_style=hair_style,
        hair=hair,
        hair_volume=half_width * u(0.08, 0.2),
        hairline=half_width * u(0.68, 0.85),
        hair_part=u(-1.0, 1.0),
        eye_spacing=half_width * u(0.41, 0.46),
        eye_half_width=half_width * u(0.21, 0.24),
        eye_openness=u(0.36, 0.46),
        eye_tilt=u(-0.02, 0.08),
        eye_line=half_width * u(-0.08, 0.02),
        iris=iris,
        brow_gap=half_width * u(0.2, 0.26),
        brow_thickness=half_width * u(0.07, 0.11),
        brow_arch=half_width * u(0.02, 0.06),
        brow=brow,
        nose_length=half_width * u(0.6, 0.74),
        nose_half_width=half_width * u(0.17, 0.23),
        mouth_height=u(0.3, 0.37),
        mouth_half_width=half_width * u(0.36, 0.44),
        upper_lip=half_width * u(0.06, 0.1),
        lower_lip=half_width * u(0.08, 0.13),
        lips=lips,
        ear_size=u(0.85, 1.15),
        neck_half_width=half_width * u(0.5, 0.62),
        shirt=_SHIRT_COLOURS[rng.integers(len(_SHIRT_COLOURS))],
    )
