"""Face generators behind one interface: prepare an identity, render it at VA targets.

`schematic` (embedded, CPU) is always available; `emostyle` (GPU) needs model weights.
Each backend reports a fingerprint of everything that changes its output, used as a
cache key so that resumed and repeated builds reuse finished work.
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Iterator, Protocol as TypingProtocol, Sequence

import numpy as np
from PIL import Image

from stimgen.errors import BackendUnavailableError
from stimgen.protocol.models import Identity, Protocol


@dataclass
class Rendered:
    """One generated face: the image at output size and, when known, its 68 landmarks."""

    image: Image.Image
    landmarks: np.ndarray | None = None          # [68, 2] pixel coordinates, iBUG order
    extras: dict[str, Any] = field(default_factory=dict)


class Backend(TypingProtocol):
    name: str

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


class SchematicFaces:
    """The embedded parametric-face backend (see docs/backends-schematic.md)."""

    name = "schematic"
    version = "1"

    def __init__(self, image_size: int, supersample: int, background: Sequence[int]):
        from stimgen.backends.schematic import SchematicBackend

        self._impl = SchematicBackend(image_size=image_size, supersample=supersample,
                                      background=tuple(background))
        self._options = {"image_size": image_size, "supersample": supersample,
                         "background": list(background)}

    def fingerprint(self) -> dict[str, Any]:
        return {"backend": self.name, "version": self.version, **self._options}

    def prepare(self, identity: Identity):
        return self._impl.identity_from_seed(int(identity.seed))

    def render(self, handle, targets):
        faces = [self._impl.render(handle, float(v), float(a)) for v, a in targets]
        return [Rendered(face.image, face.landmarks, {"actions": face.actions}) for face in faces]


def create_backend(protocol: Protocol) -> Backend:
    """The backend named in the protocol, ready to run; fails fast if it cannot run here."""
    name = protocol.backend.name
    options = protocol.backend.options
    if name == "schematic":
        return SchematicFaces(protocol.output.image_size, options.supersample, options.background)
    if name == "emostyle":
        return _emostyle_backend(protocol, options)
    raise BackendUnavailableError(f'unknown backend "{name}"')  # pragma: no cover - schema guards


def _emostyle_backend(protocol: Protocol, options) -> Backend:
    """The emostyle backend, after checking that every checkpoint it needs is installed."""
    from stimgen.backends.emostyle import EmoStyleBackend
    from stimgen.backends.emostyle.models import required_models
    from stimgen.weights import require_weights

    kinds = {identity.kind for identity in protocol.identities}
    # raises WeightsMissingError naming each missing file with its source and licence
    weights = require_weights(required_models(kinds, protocol.resolved_rater()))
    return EmoStyleBackend(protocol, weights)
