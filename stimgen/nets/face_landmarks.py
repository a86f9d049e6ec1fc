"""68-point facial landmarks: from landmark heatmaps, and from photos through face-alignment.

Owns :func:`heatmaps_to_landmarks` (FAN / EmoNet heatmaps -> pixel coordinates) and
:class:`FaceLandmarker`, a thin adapter over the ``face-alignment`` package that loads its
FAN (and optional S3FD detector) from local files instead of downloading them.

Points follow the iBUG 300-W 68-point order of :mod:`stimgen.landmarks`, (x, y) in pixels
with y down and integer coordinates at pixel centres.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from stimgen.errors import BackendUnavailableError, WeightsMissingError
from stimgen.packages import FACE_ALIGNMENT
from stimgen.landmarks import N_LANDMARKS

#: Where face-alignment's published weights come from (BSD-3-Clause, Adrian Bulat).
FAN_2D_URL = "https://www.adrianbulat.com/downloads/python-fan/2DFAN4-11f355bf06.pth.tar"
S3FD_URL = "https://www.adrianbulat.com/downloads/python-fan/s3fd-619a316812.pth"


# ----------------------------------------------------------------------------- heatmaps

def heatmaps_to_landmarks(heatmap: torch.Tensor, image_size: int | tuple[int, int],
                          method: str = "argmax", sharpness: float = 100.0,
                          ) -> tuple[torch.Tensor, torch.Tensor]:
    """Landmark coordinates and confidences from heatmaps [N, 68, h, w].

    Parameters
    ----------
    heatmap : torch.Tensor
        [N, K, h, w] heatmaps, e.g. EmoNet's ``out["heatmap"]`` or :class:`FAN` output.
    image_size : int or (height, width)
        Size of the image the heatmaps were predicted from (256 for EmoNet / FAN).
    method : {"argmax", "soft-argmax"}
        ``argmax`` takes the peak cell (what EmoStyle's pose loss uses);
        ``soft-argmax`` takes the mean cell under ``softmax(sharpness * heatmap)``,
        differentiable.
    sharpness : float
        Inverse temperature of the soft-argmax; the default suits heatmaps that peak
        near 1, as FAN's and EmoNet's do.

    Returns
    -------
    points : torch.Tensor
        [N, K, 2] (x, y) in image pixels; heatmap cell (i, j) maps to the centre of the
        image block it covers, ``x = (j + 0.5) * w_scale - 0.5``.
    confidence : torch.Tensor
        [N, K] heatmap value at the peak (argmax) or the max softmax weight (soft-argmax).

    Examples
    --------
    >>> hm = torch.zeros(1, 68, 64, 64); hm[0, :, 10, 20] = 1.0
    >>> points, confidence = heatmaps_to_landmarks(hm, 256)
    >>> points[0, 0].tolist(), float(confidence[0, 0])
    ([81.5, 41.5], 1.0)
    """
    if heatmap.ndim != 4:
        raise ValueError(f"heatmap must be [N, K, h, w], got {tuple(heatmap.shape)}")
    if method not in ("argmax", "soft-argmax"):
        raise ValueError(f"method must be 'argmax' or 'soft-argmax', got {method!r}")
    n, k, h, w = heatmap.shape
    height, width = (image_size, image_size) if isinstance(image_size, int) else image_size
    flat = heatmap.reshape(n, k, h * w)
    if method == "argmax":
        confidence, index = flat.max(dim=-1)
        cells = torch.stack([index % w, torch.div(index, w, rounding_mode="floor")], dim=-1)
        cells = cells.to(heatmap.dtype)
    else:
        weights = (sharpness * flat).softmax(dim=-1)
        ys, xs = torch.meshgrid(torch.arange(h, dtype=heatmap.dtype, device=heatmap.device),
                                torch.arange(w, dtype=heatmap.dtype, device=heatmap.device),
                                indexing="ij")
        cells = torch.stack([(weights * xs.reshape(-1)).sum(-1),
                             (weights * ys.reshape(-1)).sum(-1)], dim=-1)
        confidence = weights.max(dim=-1).values
    scale = heatmap.new_tensor([width / w, height / h])
    return (cells + 0.5) * scale - 0.5, confidence


# ----------------------------------------------------------------------------- weights

def read_fan_state(path: str | Path) -> dict[str, torch.Tensor]:
    """The state dict of a face-alignment FAN file (``2DFAN4-*.pth.tar``), loaded safely.

    Loaded with ``torch.load(weights_only=True)``; a ``module.`` prefix is stripped.
    Raises :class:`WeightsMissingError` if the file is absent.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsMissingError(
            f"face-alignment landmark model not found: {path}",
            hint=f"the 2D FAN weights (2DFAN4, BSD-3-Clause, Bulat & Tzimiropoulos 2017) come "
                 f"from {FAN_2D_URL}; fetch them with `stimgen models fetch fan_2d` or pass the "
                 f"path of a copy you already have")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    return {key.removeprefix("module."): value for key, value in state.items()}


def count_hourglasses(state: dict[str, torch.Tensor]) -> int:
    """Stacked hourglass modules in a FAN state dict (4 for 2DFAN4), from its ``l<i>`` heads."""
    heads = {key.split(".")[0] for key in state if key.startswith("l") and key[1:2].isdigit()}
    return len(heads)


# ----------------------------------------------------------------------------- photos

@dataclass(frozen=True)
class FaceLandmarks:
    """The landmarks of one face found in a photo."""

    points: np.ndarray   # [68, 2] (x, y) image pixels
    scores: np.ndarray   # [68] heatmap peak per point (higher = more confident)
    box: np.ndarray      # [4] face box x1, y1, x2, y2 in image pixels


def import_face_alignment():
    """The ``face_alignment`` package, or a BackendUnavailableError saying how to install it
    (or, when it is installed but cannot load, why)."""
    try:
        import face_alignment
    except ImportError as err:
        missing = isinstance(err, ModuleNotFoundError) and err.name == "face_alignment"
        reason = ("is not installed" if missing else
                  f"is installed but cannot be imported ({err})")
        if "libGL" in str(err):
            reason += ("; its OpenCV needs the system's OpenGL library: on Debian or Ubuntu "
                       "`sudo apt-get install libgl1`")
        raise BackendUnavailableError(
            f"landmarks on photos need the face-alignment package, which {reason}",
            hint=FACE_ALIGNMENT.install if missing else
            "repair the installation, e.g. " + FACE_ALIGNMENT.install) from err
    if not hasattr(face_alignment.FaceAlignment, "_load_native"):
        raise BackendUnavailableError(
            f"face-alignment {face_alignment.__version__} is too old for stimgen",
            hint=FACE_ALIGNMENT.install)
    return face_alignment


class FaceLandmarker:
    """68 landmarks of every face in an RGB photo, via face-alignment, weights from files.

    Parameters
    ----------
    fan_weights : path
        face-alignment's 2D FAN state dict (``2DFAN4-11f355bf06.pth.tar``) or any FAN with
        the same keys and fewer hourglasses (``stimgen models make-tiny`` writes one).
    detector_weights : path, optional
        face-alignment's S3FD detector (``s3fd-619a316812.pth``). Without it, pass the face
        boxes to each call (e.g. an aligned 1024x1024 face: ``[[0, 0, 1024, 1024]]``).
    device : str
        torch device, e.g. ``"cpu"`` or ``"cuda"``.
    flip_input : bool
        Average the heatmaps of the image and its mirror image (face-alignment's default;
        twice the cost, slightly steadier points).

    Examples
    --------
    >>> landmarker = FaceLandmarker("models/2DFAN4-11f355bf06.pth.tar")   # doctest: +SKIP
    >>> faces = landmarker(image, boxes=[[80, 60, 430, 470]])           # doctest: +SKIP
    >>> faces[0].points.shape                                           # doctest: +SKIP
    (68, 2)
    """

    def __init__(self, fan_weights: str | Path, detector_weights: str | Path | None = None,
                 device: str = "cpu", flip_input: bool = True):
        face_alignment = import_face_alignment()
        state = read_fan_state(fan_weights)
        if detector_weights is not None and not Path(detector_weights).is_file():
            raise WeightsMissingError(
                f"face detector weights not found: {detector_weights}",
                hint=f"the S3FD detector (BSD-3-Clause) comes from {S3FD_URL}; fetch it with "
                     f"`stimgen models fetch s3fd`, or omit it and pass face boxes yourself")
        self.has_detector = detector_weights is not None

        class LocalWeightsFaceAlignment(face_alignment.FaceAlignment):
            # face-alignment downloads its FAN inside the constructor; this one override
            # builds the same network from the state dict read above instead.
            def _load_native(self, network_name, network_size, device, dtype):
                net = face_alignment.models.FAN(count_hourglasses(state))
                net.load_state_dict(state)
                return net.to(device, dtype=dtype).eval()

        self.aligner = LocalWeightsFaceAlignment(
            face_alignment.LandmarksType.TWO_D, device=device, flip_input=flip_input,
            face_detector="sfd" if self.has_detector else "folder",
            face_detector_kwargs={"path_to_detector": str(detector_weights)}
            if self.has_detector else {},
            compile=False)

    def __call__(self, image: np.ndarray, boxes=None) -> list[FaceLandmarks]:
        """Landmarks of the faces in ``image`` (uint8 RGB [H, W, 3]); [] if none is found.

        ``boxes`` ([F, 4] x1, y1, x2, y2) skips detection; it is required when the
        landmarker was built without ``detector_weights``.
        """
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"expected a uint8 RGB image [H, W, 3], got "
                             f"{image.dtype} {image.shape}")
        if boxes is None and not self.has_detector:
            raise WeightsMissingError(
                "no face boxes given and no face detector loaded",
                hint=f"pass boxes=[[x1, y1, x2, y2]] (for an aligned face: the whole image), "
                     f"or build FaceLandmarker with detector_weights (S3FD, {S3FD_URL})")
        if boxes is not None:
            boxes = [np.asarray(box, dtype=np.float64)[:4] for box in np.atleast_2d(boxes)]
        points, scores, found = self.aligner.get_landmarks_from_image(
            image, detected_faces=boxes, return_bboxes=True, return_landmark_score=True)
        if points is None:
            return []
        return [FaceLandmarks(points=np.asarray(p, dtype=np.float64).reshape(N_LANDMARKS, 2),
                              scores=np.asarray(s, dtype=np.float64).reshape(N_LANDMARKS),
                              box=np.asarray(b, dtype=np.float64)[:4])
                for p, s, b in zip(points, scores, found)]
