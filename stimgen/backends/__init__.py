"""Face generators behind one interface: prepare an identity, render it at VA targets.

`schematic` (embedded, CPU) is always available; `emostyle` (GPU) needs model weights.
Each backend reports a fingerprint of everything that changes its output, used as a
cache key so that resumed and repeated builds reuse finished work. The interface itself
(:class:`Backend`, :class:`Rendered`) lives in :mod:`stimgen.backends.base`.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

from stimgen.backends.base import (PROGRESS_ENV, Backend, Rendered, progress_enabled,
                                   showing_progress)
from stimgen.backends.model_needs import required_models
from stimgen.backends.schematic import SchematicBackend
from stimgen.errors import BackendUnavailableError
from stimgen.settings import RenderSpec

if TYPE_CHECKING:  # pragma: no cover - `stimgen rate` reads images without loading the protocol
    from stimgen.protocol.models import Identity

__all__ = ["Backend", "PROGRESS_ENV", "Rendered", "SchematicFaces", "backend_models",
           "create_backend", "progress_enabled", "showing_progress"]


class SchematicFaces(Backend):
    """The embedded parametric-face backend (see docs/backends-schematic.md): the pipeline's
    :class:`Backend` around :class:`stimgen.backends.schematic.SchematicBackend`, which draws."""

    name = "schematic"
    version = "2"                  # 2: faces from FACS action units (issue 15)
    renders_prototypes = True      # render() takes the basic-emotion prototype of each target

    def __init__(self, image_size: int, supersample: int, background: Sequence[int]):
        self._impl = SchematicBackend(image_size=image_size, supersample=supersample,
                                      background=tuple(background))
        self._options = {"image_size": image_size, "supersample": supersample,
                         "background": list(background)}

    def fingerprint(self) -> dict[str, Any]:
        return {"backend": self.name, "version": self.version, **self._options}

    def prepare(self, identity: Identity):
        return self._impl.identity_from_seed(int(identity.seed))

    def render(self, handle, targets, prototypes=None):
        """Faces at each (valence, arousal); ``prototypes[i]``, when not None, names the
        basic-emotion prototype target i shows (see ``expression_units``)."""
        prototypes = prototypes or [None] * len(targets)
        faces = [self._impl.render(handle, float(v), float(a), prototype)
                 for (v, a), prototype in zip(targets, prototypes)]
        return [Rendered(face.image, face.landmarks, dict(face.actions)) for face in faces]


def create_backend(spec: RenderSpec) -> Backend:
    """The backend ``spec`` names (:func:`stimgen.plan.render_spec`), ready to run; fails fast
    if it cannot run here."""
    name = spec.backend.name
    options = spec.backend.options
    if name == "schematic":
        return SchematicFaces(spec.output.image_size, options.supersample, options.background)
    if name == "emostyle":
        return _emostyle_backend(spec)
    raise BackendUnavailableError(f'unknown backend "{name}"')  # pragma: no cover - schema guards


def backend_models(backend: str, kinds: set[str], rater: str) -> list[str]:
    """Registry models a ``backend`` loads for identities of ``kinds`` ("seed", "latent",
    "image") and the primary ``rater``: none for schematic; for emostyle, those of
    :func:`stimgen.backends.model_needs.required_models` (without importing torch)."""
    if backend != "emostyle":
        return []
    return required_models(set(kinds), rater)


def _emostyle_backend(spec: RenderSpec) -> Backend:
    """The emostyle backend, after checking that every checkpoint it needs is installed."""
    from stimgen.backends.emostyle import EmoStyleBackend
    from stimgen.weights import require_weights

    # raises WeightsMissingError naming each missing file with its source and licence
    weights = require_weights(list(spec.models))
    return EmoStyleBackend(spec, weights)
