"""The ``emonet`` rater: EmoNet-8 valence/arousal regression on each face, framed as EmoNet expects.

Owns :class:`EmoNetRater`, the registered ``emonet`` rater, and :func:`face_crops`, which
turns faces into EmoNet's input: FFHQ-aligned faces (``Rendered.framing == "ffhq"``) are
framed as EmoStyle frames them (:func:`stimgen.nets.emonet.ffhq_framing`); other faces are
rated on the whole image resized to 256.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from stimgen.backends.base import FFHQ_FRAMING, Rendered
from stimgen.nets.emonet import INPUT_SIZE, ffhq_framing
from stimgen.raters.base import RaterInfo

#: ``Rendered.extras`` key of a uint8 [256, 256, 3] EmoNet input a backend computed itself,
#: already framed (the emostyle backend frames its full-resolution face, before resizing).
CROP_KEY = "face_crop"


def face_crops(faces: Sequence[Rendered]) -> torch.Tensor:
    """EmoNet input [N, 3, 256, 256] in [0, 1] for each face.

    The backend's own crop (:data:`CROP_KEY`) when it gave one; else, for an FFHQ-aligned
    face, :func:`~stimgen.nets.emonet.ffhq_framing` of its image (central 80 %, nearest
    neighbour, as EmoStyle); else the whole image, resized (antialiased bilinear).
    """
    crops = []
    for face in faces:
        crop = face.extras.get(CROP_KEY)
        if crop is not None:
            crops.append(_unit_tensor(crop))
            continue
        image = _unit_tensor(np.asarray(face.image.convert("RGB")))[None]
        if face.framing == FFHQ_FRAMING:
            image = ffhq_framing(image)
        elif image.shape[-2:] != (INPUT_SIZE, INPUT_SIZE):
            image = F.interpolate(image, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear",
                                  align_corners=False, antialias=True)
        crops.append(image[0])
    return torch.stack(crops)


def _unit_tensor(pixels: np.ndarray) -> torch.Tensor:
    """uint8 [H, W, 3] -> float [3, H, W] in [0, 1]."""
    return torch.from_numpy(np.array(pixels, dtype=np.uint8)).permute(2, 0, 1).float() / 255.0


class EmoNetRater:
    """EmoNet (Toisoul et al., 2021) valence and arousal, clamped to [-1, 1].

    Parameters
    ----------
    emonet : nn.Module
        A loaded ``EmoNet`` (see :func:`stimgen.checkpoints.torch_files.load_emonet`).
    info : RaterInfo
        Name, description, and whether the generator was trained against this rater
        (see :func:`stimgen.raters.describe_rater`).

    EmoNet sees each face alone: the neutral reference is not used.
    """

    def __init__(self, emonet: nn.Module, info: RaterInfo):
        self.emonet = emonet.eval()
        self.device = next(emonet.parameters()).device
        self.info = info

    @torch.no_grad()
    def rate(self, faces: Sequence[Rendered], neutral: Rendered | None = None) -> np.ndarray:
        """[N, 2] achieved (valence, arousal) of ``faces``, each in [-1, 1]."""
        if not faces:
            return np.zeros((0, 2))
        out = self.emonet(face_crops(faces).to(self.device))
        va = torch.stack([out["valence"], out["arousal"]], dim=1).float().clamp(-1.0, 1.0)
        return va.cpu().numpy().astype(float)
