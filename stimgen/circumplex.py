"""The valence-arousal circumplex: named emotions, angle/intensity <-> VA, weak regions.

Conventions (see docs/metrics.md): VA in [-1, 1]^2; angle in degrees counter-clockwise
from +valence (0 pleasant, 90 high arousal, 180 unpleasant, 270 low arousal);
intensity r in (0, 1]; the target of (angle, r) is r * (cos angle, sin angle).
"""
from __future__ import annotations

import csv
import difflib
import math
import re
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

import numpy as np

#: Default weak region of published EmoStyle (bored ... serene), degrees.
WEAK_REGION_DEFAULT: tuple[float, float] = (242.0, 329.0)
#: The backend whose weakness the default region describes.
WEAK_REGION_BACKEND = "emostyle"


def weak_region_flagged(setting: str, backend: str) -> bool:
    """Whether targets in the weak region are flagged as a reason to look at a stimulus.

    ``setting`` is the protocol's ``validation.flag_weak_region``: ``always``, ``never`` or
    ``auto``, which flags only on the backend the region was measured on (emostyle). Other
    backends still record the ``weak_region`` column.

    >>> weak_region_flagged("auto", "emostyle"), weak_region_flagged("auto", "schematic")
    (True, False)
    >>> weak_region_flagged("always", "schematic")
    True
    """
    if setting not in ("auto", "always", "never"):
        raise ValueError(f"flag_weak_region must be auto, always or never, not {setting!r}")
    return setting == "always" or (setting == "auto" and backend == WEAK_REGION_BACKEND)

ANCHORS_FILE = "emostyle_28x4_per_emotion_mae.csv"
#: Where the shipped 28 x 4 table and the weak region come from. Not Azari & Lim (WACV 2024),
#: the EmoStyle paper, which reports FID, LPIPS, ArcFace identity and a VA RMSE only.
PUBLISHED_TABLE_CITATION = (
    "Darne, C. G. D., Quan, C. & Luo, Z. (2025). Generating Synthetic Facial Expression "
    "Images Using EmoStyle. Applied Sciences, 15(19), 10636. "
    "https://doi.org/10.3390/app151910636")
#: The rater behind the published figures: EmoNet, the critic EmoStyle was trained against.
PUBLISHED_TABLE_RATER = "EmoNet"


@dataclass(frozen=True)
class NamedEmotion:
    """One of the 28 circumplex terms of the EmoStyle evaluation protocol."""

    name: str          # display name as published, e.g. "At ease"
    key: str           # normalised key, e.g. "at_ease"
    angle: float       # degrees, counter-clockwise from +valence

    @property
    def unit_va(self) -> tuple[float, float]:
        return angle_to_va(self.angle, 1.0)


def normalise_emotion_name(name: str) -> str:
    """Case- and separator-insensitive key: "At ease", "at_ease", "AT-EASE" -> "at_ease"."""
    return re.sub(r"[\s_\-]+", "_", str(name).strip().lower()).strip("_")


def read_anchor_table() -> list[dict[str, str]]:
    """Rows of the published EmoStyle 28x4 per-emotion MAE table shipped with stimgen."""
    text = resources.files("stimgen.data").joinpath(ANCHORS_FILE).read_text(encoding="utf-8")
    return list(csv.DictReader(line for line in text.splitlines() if not line.startswith("#")))


@lru_cache(maxsize=1)
def named_emotions() -> tuple[NamedEmotion, ...]:
    """The 28 named emotions, in the published order (by angle)."""
    return tuple(
        NamedEmotion(name=row["emotion"], key=normalise_emotion_name(row["emotion"]),
                     angle=float(row["angle_deg"]))
        for row in read_anchor_table()
    )


def emotion_by_name(name: str) -> NamedEmotion:
    """Look up a named emotion; raises KeyError with a did-you-mean suggestion."""
    key = normalise_emotion_name(name)
    for emotion in named_emotions():
        if emotion.key == key:
            return emotion
    raise KeyError(suggest(key, [e.key for e in named_emotions()]))


def suggest(word: str, choices: list[str]) -> str | None:
    """The closest of ``choices`` to ``word`` or None; used for did-you-mean hints."""
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return close[0] if close else None


def angle_to_va(angle, intensity=1.0):
    """(valence, arousal) of a target at ``angle`` degrees and ``intensity``.

    Works on scalars (returns a tuple of floats) and on arrays (returns two arrays).

    >>> v, a = angle_to_va(90.0, 0.5)
    >>> round(v, 6), round(a, 6)
    (0.0, 0.5)
    """
    rad = np.deg2rad(angle)
    v, a = intensity * np.cos(rad), intensity * np.sin(rad)
    # cos 90° is 6e-17, not 0: snap rounding residue so that signs (SAGR) are exact.
    v = np.where(np.abs(v) < 1e-12, 0.0, v)
    a = np.where(np.abs(a) < 1e-12, 0.0, a)
    if np.ndim(v) == 0:
        return float(v), float(a)
    return v, a


def va_to_angle(valence, arousal):
    """Angle in [0, 360) degrees and intensity (Euclidean norm) of a VA point.

    >>> va_to_angle(0.0, -1.0)
    (270.0, 1.0)
    """
    angle = np.mod(np.rad2deg(np.arctan2(arousal, valence)), 360.0)
    radius = np.hypot(valence, arousal)
    if np.ndim(angle) == 0:
        return float(angle), float(radius)
    return angle, radius


def wrap_angle_difference(a, b):
    """Absolute angular difference between ``a`` and ``b`` in degrees, in [0, 180]."""
    d = np.mod(np.asarray(a, dtype=float) - np.asarray(b, dtype=float), 360.0)
    d = np.minimum(d, 360.0 - d)
    return float(d) if np.ndim(d) == 0 else d


def in_angle_interval(angle, start: float, end: float):
    """Whether ``angle`` lies in the closed interval from ``start`` counter-clockwise to ``end``.

    Intervals may wrap past 360 degrees: (300, 30) contains 350 and 10 but not 180.
    An interval spanning 360 degrees or more contains every angle.
    """
    if end - start >= 360.0:
        return np.ones(np.shape(angle), dtype=bool) if np.ndim(angle) else True
    span = math.fmod(end - start, 360.0) % 360.0
    offset = np.mod(np.asarray(angle, dtype=float) - start, 360.0)
    inside = offset <= span + 1e-9
    return bool(inside) if np.ndim(inside) == 0 else inside
