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

#: Default weak region of published EmoStyle (Bored 242 ... Serene 328.6), degrees.
WEAK_REGION_DEFAULT: tuple[float, float] = (242.0, 328.6)
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
#: The 28 terms' exact angles (one decimal, as Darne et al.'s code requests them) beside the
#: whole degrees the paper prints; the file's header gives the source.
ANGLES_FILE = "emostyle_circumplex_angles.csv"
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
    source_key: str | None = None    # basic emotions: key of BASIC_SOURCES

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
    """The 28 named emotions, in the published order (by angle), at the exact angles of
    Darne et al.'s code (``ANGLES_FILE``); the paper's table prints them rounded.

    >>> [(e.name, e.angle) for e in named_emotions()][:2]
    [('Happy', 7.8), ('Delighted', 24.9)]
    """
    return tuple(
        NamedEmotion(name=row["emotion"], key=normalise_emotion_name(row["emotion"]),
                     angle=float(row["angle_deg"]))
        for row in _data_rows(ANGLES_FILE)
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
    return tuple(e for e, default in _basic_rows() if default)


def basic_emotion_sources(key: str) -> dict[str, NamedEmotion]:
    """Every published point of basic emotion ``key``, by source key (``BASIC_SOURCES``):
    contempt has two, Warriner et al. 2013 (the default) and Russell & Mehrabian 1977.

    >>> sorted(basic_emotion_sources("contempt"))
    ['russell_mehrabian_1977', 'warriner_2013']
    >>> round(basic_emotion_sources("contempt")["russell_mehrabian_1977"].angle)
    127
    """
    return {e.source_key: e for e, _ in _basic_rows() if e.key == key}


@lru_cache(maxsize=1)
def _basic_rows() -> tuple[tuple[NamedEmotion, bool], ...]:
    out = []
    for row in _data_rows(BASIC_EMOTIONS_FILE):
        v, a = float(row["valence"]), float(row["arousal"])
        angle, _ = va_to_angle(v, a)
        out.append((NamedEmotion(
            name=row["emotion"], key=normalise_emotion_name(row["emotion"]), angle=angle,
            point=(v, a), prototype=row["prototype"],
            aliases=tuple(normalise_emotion_name(x) for x in row["aliases"].split("|")),
            circumplex_term=row["circumplex_term"] or None, source_term=row["source_term"],
            source=f'{BASIC_SOURCES[row["source"]][1]} "{row["source_term"]}"',
            source_key=row["source"]), row["default"] == "yes"))
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
    >>> emotion_label_key("circumplex:happy")    # the prefix picks a vocabulary, not an answer
    'happiness'
    """
    key = normalise_emotion_name(_split_prefix(label)[1])
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


#: Prefixes that pick a vocabulary explicitly (``circumplex:happy``, ``basic:happy``).
CIRCUMPLEX_PREFIX, BASIC_PREFIX = "circumplex:", "basic:"

#: The one rule for emotion names in a protocol, as `stimgen emotions`, the protocol
#: reference and the starter protocol state it.
VOCABULARY_RULE = (
    "A basic emotion's word in any form names the basic emotion (its FACS prototype, at the "
    "direction of its published valence-arousal point): happy/happiness, sad/sadness, "
    "angry/anger, fear/fearful, surprise/surprised, disgust/disgusted, contempt/contemptuous. "
    "Every other name is one of the 28 circumplex terms of Darne, Quan & Luo's table (at its "
    "angle). Happy, Sad and Angry are circumplex terms too: write them circumplex:happy, "
    "circumplex:sad, circumplex:angry (any term may carry the prefix, and basic: picks a "
    "basic emotion). Case, spaces and separators are ignored. (docs/protocol.md, "
    "\"Emotion names\")")


def pinned_emotion_name(name: str) -> str | None:
    """The display name of the one emotion a prefixed name picks (``circumplex:happy`` ->
    "Happy"), or None for a name without a prefix (or an unknown one), which matches every
    stimulus of its emotion in either vocabulary (``emotion_label_key``).

    >>> pinned_emotion_name("circumplex:happy"), pinned_emotion_name("basic:happy")
    ('Happy', 'Happiness')
    >>> pinned_emotion_name("happy") is None
    True
    """
    if _split_prefix(name)[0] is None:
        return None
    try:
        return resolve_emotion(name).name
    except UnknownEmotionError:
        return None


def _split_prefix(name: str) -> tuple[str | None, str]:
    """(vocabulary or None, the name after a ``circumplex:``/``basic:`` prefix)."""
    text = str(name).strip()
    for prefix, vocabulary in ((CIRCUMPLEX_PREFIX, "circumplex"), (BASIC_PREFIX, "basic")):
        if text.lower().startswith(prefix):
            return vocabulary, text[len(prefix):]
    return None, text


@lru_cache(maxsize=1)
def ambiguous_emotion_words() -> dict[str, tuple[NamedEmotion, NamedEmotion]]:
    """Words that are both a basic emotion's form and a circumplex term, by normalised key,
    with (the basic emotion the rule picks, the circumplex term it does not).

    >>> sorted(ambiguous_emotion_words())
    ['angry', 'happy', 'sad']
    """
    terms = {e.key: e for e in named_emotions()}
    return {alias: (basic, terms[alias]) for basic in basic_emotions()
            for alias in (basic.key, *basic.aliases) if alias in terms}


def resolve_emotion(name: str) -> NamedEmotion:
    """The emotion a researcher means by ``name`` in a protocol, by ``VOCABULARY_RULE``.

    >>> resolve_emotion("happy").name, resolve_emotion("circumplex:happy").name
    ('Happiness', 'Happy')
    >>> resolve_emotion("fearful").name, resolve_emotion("Afraid").name
    ('Fear', 'Afraid')

    Raises
    ------
    UnknownEmotionError
        As ``emotion_by_name``; also for a circumplex: prefix on a word that is not one of
        the 28 terms (and basic: on one that is not a basic emotion), with the fix.
    """
    vocabulary, word = _split_prefix(name)
    key = normalise_emotion_name(word)
    pool = {"circumplex": named_emotions(), "basic": basic_emotions(),
            None: basic_emotions() + named_emotions()}[vocabulary]
    for emotion in pool:
        if key == emotion.key or key in emotion.aliases:
            return emotion
    if vocabulary is not None:
        try:
            other = resolve_emotion(word)
        except UnknownEmotionError:
            other = None
        if other is not None:
            raise UnknownEmotionError(None, f'"{word}" is not a {vocabulary} emotion: write '
                                            f'{other.vocabulary}:{other.key} or just {word}')
    return emotion_by_name(word)


def canonical_emotion_name(emotion: NamedEmotion) -> str:
    """The name that ``resolve_emotion`` maps back to ``emotion``: its display name, with
    the circumplex: prefix where the display name alone would name a basic emotion.

    >>> canonical_emotion_name(emotion_by_name("circumplex:happy"))
    'circumplex:Happy'
    >>> canonical_emotion_name(emotion_by_name("glad")), canonical_emotion_name(resolve_emotion("happy"))
    ('Glad', 'Happiness')
    """
    if emotion.vocabulary == "circumplex" and emotion.key in ambiguous_emotion_words():
        return CIRCUMPLEX_PREFIX + emotion.name
    return emotion.name


def vocabulary_warning(name: str) -> str | None:
    """What a protocol should be told about an emotion name the rule resolves but that
    also names something else (happy, sad, angry); None for an unambiguous name.

    >>> print(vocabulary_warning("happy"))   # doctest: +NORMALIZE_WHITESPACE
    "happy" means the basic emotion Happiness (FACS prototype, 32.2°), not the circumplex
    term Happy (7.8°); write happiness to keep this meaning without the warning, or
    circumplex:happy for the circumplex term
    >>> vocabulary_warning("happiness") is None, vocabulary_warning("circumplex:happy") is None
    (True, True)
    """
    vocabulary, word = _split_prefix(name)
    key = normalise_emotion_name(word)
    if vocabulary is not None or key not in ambiguous_emotion_words():
        return None
    basic, term = ambiguous_emotion_words()[key]
    return (f'"{word}" means the basic emotion {basic.name} (FACS prototype, '
            f"{basic.angle:.1f}°), not the circumplex term {term.name} ({term.angle:g}°); "
            f"write {basic.key} to keep this meaning without the warning, or "
            f"circumplex:{key} for the circumplex term")


def mixed_vocabulary_warning(words: list[str]) -> tuple[str, str] | None:
    """(message, hint) when a target list, as written, mixes basic emotions with circumplex
    terms without saying so; None for one vocabulary, or for a mix whose circumplex terms all
    carry the ``circumplex:`` prefix (the researcher has said the mix is meant). The hint
    spells out each list the researcher may have meant.

    >>> message, hint = mixed_vocabulary_warning(["happy", "afraid", "sad"])
    >>> print(hint)   # doctest: +NORMALIZE_WHITESPACE
    write [circumplex:happy, afraid, circumplex:sad] for circumplex terms only, or
    [happiness, fear, sadness] for basic emotions only, or [happiness, circumplex:afraid,
    sadness] to keep the mix without this warning
    >>> mixed_vocabulary_warning(["happiness", "circumplex:calm"]) is None
    True
    """
    resolved = [(word, resolve_emotion(word)) for word in words]
    basic = [e for _, e in resolved if e.vocabulary == "basic"]
    terms = [(w, e) for w, e in resolved if e.vocabulary == "circumplex"]
    if not basic or not terms or all(_split_prefix(w)[0] == "circumplex" for w, _ in terms):
        return None

    def as_term(emotion: NamedEmotion) -> str:
        return canonical_emotion_name(emotion).lower()

    by_term = {normalise_emotion_name(e.circumplex_term): e for e in basic_emotions()
               if e.circumplex_term}
    terms_of = {e.key: by_term_key for by_term_key, e in by_term.items()}
    fixes = []
    if all(e.key in terms_of for e in basic):
        only_terms = [as_term(e) if e.vocabulary == "circumplex" else
                      as_term(next(t for t in named_emotions() if t.key == terms_of[e.key]))
                      for _, e in resolved]
        fixes.append(f"[{', '.join(dict.fromkeys(only_terms))}] for circumplex terms only")
    if all(e.key in by_term for _, e in terms):
        only_basic = [(e if e.vocabulary == "basic" else by_term[e.key]).key
                      for _, e in resolved]
        fixes.append(f"[{', '.join(dict.fromkeys(only_basic))}] for basic emotions only")
    mix = [e.key if e.vocabulary == "basic" else CIRCUMPLEX_PREFIX + e.name.lower()
           for _, e in resolved]
    fixes.append(f"[{', '.join(mix)}] to keep the mix without this warning")
    message = (f"targets mix basic emotions ({', '.join(e.name for e in basic)}: FACS "
               f"prototypes at their published points) with circumplex terms "
               f"({', '.join(e.name for _, e in terms)}: faces at the terms' angles); tables "
               f"and file names will show both")
    return message, "write " + ", or ".join(fixes)


class UnknownEmotionError(KeyError):
    """A name in neither vocabulary; ``args[0]`` is the did-you-mean suggestion or None."""

    def __init__(self, suggestion: str | None, hint: str):
        super().__init__(suggestion)
        self.suggestion, self.hint = suggestion, hint


def emotion_by_name(name: str) -> NamedEmotion:
    """Look up a name as stimgen writes it (the ``emotion`` column of stimuli.tsv), in both
    vocabularies, case and separators ignored: a display name ("Happy", "Happiness") names
    itself. A researcher's word in a protocol goes through ``resolve_emotion`` instead (the
    vocabulary rule); a ``circumplex:``/``basic:`` prefix is honoured by both.

    Raises
    ------
    UnknownEmotionError
        A KeyError whose ``hint`` proposes the closest known name, never one of the
        opposite valence, or says why a known word (neutral) is not a target.
    """
    vocabulary, word = _split_prefix(name)
    if vocabulary is not None:
        return resolve_emotion(name)
    key = normalise_emotion_name(word)
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
