"""The ``emonet`` rater: EmoNet-8 valence/arousal regression on each face's aligned crop.

Owns :class:`EmoNetRater`, the registered ``emonet`` rater. Faces from the emostyle backend
carry their 256-pixel aligned crop (``Rendered.extras["face_crop"]``); other faces are rated
on the whole image resized to 256.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from stimgen.backends.base import Rendered
from stimgen.nets.emonet import INPUT_SIZE
from stimgen.raters.base import RaterInfo

#: ``Rendered.extras`` key of the uint8 [256, 256, 3] face crop a backend may provide.
CROP_KEY = "face_crop"


def face_crops(faces: Sequence[Rendered]) -> torch.Tensor:
    """EmoNet input [N, 3, 256, 256] in [0, 1]: each face's crop, else its resized image."""
    crops = []
    for face in faces:
        crop = face.extras.get(CROP_KEY)
        if crop is None:
            crop = np.asarray(face.image.convert("RGB"))
        crop = torch.from_numpy(np.array(crop, dtype=np.uint8)).permute(2, 0, 1).float() / 255.0
        if crop.shape[-2:] != (INPUT_SIZE, INPUT_SIZE):
            crop = F.interpolate(crop[None], size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear",
                                 align_corners=False, antialias=True)[0]
        crops.append(crop)
    return torch.stack(crops)


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
