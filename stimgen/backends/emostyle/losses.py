"""The loss terms of photo inversion and EmoStyle personalisation, one small function each.

Owns reconstruction (MS-SSIM + L1), identity (VGGFace2 embeddings, EmoStyle's mean L1),
emotion (EmoNet valence and arousal), pose (EmoNet landmarks), background (outside the face
outline) and latent terms, plus :func:`frozen`, which keeps the critic networks fixed.

Images enter in [0, 1], [N, 3, H, W] at the generator's resolution; each critic sees them
as in EmoStyle: EmoNet through :func:`~stimgen.nets.emonet.ffhq_framing` of the full image,
VGGFace2 (and the background term) after :func:`face_pool` to 256 pixels.
"""
from __future__ import annotations

import contextlib
from typing import Iterator

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw
from pytorch_msssim import ms_ssim, ssim
from torch import nn

from stimgen.landmarks import check_landmarks
from stimgen.nets.emonet import INPUT_SIZE as EMONET_SIZE, ffhq_framing, unframe_points
from stimgen.nets.face_landmarks import heatmaps_to_landmarks
from stimgen.nets.stylegan2 import assert_shape
from stimgen.nets.vggface2 import identity_embedding

#: Weights of the structural and the L1 part of the reconstruction loss (Zhao et al. 2017),
#: as EmoStyle's ``compute_pixel_reconstruction_loss``: 0.84 (1 - MS-SSIM) + 0.16 L1.
RECONSTRUCTION_MIX = (0.84, 0.16)
#: Gaussian window of (MS-)SSIM, pixels; pytorch-msssim's default (Wang et al. 2003).
SSIM_WINDOW = 11
#: Smallest image side MS-SSIM's five scales fit in: (window - 1) x 2^4 + 1 = 161 pixels.
#: Below it (tiny test models) the structural term is single-scale SSIM.
MS_SSIM_MIN_SIDE = (SSIM_WINDOW - 1) * 2 ** 4 + 1
#: Landmarks that expressions barely move: the jaw's upper sides (0-4, 12-16) and the nose
#: bridge (27-30). EmoStyle's personalisation holds only these still on edited iterations
#: (its ``landmark_masks['emo_face']``); reconstruction iterations hold all 68.
EXPRESSION_STABLE_LANDMARKS = np.array([0, 1, 2, 3, 4, 12, 13, 14, 15, 16, 27, 28, 29, 30])
#: Outline of the face region, as EmoStyle's background mask: the jaw (0-16), then the
#: brows back from the left outer end to the right outer end (26-17).
FACE_OUTLINE = np.concatenate([np.arange(0, 17), np.arange(26, 16, -1)])


# ----------------------------------------------------------------------------- images

def to_unit_range(images: torch.Tensor) -> torch.Tensor:
    """Generator output in [-1, 1] -> [0, 1] (not clamped, so gradients pass everywhere)."""
    return (images + 1.0) / 2.0


def face_pool(images: torch.Tensor, size: int = EMONET_SIZE) -> torch.Tensor:
    """Area-average [N, C, H, W] to ``size`` x ``size``: EmoStyle's ``face_pool``.

    EmoStyle's ``AdaptiveAvgPool2d((256, 256))``: a 1024-pixel face becomes the mean of each
    4 x 4 block. It feeds VGGFace2, the landmark network and the background term.

    >>> face_pool(torch.ones(1, 3, 1024, 1024)).shape
    torch.Size([1, 3, 256, 256])
    """
    if tuple(images.shape[-2:]) == (size, size):
        return images
    return F.adaptive_avg_pool2d(images, (size, size))


@contextlib.contextmanager
def frozen(*modules: nn.Module | None) -> Iterator[None]:
    """Within the block, ``modules`` are in eval mode with no parameter gradients; restored after.

    Gradients still flow *through* them to their inputs, which is how a critic scores.
    """
    modules = tuple(m for m in modules if m is not None)
    saved = [(m.training, [p.requires_grad for p in m.parameters()]) for m in modules]
    try:
        for module in modules:
            module.eval().requires_grad_(False)
        yield
    finally:
        for module, (training, flags) in zip(modules, saved):
            module.train(training)
            for parameter, flag in zip(module.parameters(), flags):
                parameter.requires_grad_(flag)


# ----------------------------------------------------------------------------- pixels

def structural_dissimilarity(images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """1 - MS-SSIM of two [N, 3, H, W] batches in [0, 1]; averaged over the batch.

    MS-SSIM needs a side of at least :data:`MS_SSIM_MIN_SIDE` pixels (five scales of an
    11-pixel window). Smaller images use single-scale SSIM, with the window shrunk to the
    image when the image is narrower than 11 pixels.
    """
    assert_shape(targets, list(images.shape), "targets")
    side = min(images.shape[-2:])
    if side >= MS_SSIM_MIN_SIDE:
        return 1.0 - ms_ssim(images, targets, data_range=1.0, win_size=SSIM_WINDOW)
    window = min(SSIM_WINDOW, side if side % 2 else side - 1)
    return 1.0 - ssim(images, targets, data_range=1.0, win_size=max(window, 1))


def reconstruction_loss(images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """0.84 (1 - MS-SSIM) + 0.16 L1 of [N, 3, H, W] batches in [0, 1] (see :data:`RECONSTRUCTION_MIX`)."""
    structural, absolute = RECONSTRUCTION_MIX
    return (structural * structural_dissimilarity(images, targets)
            + absolute * F.l1_loss(images, targets))


def face_mask(landmarks, size: int, resolution: int) -> torch.Tensor:
    """Boolean mask [1, 1, size, size], True inside the face outline (:data:`FACE_OUTLINE`).

    ``landmarks`` [68, 2] are in pixels of an image of side ``resolution``; the outline is
    scaled to ``size`` and filled with Pillow.
    """
    points = check_landmarks(landmarks)
    outline = (points[FACE_OUTLINE] + 0.5) * (size / resolution) - 0.5   # centres stay centres
    canvas = Image.new("L", (size, size), 0)
    ImageDraw.Draw(canvas).polygon([tuple(p) for p in outline.tolist()], fill=1)
    return torch.from_numpy(np.asarray(canvas, dtype=bool).copy())[None, None]


def background_loss(images: torch.Tensor, targets: torch.Tensor,
                    inside_face: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference over the pixels outside the face (``~inside_face``)."""
    assert_shape(targets, list(images.shape), "targets")
    outside = (~inside_face).to(images.dtype).expand_as(images)
    count = outside.sum().clamp_min(1.0)
    return ((images - targets).abs() * outside).sum() / count


# ----------------------------------------------------------------------------- critics

def face_embedding(vgg: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """L2-normalised VGGFace2 embeddings [N, 2048] of FFHQ-aligned faces [N, 3, H, W] in [0, 1].

    The one identity path of the emostyle backend (inversion, personalisation and the
    ``identity_similarity`` of every stimulus): :func:`face_pool` to 256 pixels first, as
    EmoStyle feeds its identity network, then VGGFace2's own preprocessing.
    """
    return identity_embedding(vgg, face_pool(images))


def identity_loss(embeddings: torch.Tensor, target_embeddings: torch.Tensor) -> torch.Tensor:
    """EmoStyle's identity loss: mean absolute difference of normalised embeddings [N, D].

    EmoStyle's ``compute_id_loss`` (``F.l1_loss`` of the two embeddings), the loss its
    weight 1.5 was tuned for. On 2048-d unit vectors it is small: at cosine 0.9 about
    0.008, where ``1 - cosine`` would be 0.1 (docs/backends-emostyle.md).
    """
    assert_shape(target_embeddings, [None, embeddings.shape[1]], "target_embeddings")
    return F.l1_loss(embeddings, target_embeddings.expand_as(embeddings))


def emonet_scores(emonet: nn.Module, images: torch.Tensor) -> dict[str, torch.Tensor]:
    """EmoNet outputs (valence, arousal, expression, heatmap) for FFHQ-aligned faces [N, 3, H, W].

    ``images`` in [0, 1] at full resolution; EmoNet sees :func:`ffhq_framing` of them, as
    in EmoStyle (the heatmaps are in that framing's 256-pixel coordinates).
    """
    return emonet(ffhq_framing(images))


def valence_arousal(scores: dict[str, torch.Tensor]) -> torch.Tensor:
    """[N, 2] (valence, arousal) from :func:`emonet_scores`."""
    return torch.stack([scores["valence"], scores["arousal"]], dim=1)


def emotion_loss(scores: dict[str, torch.Tensor], targets: torch.Tensor) -> torch.Tensor:
    """Mean squared error between EmoNet's (valence, arousal) and ``targets`` [N, 2]."""
    predicted = valence_arousal(scores)
    assert_shape(targets, list(predicted.shape), "target valence/arousal")
    return F.mse_loss(predicted, targets)


def emonet_landmarks(scores: dict[str, torch.Tensor], resolution: int) -> torch.Tensor:
    """[N, 68, 2] landmarks from EmoNet's heatmaps, by soft-argmax, in pixels of the whole face
    at 256 (the frame :func:`face_pool` gives), for faces of side ``resolution``.

    EmoStyle takes the heatmap argmax, which has no gradient; the soft-argmax lets the pose
    term actually steer the generator. EmoNet sees the central 80 % (:func:`emonet_scores`);
    its points are mapped back to the whole frame, where EmoStyle's pose term measures.
    """
    points, _ = heatmaps_to_landmarks(scores["heatmap"], EMONET_SIZE, method="soft-argmax")
    return unframe_points(points, resolution) * (EMONET_SIZE / resolution)


def pose_loss(points: torch.Tensor, target_points: torch.Tensor,
              indices: np.ndarray | None = None) -> torch.Tensor:
    """Mean squared distance, pixels squared, between landmark sets [N, 68, 2] at ``indices``."""
    assert_shape(target_points, list(points.shape), "target landmarks")
    if indices is not None:
        index = torch.as_tensor(indices, device=points.device)
        points, target_points = points[:, index], target_points[:, index]
    return F.mse_loss(points, target_points)


# ----------------------------------------------------------------------------- latents

def distance_to_average(ws: torch.Tensor, w_avg: torch.Tensor) -> torch.Tensor:
    """Mean squared distance of every w in ``ws`` [N, num_ws, w_dim] to ``w_avg`` [w_dim]."""
    assert_shape(w_avg, [ws.shape[-1]], "w_avg")
    return (ws - w_avg).square().mean()

