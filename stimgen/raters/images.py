"""Rating any face images with any rater: the Python API behind `stimgen rate`.

Owns which files a list of paths means (:func:`find_images`), where the face of each image
is (:func:`locate_face`, by framing) and the ratings table (:func:`rate_images`), so that a
notebook rates a folder of KDEF photos the way the command does.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pandas as pd
from PIL import Image

from stimgen.backends.base import Rendered
from stimgen.build_folder import STIMULI_DIR, STIMULI_TSV
from stimgen.errors import StimgenError
from stimgen.raters import RATER_DESCRIPTIONS, create_rater
from stimgen.raters.base import Rater, rating_details
from stimgen.raters.hsemotion import FFHQ_FACE_BOX, crop_box, resize_bilinear
from stimgen.raters.quality import SHARPNESS_SIZE, sharpness

#: How the face of an image is found: ``detect`` (the embedded MTCNN detector, tight box),
#: ``ffhq`` (an FFHQ-aligned frame: each rater's own framing of it), ``full`` (the whole
#: image is the face crop).
FRAMINGS = ("detect", "ffhq", "full")
#: File name endings scanned for in folders (case-insensitive).
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff", ".bmp", ".gif", ".ppm")
#: Raters that can rate a lone image (geometric needs the identity's neutral face).
IMAGE_RATERS = ("emonet", "hsemotion")
#: Shortest side an image may have, pixels: below this there is no face to rate.
MIN_IMAGE_SIDE = 16
#: The backend name raters are described with when the images' origin is unknown.
UNKNOWN_ORIGIN = "images"
FACE_COLUMNS = ("face_x0", "face_y0", "face_x1", "face_y1", "face_score")


class ImageRatingError(StimgenError):
    """Images that cannot be rated (missing, unreadable, no face), or a rater that cannot
    rate images; raised before anything is rated or written."""


@dataclass(frozen=True)
class LocatedFace:
    """Where the face of one image is: a detected box, or the framing's fixed region."""

    box: tuple[float, float, float, float] | None   # detected (x0, y0, x1, y1), pixels
    score: float | None                             # the detector's confidence


# ----------------------------------------------------------------------------- which files

def is_build_folder(folder: Path) -> bool:
    """Whether ``folder`` is a stimgen build (its stimuli are in ``stimuli/``)."""
    return (folder / STIMULI_TSV).is_file() and (folder / STIMULI_DIR).is_dir()


def find_images(paths: Iterable[str | Path]) -> list[Path]:
    """The image files that ``paths`` name, in a fixed order.

    A file is taken as given; a folder gives the files directly inside it whose names end
    in :data:`IMAGE_SUFFIXES`, sorted by name (sub-folders are not entered); a build
    folder gives its ``stimuli/`` images. A file named twice is rated once.

    Raises
    ------
    ImageRatingError
        A path does not exist, or a folder holds no image.

    Examples
    --------
    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> for name in ("b.png", "a.JPG", "notes.txt"):
    ...     (folder / name).write_bytes(b"")
    0
    0
    0
    >>> [p.name for p in find_images([folder])]
    ['a.JPG', 'b.png']
    """
    found: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            folder = path / STIMULI_DIR if is_build_folder(path) else path
            images = sorted(p for p in folder.iterdir()
                            if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            if not images:
                raise ImageRatingError(
                    f"{folder}: no images in this folder",
                    hint=f"images are files ending in {', '.join(IMAGE_SUFFIXES)}; "
                         "sub-folders are not searched, name them too")
            found += images
        elif path.is_file():
            found.append(path)
        else:
            raise ImageRatingError(f"{path}: no such file or folder")
    return list(dict.fromkeys(found))


def read_image(path: Path) -> np.ndarray:
    """uint8 RGB [H, W, 3] pixels of an image, upright; raises a StimgenError naming it."""
    from stimgen.backends.emostyle.photo import load_photo

    return load_photo(path, min_side=MIN_IMAGE_SIDE)


# ----------------------------------------------------------------------------- framing

def locate_face(image: np.ndarray, source: str, framing: str) -> LocatedFace:
    """Where the face of ``image`` is under ``framing`` (see :data:`FRAMINGS`).

    ``detect`` runs the embedded detector (:mod:`stimgen.detection`) and keeps the
    largest face (a warning names an image with several); an image without a face raises
    its ``FaceNotFoundError``, naming ``source``.
    """
    if framing not in FRAMINGS:
        raise ImageRatingError(f"unknown framing {framing!r}; choose one of {', '.join(FRAMINGS)}")
    if framing != "detect":
        return LocatedFace(None, None)
    choose_face, detect_faces = detector()
    face = choose_face(detect_faces(image), source=source, policy="largest")
    return LocatedFace(tuple(float(v) for v in face.box), float(face.score))


def detector():
    """``(choose_face, detect_faces)`` of the embedded MTCNN detector, imported on first use.

    Raises
    ------
    ImageRatingError
        This installation has no :mod:`stimgen.detection`.
    """
    try:
        from stimgen.detection import choose_face, detect_faces
    except ImportError as err:
        raise ImageRatingError(f"--framing detect needs the embedded face detector, which "
                               f"this installation lacks ({err})",
                               hint="use --framing full for face crops, or --framing ffhq "
                                    "for FFHQ-aligned images") from err
    return choose_face, detect_faces


def face_region(image: np.ndarray, face: LocatedFace,
                framing: str) -> tuple[float, float, float, float]:
    """The box measured for quality: the detected box, the FFHQ face box, or everything."""
    height, width = image.shape[:2]
    if face.box is not None:
        return face.box
    if framing == "ffhq":
        x0, y0, x1, y1 = FFHQ_FACE_BOX
        return (x0 * width, y0 * height, x1 * width, y1 * height)
    return (0.0, 0.0, float(width), float(height))


def as_rendered(image: np.ndarray, face: LocatedFace, framing: str) -> Rendered:
    """What a rater is given: the detected face crop, the FFHQ frame (which the rater
    frames itself), or the whole image."""
    if framing == "ffhq":
        return Rendered(Image.fromarray(image), extras={"framing": "ffhq"})
    if face.box is not None:
        return Rendered(Image.fromarray(np.ascontiguousarray(crop_box(image, face.box))))
    return Rendered(Image.fromarray(image))


# ----------------------------------------------------------------------------- rating

def image_rater(name: str, weights: str | Path | None = None) -> Rater:
    """A rater that can rate lone images, loaded (``weights``: a file to use instead of
    the registry's).

    Raises
    ------
    ImageRatingError
        ``name`` is not a rater, or is one that needs more than an image (geometric).
    """
    if name == "geometric":
        raise ImageRatingError(
            "the geometric rater cannot rate images: it compares 68 landmarks with the same "
            "identity's neutral face, which a folder of images does not have",
            hint=f"use --rater {' or --rater '.join(IMAGE_RATERS)}; geometric ratings of "
                 "schematic faces come with `stimgen build`")
    if name not in RATER_DESCRIPTIONS:
        raise ImageRatingError(f"unknown rater {name!r}",
                               hint=f"raters that rate images: {', '.join(IMAGE_RATERS)}")
    return create_rater(name, UNKNOWN_ORIGIN, weights=weights)


def rate_images(paths: Iterable[str | Path], rater: Rater, *, framing: str = "detect",
                batch_size: int = 32, progress=None) -> pd.DataFrame:
    """Rate every image that ``paths`` name (:func:`find_images`) with ``rater``.

    Every image is read and its face located first; if any image is unreadable or (with
    ``detect``) shows no face, one :class:`ImageRatingError` lists them all and nothing
    is rated. Faces are then rated ``batch_size`` at a time.

    Parameters
    ----------
    paths : iterable of str or Path
        Image files, folders of images, build folders.
    rater : Rater
        From :func:`image_rater` (or :func:`stimgen.raters.create_rater`).
    framing : str
        ``detect``, ``ffhq`` or ``full`` (:data:`FRAMINGS`).
    progress : callable, optional
        Called with the number of images rated after each batch.

    Returns
    -------
    pandas.DataFrame
        One row per image, in file order: ``file``, ``rater``, ``framing``, ``valence``,
        ``arousal``; with a categorical rater ``category`` and ``p_<category>``; with
        ``detect`` the face box ``face_x0 .. face_y1`` (pixels) and ``face_score``; and
        ``sharpness`` (:func:`stimgen.raters.quality.sharpness` of the face region at
        :data:`~stimgen.raters.quality.SHARPNESS_SIZE` pixels).

    Examples
    --------
    >>> table = rate_images(["photos/"], image_rater("hsemotion"))   # doctest: +SKIP
    >>> table[["file", "valence", "arousal", "category"]].head()     # doctest: +SKIP
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    files = find_images(paths)
    if framing == "detect":
        detector()                  # a missing detector is one error, not one per image
    faces: list[LocatedFace] = []
    problems: list[str] = []
    for path in files:              # every problem found before any rating
        try:
            faces.append(locate_face(read_image(path), str(path), framing))
        except StimgenError as err:
            problems.append(err.render().replace("\n", "\n    "))
    if problems:
        raise ImageRatingError(
            f"{len(problems)} of {len(files)} image(s) cannot be rated; nothing was rated "
            "or written:\n  " + "\n  ".join(problems),
            hint="remove or replace these files (or, for faces the detector misses, try "
                 "--framing full on tightly cropped faces)")
    rows: list[dict] = []
    for start in range(0, len(files), batch_size):
        chunk = list(zip(files[start:start + batch_size], faces[start:start + batch_size]))
        rows += _rate_chunk(chunk, rater, framing)
        if progress is not None:
            progress(len(chunk))
    return pd.DataFrame(rows)


def _rate_chunk(chunk: Sequence[tuple[Path, LocatedFace]], rater: Rater,
                framing: str) -> list[dict]:
    images = [read_image(path) for path, _ in chunk]
    rendered = [as_rendered(image, face, framing) for image, (_, face) in zip(images, chunk)]
    details = rating_details(rater, rendered)
    va = details.va if details is not None else np.asarray(rater.rate(rendered, None))
    rows = []
    for i, (image, (path, face)) in enumerate(zip(images, chunk)):
        row: dict = {"file": str(path), "rater": rater.info.name, "framing": framing,
                     "valence": float(va[i, 0]), "arousal": float(va[i, 1])}
        if details is not None:
            row["category"] = details.predicted[i]
            row.update({f"p_{name}": float(p)
                        for name, p in zip(details.categories, details.probabilities[i])})
        if face.box is not None:
            row.update(zip(FACE_COLUMNS, (*face.box, face.score)))
        region = crop_box(image, face_region(image, face, framing))
        row["sharpness"] = sharpness(resize_bilinear(np.ascontiguousarray(region),
                                                     SHARPNESS_SIZE))
        rows.append(row)
    return rows


def summarize_ratings(table: pd.DataFrame) -> list[str]:
    """A few lines about a ratings table: count, mean valence/arousal, categories.

    >>> summarize_ratings(pd.DataFrame({"rater": ["hsemotion"] * 2, "valence": [0.5, 0.1],
    ...                                 "arousal": [0.2, 0.4], "category": ["happiness"] * 2}))
    ['2 image(s) rated by hsemotion', 'valence 0.30 ± 0.28, arousal 0.30 ± 0.14 (mean ± SD)', 'categories: happiness 2']
    """
    if table.empty:
        return ["no image rated"]
    lines = [f"{len(table)} image(s) rated by {table['rater'].iloc[0]}"]
    sd = (lambda c: table[c].std(ddof=1)) if len(table) > 1 else (lambda c: 0.0)
    lines.append(f"valence {table['valence'].mean():.2f} ± {sd('valence'):.2f}, arousal "
                 f"{table['arousal'].mean():.2f} ± {sd('arousal'):.2f} (mean ± SD)")
    if "category" in table:
        counts = table["category"].value_counts()
        lines.append("categories: " + ", ".join(f"{name} {n}" for name, n in counts.items()))
    return lines


def collect_warnings(caught: Sequence[warnings.WarningMessage]) -> list[str]:
    """The distinct messages of warnings caught while rating, in order."""
    return list(dict.fromkeys(str(w.message) for w in caught))
