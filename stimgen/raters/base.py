"""What every rater shares: the :class:`Rater` interface, its :class:`RaterInfo`, and the
:class:`RatingDetails` of raters that also name an expression category.

Raters (``geometric``, ``emonet``, ``hsemotion``) import from here, never from the package
``stimgen.raters``, which describes and builds them by name.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol as TypingProtocol, Sequence, runtime_checkable

import numpy as np

from stimgen.backends.base import Rendered


@dataclass(frozen=True)
class RaterInfo:
    """What a rater is, as the manifest and the report state it next to its numbers."""

    name: str
    description: str
    trained_against_generator: bool     # EmoNet was EmoStyle's training-time critic


@dataclass(frozen=True)
class RatingDetails:
    """What a rater with a categorical head says about N faces (``rate_details``)."""

    va: np.ndarray                  # [N, 2] valence, arousal in [-1, 1]
    probabilities: np.ndarray       # [N, K] probability of each category; rows sum to 1
    categories: tuple[str, ...]     # the K category names, in column order

    @property
    def predicted(self) -> list[str]:
        """The most probable category of each face."""
        return [self.categories[i] for i in np.argmax(self.probabilities, axis=1)]


def rating_details(rater: "Rater", faces: Sequence[Rendered],
                   neutral: Rendered | None = None) -> RatingDetails | None:
    """``rater.rate_details(...)`` when the rater has a categorical head, else ``None``.

    Raters may offer ``rate_details(faces, neutral) -> RatingDetails`` besides ``rate``;
    callers that want categories ask through here, and use ``rate`` otherwise.
    """
    method = getattr(rater, "rate_details", None)
    return None if method is None else method(faces, neutral)


@runtime_checkable
class Rater(TypingProtocol):
    """Rates rendered faces; ``info`` says what it is without rating anything."""

    info: RaterInfo

    def rate(self, faces: Sequence[Rendered], neutral: Rendered | None) -> np.ndarray:
        """[N, 2] achieved (valence, arousal) of ``faces``."""
