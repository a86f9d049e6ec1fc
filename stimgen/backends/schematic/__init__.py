"""The embedded ``schematic`` backend: parametric front-view faces drawn on the CPU.

Identity from a seed (identity.py), FACS action units from valence-arousal (stimgen/facs.py),
curves and 68 iBUG landmarks (geometry.py), anti-aliased pixels (drawing.py).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from stimgen.backends.schematic.drawing import draw_face
from stimgen.facs import (
    ACTION_UNITS, AU_NAMES, BLEND_ANGLES, PROTOTYPES, ExpressionRangeError,
    UnknownExpressionError, expression_units, prototype_units)
from stimgen.backends.schematic.geometry import face_layout
from stimgen.backends.schematic.identity import (
    HAIR_STYLES, MONK_SKIN_TONES, SchematicIdentity, sample_identity)
from stimgen.errors import StimgenError

__all__ = [
    "ACTION_UNITS", "AU_NAMES", "BLEND_ANGLES", "HAIR_STYLES", "MONK_SKIN_TONES", "PROTOTYPES",
    "ExpressionRangeError", "RenderedFace", "SchematicBackend", "SchematicIdentity",
    "UnknownExpressionError", "expression_units", "face_landmarks", "prototype_units",
    "render_face", "sample_identity",
]

DEFAULT_BACKGROUND = (128, 128, 128)   # uniform neutral grey, standard for face stimuli


class RenderSettingsError(StimgenError, ValueError):
    """An image size, supersampling factor or background the renderer cannot use."""


@dataclass
class RenderedFace:
    """One drawn stimulus and what it shows."""

    image: Image.Image          # RGB, size x size
    landmarks: np.ndarray       # [68, 2] float64, (x, y) pixels in ``image``, iBUG 300-W order
    actions: dict[str, float]   # AU intensities drawn, by column ("AU01", ...), see ``ACTION_UNITS``


def _check_settings(size: int, supersample: int, background) -> tuple[int, int, tuple]:
    if int(size) != size or not 64 <= size <= 4096:
        raise RenderSettingsError(f"image size {size!r} must be an integer from 64 to 4096 pixels",
                                  hint="512 is the default and what the demo uses")
    if int(supersample) != supersample or not 1 <= supersample <= 4:
        raise RenderSettingsError(f"supersample {supersample!r} must be 1, 2, 3 or 4",
                                  hint="2 is smooth and fast; 1 disables anti-aliasing")
    colour = tuple(background)
    if len(colour) != 3 or not all(int(c) == c and 0 <= c <= 255 for c in colour):
        raise RenderSettingsError(f"background {background!r} must be three integers 0-255 (R, G, B)",
                                  hint="e.g. [128, 128, 128] for neutral grey")
    return int(size), int(supersample), tuple(int(c) for c in colour)


def face_landmarks(identity: SchematicIdentity, valence: float, arousal: float,
                   size: int = 512, *, prototype: str | None = None) -> np.ndarray:
    """The 68 landmarks ``render_face`` would return, without drawing ([68, 2] pixels)."""
    layout = face_layout(identity, expression_units(valence, arousal, prototype))
    return layout.landmarks * size


def render_face(identity: SchematicIdentity, valence: float, arousal: float, size: int = 512,
                *, supersample: int = 2, background=DEFAULT_BACKGROUND,
                prototype: str | None = None) -> RenderedFace:
    """Draw ``identity`` showing the expression of the VA point (valence, arousal).

    Parameters
    ----------
    identity : SchematicIdentity
        Who to draw, e.g. ``sample_identity(seed)``.
    valence, arousal : float
        Target in [-1, 1]; its norm is the intensity (see ``expression_units``).
    size : int
        Output width and height in pixels.
    supersample : int
        Draw this many times larger, then downsample with Lanczos (anti-aliasing).
    background : tuple of int
        RGB of the uniform background.
    prototype : str, optional
        Draw this basic-emotion prototype (a key of ``PROTOTYPES``) at the target's
        intensity instead of blending prototypes by the target's angle.

    Returns
    -------
    RenderedFace
        The image, its 68 landmarks in output pixels and the AU intensities.

    Examples
    --------
    >>> face = render_face(sample_identity(1), 0.8, 0.2, size=128)
    >>> face.image.size, face.landmarks.shape
    ((128, 128), (68, 2))
    """
    size, supersample, background = _check_settings(size, supersample, background)
    actions = expression_units(valence, arousal, prototype)
    layout = face_layout(identity, actions)
    image = draw_face(identity, layout, size, supersample, background)
    return RenderedFace(image=image, landmarks=layout.landmarks * size, actions=actions)


class SchematicBackend:
    """Backend interface over ``render_face``: seeds to identities, VA targets to faces."""

    name = "schematic"

    def __init__(self, image_size: int = 512, supersample: int = 2,
                 background: tuple[int, int, int] = DEFAULT_BACKGROUND):
        self.image_size, self.supersample, self.background = _check_settings(
            image_size, supersample, background)          # pixels, factor, RGB

    def identity_from_seed(self, seed: int) -> SchematicIdentity:
        return sample_identity(seed)

    def render(self, identity: SchematicIdentity, valence: float, arousal: float,
               prototype: str | None = None) -> RenderedFace:
        return render_face(identity, valence, arousal, self.image_size,
                           supersample=self.supersample, background=self.background,
                           prototype=prototype)
