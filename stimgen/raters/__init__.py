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
                 "normalised by inter-ocular distance, relative to the identity's neutral face "
                 "(its coefficients were fitted on schematic faces, so its accuracy on them is "
                 "optimistic)",
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
        return _emonet_rater(backend_name)
    raise BackendUnavailableError(f'unknown rater "{name}"')  # pragma: no cover


def _emonet_rater(backend_name: str) -> Rater:
    """EmoNet-8 on CUDA when present; flagged as EmoStyle's training critic with emostyle."""
    from stimgen.backends.emostyle.models import load_network, select_device
    from stimgen.raters.emonet import EmoNetRater
    from stimgen.weights import require_weights

    path = require_weights(["emonet_8"])["emonet_8"]
    info = RaterInfo("emonet", RATER_DESCRIPTIONS["emonet"],
                     trained_against_generator=backend_name == "emostyle")
    return EmoNetRater(load_network("emonet_8", path, select_device("auto")), info)
