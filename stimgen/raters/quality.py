"""Per-image quality measures of a face crop that need no model: sharpness.

Used by `stimgen rate` (column ``sharpness``) and by builds (``quality_sharpness``); they
describe images so generator artefacts can be sorted out, and set no threshold themselves.
"""
from __future__ import annotations

import numpy as np

#: ITU-R BT.601 luma weights (what Pillow's ``convert("L")`` and OpenCV's RGB2GRAY use).
LUMA_WEIGHTS = (0.299, 0.587, 0.114)
#: Side, in pixels, of the square a crop is resized to before its sharpness is measured in
#: `stimgen rate`, so that photos of different resolutions give comparable values.
SHARPNESS_SIZE = 224
#: Longest side, in pixels, of the copy of a generated face the detector scores in builds.
DETECTION_SIZE = 256


def greyscale(image: np.ndarray) -> np.ndarray:
    """float64 [H, W] luma (0-255) of a uint8 RGB [H, W, 3] or grey [H, W] image.

    >>> greyscale(np.array([[[255, 0, 0], [0, 0, 255]]], np.uint8)).round(3).tolist()
    [[76.245, 29.07]]
    """
    image = np.asarray(image)
    if image.ndim == 2:
        return image.astype(np.float64)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an RGB [H, W, 3] or grey [H, W] image, got {image.shape}")
    return image.astype(np.float64) @ np.asarray(LUMA_WEIGHTS)


def sharpness(crop: np.ndarray) -> float:
    """Variance of the Laplacian of a face crop's greyscale: higher is sharper.

    The blur measure of Pech-Pacheco et al. (2000), the one OpenCV users know as
    ``cv2.Laplacian(grey, cv2.CV_64F).var()``: the 4-neighbour Laplacian
    ``[[0, 1, 0], [1, -4, 1], [0, 1, 0]]`` applied to the luma (0-255 scale), and the
    variance of the result. We take only pixels whose four neighbours lie inside the
    crop (OpenCV reflects the border), so the border adds nothing. A blurred or
    smeared face has weak edges and a low value; noise raises it, so compare crops of
    one kind and one size (`stimgen rate` measures every crop at
    :data:`SHARPNESS_SIZE` pixels).

    Parameters
    ----------
    crop : numpy.ndarray
        uint8 RGB [H, W, 3] or grey [H, W] face crop, at least 3 x 3 pixels.

    Returns
    -------
    float
        Variance of the Laplacian, in squared grey levels; 0 for a flat image.

    Examples
    --------
    >>> flat = np.full((8, 8, 3), 128, np.uint8)
    >>> sharpness(flat)
    0.0
    >>> checker = (np.indices((8, 8)).sum(axis=0) % 2 * 255).astype(np.uint8)
    >>> sharpness(checker) > sharpness(np.full((8, 8), 255, np.uint8))
    True
    """
    grey = greyscale(crop)
    if grey.shape[0] < 3 or grey.shape[1] < 3:
        raise ValueError(f"a crop needs at least 3 x 3 pixels for its sharpness, got "
                         f"{grey.shape[1]} x {grey.shape[0]}")
    laplacian = (grey[:-2, 1:-1] + grey[2:, 1:-1] + grey[1:-1, :-2] + grey[1:-1, 2:]
                 - 4.0 * grey[1:-1, 1:-1])
    return float(laplacian.var())


def build_quality(face) -> dict[str, float]:
    """The quality columns of one generated FFHQ-aligned face (emostyle): ``quality_sharpness``
    on its face box at :data:`SHARPNESS_SIZE` pixels, and ``quality_face_score``, the
    embedded detector's confidence that the image holds a face (0 when it finds none).

    Faces of other framings (schematic drawings) get no quality columns: their sharpness
    says nothing about generator artefacts and the detector was trained on photos.
    """
    if face.extras.get("framing") != "ffhq":
        return {}
    from stimgen.raters.hsemotion import crop_box, face_box, resize_bilinear   # imports torch

    pixels = np.asarray(face.image.convert("RGB"), dtype=np.uint8)
    crop = resize_bilinear(np.ascontiguousarray(crop_box(pixels, face_box(face))),
                           SHARPNESS_SIZE)
    from stimgen.detection import detect_faces

    # An FFHQ face fills most of the frame: a 256-pixel copy is plenty for the detector and
    # keeps this off the hot path (MTCNN's pyramid costs ~16x more at 1024 pixels).
    small = face.image.convert("RGB")
    small.thumbnail((DETECTION_SIZE, DETECTION_SIZE))
    found = detect_faces(np.asarray(small, dtype=np.uint8))
    return {"quality_sharpness": sharpness(crop),
            "quality_face_score": max((float(f.score) for f in found), default=0.0)}
