"""Raters estimate the valence and arousal a face actually shows.

A rater sees only the rendered face (its image and landmarks) and, for reference, the same
identity's neutral face; never the target. Reports call these model ratings, not human norms.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol as TypingProtocol, Sequence

import numpy as np

from stimgen.backends import Rendered
from stimgen.errors import BackendUnavailableError

RATER_DESCRIPTIONS = {
    "geometric": "landmark geometry: facial-action proxies measured on 68 landmarks, "
                 "normalised by inter-ocular distance, relative to the identity's neutral face",
    "emonet": "EmoNet-8 (Toisoul et al., 2021) valence/arousal regression on the face crop",
}


@dataclass(frozen=True)
class RaterInfo:
    name: str
    description: str
    trained_against_generator: bool     # EmoNet was EmoStyle's training-time critic


class Rater(TypingProtocol):
    info: RaterInfo

    def rate(self, faces: Sequence[Rendered], neutral: Rendered | None) -> np.ndarray:
        """[N, 2] achieved (valence, arousal) of ``faces``."""


class LandmarkRater:
    """Adapter running the geometric rater on the landmarks of rendered faces."""

    def __init__(self):
        from stimgen.raters.geometric import GeometricRater

        self._impl = GeometricRater()
        self.info = RaterInfo("geometric", RATER_DESCRIPTIONS["geometric"], False)

    def rate(self, faces, neutral):
        if any(face.landmarks is None for face in faces):
            raise BackendUnavailableError(
                "the geometric rater needs 68 landmarks for every face, and this backend "
                "did not provide them")
        stack = np.stack([face.landmarks for face in faces])
        reference = neutral.landmarks if neutral is not None else None
        return np.asarray(self._impl.rate_many(stack, neutral=reference), dtype=float)


def create_rater(name: str, backend_name: str) -> Rater:
    """The rater named in the protocol (``auto`` already resolved), ready to rate."""
    if name == "geometric":
        return LandmarkRater()
    if name == "emonet":
        raise BackendUnavailableError(
            "the EmoNet rater cannot run in this version of stimgen: it needs the emostyle "
            "pipeline's aligned face crops",
            hint="use `validation: {rater: geometric}` with the schematic backend")
    raise BackendUnavailableError(f'unknown rater "{name}"')  # pragma: no cover
