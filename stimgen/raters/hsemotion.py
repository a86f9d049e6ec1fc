"""The ``hsemotion`` rater: HSEmotion ``enet_b0_8_va_mtl`` (Savchenko) on rendered faces.

Owns the face framing for rendered faces (:func:`face_box`) and :class:`HSEmotionRater`, which
gives valence/arousal and the 8 expression probabilities; the network itself (its input
contract and the check of an ONNX file) is :mod:`stimgen.nets.hsemotion`.

The network was trained on AffectNet, independently of both stimgen generators, so its
ratings are held-out measurements for schematic and emostyle faces alike.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from stimgen.backends.base import Rendered
from stimgen.nets.hsemotion import (  # noqa: F401  (the network's names, for this rater's users)
    DEFAULT_BATCH, IMAGENET_MEAN, IMAGENET_STD, INPUT_NAME, INPUT_SIZE, OUTPUT_WIDTH,
    HSEmotionModelError, HSEmotionNetwork, check_signature, load_hsemotion, normalise,
    onnx_providers, preprocess, resize_bilinear, softmax)
from stimgen.raters.base import RaterInfo, RatingDetails

#: The 8 expression logits of the network's output, in column order (AffectNet's 8 classes).
EXPRESSION_CATEGORIES = ("anger", "contempt", "disgust", "fear", "happiness", "neutral",
                         "sadness", "surprise")

#: Tight face box inside an FFHQ-aligned frame, as fractions of its width and height
#: (x0, y0, x1, y1). FFHQ alignment (Karras et al. 2019) scales a face so that
#: max(2 x eye distance, 1.8 x eye-to-mouth distance) is half the frame and puts the point
#: one tenth of the way from the eye midpoint to the mouth at the centre, so for a typical
#: face the eyes sit near (0.375, 0.48) and (0.625, 0.48) and the mouth near (0.5, 0.72).
#: With an eye distance of a quarter of the frame, the cheek-to-cheek breadth (about 2.2
#: eye distances) spans 0.22-0.78, the brows (about half an eye distance above the eyes)
#: are at 0.36 and the chin (about 0.7 eye distances below the mouth) at 0.90: the box a
#: face detector draws, which is what HSEmotion was trained on (MTCNN crops of AffectNet).
#: Derived from geometry, not tuned on any rating.
FFHQ_FACE_BOX = (0.22, 0.34, 0.78, 0.90)
#: Margin added on every side of the 68-landmark extent (brows to chin, jaw to jaw), as a
#: fraction of its width/height: detector boxes include a little forehead and cheek.
LANDMARK_MARGIN = 0.05


# ----------------------------------------------------------------------------- framing

def landmark_box(landmarks: np.ndarray, width: int, height: int,
                 margin: float = LANDMARK_MARGIN) -> tuple[float, float, float, float]:
    """Tight face box (x0, y0, x1, y1) around 68 landmarks, grown by ``margin`` per side.

    Parameters
    ----------
    landmarks : numpy.ndarray
        [68, 2] pixel coordinates (x, y), iBUG 300-W order.
    width, height : int
        Image size; the box is clipped to it.
    margin : float
        Fraction of the landmarks' width (height) added left and right (top and bottom).

    Examples
    --------
    >>> points = np.array([[20.0, 30.0], [80.0, 90.0]])
    >>> landmark_box(points, 100, 100, margin=0.1)
    (14.0, 24.0, 86.0, 96.0)
    """
    points = np.asarray(landmarks, dtype=float)
    if points.ndim != 2 or points.shape[1] != 2 or len(points) == 0:
        raise ValueError(f"landmarks must be [K, 2] pixel coordinates, got {points.shape}")
    (x0, y0), (x1, y1) = points.min(axis=0), points.max(axis=0)
    dx, dy = (x1 - x0) * margin, (y1 - y0) * margin
    return (float(max(0.0, x0 - dx)), float(max(0.0, y0 - dy)),
            float(min(width, x1 + dx)), float(min(height, y1 + dy)))


def face_box(face: Rendered) -> tuple[float, float, float, float]:
    """Where the face of a rendered image is, as HSEmotion should see it: (x0, y0, x1, y1).

    FFHQ-aligned frames (``extras["framing"] == "ffhq"``, emostyle output) use
    :data:`FFHQ_FACE_BOX`; faces with 68 landmarks (schematic faces) use
    :func:`landmark_box`; any other image is taken whole.

    >>> from PIL import Image
    >>> face_box(Rendered(Image.new("RGB", (1000, 500))))
    (0.0, 0.0, 1000.0, 500.0)
    >>> face_box(Rendered(Image.new("RGB", (100, 100)), extras={"framing": "ffhq"}))
    (22.0, 34.0, 78.0, 90.0)
    """
    width, height = face.image.size
    if face.extras.get("framing") == "ffhq":
        x0, y0, x1, y1 = FFHQ_FACE_BOX
        return (x0 * width, y0 * height, x1 * width, y1 * height)
    if face.landmarks is not None:
        return landmark_box(face.landmarks, width, height)
    return (0.0, 0.0, float(width), float(height))


def crop_box(image: np.ndarray, box: Sequence[float]) -> np.ndarray:
    """The pixels of ``image`` [H, W, C] inside ``box`` (x0, y0, x1, y1), clipped to the
    image, widened outwards to whole pixels.

    >>> crop_box(np.zeros((10, 20, 3), np.uint8), (2.5, 1.0, 30.0, 4.2)).shape
    (4, 18, 3)
    """
    height, width = image.shape[:2]
    x0, y0 = max(0, int(np.floor(box[0]))), max(0, int(np.floor(box[1])))
    x1, y1 = min(width, int(np.ceil(box[2]))), min(height, int(np.ceil(box[3])))
    if x1 <= x0 or y1 <= y0:
        raise ValueError(f"face box {tuple(box)} is empty inside a {width}x{height} image")
    return image[y0:y1, x0:x1]


def rgb_pixels(face: Rendered) -> np.ndarray:
    """uint8 [H, W, 3] pixels of a rendered face's image."""
    return np.asarray(face.image.convert("RGB"), dtype=np.uint8)


# ----------------------------------------------------------------------------- the rater

class HSEmotionRater:
    """HSEmotion valence, arousal and expression probabilities of rendered faces.

    Parameters
    ----------
    network : HSEmotionNetwork
        From :func:`load_hsemotion`.
    info : RaterInfo
        Name, description and circularity (see :func:`stimgen.raters.describe_rater`).

    Each face is cropped with :func:`face_box` and rated alone: the neutral reference is
    not used. Valence and arousal are clamped to [-1, 1].
    """

    categories = EXPRESSION_CATEGORIES

    def __init__(self, network: HSEmotionNetwork, info: RaterInfo):
        self.network = network
        self.info = info

    #: Side, in pixels, of the square every crop is resized to (:func:`resize_bilinear`).
    input_size = INPUT_SIZE

    def rate_crops(self, crops: Sequence[np.ndarray]) -> RatingDetails:
        """VA [N, 2] and the expression probabilities [N, 8] of uint8 RGB face crops
        [H, W, 3] of any size (a crop of :attr:`input_size` pixels is used as it is)."""
        scores = self.network.scores(preprocess(crops))
        va = np.clip(scores[:, -2:].astype(float), -1.0, 1.0)
        return RatingDetails(va=va, probabilities=softmax(scores[:, :8].astype(float)),
                             categories=EXPRESSION_CATEGORIES)

    def rate_details(self, faces: Sequence[Rendered],
                     neutral: Rendered | None = None) -> RatingDetails:
        """VA [N, 2] and the expression probabilities [N, 8] of ``faces``."""
        return self.rate_crops([crop_box(rgb_pixels(face), face_box(face)) for face in faces])

    def rate(self, faces: Sequence[Rendered], neutral: Rendered | None = None) -> np.ndarray:
        """[N, 2] achieved (valence, arousal) of ``faces``, each in [-1, 1]."""
        return self.rate_details(faces, neutral).va
