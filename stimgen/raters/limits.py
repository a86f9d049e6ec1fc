"""Known limits of each rater: the named basic emotions it reads poorly, with the measured error.

The one table (``KNOWN_LIMITS``) that `stimgen validate`/`build`, the report's flags and
closed-loop correction consult; tests/test_rater_limits.py re-measures every number in it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable


@dataclass(frozen=True)
class RaterLimit:
    """A basic emotion that a rater reads poorly on the schematic faces (its FACS prototype)."""

    rater: str          # rater name, e.g. "geometric"
    emotion: str        # basic-emotion key, also the schematic prototype's name, e.g. "contempt"
    distance: float     # mean VA distance at intensity 1 (schematic seeds 2000-2039, own neutral)
    readable: bool      # False: the rater does not measure what the face shows (correction skips it)
    reason: str         # why, in a researcher's words
    advice: str = "judge it with hsemotion or human norms (`stimgen norms`)"
    backend: str = "schematic"   # the backend whose faces show the prototype as measured

    def note(self) -> str:
        """One line for the CLI and the report.

        >>> print(rater_limit("geometric", "contempt").note())   # doctest: +ELLIPSIS
        geometric cannot read contempt's one-sided smile ...; judge it with hsemotion or human norms ...
        """
        return f"{self.reason} (distance {self.distance:.2f} at intensity 1); {self.advice}"


def _misplaced(emotion: str, term: str, term_angle: float, point_angle: int, distance: float
               ) -> RaterLimit:
    return RaterLimit(
        "geometric", emotion, distance, True,
        f"geometric reads the {emotion} prototype as {term} ({term_angle:g}°, the same face it was "
        f"fitted on), not at the published {point_angle}°: out of tolerance by construction")


#: rater -> basic-emotion key -> limit. Measured with the shipped coefficients: the numbers
#: come from ``python benchmarks/bench_schematic.py --limits`` and are re-checked by
#: tests/test_rater_limits.py. A named basic emotion is drawn as its FACS prototype, which is
#: also the face of the circumplex term at the prototype's blend angle (Happy 7.8°, Angry 99°,
#: Afraid 116°); the geometric rater was fitted on those blends, so it reads the term's angle,
#: while the basic emotion's target lies at its published point's direction. Refitting on the
#: prototypes cannot fix this (identical faces, two targets): including them traded blend
#: accuracy for prototype accuracy (docs/raters.md, "Basic emotions").
KNOWN_LIMITS: dict[str, dict[str, RaterLimit]] = {
    "geometric": {limit.emotion: limit for limit in (
        RaterLimit("geometric", "contempt", 1.27, False,
                   "geometric cannot read contempt's one-sided smile (AU14 on one side; it "
                   "averages both mouth corners, so it reads a mild positive face)"),
        _misplaced("anger", "Angry", 99, 131, 0.60),
        _misplaced("happiness", "Happy", 7.8, 32, 0.58),
        _misplaced("fear", "Afraid", 116, 137, 0.44),
    )},
}


def rater_limit(rater: str, emotion: str | None, backend: str = "schematic"
                ) -> RaterLimit | None:
    """The known limit of ``rater`` on basic emotion (or prototype) ``emotion`` drawn by
    ``backend``, or None.

    >>> rater_limit("geometric", "contempt").readable, rater_limit("hsemotion", "contempt")
    (False, None)
    """
    limit = KNOWN_LIMITS.get(rater, {}).get(str(emotion).lower()) if emotion else None
    return limit if limit is not None and limit.backend == backend else None


def known_limits(raters: Iterable[str], emotions: Iterable[str | None],
                 backend: str = "schematic") -> list[RaterLimit]:
    """The limits of ``raters`` that concern any of ``emotions`` drawn by ``backend``, each
    once, in table order.

    >>> [limit.emotion for limit in known_limits(["geometric"], ["fear", "contempt", None])]
    ['contempt', 'fear']
    >>> known_limits(["geometric"], ["contempt"], backend="emostyle")
    []
    """
    wanted = {str(e).lower() for e in emotions if e}
    return [limit for rater in dict.fromkeys(raters)
            for key, limit in KNOWN_LIMITS.get(rater, {}).items()
            if key in wanted and limit.backend == backend]


def emotion_limit(rater: str, emotion_name: str, backend: str = "schematic") -> RaterLimit | None:
    """The known limit of ``rater`` on a stimulus whose ``emotion`` column (stimuli.tsv,
    metrics_by_emotion.csv) is ``emotion_name``: only named basic emotions, drawn as their
    prototypes, have one; a circumplex term of the same emotion ("Angry") is drawn by angle.

    >>> emotion_limit("geometric", "Contempt").emotion, emotion_limit("geometric", "Angry")
    ('contempt', None)
    """
    from stimgen.circumplex import UnknownEmotionError, emotion_by_name

    try:
        prototype = emotion_by_name(str(emotion_name)).prototype
    except UnknownEmotionError:     # neutral, an angle target, a point label
        return None
    return rater_limit(rater, prototype, backend)
