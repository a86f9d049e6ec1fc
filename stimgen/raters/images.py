"""Rating any face images with any rater: the Python API behind `stimgen rate`.

Owns which files a list of paths means (:func:`find_images`), where the face of each image
is (:func:`locate_face`, by framing) and the ratings table (:func:`rate_images`), so that a
notebook rates a folder of KDEF photos the way the command does.
"""
from __future__ import annotations

import os
import warnings
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np
import pandas as pd
from PIL import Image

from stimgen.backends.base import Rendered
from stimgen.build_folder import STIMULI_DIR, STIMULI_TSV
from stimgen.errors import StimgenError
from stimgen.photos import load_photo
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
#: Most threads reading images for `stimgen rate` (decoding a JPEG takes about as long as
#: rating it with a small network; more threads than cores only compete).
MAX_READING_THREADS = 8
#: Valence and arousal SD (across images that differ) below which a rater's ratings are taken
#: as constant: random tiny models vary by about 0.0005, trained networks by tenths.
CONSTANT_RATINGS_SD = 0.002


class ImageRatingError(StimgenError):
    """Images that cannot be rated (missing, unreadable, no face), or a rater that cannot
    rate images; raised before anything is written."""


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


@dataclass(frozen=True)
class PreparedFace:
    """One image read and framed, ready for its rater (:func:`prepare_face`)."""

    path: Path
    face: LocatedFace
    rater_input: Any            # a uint8 face crop (raters with ``rate_crops``) or a Rendered
    sharpness: float


def prepare_face(path: Path, framing: str, crop_size: int | None = None) -> PreparedFace:
    """Read ``path``, locate its face and measure its sharpness: everything but the rating.

    ``crop_size`` is the side a rater that takes face crops (``rate_crops``, such as
    hsemotion) resizes them to, ``None`` for raters that frame a whole image themselves.
    The face region measured for sharpness is the crop hsemotion reads (the detected box,
    the FFHQ face box or the whole image), so when its input size is
    :data:`~stimgen.raters.quality.SHARPNESS_SIZE` the crop is resized once, for both.

    Raises
    ------
    StimgenError
        The image cannot be read, or (``detect``) shows no face.
    """
    image = read_image(path)
    face = locate_face(image, str(path), framing)
    region = np.ascontiguousarray(crop_box(image, face_region(image, face, framing)))
    resized = resize_bilinear(region, SHARPNESS_SIZE)
    if crop_size is None:
        rater_input: Any = as_rendered(image, face, framing)
    else:
        rater_input = resized if crop_size == SHARPNESS_SIZE else region
    return PreparedFace(path, face, rater_input, sharpness(resized))


def reading_threads() -> int:
    """Threads that read and frame images while the rater rates (decoding and numpy release
    the GIL): one per core, at most :data:`MAX_READING_THREADS`."""
    return max(1, min(os.cpu_count() or 1, MAX_READING_THREADS))


def rate_images(paths: Iterable[str | Path], rater: Rater, *, framing: str = "detect",
                batch_size: int = 32, progress=None, threads: int | None = None
                ) -> pd.DataFrame:
    """Rate every image that ``paths`` name (:func:`find_images`) with ``rater``.

    Images are read, framed and measured (:func:`prepare_face`) in ``threads`` threads,
    a few batches ahead, while the rater rates ``batch_size`` faces at a time. Every image
    is read: if any is unreadable or (with ``detect``) shows no face, rating stops there,
    the rest are still checked, and one :class:`ImageRatingError` lists them all; no table
    is returned, so the command writes nothing.

    Parameters
    ----------
    paths : iterable of str or Path
        Image files, folders of images, build folders.
    rater : Rater
        From :func:`image_rater` (or :func:`stimgen.raters.create_rater`).
    framing : str
        ``detect``, ``ffhq`` or ``full`` (:data:`FRAMINGS`).
    batch_size : int
        Faces per rater call.
    progress : callable, optional
        Called with the number of images rated after each batch.
    threads : int, optional
        Threads reading images; default :func:`reading_threads`.

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
    if framing not in FRAMINGS:
        raise ImageRatingError(f"unknown framing {framing!r}; choose one of {', '.join(FRAMINGS)}")
    files = find_images(paths)
    if framing == "detect":
        detector()                  # a missing detector is one error, not one per image
    crop_size = getattr(rater, "input_size", None) if hasattr(rater, "rate_crops") else None

    def prepare(path: Path) -> PreparedFace | str:
        try:
            return prepare_face(path, framing, crop_size)
        except StimgenError as err:
            return err.render().replace("\n", "\n    ")

    rows: list[dict] = []
    problems: list[str] = []
    batch: list[PreparedFace] = []
    with ThreadPoolExecutor(max_workers=threads or reading_threads()) as pool:
        for prepared in _in_order(pool, prepare, files, ahead=2 * batch_size):
            if isinstance(prepared, str):
                problems.append(prepared)
                batch = []
            elif not problems:      # after a problem, the rest are only checked
                batch.append(prepared)
                if len(batch) == batch_size:
                    rows += _rate_batch(batch, rater, framing)
                    if progress is not None:
                        progress(len(batch))
                    batch = []
    if problems:
        raise ImageRatingError(
            f"{len(problems)} of {len(files)} image(s) cannot be rated; nothing was "
            "written:\n  " + "\n  ".join(problems),
            hint="remove or replace these files (or, for faces the detector misses, try "
                 "--framing full on tightly cropped faces)")
    if batch:
        rows += _rate_batch(batch, rater, framing)
        if progress is not None:
            progress(len(batch))
    table = pd.DataFrame(rows)
    suspicious = constant_ratings(table)
    if suspicious is not None:
        warnings.warn(suspicious, stacklevel=2)
    return table


def constant_ratings(table: pd.DataFrame) -> str | None:
    """Why a ratings table looks like the work of a network that ignores the face, or None.

    Images that differ (their sharpness differs) but all got the same valence and arousal
    (standard deviation below :data:`CONSTANT_RATINGS_SD` for both, over at least 3
    images) come from random or untrained weights (a make-tiny model, a broken export),
    not from a network that rates expressions.

    >>> table = pd.DataFrame({"valence": [0.04, 0.0401, 0.0399], "arousal": [0.11] * 3,
    ...                       "sharpness": [10.0, 20.0, 30.0], "rater": ["emonet"] * 3})
    >>> constant_ratings(table)[:46]
    'all 3 images got the same rating from emonet ('
    >>> constant_ratings(table.assign(valence=[-0.5, 0.1, 0.6])) is None
    True
    """
    if len(table) < 3 or table["sharpness"].nunique() < 2:
        return None
    spread = table[["valence", "arousal"]].std(ddof=0)
    if (spread >= CONSTANT_RATINGS_SD).any():
        return None
    return (f"all {len(table)} images got the same rating from {table['rater'].iloc[0]} "
            f"(valence {table['valence'].mean():.3f}, arousal {table['arousal'].mean():.3f}, "
            f"SD below {CONSTANT_RATINGS_SD}) although the images differ: the network's output "
            "does not depend on the face, as with random or untrained weights; check the "
            "weights file (`stimgen models inspect FILE`)")


def _in_order(pool: ThreadPoolExecutor, function: Callable, items: Sequence, ahead: int
              ) -> Iterator:
    """``function`` of each item, in order, computed in ``pool`` at most ``ahead`` items in
    advance (so that a slow rater never has thousands of decoded images waiting)."""
    pending: deque = deque()
    upcoming = iter(items)
    for item in upcoming:
        pending.append(pool.submit(function, item))
        if len(pending) >= ahead:
            break
    while pending:
        result = pending.popleft().result()
        following = next(upcoming, _END)
        if following is not _END:
            pending.append(pool.submit(function, following))
        yield result


_END = object()


def _rate_batch(batch: Sequence[PreparedFace], rater: Rater, framing: str) -> list[dict]:
    inputs = [prepared.rater_input for prepared in batch]
    if hasattr(rater, "rate_crops"):
        details = rater.rate_crops(inputs)
    else:
        details = rating_details(rater, inputs)
    va = details.va if details is not None else np.asarray(rater.rate(inputs, None))
    rows = []
    for i, prepared in enumerate(batch):
        row: dict = {"file": str(prepared.path), "rater": rater.info.name, "framing": framing,
                     "valence": float(va[i, 0]), "arousal": float(va[i, 1])}
        if details is not None:
            row["category"] = details.categories[int(np.argmax(details.probabilities[i]))]
            row.update({f"p_{name}": float(p)
                        for name, p in zip(details.categories, details.probabilities[i])})
        face = prepared.face
        if face.box is not None:
            row.update(zip(FACE_COLUMNS, (*face.box, face.score)))
        row["sharpness"] = prepared.sharpness
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
