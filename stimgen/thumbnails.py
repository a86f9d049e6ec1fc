"""Thumbnails of stimuli: the small JPEGs of the report's contact sheets and flagged table.

A thumbnail is named by its stimulus image's sha256, so any thumbnail of that name shows
exactly that image. The drawing processes make one as they save each stimulus (from the
pixels they have in memory, in parallel with drawing) into ``.stimgen/thumbnails/``; the
report copies them instead of decoding every image again, so a report, a rebuild and a
resumed build spend no time on the thumbnails of stimuli that did not change.
"""
from __future__ import annotations

import hashlib
import io
from pathlib import Path

from PIL import Image

THUMBNAIL_SIZE = 96        # px, longer side
THUMBNAIL_QUALITY = 80     # JPEG quality; faces at 96 px show no artefacts above ~75


def thumbnail_name(stimulus: dict, size: int = THUMBNAIL_SIZE) -> str:
    """File name of a stimulus's thumbnail: its image's sha256 (or a hash of its id) and size.

    The name changes whenever the image or the thumbnail size does, so an earlier
    thumbnail of the same name can be reused as is.

    >>> thumbnail_name({"sha256": "AB" * 32, "stimulus_id": "id01_happy"})
    'abababababababababab-96.jpg'
    """
    digest = str(stimulus.get("sha256") or "").strip().lower()
    if len(digest) < 16:
        digest = hashlib.sha256(str(stimulus["stimulus_id"]).encode("utf-8")).hexdigest()
    return f"{digest[:20]}-{size}.jpg"


def thumbnail_bytes(image: Image.Image, size: int = THUMBNAIL_SIZE) -> bytes:
    """JPEG bytes of ``image`` shrunk to ``size`` px on its longer side, on white."""
    image = image.copy()
    image.thumbnail((size, size), Image.Resampling.LANCZOS, reducing_gap=2.0)
    if image.mode in ("RGBA", "LA", "P"):
        image = image.convert("RGBA")
        flat = Image.new("RGB", image.size, "white")
        flat.paste(image, mask=image.getchannel("A"))
        image = flat
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="JPEG", quality=THUMBNAIL_QUALITY, optimize=True)
    return buffer.getvalue()


def make_thumbnail(source: Path, size: int = THUMBNAIL_SIZE) -> bytes:
    """:func:`thumbnail_bytes` of the image file ``source`` (errors as Pillow raises them)."""
    with Image.open(source) as image:
        image.load()
        return thumbnail_bytes(image, size)
