"""FACS action units: their names, the emotion prototypes, and valence-arousal -> AU intensities.

The basic emotions are drawn as their published action-unit prototypes; any other VA target
blends the two prototypes on either side of its angle and scales the blend by its intensity.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from stimgen.errors import StimgenError


class ExpressionRangeError(StimgenError, ValueError):
    """A valence or arousal outside the circumplex square [-1, 1]."""


class UnknownExpressionError(StimgenError, ValueError):
    """A prototype name the schematic face does not know."""


@dataclass(frozen=True)
class ActionUnit:
    """One FACS action unit the schematic face can show, and what it moves there."""

    name: str            # FACS name (Ekman, Friesen & Hager 2002)
    effect: str          # what the schematic face draws for it, at intensity 1


#: The action units drawn, by column name (two-digit FACS number), each intensity in [0, 1].
#: FACS scores intensity A (trace) ... E (maximum); stimgen reads A, B, C, D, E as 0.2, 0.4,
#: 0.6, 0.8, 1.0 (``FACS_INTENSITY``). Each effect follows the appearance changes the FACS
#: manual describes for the unit (Ekman, Friesen & Hager 2002); see docs/backends-schematic.md.
ACTION_UNITS: dict[str, ActionUnit] = {
    "AU01": ActionUnit("inner brow raiser", "inner brow ends rise, the brow slants up toward the "
                                            "nose; horizontal lines in the middle of the "
                                            "forehead"),
    "AU02": ActionUnit("outer brow raiser", "outer brow ends rise, the brow arches; horizontal "
                                            "lines across the forehead; with AU1 the whole "
                                            "brow rises higher and curves"),
    "AU04": ActionUnit("brow lowerer", "brows lowered and drawn together, the inner ends most, "
                                       "so they slant down toward the nose; vertical furrows "
                                       "between the brows; the upper lid is narrowed from "
                                       "above"),
    "AU05": ActionUnit("upper lid raiser", "upper lid retracted: white shows above the iris "
                                           "(a line at B, a band at E), the lid fold shrinks"),
    "AU06": ActionUnit("cheek raiser", "cheeks rise and the lower lid is pushed up; crow's-feet "
                                       "lines at the outer eye corners"),
    "AU07": ActionUnit("lid tightener", "lower lid raised and straightened over the bottom of "
                                        "the iris, a bulge under it; the eye narrows"),
    "AU09": ActionUnit("nose wrinkler", "wrinkles across the root and along the sides of the "
                                        "nose; alae raised and flared; upper lip raised; inner "
                                        "brows pulled down (less than AU4, and not together); "
                                        "lower lids pushed up, the skin below them bagged"),
    "AU10": ActionUnit("upper lip raiser", "upper lip raised, its sides too (a squarer mouth), "
                                           "baring the upper teeth; nasolabial furrows deepened"),
    "AU12": ActionUnit("lip corner puller", "mouth corners pulled up and out; nasolabial folds"),
    "AU14": ActionUnit("dimpler, unilateral", "on the subject's right side only (R14): the mouth "
                                              "corner tightened inward and lifted, a dimple "
                                              "beside it"),
    "AU15": ActionUnit("lip corner depressor", "mouth corners pulled down, the lips bent into an "
                                               "arch"),
    "AU16": ActionUnit("lower lip depressor", "lower lip pulled down and a little sideways, "
                                              "parting the lips and baring the lower teeth"),
    "AU17": ActionUnit("chin raiser", "lower lip pushed up, chin boss wrinkles"),
    "AU20": ActionUnit("lip stretcher", "lips pulled sideways into a wide, flat, tense mouth; "
                                        "the corners pulled back and slightly down, lips "
                                        "thinned; with the lips parted both rows of teeth show"),
    "AU23": ActionUnit("lip tightener", "lips narrowed, thinned and pressed into a firm line"),
    "AU25": ActionUnit("lips part", "lips part"),
    "AU26": ActionUnit("jaw drop", "jaw lowers, the lower face lengthens; the relaxed lips "
                                   "open into a rounder, narrower mouth"),
    "AU43": ActionUnit("eyes closed", "upper lids droop toward closed (sleepiness, low arousal)"),
}
#: FACS intensity letters as stimgen's 0-1 intensities (A trace ... E maximum, equal steps).
FACS_INTENSITY: dict[str, float] = {"A": 0.2, "B": 0.4, "C": 0.6, "D": 0.8, "E": 1.0}
AU_NAMES: tuple[str, ...] = tuple(ACTION_UNITS)


@dataclass(frozen=True)
class Prototype:
    """A named expression: the action units it shows at full intensity."""

    name: str                   # emotion key, e.g. "anger"
    units: dict[str, float]     # AU column -> intensity at expression intensity 1
    source: str                 # where the combination comes from


_EFH = "Ekman, Friesen & Hager (2002), FACS Investigator's Guide, Table 10-1"

#: The basic-emotion prototypes: each is one combination that Ekman, Friesen & Hager (2002,
#: Investigator's Guide, Table 10-1, the EMFACS emotion predictions) list for the emotion,
#: cited as written there ("*": the unit may be at any intensity; a letter: that intensity,
#: see ``FACS_INTENSITY``); FACS scores parted lips (25) with every jaw drop (26) that parts
#: them, so "26" is drawn as 25+26. Intensities the table leaves open are stimgen's choice.
#: Two low-arousal states that FACS has no prototype for are stimgen's own.
PROTOTYPES: dict[str, Prototype] = {p.name: p for p in (
    Prototype("happiness", {"AU06": 0.8, "AU12": 1.0}, _EFH + ", happiness: 6+12*"),
    Prototype("surprise", {"AU01": 1.0, "AU02": 1.0, "AU05": FACS_INTENSITY["B"], "AU25": 1.0,
                           "AU26": 1.0},
              _EFH + ", surprise: 1+2+5B+26 (5B drawn at B = 0.4)"),
    Prototype("anger", {"AU04": 1.0, "AU05": 0.6, "AU07": 0.8, "AU10": 0.7, "AU23": 1.0,
                        "AU25": 1.0},
              _EFH + ", anger: 4+5*+7+10*+23+25, 26 (drawn with 25)"),
    Prototype("fear", {"AU01": 1.0, "AU02": 0.7, "AU04": 0.7, "AU05": 1.0, "AU20": 1.0,
                       "AU25": 1.0, "AU26": 1.0},
              _EFH + ", fear: 1+2+4+5*+20*+25, 26 or 27 (drawn with 25 and 26)"),
    Prototype("disgust", {"AU09": 1.0, "AU15": 0.6, "AU16": 0.8},
              _EFH + ", disgust: 9+16+15, 26 (drawn without the optional 26)"),
    Prototype("sadness", {"AU01": 1.0, "AU04": 0.6, "AU15": 1.0},
              _EFH + ", sadness: 1+4+15*"),
    Prototype("sleepiness", {"AU43": 0.9, "AU25": 0.2},
              "stimgen's low-arousal state (no FACS prototype): lids drooping, lips slack"),
    Prototype("relaxation", {"AU12": 0.35, "AU43": 0.45},
              "stimgen's low-arousal pleasant state (no FACS prototype): slight smile, "
              "lowered lids"),
    Prototype("contempt", {"AU14": 1.0},
              _EFH + ", contempt: R12A+R14A, a one-sided lip corner tightening and raise; "
              "stimgen draws it on the subject's right at full intensity (at trace intensity A "
              "the drawn face would barely differ from neutral), the corner raise of R12 "
              "included in the drawn AU14"),
)}

#: Where each prototype sits on the circumplex for blending, in degrees. The six basic
#: emotions sit at the exact angle of the circumplex term that names them (Happy 7.8,
#: Astonished 69.8, Angry 99, Afraid 116, Sad 207.5: stimgen/data/emostyle_circumplex_angles.csv;
#: disgust, which has no term, at the angle of Russell & Mehrabian's "disgusted", 150), so that
#: the named circumplex emotions show the prototypes.
#: Contempt is not on the circle: it is drawn only when named (``prototype="contempt"``), so
#: that its one-sided face never leaks into the blends of Miserable or Sad.
BLEND_ANGLES: dict[str, float] = {
    "happiness": 7.8, "surprise": 69.8, "anger": 99.0, "fear": 116.0, "disgust": 150.0,
    "sadness": 207.5, "sleepiness": 270.0, "relaxation": 318.0,
}


def check_va(valence: float, arousal: float) -> tuple[float, float]:
    """Return (valence, arousal) as floats, or raise ExpressionRangeError naming the bad value."""
    out = []
    for name, value in (("valence", valence), ("arousal", arousal)):
        value = float(value)
        if not math.isfinite(value) or not -1.0 <= value <= 1.0:
            raise ExpressionRangeError(
                f"{name} = {value!r} is outside the circumplex square [-1, 1]",
                hint="targets are intensity * (cos angle, sin angle) with intensity in (0, 1]")
        out.append(value)
    return out[0], out[1]


def prototype_units(name: str, intensity: float = 1.0) -> dict[str, float]:
    """Every AU intensity of prototype ``name`` at expression ``intensity`` in [0, 1].

    >>> prototype_units("happiness", 0.5)["AU12"]
    0.5
    """
    if name not in PROTOTYPES:
        raise UnknownExpressionError(f'unknown expression prototype "{name}"',
                                     hint=f"one of: {', '.join(PROTOTYPES)}")
    if not 0.0 <= intensity <= 1.0:
        raise ExpressionRangeError(f"intensity {intensity!r} is outside [0, 1]",
                                   hint="intensity is the norm of the VA target")
    units = PROTOTYPES[name].units
    return {au: intensity * units.get(au, 0.0) for au in AU_NAMES}


def _neighbours(angle: float) -> tuple[str, str, float]:
    """The prototypes before and after ``angle`` on the circle, and the weight of the second."""
    order = sorted(BLEND_ANGLES.items(), key=lambda item: item[1])
    for (first, a0), (second, a1) in zip(order, order[1:] + order[:1]):
        span = (a1 - a0) % 360.0
        offset = (angle - a0) % 360.0
        if offset <= span:
            return first, second, offset / span
    raise AssertionError("the blend angles cover the circle")   # pragma: no cover


def expression_units(valence: float, arousal: float, prototype: str | None = None
                     ) -> dict[str, float]:
    """AU intensities (see ``ACTION_UNITS``) for a VA target, or for a named prototype.

    Without ``prototype``: with intensity r = |(v, a)| and direction theta, the face shows

        r * ((1 - w) * P_before + w * P_after)

    where P_before, P_after are the prototypes on either side of theta (``BLEND_ANGLES``) and
    w the fraction of the way from one to the other; so the neutral face shows no action, a
    target at a prototype's angle shows exactly that prototype, intensity scales every unit,
    and the map is continuous. With ``prototype``: that prototype scaled by r (how a named
    basic emotion is drawn, whatever the direction of its published VA point).

    >>> units = expression_units(-0.1564, 0.9877)        # "Angry", 99 degrees
    >>> round(units["AU04"], 3), round(units["AU20"], 3)
    (1.0, 0.0)
    """
    valence, arousal = check_va(valence, arousal)
    radius = min(1.0, math.hypot(valence, arousal))
    if prototype is not None:
        return prototype_units(prototype, radius)
    if radius == 0.0:
        return {au: 0.0 for au in AU_NAMES}
    angle = math.degrees(math.atan2(arousal, valence)) % 360.0
    first, second, weight = _neighbours(angle)
    a, b = PROTOTYPES[first].units, PROTOTYPES[second].units
    return {au: radius * ((1.0 - weight) * a.get(au, 0.0) + weight * b.get(au, 0.0))
            for au in AU_NAMES}
