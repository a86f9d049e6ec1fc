"""Targets taken from reference faces (``targets.from_images``): each reference image is rated
by the build's primary rater and its (valence, arousal) becomes a target named after the file.

:func:`stimgen.plan.reference_targets` runs :func:`reference_points` once when a build starts,
before anything is planned; the build keeps a pixels-only copy of every reference for the
report (:func:`reference_copy`).
"""
from __future__ import annotations

import io
import math

from PIL import Image

from stimgen.errors import StimgenError
from stimgen.protocol.models import Point, reference_label
from stimgen.storage import sha256_file

#: Longest side, in pixels, of the copy of a reference face kept in the build folder.
REFERENCE_COPY_SIZE = 256


class ReferenceTargetError(StimgenError):
    """A reference face that cannot become a target."""


def reference_points(paths: list[str], files: list, rater_name: str, backend: str
                     ) -> tuple[list[Point], list[dict]]:
    """Every reference face rated by the primary rater: one point target per reference and
    one record per reference.

    Parameters
    ----------
    paths : list of str
        ``targets.from_images`` as written (they name the targets).
    files : list of Path
        The same files, resolved against the protocol file.
    rater_name, backend : str
        The build's primary rater (resolved: a concrete name) and its backend.

    Returns
    -------
    (list of Point, list of dict)
        A point per reference (label: the file name without extension); and a record per
        reference: label, source path, sha256, the rater and its (valence, arousal), and
        whether the reading lay outside the unit circle and was scaled onto it.

    Raises
    ------
    ReferenceTargetError
        The primary rater cannot rate a photo (``geometric`` needs a neutral face of the
        same person), or a reference shows no face.
    """
    if rater_name == "geometric":
        raise ReferenceTargetError(
            "targets.from_images: the primary rater is geometric, which cannot rate a photo "
            "(it measures a face against the same person's neutral face)",
            hint="set validation.rater: hsemotion (or emonet) to take targets from images")
    from stimgen.raters import create_rater
    from stimgen.raters.images import rate_images

    table = rate_images(files, create_rater(rater_name, backend), framing="detect")
    points, references = [], []
    for path, file, row in zip(paths, files, table.to_dict("records")):
        valence, arousal = float(row["valence"]), float(row["arousal"])
        norm = math.hypot(valence, arousal)
        scaled = norm > 1.0              # a rater's square [-1, 1]^2 reaches past the circle
        if scaled:
            valence, arousal = valence / norm, arousal / norm
        label = reference_label(path)
        points.append(Point(label=label, valence=valence, arousal=arousal))
        references.append({"label": label, "source": str(path), "sha256": sha256_file(file),
                           "rater": rater_name, "valence": valence, "arousal": arousal,
                           "scaled_onto_circle": scaled})
    return points, references


def reference_copy(path) -> bytes:
    """PNG bytes of a reference face, at most :data:`REFERENCE_COPY_SIZE` pixels, pixels only."""
    from stimgen.raters.images import read_image

    image = Image.fromarray(read_image(path))
    image.thumbnail((REFERENCE_COPY_SIZE, REFERENCE_COPY_SIZE))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=6)
    return buffer.getvalue()
