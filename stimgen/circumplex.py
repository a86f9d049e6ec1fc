"""The valence-arousal circumplex: named emotions, angle/intensity <-> VA, weak regions.

Two vocabularies of named emotions: the 28 circumplex terms of the EmoStyle evaluation
protocol (angles) and the basic emotions (published valence-arousal points, drawn by the
schematic backend as their FACS prototypes); see ``stimgen emotions``.

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
BASIC_EMOTIONS_FILE = "basic_emotions_va.csv"

CIRCUMPLEX_SOURCE = ("angle of the term in the EmoStyle evaluation protocol (Darne, Quan & "
                     "Luo 2025, Applied Sciences 15:10636)")
#: The published sources of the basic emotions' points, by the key in the data file's
#: ``source`` column: (short name, full reference).
BASIC_SOURCES: dict[str, tuple[str, str]] = {
    "russell_mehrabian_1977": (
        "Russell & Mehrabian 1977",
        "Russell & Mehrabian (1977), J. Research in Personality 11:273-294, mean pleasure and "
        "arousal of the term"),
    "warriner_2013": (
        "Warriner et al. 2013",
        "Warriner, Kuperman & Brysbaert (2013), Behavior Research Methods 45:1191-1207, mean "
        "valence and arousal of the lemma, (x - 5) / 4"),
}

#: Emotion words stimgen knows but does not accept as targets, with the reason and the fix.
NOT_TARGETS: dict[str, str] = {
    "neutral": "the neutral face is not a direction of the circumplex: set `neutral: true` "
               "under targets",
}


@dataclass(frozen=True)
class NamedEmotion:
    """A named emotion: one of the 28 circumplex terms, or a basic emotion."""

    name: str          # display name as published, e.g. "At ease"
    key: str           # normalised key, e.g. "at_ease"
    angle: float       # degrees, counter-clockwise from +valence
    point: tuple[float, float] | None = None   # basic emotions: published (v, a) at intensity 1
    prototype: str | None = None    # basic emotions: the FACS prototype the schematic face shows
    aliases: tuple[str, ...] = ()   # further keys that name it ("fearful" for Fear)
    circumplex_term: str | None = None  # basic emotions: the circumplex term naming the same
                                        # emotion ("Afraid" for Fear), if any
    source_term: str | None = None  # basic emotions: the term of the source the point is from
    source: str = CIRCUMPLEX_SOURCE  # where the angle or point comes from

    @property
    def vocabulary(self) -> str:
        return "circumplex" if self.point is None else "basic"

    @property
    def unit_va(self) -> tuple[float, float]:
        """The target at intensity 1: the unit vector at the angle (for a basic emotion, the
        direction of its published point)."""
        return angle_to_va(self.angle, 1.0)

    def target_va(self, intensity: float) -> tuple[float, float]:
        """(valence, arousal) of this emotion at ``intensity``: ``intensity * unit_va``.

        >>> v, a = emotion_by_name("anger").target_va(0.5)
        >>> round(v, 3), round(a, 3)
        (-0.327, 0.378)
        """
        return angle_to_va(self.angle, intensity)


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


def _data_rows(filename: str) -> list[dict[str, str]]:
    text = resources.files("stimgen.data").joinpath(filename).read_text(encoding="utf-8")
    return list(csv.DictReader(line for line in text.splitlines() if not line.startswith("#")))


@lru_cache(maxsize=1)
def basic_emotions() -> tuple[NamedEmotion, ...]:
    """The basic emotions with their published valence-arousal points (see the data file
    ``stimgen/data/basic_emotions_va.csv`` for the source of every number). Their angle is
    the direction of that point; a target is ``intensity`` times the unit vector there, as
    for the circumplex terms, so that intensity 1 shows the full prototype."""
    out = []
    for row in _data_rows(BASIC_EMOTIONS_FILE):
        v, a = float(row["valence"]), float(row["arousal"])
        angle, _ = va_to_angle(v, a)
        out.append(NamedEmotion(
            name=row["emotion"], key=normalise_emotion_name(row["emotion"]), angle=angle,
            point=(v, a), prototype=row["prototype"],
            aliases=tuple(normalise_emotion_name(x) for x in row["aliases"].split("|")),
            circumplex_term=row["circumplex_term"] or None, source_term=row["source_term"],
            source=f'{BASIC_SOURCES[row["source"]][1]} "{row["source_term"]}"'))
    return tuple(out)


@lru_cache(maxsize=1)
def _same_emotion_keys() -> dict[str, str]:
    """Every key that names a basic emotion (its name, aliases, circumplex term) -> its key."""
    keys = {}
    for emotion in basic_emotions():
        names = (emotion.key, *emotion.aliases) + (
            (emotion.circumplex_term,) if emotion.circumplex_term else ())
        keys.update({normalise_emotion_name(name): emotion.key for name in names})
    return keys


def emotion_label_key(label: str) -> str:
    """The key under which an answer label and a target emotion are the same emotion.

    The one rule for matching a categorization choice, a norming label or a participant's
    answer with a stimulus's emotion (experiment design, confusability check, norms hit
    rates): case and separators are ignored (``normalise_emotion_name``), and every name of a
    basic emotion, its aliases and the circumplex term that names it (column
    ``circumplex_term`` of ``stimgen/data/basic_emotions_va.csv``) share the basic emotion's
    key. Any other text, known emotion or not, is only normalised.

    >>> emotion_label_key("Disgust") == emotion_label_key("disgusted")
    True
    >>> emotion_label_key("afraid"), emotion_label_key("Fearful"), emotion_label_key("happy")
    ('fear', 'fear', 'happiness')
    >>> emotion_label_key("At ease"), emotion_label_key("none of these")
    ('at_ease', 'none_of_these')
    """
    key = normalise_emotion_name(label)
    return _same_emotion_keys().get(key, key)


def basic_emotion_angles() -> dict[str, float]:
    """Where each basic emotion sits on the circle of the 28 circumplex terms, in degrees: the
    angle of the circumplex term that names it (Fear at Afraid's 116), else the direction of
    its own published point (Disgust 150, Contempt 192).

    >>> angles = basic_emotion_angles()
    >>> angles["fear"], round(angles["contempt"])
    (116.0, 192)
    """
    terms = {e.key: e.angle for e in named_emotions()}
    return {e.key: terms[normalise_emotion_name(e.circumplex_term)] if e.circumplex_term
            else e.angle for e in basic_emotions()}


def nearest_basic_emotion(valence: float, arousal: float) -> str:
    """The basic emotion whose angle (``basic_emotion_angles``) is nearest the direction of
    (valence, arousal); ``"neutral"`` for the origin.

    >>> nearest_basic_emotion(0.1, 0.9), nearest_basic_emotion(0.0, -1.0)
    ('surprise', 'sadness')
    >>> nearest_basic_emotion(0.0, 0.0)
    'neutral'
    """
    if math.hypot(valence, arousal) < 1e-9:
        return "neutral"
    angle, _ = va_to_angle(valence, arousal)
    angles = basic_emotion_angles()
    return min(angles, key=lambda key: (wrap_angle_difference(angle, angles[key]), key))


def all_emotions() -> tuple[NamedEmotion, ...]:
    """Both vocabularies: the 28 circumplex terms, then the basic emotions."""
    return named_emotions() + basic_emotions()


class UnknownEmotionError(KeyError):
    """A name in neither vocabulary; ``args[0]`` is the did-you-mean suggestion or None."""

    def __init__(self, suggestion: str | None, hint: str):
        super().__init__(suggestion)
        self.suggestion, self.hint = suggestion, hint


def emotion_by_name(name: str) -> NamedEmotion:
    """Look up a named emotion in both vocabularies (case and separators ignored).

    Raises
    ------
    UnknownEmotionError
        A KeyError whose ``hint`` proposes the closest known name, never one of the
        opposite valence, or says why a known word (neutral) is not a target.
    """
    key = normalise_emotion_name(name)
    for emotion in all_emotions():
        if key == emotion.key or key in emotion.aliases:
            return emotion
    if key in NOT_TARGETS:
        raise UnknownEmotionError(None, NOT_TARGETS[key])
    close = suggest_emotion(key)
    hint = f'did you mean "{close}"?' if close else "run `stimgen emotions` for the list"
    raise UnknownEmotionError(close, hint)


def suggest_emotion(word: str, among=None) -> str | None:
    """The closest emotion name to ``word``, or None when a name of the opposite valence is
    about as close.

    Closeness is counted in typing edits (a letter added, dropped, changed, or two swapped).
    A misspelling about as close to a pleasant as to an unpleasant term ("contnt": content,
    one edit, or contempt, three?) gets no suggestion rather than a guess that could reverse
    the valence; one whose nearest names of the other valence are far ("digusted": disgusted
    is one edit away, delighted four) gets the nearest name.
    ``among``: look only at the names of these emotions (``NamedEmotion``; a basic emotion's
    names include the circumplex term of the same emotion), e.g. the ones a choice list
    leaves unanswered; default all of them.

    >>> suggest_emotion("contnt") is None, suggest_emotion("contemt") is None
    (True, True)
    >>> suggest_emotion("disgustd"), suggest_emotion("digusted"), suggest_emotion("hapy")
    ('disgusted', 'disgusted', 'happy')
    >>> suggest_emotion("contemptous"), suggest_emotion("contemptous", [emotion_by_name("contempt")])
    ('contemptuous', 'contemptuous')
    """
    names: dict[str, float] = {}
    for emotion in all_emotions() if among is None else among:
        same = (normalise_emotion_name(emotion.circumplex_term),) if among is not None \
            and emotion.circumplex_term else ()
        for key in (emotion.key, *emotion.aliases, *same):
            names[key] = emotion.unit_va[0]
    close = difflib.get_close_matches(word, list(names), n=4, cutoff=0.6)
    if not close:
        return None
    edits = {name: typing_distance(word, name) for name in close}
    best = min(close, key=lambda name: edits[name])     # ties: difflib's order
    sign = np.sign(round(names[best], 6))
    rivals = [name for name in close if sign and np.sign(round(names[name], 6)) == -sign]
    if best in NOT_TARGETS or any(edits[name] <= edits[best] + AMBIGUOUS_EDITS
                                  for name in rivals):
        return None
    return best


#: A name of the opposite valence within this many more typing edits than the nearest name
#: makes a misspelling ambiguous (no did-you-mean).
AMBIGUOUS_EDITS = 2


def typing_distance(a: str, b: str) -> int:
    """Typing edits between two words: letters inserted, deleted or changed, and two
    neighbouring letters swapped (optimal string alignment distance).

    >>> typing_distance("digusted", "disgusted"), typing_distance("afriad", "afraid")
    (1, 1)
    >>> typing_distance("contnt", "contempt")
    3
    """
    rows = [list(range(len(b) + 1))]
    for i in range(1, len(a) + 1):
        row = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            row[j] = min(rows[-1][j] + 1, row[j - 1] + 1,
                         rows[-1][j - 1] + (a[i - 1] != b[j - 1]))
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                row[j] = min(row[j], rows[-2][j - 2] + 1)
        rows.append(row)
    return rows[-1][-1]


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
