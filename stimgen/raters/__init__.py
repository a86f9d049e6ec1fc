"""Raters estimate the valence and arousal a face actually shows.

A rater sees only the rendered face (its image and landmarks) and, for reference, the same
identity's neutral face; never the target. Reports call these model ratings, not human norms.
The registry below describes a rater without loading it (:func:`describe_rater`) and builds
one ready to rate (:func:`create_rater`): ``geometric`` (:mod:`stimgen.raters.geometric`),
``emonet`` (:mod:`stimgen.raters.emonet`), ``hsemotion`` (:mod:`stimgen.raters.hsemotion`).
"""
from __future__ import annotations

import warnings
from pathlib import Path

from stimgen.errors import BackendUnavailableError, StimgenError
from stimgen.raters.base import Rater, RaterInfo, RatingDetails, rating_details
from stimgen.raters.geometric import GeometricRater
from stimgen.settings import RATER_WEIGHTS

__all__ = ["RATER_DESCRIPTIONS", "RATER_WEIGHTS", "Rater", "RaterInfo", "RatingDetails",
           "create_rater", "describe_rater", "rating_details"]

RATER_DESCRIPTIONS = {
    "geometric": "landmark geometry: facial-action proxies measured on 68 landmarks, "
                 "normalised by inter-ocular distance, relative to the identity's neutral face "
                 "(its coefficients were fitted on schematic faces, so its accuracy on them is "
                 "optimistic)",
    "emonet": "EmoNet-8 (Toisoul et al., 2021) valence/arousal regression on the face crop",
    "hsemotion": "HSEmotion enet_b0_8_va_mtl (Savchenko, 2022): valence/arousal and 8 "
                 "expression categories from a tight face crop; trained on AffectNet, "
                 "independent of both generators",
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


def create_rater(name: str, backend_name: str, *, weights: str | Path | None = None) -> Rater:
    """The rater named in the protocol (``auto`` already resolved), ready to rate.

    The emonet rater loads EmoNet-8 (on CUDA when present), the hsemotion rater its ONNX
    file (CUDA when onnxruntime has it): call this where the faces are rated, and
    :func:`describe_rater` where only its description is needed. ``weights`` is a file to
    use instead of the registry's installed copy (a researcher's own checkpoint); it must
    be a file of the rater's network.

    Raises
    ------
    WeightsMissingError
        The registry's file is not installed (and no ``weights`` was given).
    StimgenError
        ``weights`` is missing or holds another network.
    """
    info = describe_rater(name, backend_name)
    if name == "geometric":
        if weights is not None:
            raise StimgenError("the geometric rater has no weights; --weights is for emonet "
                               "and hsemotion")
        return GeometricRater(info)
    path = Path(weights) if weights is not None else None
    if path is None:
        from stimgen.weights import require_weights

        path = require_weights([RATER_WEIGHTS[name]])[RATER_WEIGHTS[name]]
    if name == "hsemotion":
        from stimgen.raters.hsemotion import HSEmotionRater, load_hsemotion

        rater = HSEmotionRater(load_hsemotion(path), info)
        if weights is not None:
            warn_if_tiny(path, name)
        return rater
    # EmoNet-8 on CUDA when present; torch only for the emonet rater
    from stimgen.backends.emostyle.models import load_network, select_device
    from stimgen.raters.emonet import EmoNetRater

    if weights is not None:
        _check_kind(path, "emonet", name)
        warn_if_tiny(path, name)
    return EmoNetRater(load_network("emonet_8", path, select_device("auto")), info)


def warn_if_tiny(path: Path, rater: str) -> None:
    """Warn (:class:`~stimgen.weights.registry.TinyWeightsWarning`) when a weights file given
    to a rater is a random tiny model from `stimgen models make-tiny`: it loads like the
    published file, but every rating it gives is noise. `stimgen models add` says the same
    when such a file is installed."""
    from stimgen.weights.registry import TinyWeightsWarning, get_model
    from stimgen.weights.tiny import tiny_evidence

    model = RATER_WEIGHTS[rater]
    evidence = tiny_evidence(path, kind=get_model(model).kind)
    if evidence:
        warnings.warn(f"{path} is a RANDOM TINY MODEL written by `stimgen models make-tiny` "
                      f"({evidence}): the {rater} ratings it gives are noise, for testing the "
                      f"pipeline only; rate with the published weights (`stimgen models "
                      f"fetch {model}`)", TinyWeightsWarning, stacklevel=3)


def _check_kind(path: Path, kind: str, rater: str) -> None:
    """Refuse a user's weights file that is not a ``kind`` checkpoint, naming what it is."""
    from stimgen.weights.inspect import detect_kind

    if not path.is_file():
        raise StimgenError(f"{path}: no such file", hint=f"give the path of a {kind} checkpoint")
    found = detect_kind(path)
    if found != kind:
        raise StimgenError(f"{path}: this is a {found} checkpoint, but the {rater} rater needs "
                           f"a {kind} checkpoint",
                           hint="check which file you meant (`stimgen models inspect FILE`)")
