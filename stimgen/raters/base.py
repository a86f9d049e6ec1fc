"""What every rater shares: the :class:`Rater` interface and its :class:`RaterInfo`.

Raters (``geometric``, ``emonet``) import from here, never from the package
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


@runtime_checkable
class Rater(TypingProtocol):
    """Rates rendered faces; ``info`` says what it is without rating anything."""

    info: RaterInfo

    def rate(self, faces: Sequence[Rendered], neutral: Rendered | None) -> np.ndarray:
        """[N, 2] achieved (valence, arousal) of ``faces``."""
