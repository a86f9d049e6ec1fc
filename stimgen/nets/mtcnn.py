"""MTCNN (Zhang et al. 2016): three small networks that find faces and 5 landmarks in a photo.

Owns PNet, RNet and ONet (with the key names of facenet-pytorch's ``pnet.pt``, ``rnet.pt``,
``onet.pt``), non-maximum suppression (:func:`nms`) and the cascade (:func:`detect`).

The cascade, as published: PNet scans an image pyramid (each level 0.709 times the last, the
first scaled so that ``min_face_size`` pixels become PNet's 12-pixel window) and proposes
windows; RNet re-scores 24-pixel crops of the survivors and refines their boxes; ONet does the
same on 48-pixel crops and places five landmarks. Between stages, boxes are regressed,
suppressed (non-maximum suppression) and made square.

Coordinates are stimgen's: (x, y) pixels, y down, pixel centres at integers, so an image of
width W spans -0.5 .. W - 0.5 and a box (x0, y0, x1, y1) gives its edges.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from torch import nn

from stimgen.nets.stylegan2 import assert_shape

#: Side of the window PNet scores, and its stride, in pixels of a pyramid level.
PNET_WINDOW = 12
PNET_STRIDE = 2
#: Sides of the square crops RNet and ONet read, pixels.
RNET_SIZE = 24
ONET_SIZE = 48
#: Defaults of the published detector (Zhang et al. 2016; davidsandberg/facenet).
MIN_FACE_SIZE = 20.0
THRESHOLDS = (0.6, 0.7, 0.7)
SCALE_FACTOR = 0.709
#: Crops per RNet/ONet call: bounds memory on photos with thousands of PNet proposals.
CHUNK = 512


def _flatten_converted(x: torch.Tensor) -> torch.Tensor:
    """Flatten [N, C, H, W] as [N, W, H, C]: the order in which the dense weights were
    converted from the Caffe/TensorFlow originals, so the published state dicts load as is."""
    return x.permute(0, 3, 2, 1).reshape(x.shape[0], -1)


# ----------------------------------------------------------------------------- networks

class PNet(nn.Module):
    """Proposal network: fully convolutional; output cell (i, j) scores the 12-pixel window at
    (2 j, 2 i) of its input and regresses that window's edges."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 10, kernel_size=3)     # 12 -> 10 px
        self.prelu1 = nn.PReLU(10)
        self.pool1 = nn.MaxPool2d(2, 2, ceil_mode=True)  # 10 -> 5
        self.conv2 = nn.Conv2d(10, 16, kernel_size=3)    # 5 -> 3
        self.prelu2 = nn.PReLU(16)
        self.conv3 = nn.Conv2d(16, 32, kernel_size=3)    # 3 -> 1
        self.prelu3 = nn.PReLU(32)
        self.conv4_1 = nn.Conv2d(32, 2, kernel_size=1)   # not-face / face logits
        self.conv4_2 = nn.Conv2d(32, 4, kernel_size=1)   # box edge offsets, in window sides

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """[N, 3, H, W] normalised pixels -> face probability [N, h, w], offsets [N, 4, h, w]."""
        assert_shape(x, [None, 3, None, None], "PNet input")
        x = self.prelu1(self.conv1(x))
        x = self.prelu2(self.conv2(self.pool1(x)))
        x = self.prelu3(self.conv3(x))
        return self.conv4_1(x).softmax(dim=1)[:, 1], self.conv4_2(x)


class RNet(nn.Module):
    """Refinement network: re-scores a 24-pixel crop and regresses its box edges."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 28, kernel_size=3)     # 24 -> 22 px
        self.prelu1 = nn.PReLU(28)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)  # 22 -> 11
        self.conv2 = nn.Conv2d(28, 48, kernel_size=3)    # 11 -> 9
        self.prelu2 = nn.PReLU(48)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)  # 9 -> 4
        self.conv3 = nn.Conv2d(48, 64, kernel_size=2)    # 4 -> 3
        self.prelu3 = nn.PReLU(64)
        self.dense4 = nn.Linear(64 * 3 * 3, 128)
        self.prelu4 = nn.PReLU(128)
        self.dense5_1 = nn.Linear(128, 2)                # not-face / face logits
        self.dense5_2 = nn.Linear(128, 4)                # box edge offsets, in box sides

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """[N, 3, 24, 24] normalised crops -> face probability [N], offsets [N, 4]."""
        assert_shape(x, [None, 3, RNET_SIZE, RNET_SIZE], "RNet input")
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.prelu3(self.conv3(x))
        x = self.prelu4(self.dense4(_flatten_converted(x)))
        return self.dense5_1(x).softmax(dim=1)[:, 1], self.dense5_2(x)


class ONet(nn.Module):
    """Output network: final score, box edge offsets and 5 landmarks of a 48-pixel crop."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 32, kernel_size=3)     # 48 -> 46 px
        self.prelu1 = nn.PReLU(32)
        self.pool1 = nn.MaxPool2d(3, 2, ceil_mode=True)  # 46 -> 23
        self.conv2 = nn.Conv2d(32, 64, kernel_size=3)    # 23 -> 21
        self.prelu2 = nn.PReLU(64)
        self.pool2 = nn.MaxPool2d(3, 2, ceil_mode=True)  # 21 -> 10
        self.conv3 = nn.Conv2d(64, 64, kernel_size=3)    # 10 -> 8
        self.prelu3 = nn.PReLU(64)
        self.pool3 = nn.MaxPool2d(2, 2, ceil_mode=True)  # 8 -> 4
        self.conv4 = nn.Conv2d(64, 128, kernel_size=2)   # 4 -> 3
        self.prelu4 = nn.PReLU(128)
        self.dense5 = nn.Linear(128 * 3 * 3, 256)
        self.prelu5 = nn.PReLU(256)
        self.dense6_1 = nn.Linear(256, 2)                # not-face / face logits
        self.dense6_2 = nn.Linear(256, 4)                # box edge offsets, in box sides
        self.dense6_3 = nn.Linear(256, 10)               # 5 x, then 5 y, as box fractions

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """[N, 3, 48, 48] normalised crops -> probability [N], offsets [N, 4], points [N, 10]."""
        assert_shape(x, [None, 3, ONET_SIZE, ONET_SIZE], "ONet input")
        x = self.pool1(self.prelu1(self.conv1(x)))
        x = self.pool2(self.prelu2(self.conv2(x)))
        x = self.pool3(self.prelu3(self.conv3(x)))
        x = self.prelu4(self.conv4(x))
        x = self.prelu5(self.dense5(_flatten_converted(x)))
        return self.dense6_1(x).softmax(dim=1)[:, 1], self.dense6_2(x), self.dense6_3(x)


class MTCNN(nn.Module):
    """The three networks of the cascade; :func:`detect` runs them on an image."""

    def __init__(self):
        super().__init__()
        self.pnet = PNet()
        self.rnet = RNet()
        self.onet = ONet()


# ----------------------------------------------------------------------------- boxes

def nms(boxes: np.ndarray, scores: np.ndarray, threshold: float, mode: str = "union"
        ) -> np.ndarray:
    """Greedy non-maximum suppression: indices of the boxes kept, best score first.

    The best-scoring box is kept and every box overlapping it by more than ``threshold`` is
    dropped; repeat with the best of the rest.

    Parameters
    ----------
    boxes : numpy.ndarray
        [N, 4] edges x0, y0, x1, y1 (x1 > x0, y1 > y0).
    scores : numpy.ndarray
        [N] higher is better; ties keep the earlier box.
    threshold : float
        Largest overlap a kept box may have with a better one, in [0, 1].
    mode : {"union", "min"}
        Overlap as intersection over union, or over the smaller of the two areas (the last
        stage of MTCNN uses "min", which also drops a small box lying inside a large one).

    Examples
    --------
    >>> boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30]], float)
    >>> nms(boxes, np.array([0.9, 0.8, 0.7]), 0.5).tolist()
    [0, 2]
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    if len(boxes) != len(scores):
        raise ValueError(f"{len(boxes)} boxes but {len(scores)} scores")
    if mode not in ("union", "min"):
        raise ValueError(f"mode must be 'union' or 'min', got {mode!r}")
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    order = np.argsort(-scores, kind="stable")
    keep = []
    while order.size:
        best, rest = order[0], order[1:]
        keep.append(best)
        low = np.maximum(boxes[best, :2], boxes[rest, :2])
        high = np.minimum(boxes[best, 2:], boxes[rest, 2:])
        inter = np.prod(np.clip(high - low, 0.0, None), axis=1)
        if mode == "union":
            base = areas[best] + areas[rest] - inter
        else:
            base = np.minimum(areas[best], areas[rest])
        order = rest[inter / np.maximum(base, 1e-12) <= threshold]
    return np.asarray(keep, dtype=np.int64)


def square(boxes: np.ndarray) -> np.ndarray:
    """Boxes [N, 4] grown to squares of side max(width, height) about the same centres.

    >>> square(np.array([[0.0, 0.0, 10.0, 20.0]])).tolist()
    [[-5.0, 0.0, 15.0, 20.0]]
    """
    boxes = np.asarray(boxes, dtype=np.float64)
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2
    half = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])[:, None] / 2
    return np.concatenate([centre - half, centre + half], axis=1)


def regress(boxes: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Move each box edge by its offset [N, 4], given in units of the box's width/height.

    >>> regress(np.array([[0.0, 0.0, 10.0, 20.0]]), np.array([[0.1, -0.1, 0.0, 0.5]])).tolist()
    [[1.0, -2.0, 10.0, 30.0]]
    """
    boxes = np.asarray(boxes, dtype=np.float64)
    size = np.concatenate([boxes[:, 2:] - boxes[:, :2]] * 2, axis=1)
    return boxes + np.asarray(offsets, dtype=np.float64) * size


# ----------------------------------------------------------------------------- cascade

@dataclass(frozen=True)
class Detections:
    """What :func:`detect` found, one row per face, in no particular order."""

    boxes: np.ndarray    # [F, 4] x0, y0, x1, y1 edges, image pixels
    scores: np.ndarray   # [F] ONet face probability
    points: np.ndarray   # [F, 5, 2] (x, y) in ONet's output order (see stimgen.detection)


def pyramid_scales(height: int, width: int, min_face_size: float = MIN_FACE_SIZE,
                   scale_factor: float = SCALE_FACTOR) -> list[float]:
    """Scales of the pyramid levels PNet scans: the first maps ``min_face_size`` to 12 px,
    each next one is ``scale_factor`` times smaller, down to a shorter side of 12 px.

    >>> [round(s, 3) for s in pyramid_scales(48, 64)]
    [0.6, 0.425, 0.302]
    """
    scales = []
    scale = PNET_WINDOW / min_face_size
    while min(height, width) * scale >= PNET_WINDOW:
        scales.append(scale)
        scale *= scale_factor
    return scales


def _resize(photo: Image.Image, width: int, height: int) -> np.ndarray:
    """uint8 [height, width, 3]: area averaging when shrinking (no aliasing; the published
    detector uses OpenCV's INTER_AREA on uint8 images), bilinear when enlarging."""
    shrinking = width <= photo.width and height <= photo.height
    resample = Image.Resampling.BOX if shrinking else Image.Resampling.BILINEAR
    return np.asarray(photo.resize((width, height), resample))


def _as_input(images: list[np.ndarray], device: torch.device) -> torch.Tensor:
    """uint8 [H, W, 3] images of one size -> normalised float [N, 3, H, W] on ``device``."""
    batch = torch.from_numpy(np.stack(images)).to(device).permute(0, 3, 1, 2).float()
    return (batch - 127.5) * 0.0078125


def _crops(photo: Image.Image, boxes: np.ndarray, size: int, device: torch.device
           ) -> tuple[torch.Tensor, np.ndarray]:
    """Square crops [N, 3, size, size] of the boxes, black where a box leaves the photo.

    Box edges are first rounded to whole pixels; those rounded boxes are returned, since the
    networks' offsets and landmarks refer to what they saw.
    """
    # Pixel i spans [i - 0.5, i + 0.5): the box covers pixels start..stop-1.
    start = np.floor(boxes[:, :2] + 0.5).astype(np.int64)
    stop = np.maximum(np.floor(boxes[:, 2:] + 0.5).astype(np.int64), start + 1)
    # Pillow's crop fills what lies outside the photo with black.
    crops = [_resize(photo.crop((int(x0), int(y0), int(x1), int(y1))), size, size)
             for (x0, y0), (x1, y1) in zip(start, stop)]
    return _as_input(crops, device), np.concatenate([start, stop], axis=1) - 0.5


def _in_chunks(net: nn.Module, crops: torch.Tensor) -> list[np.ndarray]:
    """``net`` over ``crops`` in chunks of :data:`CHUNK`, outputs concatenated as numpy."""
    parts = [net(crops[i:i + CHUNK]) for i in range(0, len(crops), CHUNK)]
    return [torch.cat(outputs).double().cpu().numpy() for outputs in zip(*parts)]


def _propose(mtcnn: MTCNN, photo: Image.Image, scales: list[float], threshold: float
             ) -> np.ndarray:
    """Stage 1: PNet windows over the pyramid, [N, 5] regressed square boxes + score."""
    width, height = photo.size
    device = next(mtcnn.parameters()).device
    found = []
    for scale in scales:
        level_h, level_w = math.ceil(height * scale), math.ceil(width * scale)
        level = _as_input([_resize(photo, level_w, level_h)], device)
        probability, offsets = mtcnn.pnet(level)
        probability, offsets = probability[0].cpu().numpy(), offsets[0].cpu().numpy()
        rows, cols = np.nonzero(probability >= threshold)
        if rows.size == 0:
            continue
        # The window's edges on the level, then mapped back through the level's exact scale.
        window = np.stack([cols, rows, cols, rows], axis=1) * PNET_STRIDE \
            + np.array([0, 0, PNET_WINDOW, PNET_WINDOW]) - 0.5
        boxes = (window + 0.5) / np.array([level_w / width, level_h / height] * 2) - 0.5
        scores = probability[rows, cols].astype(np.float64)
        keep = nms(boxes, scores, 0.5)
        found.append(np.column_stack([boxes[keep], scores[keep],
                                      offsets[:, rows[keep], cols[keep]].T]))
    if not found:
        return np.empty((0, 5))
    candidates = np.concatenate(found)
    candidates = candidates[nms(candidates[:, :4], candidates[:, 4], 0.7)]
    return np.column_stack([square(regress(candidates[:, :4], candidates[:, 5:9])),
                            candidates[:, 4]])


def _refine(mtcnn: MTCNN, photo: Image.Image, boxes: np.ndarray, threshold: float
            ) -> np.ndarray:
    """Stage 2: RNet re-scores and regresses; [N, 5] square boxes + score."""
    crops, boxes = _crops(photo, boxes[:, :4], RNET_SIZE, next(mtcnn.parameters()).device)
    probability, offsets = _in_chunks(mtcnn.rnet, crops)
    passed = probability > threshold
    boxes, scores, offsets = boxes[passed], probability[passed], offsets[passed]
    keep = nms(boxes, scores, 0.7)
    return np.column_stack([square(regress(boxes[keep], offsets[keep])), scores[keep]])


def _output(mtcnn: MTCNN, photo: Image.Image, boxes: np.ndarray, threshold: float
            ) -> Detections:
    """Stage 3: ONet's final scores, boxes and landmarks."""
    crops, boxes = _crops(photo, boxes[:, :4], ONET_SIZE, next(mtcnn.parameters()).device)
    probability, offsets, fractions = _in_chunks(mtcnn.onet, crops)
    passed = probability > threshold
    boxes, scores = boxes[passed], probability[passed]
    fractions = fractions[passed].reshape(-1, 2, 5).transpose(0, 2, 1)   # [N, 5, (x, y)]
    points = boxes[:, None, :2] + fractions * (boxes[:, None, 2:] - boxes[:, None, :2])
    boxes = regress(boxes, offsets[passed])
    keep = nms(boxes, scores, 0.7, mode="min")
    return Detections(boxes[keep], scores[keep], points[keep])


@torch.no_grad()
def detect(mtcnn: MTCNN, image: np.ndarray, *, min_face_size: float = MIN_FACE_SIZE,
           thresholds: tuple[float, float, float] = THRESHOLDS,
           scale_factor: float = SCALE_FACTOR) -> Detections:
    """Every face MTCNN finds in ``image``: boxes, scores and 5 landmarks.

    Parameters
    ----------
    mtcnn : MTCNN
        The networks, with weights (see :func:`stimgen.detection.load_detector`).
    image : numpy.ndarray
        uint8 RGB [H, W, 3].
    min_face_size : float
        Smallest face searched for, pixels (the side of its box); smaller is slower.
    thresholds : (float, float, float)
        Face probability a candidate needs to pass PNet, RNet and ONet.
    scale_factor : float
        Ratio between successive pyramid levels, in (0, 1).

    Returns
    -------
    Detections
        Possibly empty.
    """
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"image must be uint8 RGB [H, W, 3], got {image.dtype} {image.shape}")
    if not 0 < scale_factor < 1:
        raise ValueError(f"scale_factor must be in (0, 1), got {scale_factor}")
    if min_face_size <= 0:
        raise ValueError(f"min_face_size must be positive, got {min_face_size}")
    photo = Image.fromarray(image)
    scales = pyramid_scales(image.shape[0], image.shape[1], min_face_size, scale_factor)
    nothing = Detections(np.empty((0, 4)), np.empty(0), np.empty((0, 5, 2)))
    boxes = _propose(mtcnn, photo, scales, thresholds[0])
    if len(boxes) == 0:
        return nothing
    boxes = _refine(mtcnn, photo, boxes, thresholds[1])
    if len(boxes) == 0:
        return nothing
    return _output(mtcnn, photo, boxes, thresholds[2])
