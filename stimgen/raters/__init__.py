"""Raters estimate the valence and arousal a face actually shows.

A rater sees only the rendered face (its image and landmarks) and, for reference, the same
identity's neutral face; never the target. Reports call these model ratings, not human norms.
The registry below describes a rater without loading it (:func:`describe_rater`) and builds
one ready to rate (:func:`create_rater`): ``geometric`` (:mod:`stimgen.raters.geometric`),
``emonet`` (:mod:`stimgen.raters.emonet`).
"""
from __future__ import annotations

from stimgen.errors import BackendUnavailableError
from stimgen.raters.base import Rater, RaterInfo, RatingDetails, rating_details
from stimgen.raters.geometric import GeometricRater

__all__ = ["RATER_DESCRIPTIONS", "Rater", "RaterInfo", "RatingDetails", "create_rater",
           "describe_rater", "rating_details"]

RATER_DESCRIPTIONS = {
    "geometric": "landmark geometry: facial-action proxies measured on 68 landmarks, "
                 "normalised by inter-ocular distance, relative to the identity's neutral face "
                 "(its coefficients were fitted on schematic faces, so its accuracy on them is "
                 "optimistic)",
    "emonet": "EmoNet-8 (Toisoul et al., 2021) valence/arousal regression on the face crop",
}
#: The backend whose generator was trained against a rater: EmoNet was EmoStyle's
#: training-time critic, so its ratings of emostyle faces are circular.
TRAINED_AGAINST = {"emonet": "emostyle"}


def describe_rater(name: str, backend_name: str) -> RaterInfo:
    """What the rater ``name`` is when it rates faces of ``backend_name``; loads nothing.

    >>> describe_rater("emonet", "emostyle").trained_against_generator
    True
    >>> describe_rater("emonet", "schematic").trained_against_generator
    False
    """
    if name not in RATER_DESCRIPTIONS:
        raise BackendUnavailableError(f'unknown rater "{name}"')  # pragma: no cover - schema guards
    return RaterInfo(name, RATER_DESCRIPTIONS[name],
                     trained_against_generator=TRAINED_AGAINST.get(name) == backend_name)


def create_rater(name: str, backend_name: str) -> Rater:
    """The rater named in the protocol (``auto`` already resolved), ready to rate.

    The emonet rater loads EmoNet-8 (on CUDA when present): call this where the faces are
    rated, and :func:`describe_rater` where only its description is needed.
    """
    info = describe_rater(name, backend_name)
    if name == "geometric":
        return GeometricRater(info)
    # EmoNet-8 on CUDA when present; torch only for the emonet rater
    from stimgen.backends.emostyle.models import load_network, select_device
    from stimgen.raters.emonet import EmoNetRater
    from stimgen.weights import require_weights

    path = require_weights(["emonet_8"])["emonet_8"]
    return EmoNetRater(load_network("emonet_8", path, select_device("auto")), info)
