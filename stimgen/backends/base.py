"""What every face generator shares: the :class:`Backend` interface, its :class:`Rendered` output,
and the switch that silences the progress of long steps.

Backends (``schematic``, ``emostyle``) and raters import from here, never from the package
``stimgen.backends``, which picks and builds a backend (:func:`stimgen.backends.create_backend`).
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterator, Protocol as TypingProtocol, Sequence

import numpy as np
from PIL import Image

if TYPE_CHECKING:  # pragma: no cover - raters import this module without the protocol
    from stimgen.protocol.models import Identity


#: ``Rendered.extras`` key saying how a face is framed, so raters crop it as their models expect.
FRAMING_KEY = "framing"
#: ``extras[FRAMING_KEY]`` of a face aligned as FFHQ is (the emostyle backend's faces): a rater
#: applies its own FFHQ framing (EmoNet: :func:`stimgen.nets.emonet.ffhq_framing`).
FFHQ_FRAMING = "ffhq"
#: Framing of a face without the key (schematic faces, photos): the whole image is the face.
FULL_FRAMING = "full"


@dataclass
class Rendered:
    """One generated face: the image at output size and, when known, its 68 landmarks.

    ``extras`` carries what a backend knows besides the pixels: ``framing`` (see
    :data:`FRAMING_KEY`), scores such as ``identity_similarity``, or a rater input.
    """

    image: Image.Image
    landmarks: np.ndarray | None = None          # [68, 2] pixel coordinates, iBUG order
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def framing(self) -> str:
        """``"ffhq"`` for FFHQ-aligned faces, else ``"full"`` (the whole image is the face)."""
        return self.extras.get(FRAMING_KEY, FULL_FRAMING)


class Backend(TypingProtocol):
    """What every face generator is and can do; a backend subclasses it and overrides what
    differs (the capabilities below are the defaults of a CPU backend without weights)."""

    name: str
    #: ``render()`` takes, besides the VA points, the basic-emotion prototype each target
    #: shows (None for the others): backends that draw FACS prototypes (schematic).
    renders_prototypes: bool = False
    #: Targets rendered per call (a GPU's batch; it may shrink while a build runs).
    batch_size: int = 1

    @property
    def model_files(self) -> list[dict[str, str]]:
        """Name, path and sha256 of every checkpoint used (manifest ``backend.model_files``)."""
        return []

    def fingerprint(self) -> dict[str, Any]:
        """Everything besides the identity and target that changes the output."""

    def prepare(self, identity: Identity) -> Any:
        """Acquire an identity (sample, load, or invert and personalise); returns a handle."""

    def render(self, handle: Any, targets: Sequence[tuple[float, float]]) -> list[Rendered]:
        """Faces of the prepared identity at each (valence, arousal) target."""


#: "0" while a build runs without progress (``stimgen -q``): long ``prepare`` steps (a photo
#: identity's inversion) then stay silent. An environment variable, so that worker
#: processes and local jobs started by the build follow it.
PROGRESS_ENV = "STIMGEN_PROGRESS"


@contextmanager
def showing_progress(enabled: bool) -> Iterator[None]:
    """Within the block, backends show the progress of long steps only if ``enabled``."""
    previous = os.environ.get(PROGRESS_ENV)
    os.environ[PROGRESS_ENV] = "1" if enabled else "0"
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(PROGRESS_ENV, None)
        else:
            os.environ[PROGRESS_ENV] = previous


def progress_enabled() -> bool:
    """Whether backends show progress here (on, unless a build said otherwise)."""
    return os.environ.get(PROGRESS_ENV, "1") != "0"
