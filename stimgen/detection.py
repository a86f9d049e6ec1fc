"""Finding faces in any image: the embedded MTCNN detector, and the choice of one face.

Owns :func:`detect_faces` (MTCNN with the weights shipped in ``stimgen/data/mtcnn``, checked
by sha256 and loaded once per process and device), :class:`DetectedFace`, :func:`choose_face`
and the errors for an image with no face or several.

Nothing is downloaded: the weights (davidsandberg/facenet's MTCNN, as converted by
facenet-pytorch, MIT; see ``stimgen/data/mtcnn/ATTRIBUTION.md``) come with stimgen.
"""
from __future__ import annotations

import functools
import hashlib
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from stimgen.errors import BackendUnavailableError, StimgenError

#: Folder of the shipped MTCNN state dicts.
WEIGHTS_FOLDER = Path(__file__).resolve().parent / "data" / "mtcnn"
#: sha256 of each shipped file, as published in the facenet-pytorch 2.6.0 wheel.
WEIGHTS_SHA256 = {
    "pnet": "a2a71925e0b9996a42f63e47efc1ca19043e69558b5c523b978d611dfae49c8f",
    "rnet": "bbb937de72efc9ef83b186c49f5f558467a1d7e3453a8ece0d71a886633f6a86",
    "onet": "165bfbe42940416ccfb977545cf0e976d5bf321f67083ae2aaaa5c764280118d",
}
#: One fingerprint of the detector (e.g. in cache keys): sha256 over the three files' hashes.
DETECTOR_SHA256 = hashlib.sha256(
    "".join(f"{name}:{WEIGHTS_SHA256[name]}\n" for name in ("pnet", "rnet", "onet")).encode()
).hexdigest()

#: What to do with an image holding several faces: use the largest (with a warning), or stop.
FACE_POLICIES = ("largest", "error")
#: Order of :attr:`DetectedFace.points`. "right"/"left" are the subject's, as in
#: :mod:`stimgen.landmarks`: the subject's right eye is the one on the image's left.
POINT_NAMES = ("right_eye", "left_eye", "nose", "mouth_right_corner", "mouth_left_corner")
RIGHT_EYE, LEFT_EYE, NOSE, MOUTH_RIGHT_CORNER, MOUTH_LEFT_CORNER = range(5)


class FaceNotFoundError(StimgenError):
    """An image in which the face detector found no face."""


class MultipleFacesError(StimgenError):
    """An image with several faces, under the ``multiple_faces: error`` policy."""


class MultipleFacesWarning(UserWarning):
    """An image with several faces; the largest was used."""


@dataclass(frozen=True)
class DetectedFace:
    """One face found by :func:`detect_faces`.

    Coordinates are image pixels, y down, pixel centres at integers (stimgen's convention).
    """

    box: tuple[float, float, float, float]   # x0, y0, x1, y1: box edges (forehead to chin)
    score: float                             # detector confidence, 0..1
    points: np.ndarray                       # [5, 2] (x, y) in POINT_NAMES order

    @property
    def area(self) -> float:
        """Box area, pixels squared."""
        x0, y0, x1, y1 = self.box
        return float(max(x1 - x0, 0.0) * max(y1 - y0, 0.0))

    def box_text(self) -> str:
        """The box as ``x0,y0,x1,y1`` in whole pixels, for messages."""
        return ",".join(f"{value:.0f}" for value in self.box)


# ----------------------------------------------------------------------------- detector

@functools.lru_cache(maxsize=None)
def load_detector(device: str = "cpu"):
    """The MTCNN networks with the shipped weights, in eval mode on ``device`` (cached).

    Each file's sha256 is checked before it is read, and it is read with
    ``torch.load(weights_only=True)``: loading never runs code from a file.

    Raises
    ------
    BackendUnavailableError
        A shipped file is missing or differs from the published one (a damaged install).
    """
    import torch

    from stimgen.checkpoints.torch_files import read_torch_file
    from stimgen.nets.mtcnn import MTCNN
    from stimgen.storage import sha256_file

    mtcnn = MTCNN()
    for name, expected in WEIGHTS_SHA256.items():
        path = WEIGHTS_FOLDER / f"{name}.pt"
        reinstall = "reinstall stimgen (pip install --force-reinstall --no-deps stimgen)"
        if not path.is_file():
            raise BackendUnavailableError(f"the face detector's weights are missing: {path}",
                                          hint=f"they ship with stimgen; {reinstall}")
        if sha256_file(path) != expected:
            raise BackendUnavailableError(
                f"the face detector's weights differ from the published ones: {path}",
                hint=f"the file was changed or damaged; {reinstall}")
        getattr(mtcnn, name).load_state_dict(read_torch_file(path))
    return mtcnn.requires_grad_(False).eval().to(torch.device(device))


def detect_faces(image: np.ndarray, *, min_face_size: float = 20.0,
                 thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7),
                 scale_factor: float = 0.709, device: str = "cpu") -> list[DetectedFace]:
    """Every face in an image, with a box, a confidence and 5 landmarks, largest first.

    MTCNN (Zhang et al. 2016) with its published settings; the weights ship with stimgen.

    Parameters
    ----------
    image : numpy.ndarray
        uint8 RGB [H, W, 3] (e.g. :func:`stimgen.photos.load_photo`).
    min_face_size : float
        Smallest face searched for, pixels (box side). Smaller finds tinier faces, slower.
    thresholds : (float, float, float)
        Confidence a candidate needs at each of MTCNN's three stages.
    scale_factor : float
        Ratio between the image pyramid's levels, in (0, 1).
    device : str
        torch device for the networks ("cpu", "cuda").

    Returns
    -------
    list of DetectedFace
        Sorted by box area, largest first; empty if there is no face.

    Examples
    --------
    >>> grey = np.full((160, 160, 3), 128, np.uint8)
    >>> detect_faces(grey)
    []
    """
    from stimgen.nets.mtcnn import detect

    found = detect(load_detector(str(device)), image, min_face_size=min_face_size,
                   thresholds=tuple(thresholds), scale_factor=scale_factor)
    faces = [DetectedFace(box=tuple(float(v) for v in box), score=float(score),
                          points=np.asarray(points, dtype=np.float64))
             for box, score, points in zip(found.boxes, found.scores, found.points)]
    return sorted(faces, key=lambda face: -face.area)


# ----------------------------------------------------------------------------- one face

def choose_face(faces: list[DetectedFace], *, source: str, policy: str = "largest"
                ) -> DetectedFace:
    """The one face of an image to use.

    Parameters
    ----------
    faces : list of DetectedFace
        Every face found (:func:`detect_faces`).
    source : str
        The image's path (or another name the user knows it by), named in messages.
    policy : {"largest", "error"}
        With several faces: use the one with the largest box and warn with a
        :class:`MultipleFacesWarning`, or raise :class:`MultipleFacesError`.

    Raises
    ------
    FaceNotFoundError
        If ``faces`` is empty.
    MultipleFacesError
        If there are several faces and ``policy == "error"``.

    Examples
    --------
    >>> small = DetectedFace((0, 0, 40, 50), 0.99, np.zeros((5, 2)))
    >>> large = DetectedFace((100, 0, 300, 240), 0.98, np.zeros((5, 2)))
    >>> import warnings
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     chosen = choose_face([small, large], source="group.jpg")
    >>> chosen is large, str(caught[0].message)[:45]
    (True, '2 faces found in group.jpg; using the largest')
    """
    if policy not in FACE_POLICIES:
        raise ValueError(f"policy must be one of {FACE_POLICIES}, got {policy!r}")
    if not faces:
        raise FaceNotFoundError(
            f"no face found in {source}",
            hint="use an image with a clearly visible, roughly frontal, well-lit face (for a "
                 "photo identity at least about 256 pixels across); the detector misses faces "
                 "in profile, heavily covered or under 20 pixels")
    if len(faces) == 1:
        return faces[0]
    largest = max(faces, key=lambda face: face.area)
    boxes = "; ".join(face.box_text() for face in faces)
    if policy == "error":
        raise MultipleFacesError(
            f"{len(faces)} faces found in {source} (boxes x0,y0,x1,y1: {boxes})",
            hint="crop the image to the one face you mean, or set `multiple_faces: largest` "
                 "(an emostyle backend option) to use the largest face")
    warnings.warn(f"{len(faces)} faces found in {source}; using the largest "
                  f"(box {largest.box_text()}); crop the image to that face to silence this",
                  MultipleFacesWarning, stacklevel=2)
    return largest
