"""FFHQ-style face alignment: the crop a StyleGAN2 trained on FFHQ expects, from 68 landmarks.

Owns the oriented crop square of the FFHQ dataset script (``ffhq_quad``), the warp of a
photo to the generator's resolution (``align_face``) and the exact point mapping both ways.
Faces are found and chosen in :mod:`stimgen.detection`; the square needs only the eye centres
and the mouth corners, so it is made from 68 iBUG landmarks or from the detector's 5 points.

The square is computed as NVlabs/ffhq-dataset's ``recreate_aligned_images`` does: its
x axis runs along the eye-to-eye vector turned toward the perpendicular of the
eye-to-mouth vector, its half side is max(2.0 x eye distance, 1.8 x eye-to-mouth
distance), its centre sits 10 % of the way from the eye midpoint to the mouth midpoint.
The photo is shrunk, cropped, reflect-padded with a blurred border, warped at 4x the
output size and downsampled, as in that script.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFilter

from stimgen import detection
from stimgen.detection import (  # noqa: F401  (raised for photos; defined with the detector)
    FaceNotFoundError, MultipleFacesError, MultipleFacesWarning)
from stimgen.landmarks import LEFT_EYE, MOUTH_LEFT_CORNER, MOUTH_RIGHT_CORNER, N_LANDMARKS, \
    RIGHT_EYE, LandmarkError, check_landmarks

#: Warp resolution relative to the output (FFHQ: 4096 for 1024), then Lanczos down-sampling.
SUPERSAMPLE = 4
#: Upscaling of the face beyond which the aligned image is soft enough to warn about.
MAX_UPSCALE = 4.0


class SmallFaceWarning(UserWarning):
    """A face so small in its photo that the aligned image is strongly upscaled."""


@dataclass(frozen=True)
class AlignedFace:
    """A face cropped and rotated as FFHQ faces are, at the generator's resolution."""

    image: np.ndarray       # uint8 RGB [R, R, 3]
    landmarks: np.ndarray   # [68, 2] or [5, 2] (x, y) in aligned pixels (centres at integers)
    quad: np.ndarray        # [4, 2] crop corners in the photo: TL, BL, BR, TR (FFHQ's order)

    @property
    def resolution(self) -> int:
        return int(self.image.shape[0])


# ----------------------------------------------------------------------------- geometry

def alignment_points(landmarks) -> np.ndarray:
    """Validate a face's points and return [4, 2]: right eye, left eye, right and left mouth
    corner (the subject's sides), which is all the FFHQ square needs.

    ``landmarks`` are 68 iBUG points [68, 2] (eye centre = mean of its six points) or the
    detector's 5 points [5, 2] (:data:`stimgen.detection.POINT_NAMES`).

    Raises
    ------
    LandmarkError
        Neither shape, or a coordinate that is not finite.

    Examples
    --------
    >>> five = [[40, 50], [60, 50], [50, 65], [42, 80], [58, 80]]
    >>> alignment_points(five).tolist()
    [[40.0, 50.0], [60.0, 50.0], [42.0, 80.0], [58.0, 80.0]]
    """
    points = np.asarray(landmarks, dtype=np.float64)
    if points.shape == (len(detection.POINT_NAMES), 2):
        if not np.isfinite(points).all():
            raise LandmarkError("the face's 5 points hold a coordinate that is not finite")
        return points[[detection.RIGHT_EYE, detection.LEFT_EYE, detection.MOUTH_RIGHT_CORNER,
                       detection.MOUTH_LEFT_CORNER]]
    if points.shape != (N_LANDMARKS, 2):
        raise LandmarkError(f"alignment takes one face's 68 landmarks [68, 2] or the detector's "
                            f"5 points [5, 2], got {list(points.shape)}")
    points = check_landmarks(points)
    return np.stack([points[RIGHT_EYE].mean(axis=0), points[LEFT_EYE].mean(axis=0),
                     points[MOUTH_RIGHT_CORNER], points[MOUTH_LEFT_CORNER]])


def ffhq_quad(landmarks) -> np.ndarray:
    """The FFHQ crop square of a face: corners [4, 2] top-left, bottom-left, bottom-right, top-right.

    ``landmarks``: 68 iBUG points [68, 2] or the detector's 5 points [5, 2], photo pixels;
    the corners are in the same coordinates. The square is rotated with the face, so it does
    not depend on the face's in-plane roll.

    Examples
    --------
    >>> points = np.zeros((68, 2))
    >>> points[36:42] = (40, 50); points[42:48] = (60, 50)          # eye centres
    >>> points[48] = (42, 80); points[54] = (58, 80)                # mouth corners
    >>> ffhq_quad(points).round(1).tolist()
    [[-4.0, -1.0], [-4.0, 107.0], [104.0, 107.0], [104.0, -1.0]]
    >>> five = [[40, 50], [60, 50], [50, 65], [42, 80], [58, 80]]   # eyes, nose, mouth corners
    >>> bool(np.allclose(ffhq_quad(five), ffhq_quad(points)))
    True
    """
    eye_right, eye_left, mouth_right, mouth_left = alignment_points(landmarks)
    eye_avg = (eye_right + eye_left) / 2
    eye_to_eye = eye_left - eye_right   # the subject's right eye is on the image's left
    mouth_avg = (mouth_right + mouth_left) / 2
    eye_to_mouth = mouth_avg - eye_avg

    x = eye_to_eye - _perpendicular(eye_to_mouth)
    norm = np.hypot(*x)
    if norm <= 1e-9:
        raise ValueError("landmarks have coincident eyes and mouth; no face orientation")
    x = x / norm * max(np.hypot(*eye_to_eye) * 2.0, np.hypot(*eye_to_mouth) * 1.8)
    y = _perpendicular(x)
    centre = eye_avg + eye_to_mouth * 0.1
    return np.stack([centre - x - y, centre - x + y, centre + x + y, centre + x - y])


def _perpendicular(v: np.ndarray) -> np.ndarray:
    """``v`` rotated by 90 degrees, (x, y) -> (-y, x): FFHQ's ``np.flipud(v) * [-1, 1]``."""
    return np.array([-v[1], v[0]])


def _quad_axes(quad: np.ndarray) -> np.ndarray:
    """[2, 2] matrix whose columns are the quad's x edge (top-left -> top-right) and y edge."""
    quad = np.asarray(quad, dtype=np.float64)
    return np.stack([quad[3] - quad[0], quad[1] - quad[0]], axis=1)


def image_to_aligned(points, quad, resolution: int) -> np.ndarray:
    """Map photo pixel coordinates [..., 2] into the aligned image of side ``resolution``.

    Both use pixel centres at integer coordinates; the quad's top-left corner is the aligned
    image's top-left edge (aligned coordinate -0.5).
    """
    points = np.asarray(points, dtype=np.float64)
    quad = np.asarray(quad, dtype=np.float64)
    unit = np.linalg.solve(_quad_axes(quad), (points - quad[0]).reshape(-1, 2).T).T
    return (unit * resolution - 0.5).reshape(points.shape)


def aligned_to_image(points, quad, resolution: int) -> np.ndarray:
    """Inverse of :func:`image_to_aligned`: aligned pixel coordinates [..., 2] -> photo pixels."""
    points = np.asarray(points, dtype=np.float64)
    quad = np.asarray(quad, dtype=np.float64)
    unit = (points.reshape(-1, 2) + 0.5) / resolution
    return (quad[0] + unit @ _quad_axes(quad).T).reshape(points.shape)


# ----------------------------------------------------------------------------- warping

def align_face(image: np.ndarray, landmarks: np.ndarray, resolution: int, *,
               padding: bool = True) -> AlignedFace:
    """Crop, rotate and scale a face to an FFHQ-aligned square of side ``resolution``.

    Parameters
    ----------
    image : numpy.ndarray
        uint8 RGB photo [H, W, 3] (see :func:`~stimgen.photos.load_photo`).
    landmarks : numpy.ndarray
        The face's 68 iBUG points [68, 2], or the detector's 5 points [5, 2]
        (:attr:`stimgen.detection.DetectedFace.points`), in photo pixels.
    resolution : int
        Side of the aligned image: the generator's resolution (1024 for FFHQ).
    padding : bool
        Where the square leaves the photo, fill with the reflected photo blurred toward
        its median colour (FFHQ's padding); otherwise with black.

    Returns
    -------
    AlignedFace
        The aligned image, the landmarks (68 or 5) mapped into it, and the square in the photo.
        :func:`aligned_to_image` maps aligned points back to the photo.

    Warns
    -----
    SmallFaceWarning
        If the face is upscaled more than :data:`MAX_UPSCALE` times.
    """
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"image must be uint8 RGB [H, W, 3], got {image.dtype} {image.shape}")
    if resolution < 4:
        raise ValueError(f"resolution must be at least 4 pixels, got {resolution}")
    points = np.asarray(landmarks, dtype=np.float64)
    quad = ffhq_quad(points)
    qsize = float(np.hypot(*(quad[3] - quad[0])))
    if resolution / qsize > MAX_UPSCALE:
        warnings.warn(f"the face is only {qsize:.0f} pixels across in its photo; the "
                      f"{resolution}-pixel aligned image is upscaled {resolution / qsize:.1f}x "
                      f"and will look soft (use a larger photo)", SmallFaceWarning, stacklevel=2)
    warped = _warp(Image.fromarray(image), quad, resolution, padding)
    return AlignedFace(image=np.asarray(warped, dtype=np.uint8).copy(),
                       landmarks=image_to_aligned(points, quad, resolution),
                       quad=quad)


def _warp(photo: Image.Image, quad: np.ndarray, resolution: int, padding: bool) -> Image.Image:
    """FFHQ's shrink -> crop -> pad -> quad transform -> downsample, tracking the quad.

    The quad is kept in Pillow's continuous coordinates (pixel centres at +0.5) and scaled by
    the exact resize factors, so the warp realises ``quad`` exactly.
    """
    corners = quad + 0.5
    qsize = float(np.hypot(*(quad[3] - quad[0])))

    shrink = int(np.floor(qsize / resolution * 0.5))
    if shrink > 1:
        size = (int(np.rint(photo.width / shrink)), int(np.rint(photo.height / shrink)))
        corners = corners * (np.array(size) / np.array(photo.size))
        qsize /= shrink
        photo = photo.resize(size, Image.LANCZOS)

    border = max(int(np.rint(qsize * 0.1)), 3)
    low, high = np.floor(corners.min(axis=0)).astype(int), np.ceil(corners.max(axis=0)).astype(int)
    crop = (max(low[0] - border, 0), max(low[1] - border, 0),
            min(high[0] + border, photo.width), min(high[1] + border, photo.height))
    if crop[2] - crop[0] < photo.width or crop[3] - crop[1] < photo.height:
        photo = photo.crop(crop)
        corners = corners - crop[:2]

    low, high = np.floor(corners.min(axis=0)).astype(int), np.ceil(corners.max(axis=0)).astype(int)
    pad = (max(-low[0] + border, 0), max(-low[1] + border, 0),
           max(high[0] - photo.width + border, 0), max(high[1] - photo.height + border, 0))
    if padding and max(pad) > border - 4:
        pad = tuple(max(p, int(np.rint(qsize * 0.3))) for p in pad)
        photo = _blur_pad(photo, pad, qsize)
        corners = corners + pad[:2]

    transform_size = SUPERSAMPLE * resolution
    warped = photo.transform((transform_size, transform_size), Image.Transform.QUAD,
                             tuple(corners.flatten()), Image.Resampling.BILINEAR)
    return warped.resize((resolution, resolution), Image.Resampling.LANCZOS)


def _blur_pad(photo: Image.Image, pad: tuple[int, int, int, int], qsize: float) -> Image.Image:
    """Reflect-pad by ``pad`` (left, top, right, bottom), blending the new border toward a
    blurred copy and the median colour, as FFHQ does so the generator sees no hard edge."""
    left, top, right, bottom = pad
    pixels = np.pad(np.asarray(photo, dtype=np.float32), ((top, bottom), (left, right), (0, 0)),
                    mode="reflect")
    height, width, _ = pixels.shape
    ys, xs = np.ogrid[:height, :width]
    # Distance into the padding, 0 inside the photo and 1 at the outer edge.
    mask = np.maximum(
        1.0 - np.minimum(xs.astype(np.float32) / max(left, 1), (width - 1 - xs) / max(right, 1)),
        1.0 - np.minimum(ys.astype(np.float32) / max(top, 1), (height - 1 - ys) / max(bottom, 1)),
    )[..., None]
    blurred = Image.fromarray(np.uint8(np.clip(np.rint(pixels), 0, 255))).filter(
        ImageFilter.GaussianBlur(radius=qsize * 0.02))
    pixels += (np.asarray(blurred, dtype=np.float32) - pixels) * np.clip(mask * 3.0 + 1.0, 0.0, 1.0)
    pixels += (np.median(pixels, axis=(0, 1)) - pixels) * np.clip(mask, 0.0, 1.0)
    return Image.fromarray(np.uint8(np.clip(np.rint(pixels), 0, 255)), "RGB")
